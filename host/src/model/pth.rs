//! Reader for PyTorch's legacy (pre-1.6, non-zip) checkpoint format, and conversion to
//! safetensors, which tch loads directly.
//!
//! Layout, as `torch.save(..., _use_new_zipfile_serialization=False)` writes it:
//! 1. a pickle of the magic number 0x1950a86a20f9469cfc6c;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of system information (`little_endian`, type sizes);
//! 4. the pickled object (here an `OrderedDict` of name -> tensor), where each tensor is
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and each storage a
//!    persistent id `('storage', torch.FloatStorage, key, location, numel, view)`;
//! 5. a pickle of the storage keys, in the order their data follows;
//! 6. for each storage: its element count as a little-endian u64, then its raw bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::pickle::{self, PickleError, Value};

/// 0x1950a86a20f9469cfc6c, little-endian, as the pickle's LONG1 carries it.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// What is wrong inside a checkpoint file, under the file's name.
    #[error("{path}")]
    InFile {
        path: PathBuf,
        source: Box<PthError>,
    },
    #[error("not a legacy PyTorch checkpoint: {0}")]
    NotLegacyFormat(&'static str),
    #[error("corrupt checkpoint")]
    Pickle(#[from] PickleError),
    #[error("corrupt checkpoint: {0}")]
    Layout(String),
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: tensor {tensor} does not match its shape and type")]
    TensorView {
        path: PathBuf,
        tensor: String,
        source: safetensors::SafeTensorError,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: safetensors::SafeTensorError,
    },
}

/// Element types found in checkpoints. Byte order is little-endian throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl ElementType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    fn safetensors_dtype(self) -> safetensors::Dtype {
        use safetensors::Dtype;
        match self {
            Self::F32 => Dtype::F32,
            Self::F64 => Dtype::F64,
            Self::F16 => Dtype::F16,
            Self::BF16 => Dtype::BF16,
            Self::I64 => Dtype::I64,
            Self::I32 => Dtype::I32,
            Self::I16 => Dtype::I16,
            Self::I8 => Dtype::I8,
            Self::U8 => Dtype::U8,
            Self::Bool => Dtype::BOOL,
        }
    }
}

/// One tensor of a checkpoint, contiguous, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub element_type: ElementType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NamedTensor {
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32, for float tensors.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.element_type == ElementType::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
                .collect()
        })
    }
}

/// A storage as the pickle refers to it.
struct StorageRef {
    key: String,
    element_type: ElementType,
}

