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
pub mod contact;
pub mod ingest;
pub mod kernel;
pub mod matrix;
pub mod mih;
pub mod milvus;
pub mod reports;
pub mod search;
pub mod tasks;

use std::path::PathBuf;

use orbhash_wire::ModelId;

/// Everything the ground station can fail at, each naming the file, peer or model concerned.
///
/// A variant with a source names what failed and leaves the cause to its source, so an error
/// printed with every source (anyhow's `{:#}`) says each thing once.
#[derive(Debug, thiserror::Error)]
pub enum GroundError {
    #[error("archive {path}")]
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
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("code matrix {path}: {why}")]
    BadMatrix { path: PathBuf, why: String },
    #[error("Milvus at {url}: {what}: {reason}")]
    Milvus {
        url: String,
        /// The call that failed.
        what: String,
        reason: String,
    },
    #[error(
        "Milvus at {url} holds {held} codes of model {model}, the archive {archived}: run \
         `orbhash-ground index sync --milvus {url}` (or `index rebuild`) first"
    )]
    MilvusBehind {
        url: String,
        model: ModelId,
        held: u64,
        archived: u64,
    },
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
    #[error(
        "a packet of model {model} carries {found}-bit codes; the archive holds that model's \
         codes as {expected}-bit"
    )]
    PacketCodeLength {
        model: ModelId,
        expected: u16,
        found: u16,
    },
    #[error("bad code {text:?}: expected an even number of hex digits")]
    BadHex { text: String },
    #[error("bad code {text:?}")]
    BadCode {
        text: String,
        #[source]
        source: orbhash_wire::CodeError,
    },
    #[error("bad model id {text:?}: expected 16 hex digits")]
    BadModelId { text: String },
    #[error("model card {what}")]
    BadModelCard {
        /// The file, or which stored card.
        what: String,
        #[source]
        source: orbhash_contract::card::CardError,
    },
    #[error("model card of {model}: the card says {card_bits}-bit codes, its packets carry {seen_bits}-bit codes")]
    CardCodeLength {
        model: ModelId,
        card_bits: u16,
        seen_bits: u16,
    },
    #[error("{path} is the card of model {found}, not {expected}")]
    CardOfAnotherModel {
        path: PathBuf,
        found: ModelId,
        expected: ModelId,
    },
    #[error("{what}")]
    Hashing {
        /// The model or image file, and what was being done with it.
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
    #[error("listening on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer {peer}")]
    Peer {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {path}: the report of session {session} does not read")]
    BadReport {
        path: PathBuf,
        session: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("search: {0}")]
    Search(String),
    #[error("link: {0}")]
    Link(String),
    #[error("peer {peer}: the archive writer stopped")]
    WriterGone { peer: String },
    #[error("the archive writer thread panicked")]
    WriterPanicked,
    #[error("stopped accepting connections: the archive writer failed")]
    WriterFailed {
        #[source]
        source: Box<GroundError>,
    },
}

pub type Result<T, E = GroundError> = std::result::Result<T, E>;

/// Parses 16 hex digits as a model id.
pub fn parse_model_id(text: &str) -> Result<ModelId> {
    ModelId::from_hex(text.trim()).ok_or_else(|| GroundError::BadModelId {
        text: text.to_string(),
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
    fn model_ids_are_16_hex_digits() {
        assert!(parse_model_id("5a117e0042990001").is_ok());
        assert!(parse_model_id("5a117e00429900").is_err());
    }

    #[test]
    fn an_error_names_its_cause_once() {
        let error = GroundError::Io {
            path: PathBuf::from("pass.bin"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert_eq!(chain, "pass.bin: no such file");
    }
}
