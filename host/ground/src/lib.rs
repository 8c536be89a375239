//! The ground station: ingest downlinked records into the archive, search it by Hamming distance.
//!
//! Data flows `ingest` → `archive` (SQLite, the system of record) → `matrix` (one packed code
//! matrix per model id, rebuilt from SQLite when missing or stale) → `search` (exact popcount
//! scan) or `mih` (exact multi-index hashing) → results resolved back through the archive.
//!
//! Nothing here links libtorch: `cargo build -p orbhash-ground` is the whole ground station, the
//! `orbhash-ground` binary. Query by image ([`by_image`]) hashes the image with the same model file
//! through `orbhash-infer`, exactly as the board does.

pub mod archive;
pub mod bench;
pub mod by_image;
pub mod cli;
pub mod ingest;
pub mod kernel;
pub mod matrix;
pub mod mih;
pub mod search;

use std::path::PathBuf;

use orbhash_wire::ModelId;

/// Everything the ground station can fail at, each naming the file, peer or model concerned.
#[derive(Debug, thiserror::Error)]
pub enum GroundError {
    #[error("archive {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("archive {path}: schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("code matrix {path}: {why}")]
    BadMatrix { path: PathBuf, why: String },
    #[error("model {0} is not in the archive")]
    UnknownModel(ModelId),
    #[error("the archive holds several models ({models}); choose one with --model")]
    AmbiguousModel { models: String },
    #[error("the archive holds no records yet")]
    EmptyArchive,
    #[error("model {model} has {expected}-bit codes, the query is {found} bits")]
    CodeLength {
        model: ModelId,
        expected: u16,
        found: u16,
    },
    #[error("bad code {text:?}: {why}")]
    BadCode { text: String, why: String },
    #[error("bad model id {text:?}: expected 16 hex digits")]
    BadModelId { text: String },
    #[error("model card for {model}: {why}")]
    BadModelCard { model: ModelId, why: String },
    #[error("no tile {tile}{scene} in the archive")]
    NoSuchTile { tile: u32, scene: String },
    #[error("label {label:?} is not a class of model {model} (known: {known})")]
    UnknownLabel {
        label: String,
        model: ModelId,
        known: String,
    },
    #[error("mission key {path}: {why}")]
    BadKey { path: PathBuf, why: String },
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer {peer}: {source}")]
    Peer {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("search: {0}")]
    Search(String),
    #[error("ingest writer stopped: {0}")]
    WriterGone(String),
}

pub type Result<T, E = GroundError> = std::result::Result<T, E>;

/// Parses 16 hex digits as a model id.
pub fn parse_model_id(text: &str) -> Result<ModelId> {
    ModelId::from_hex(text.trim()).ok_or_else(|| GroundError::BadModelId {
        text: text.to_string(),
    })
}

/// Hex digits to bytes (pairs, no separators); `None` on odd length or a non-hex digit.
/// A dozen lines, so no `hex` crate.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = (*pair.first()? as char).to_digit(16)?;
            let low = (*pair.get(1)? as char).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// Bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(parse_hex("00ff7a"), Some(vec![0, 255, 0x7a]));
        assert_eq!(to_hex(&[0, 255, 0x7a]), "00ff7a");
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("zz"), None);
        assert!(parse_model_id("5a117e0042990001").is_ok());
        assert!(parse_model_id("5a117e00429900").is_err());
    }
}