/// A tensor as the pickle describes it, before its storage's bytes are read.
struct TensorRef {
    name: String,
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Reads every tensor of a legacy checkpoint file, in file order.
pub fn read_file(path: &Path) -> Result<Vec<NamedTensor>, PthError> {
    let bytes = std::fs::read(path).map_err(|source| PthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read(&bytes).map_err(|source| PthError::InFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Reads every tensor of a legacy checkpoint, in the order the state dict lists them.
pub fn read(bytes: &[u8]) -> Result<Vec<NamedTensor>, PthError> {
    let mut rest = bytes;
    let next_pickle = |rest: &mut &[u8]| -> Result<Value, PthError> {
        let (value, used) = pickle::load(rest)?;
        *rest = &rest[used..];
        Ok(value)
    };
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(PthError::NotLegacyFormat(
            "this is the zip-based format of PyTorch 1.6 and later, not the legacy one",
        ));
    }
    if next_pickle(&mut rest)? != Value::WideInt(MAGIC_NUMBER.to_vec()) {
        return Err(PthError::NotLegacyFormat("the magic number is missing"));
    }
    if next_pickle(&mut rest)? != Value::Int(PROTOCOL_VERSION) {
        return Err(PthError::NotLegacyFormat("unknown protocol version"));
    }
    check_system_info(&next_pickle(&mut rest)?)?;
    let tensors = match next_pickle(&mut rest)? {
        Value::Dict(entries) => entries
            .into_iter()
            .map(|(name, value)| tensor_ref(name, value))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(layout("the checkpoint is not a state dict")),
    };
    let keys = match next_pickle(&mut rest)? {
        Value::List(keys) => keys
            .into_iter()
            .map(|key| match key {
                Value::Str(key) => Ok(key),
                _ => Err(layout("a storage key is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(layout("the storage key list is missing")),
    };
    let element_types: HashMap<&str, ElementType> = tensors
        .iter()
        .map(|tensor| (tensor.storage.key.as_str(), tensor.storage.element_type))
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let element_type = *element_types
            .get(key.as_str())
            .ok_or_else(|| layout(format!("storage {key} is not used by any tensor")))?;
        let count_bytes: [u8; 8] = rest
            .get(..8)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| layout(format!("storage {key} is truncated")))?;
        let count = usize::try_from(u64::from_le_bytes(count_bytes))
            .map_err(|_| layout(format!("storage {key} is too large")))?;
        let length = count
            .checked_mul(element_type.size())
            .ok_or_else(|| layout(format!("storage {key} is too large")))?;
        let data = rest
            .get(8..8 + length)
            .ok_or_else(|| layout(format!("storage {key} is truncated")))?;
        rest = &rest[8 + length..];
        storages.insert(key, data);
    }
    tensors
        .into_iter()
        .map(|tensor| {
            let storage = storages
                .get(&tensor.storage.key)
                .ok_or_else(|| layout(format!("no data for storage {}", tensor.storage.key)))?;
            gather(&tensor, storage)
        })
        .collect()
}

fn layout(message: impl Into<String>) -> PthError {
    PthError::Layout(message.into())
}

fn check_system_info(info: &Value) -> Result<(), PthError> {
    let Value::Dict(entries) = info else {
        return Err(PthError::NotLegacyFormat("system information is missing"));
    };
    let little_endian = entries
        .iter()
        .find(|(key, _)| *key == Value::Str("little_endian".into()))
        .map(|(_, value)| value);
    match little_endian {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(layout(
            "the checkpoint was written big-endian, which is not supported",
        )),
    }
}

fn as_usize(value: &Value, what: &str) -> Result<usize, PthError> {
    match value {
        Value::Int(number) => {
            usize::try_from(*number).map_err(|_| layout(format!("{what} is negative")))
        }
        _ => Err(layout(format!("{what} is not an integer"))),
    }
}

fn as_usizes(value: &Value, what: &str) -> Result<Vec<usize>, PthError> {
    match value {
        Value::Tuple(items) => items.iter().map(|item| as_usize(item, what)).collect(),
        _ => Err(layout(format!("{what} is not a tuple"))),
    }
}

fn tensor_ref(name: Value, value: Value) -> Result<TensorRef, PthError> {
    let Value::Str(name) = name else {
        return Err(layout("a state-dict key is not a string"));
    };
    let Value::Call { callable, args } = value else {
        return Err(layout(format!("{name} is not a tensor")));
    };
    let rebuild = matches!(callable.as_ref(),
        Value::Global { module, name } if module == "torch._utils" && name == "_rebuild_tensor_v2");
    if !rebuild || args.len() < 4 {
        return Err(layout(format!("{name} is not a plain tensor")));
    }
    let storage = storage_ref(&args[0]).map_err(|error| layout(format!("{name}: {error}")))?;
    Ok(TensorRef {
        offset: as_usize(&args[1], "storage offset")?,
        shape: as_usizes(&args[2], "tensor size")?,
        stride: as_usizes(&args[3], "tensor stride")?,
        storage,
        name,
    })
}

fn storage_ref(value: &Value) -> Result<StorageRef, String> {
    let Value::PersistentId(id) = value else {
        return Err("the tensor's storage is not a persistent id".into());
    };
    let Value::Tuple(fields) = id.as_ref() else {
        return Err("the storage id is not a tuple".into());
    };
    match fields.as_slice() {
        [Value::Str(kind), Value::Global { module, name }, Value::Str(key), ..]
            if kind == "storage" && module == "torch" =>
        {
            let element_type = ElementType::from_storage_class(name)
                .ok_or_else(|| format!("unsupported storage type torch.{name}"))?;
            Ok(StorageRef {
                key: key.clone(),
                element_type,
            })
        }
        _ => Err("the storage id is not ('storage', type, key, ...)".into()),
    }
}

/// Copies a (possibly strided) view of a storage into a contiguous row-major buffer.
fn gather(tensor: &TensorRef, storage: &[u8]) -> Result<NamedTensor, PthError> {
    let element_size = tensor.storage.element_type.size();
    let storage_elements = storage.len() / element_size;
    if tensor.shape.len() != tensor.stride.len() {
        return Err(layout(format!(
            "{}: size and stride differ in rank",
            tensor.name
        )));
    }
    let count: usize = tensor.shape.iter().product();
    // The farthest element the view touches must lie inside the storage.
    let last = tensor
        .shape
        .iter()
        .zip(&tensor.stride)
        .try_fold(tensor.offset, |far, (size, stride)| {
            far.checked_add(size.saturating_sub(1).checked_mul(*stride)?)
        });
    if count > 0 && last.is_none_or(|last| last >= storage_elements) {
        return Err(layout(format!("{} reaches past its storage", tensor.name)));
    }
    let mut data = Vec::with_capacity(count * element_size);
    let mut index = vec![0usize; tensor.shape.len()];
    for _ in 0..count {
        let element = tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, stride)| i * stride)
                .sum::<usize>();
        let start = element * element_size;
        data.extend_from_slice(&storage[start..start + element_size]);
        // Advance the row-major index, last axis fastest.
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < tensor.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(NamedTensor {
        name: tensor.name.clone(),
        element_type: tensor.storage.element_type,
        shape: tensor.shape.clone(),
        data,
    })
}

/// What [`import`] converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub tensors: usize,
    pub values: usize,
}

/// Converts a legacy checkpoint file into a safetensors file (creating its directory), keeping
/// every tensor and its name, and recording the source path in the header.
pub fn import(checkpoint: &Path, out: &Path) -> Result<ImportSummary, PthError> {
    let tensors = read_file(checkpoint)?;
    if let Some(parent) = out.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| PthError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let metadata = HashMap::from([("source".to_string(), checkpoint.display().to_string())]);
    write_safetensors(&tensors, metadata, out)?;
    Ok(ImportSummary {
        tensors: tensors.len(),
        values: tensors.iter().map(NamedTensor::element_count).sum(),
    })
}

/// Writes tensors to a safetensors file, with `metadata` in its header.
pub fn write_safetensors(
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<(), PthError> {
    let views = tensors
        .iter()
        .map(|tensor| {
            safetensors::tensor::TensorView::new(
                tensor.element_type.safetensors_dtype(),
                tensor.shape.clone(),
                &tensor.data,
            )
            .map(|view| (tensor.name.as_str(), view))
            .map_err(|source| PthError::TensorView {
                path: path.to_path_buf(),
                tensor: tensor.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::tensor::serialize_to_file(views, &Some(metadata), path).map_err(|source| {
        PthError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy checkpoint as torch 1.x writes it for
    /// `OrderedDict(w=torch.arange(6.).reshape(2, 3).t(), n=torch.tensor(7))`:
    /// `w` is a transposed (strided) view, `n` an int64 scalar.
    fn tiny_checkpoint() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.");
        bytes.extend_from_slice(b"\x80\x02M\xe9\x03.");
        bytes.extend_from_slice(b"\x80\x02}q\x00(X\x0d\x00\x00\x00little_endianq\x01\x88u.");
        bytes.extend_from_slice(
            b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x001X\x03\x00\x00\x00cpuK\x06NtQK\x00K\x03K\x02\x86K\x01K\x03\x86\x89)tRX\x01\x00\x00\x00nh\x02((X\x07\x00\x00\x00storagectorch\nLongStorage\nX\x01\x00\x00\x002X\x03\x00\x00\x00cpuK\x01NtQK\x00)))\x89)tRu.",
        );
        bytes.extend_from_slice(b"\x80\x02]q\x00(X\x01\x00\x00\x001X\x01\x00\x00\x002e.");
        bytes.extend_from_slice(&6u64.to_le_bytes());
        for value in 0..6 {
            bytes.extend_from_slice(&(value as f32).to_le_bytes());
        }
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&7i64.to_le_bytes());
        bytes
    }

    #[test]
    fn reads_strided_and_integer_tensors() {
        let tensors = read(&tiny_checkpoint()).expect("valid checkpoint");
        assert_eq!(tensors.len(), 2);
        assert_eq!(tensors[0].name, "w");
        assert_eq!(tensors[0].shape, vec![3, 2]);
        // arange(6).reshape(2, 3).t() == [[0, 3], [1, 4], [2, 5]]
        assert_eq!(
            tensors[0].to_f32(),
            Some(vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
        );
        assert_eq!(tensors[1].element_type, ElementType::I64);
        assert!(tensors[1].shape.is_empty());
        assert_eq!(tensors[1].data, 7i64.to_le_bytes());
    }

    #[test]
    fn truncated_or_foreign_files_are_refused_with_a_reason() {
        let bytes = tiny_checkpoint();
        for end in [0, 5, 30, 200, bytes.len() - 1] {
            assert!(read(&bytes[..end]).is_err(), "accepted {end} bytes");
        }
        let error = read(b"PK\x03\x04 zip archive").expect_err("zip format");
        assert!(error.to_string().contains("zip"), "{error}");
    }

    #[test]
    fn safetensors_output_reads_back() {
        let tensors = read(&tiny_checkpoint()).expect("valid checkpoint");
        let dir = std::env::temp_dir().join(format!("orbhash-pth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("tiny.safetensors");
        write_safetensors(&tensors, HashMap::new(), &path).expect("writes");
        let bytes = std::fs::read(&path).expect("reads");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let w = file.tensor("w").expect("w present");
        assert_eq!(w.shape(), &[3, 2]);
        assert_eq!(w.data(), tensors[0].data.as_slice());
        std::fs::remove_dir_all(&dir).ok();
    }
}
