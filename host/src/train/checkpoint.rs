//! Checkpoints: one safetensors file holding the backbone (`backbone.*`), the head (`head.*`) and
//! the memory bank of training codes (`memory_bank`), with the training configuration, the class
//! names, the input definition and progress in its metadata. Written to a temporary file and
//! renamed into place, so a crash mid-write never leaves a torn checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::data::InputSpec;
use crate::model::pth::{write_safetensors, ElementType, NamedTensor};

use super::network::Dhcnn;
use super::TrainConfig;

const FORMAT: &str = "orbhash-dhcnn-checkpoint-1";
const BANK: &str = "memory_bank";

/// What a checkpoint records beside its tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointInfo {
    pub config: TrainConfig,
    pub classes: Vec<String>,
    pub input: InputSpec,
    /// Epochs completed.
    pub epochs_done: usize,
    /// SHA-256 of the data set's manifest.json, when it has one.
    pub manifest_sha256: Option<String>,
}

fn tensor_bytes(tensor: &Tensor) -> anyhow::Result<(Vec<usize>, Vec<u8>)> {
    let cpu = tensor
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let shape = cpu.size().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = Vec::try_from(cpu.flatten(0, -1))?;
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok((shape, bytes))
}

fn named(prefix: &str, store: &nn::VarStore) -> anyhow::Result<Vec<NamedTensor>> {
    let mut variables: Vec<_> = store.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
        .into_iter()
        .map(|(name, tensor)| {
            let (shape, data) = tensor_bytes(&tensor)?;
            Ok(NamedTensor {
                name: format!("{prefix}.{name}"),
                element_type: ElementType::F32,
                shape,
                data,
            })
        })
        .collect()
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    info: &CheckpointInfo,
    backbone: &nn::VarStore,
    head: &nn::VarStore,
    memory_bank: &Tensor,
) -> anyhow::Result<()> {
    let mut tensors = named("backbone", backbone)?;
    tensors.extend(named("head", head)?);
    let (shape, data) = tensor_bytes(memory_bank)?;
    tensors.push(NamedTensor {
        name: BANK.to_string(),
        element_type: ElementType::F32,
        shape,
        data,
    });
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("orbhash".to_string(), serde_json::to_string(info)?),
    ]);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    write_safetensors(&tensors, metadata, &partial)?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move the checkpoint into {}", path.display()))?;
    Ok(())
}

/// A checkpoint read back: its metadata and tensors by name.
pub struct Checkpoint {
    pub info: CheckpointInfo,
    bytes: Vec<u8>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let fields = metadata.metadata().clone().unwrap_or_default();
        if fields.get("format").map(String::as_str) != Some(FORMAT) {
            bail!(
                "{} is not an orbhash DHCNN checkpoint (format {:?}, expected {FORMAT})",
                path.display(),
                fields.get("format")
            );
        }
        let info = fields
            .get("orbhash")
            .context("the checkpoint has no orbhash metadata")
            .and_then(|json| Ok(serde_json::from_str(json)?))
            .with_context(|| format!("{}: unreadable training metadata", path.display()))?;
        Ok(Self { info, bytes })
    }

    fn tensors(&self) -> anyhow::Result<safetensors::SafeTensors<'_>> {
        safetensors::SafeTensors::deserialize(&self.bytes).context("corrupt checkpoint")
    }

    /// A tensor's shape and values, for code that reads weights without libtorch (the exporter).
    pub fn f32_tensor(&self, name: &str) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
        let tensors = self.tensors()?;
        let view = tensors
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("the checkpoint lacks tensor {name}"))?;
        if view.dtype() != safetensors::Dtype::F32 {
            bail!("tensor {name} is not f32");
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((view.shape().to_vec(), values))
    }

    fn load_tensor(&self, name: &str) -> anyhow::Result<Tensor> {
        let (shape, values) = self.f32_tensor(name)?;
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::from_slice(&values).view(shape.as_slice()))
    }

    /// Copies the checkpoint's `prefix.*` tensors into every variable of `store`; every variable
    /// must be present with the same shape, or the checkpoint is of another architecture.
    pub fn restore(&self, prefix: &str, store: &mut nn::VarStore) -> anyhow::Result<()> {
        let device = store.device();
        for (name, mut variable) in store.variables() {
            let source = self
                .load_tensor(&format!("{prefix}.{name}"))
                .context("the checkpoint is of another architecture")?;
            if source.size() != variable.size() {
                bail!(
                    "{prefix}.{name} has shape {:?} in the checkpoint but {:?} in the network: \
                     the checkpoint is of another architecture",
                    source.size(),
                    variable.size()
                );
            }
            tch::no_grad(|| variable.copy_(&source.to_device(device)));
        }
        Ok(())
    }

    pub fn memory_bank(&self) -> anyhow::Result<Tensor> {
        self.load_tensor(BANK)
    }
}

/// The network a checkpoint was trained as, on `device`, with its trained weights.
pub fn restore_network(checkpoint: &Checkpoint, device: tch::Device) -> anyhow::Result<Dhcnn> {
    let config = &checkpoint.info.config;
    let classes = checkpoint.info.classes.len() as i64;
    let channels = checkpoint.info.input.channels();
    let mut model = Dhcnn::new(config.backbone, config.bits, classes, channels, device)?;
    checkpoint.restore("backbone", &mut model.backbone_store)?;
    checkpoint.restore("head", &mut model.head_store)?;
    Ok(model)
}
