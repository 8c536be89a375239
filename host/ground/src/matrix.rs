//! The packed code matrix: one file per model id, every code of that model contiguous, for search.
//!
//! SQLite is the system of record; this file is derived from it and rebuilt whenever it is missing,
//! damaged or stale. Stale is decided without reading the records: the header keeps the record
//! count and the highest record id it was built from, and the archive keeps both per model (records
//! are append-only). A matrix that is a prefix of the archive is extended with the newer records
//! only; anything else is rebuilt whole.
//!
//! # File layout (`codes/<model id>.ohm`, little-endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `ORBHMAT\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 2 | K (code bits) |
//! | 14 | 2 | words per code (u64; K ≤ 64 → 1, 128 → 2, 256 → 4) |
//! | 16 | 8 | model id |
//! | 24 | 8 | record count n |
//! | 32 | 8 | highest record id (i64) |
//! | 40 | 8 | checksum of everything after the header |
//! | 48 | 16 | zero |
//! | 64 | 8·words·n | codes, row by row, zero-padded to whole words |
//! | | 8·n | record ids (i64) |
//! | | 8·n | capture times (u64 ms) |
//! | | 4·n | scene ids |
//! | | 4·n | tile ids |
//! | | 2·n | labels |
//!
//! Rows are in record-id order, so a row index is the search's tie-breaker everywhere (scan, MIH,
//! threads): equal distances rank by row, and every method returns the same list.
//!
//! Codes are in the wire crate's word layout ([`orbhash_wire::pack_words`]).

// The file is read back from disk, where anything may have happened to it: no panics on its bytes.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use orbhash_wire::{pack_words, words_for, ModelId};

use crate::archive::{Archive, ModelInfo};
use crate::{GroundError, Result};

const MAGIC: &[u8; 8] = b"ORBHMAT\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;

/// The `N` bytes at `at` of `bytes` (zeros past its end: callers check lengths first).
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(slice) = bytes.get(at..at.saturating_add(N)) {
        out.copy_from_slice(slice);
    }
    out
}

/// Every code of one model, with the per-record columns the search filters on.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeMatrix {
    pub model_id: ModelId,
    pub bits: u16,
    pub words: usize,
    /// `words` u64 per row.
    pub codes: Vec<u64>,
    pub ids: Vec<i64>,
    pub times: Vec<u64>,
    pub scenes: Vec<u32>,
    pub tiles: Vec<u32>,
    pub labels: Vec<u16>,
    /// Highest record id included (0 when empty).
    pub max_record_id: i64,
}

/// How [`CodeMatrix::open_or_build`] got its matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixSource {
    /// The file was up to date.
    Loaded,
    /// The file was a prefix of the archive: this many newer records were appended.
    Extended(u64),
    /// Rebuilt from SQLite, for this reason.
    Rebuilt(String),
}

impl CodeMatrix {
    pub fn new(model_id: ModelId, bits: u16) -> Self {
        Self {
            model_id,
            bits,
            words: words_for(bits),
            codes: Vec::new(),
            ids: Vec::new(),
            times: Vec::new(),
            scenes: Vec::new(),
            tiles: Vec::new(),
            labels: Vec::new(),
            max_record_id: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends one row; `code` is K/8 bytes.
    pub fn push(
        &mut self,
        id: i64,
        code: &[u8],
        label: u16,
        scene_id: u32,
        tile_id: u32,
        time_ms: u64,
    ) {
        let start = self.codes.len();
        self.codes.resize(start + self.words, 0);
        if let Some(row) = self.codes.get_mut(start..) {
            pack_words(code, row);
        }
        self.ids.push(id);
        self.labels.push(label);
        self.scenes.push(scene_id);
        self.tiles.push(tile_id);
        self.times.push(time_ms);
        self.max_record_id = self.max_record_id.max(id);
    }

    /// Row `row`'s code words.
    pub fn code(&self, row: usize) -> &[u64] {
        self.codes
            .get(row * self.words..(row + 1) * self.words)
            .unwrap_or(&[])
    }

    /// Where the matrix of `model_id` lives in an archive.
    pub fn path_for(archive_dir: &Path, model_id: ModelId) -> PathBuf {
        archive_dir.join("codes").join(format!("{model_id}.ohm"))
    }

    /// The matrix of `model`, from its file when fresh, else extended or rebuilt from the archive
    /// and saved (a failure to save is not an error: the search still has its matrix).
    pub fn open_or_build(archive: &Archive, model: &ModelInfo) -> Result<(Self, MatrixSource)> {
        let path = Self::path_for(archive.dir(), model.model_id);
        let (mut matrix, mut source) = match Self::read(&path) {
            Ok(matrix) if matrix.model_id != model.model_id || matrix.bits != model.code_bits => (
                Self::new(model.model_id, model.code_bits),
                MatrixSource::Rebuilt("the file is for another model".to_string()),
            ),
            Ok(matrix)
                if matrix.len() as u64 == model.record_count
                    && matrix.max_record_id == model.max_record_id =>
            {
                return Ok((matrix, MatrixSource::Loaded));
            }
            Ok(matrix)
                if (matrix.len() as u64) < model.record_count
                    && matrix.max_record_id < model.max_record_id =>
            {
                (matrix, MatrixSource::Extended(0))
            }
            Ok(_) => (
                Self::new(model.model_id, model.code_bits),
                MatrixSource::Rebuilt("built from a different archive state".to_string()),
            ),
            Err(GroundError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                (
                    Self::new(model.model_id, model.code_bits),
                    MatrixSource::Rebuilt("no matrix file yet".to_string()),
                )
            }
            Err(error) => (
                Self::new(model.model_id, model.code_bits),
                MatrixSource::Rebuilt(orbhash_cli::error_chain(&error)),
            ),
        };
        let before = matrix.len();
        matrix.append_from_archive(archive, model)?;
        if matches!(source, MatrixSource::Extended(_)) {
            if matrix.len() as u64 != model.record_count {
                // The prefix did not line up with the archive after all: start again.
                return Self::rebuild(archive, model, &path);
            }
            source = MatrixSource::Extended((matrix.len() - before) as u64);
        }
        // Saving is an optimisation; a read-only archive still searches.
        let _ = matrix.write(&path);
        Ok((matrix, source))
    }

    /// Appends the archive's records of `model` newer than this matrix's last one, refusing a
    /// code whose length is not the model's.
    fn append_from_archive(&mut self, archive: &Archive, model: &ModelInfo) -> Result<()> {
        let code_bytes = usize::from(model.code_bits / 8);
        archive.for_each_matrix_row(model, self.max_record_id, |row| {
            if row.code.len() != code_bytes {
                return Err(GroundError::CodeLength {
                    model: model.model_id,
                    expected: model.code_bits,
                    found: (row.code.len() * 8) as u16,
                });
            }
            self.push(
                row.id,
                row.code,
                row.label,
                row.scene_id,
                row.tile_id,
                row.capture_time_ms,
            );
            Ok(())
        })
    }

    fn rebuild(archive: &Archive, model: &ModelInfo, path: &Path) -> Result<(Self, MatrixSource)> {
        let mut matrix = Self::new(model.model_id, model.code_bits);
        matrix.append_from_archive(archive, model)?;
        let _ = matrix.write(path);
        Ok((
            matrix,
            MatrixSource::Rebuilt("the file did not match the archive".to_string()),
        ))
    }

    /// Writes the file atomically: a temporary file beside it, fsynced, renamed over it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| GroundError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let temporary = path.with_extension("ohm.tmp");
        let file = std::fs::File::create(&temporary).map_err(|source| GroundError::Io {
            path: temporary.clone(),
            source,
        })?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(slot) = header.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        put(0, MAGIC);
        put(8, &VERSION.to_le_bytes());
        put(12, &self.bits.to_le_bytes());
        put(14, &(self.words as u16).to_le_bytes());
        put(16, &self.model_id.0);
        put(24, &(self.len() as u64).to_le_bytes());
        put(32, &self.max_record_id.to_le_bytes());
        put(40, &self.checksum().to_le_bytes());
        let mut write = |bytes: &[u8]| out.write_all(bytes);
        let written = (|| -> std::io::Result<()> {
            write(&header)?;
            for word in &self.codes {
                write(&word.to_le_bytes())?;
            }
            for id in &self.ids {
                write(&id.to_le_bytes())?;
            }
            for time in &self.times {
                write(&time.to_le_bytes())?;
            }
            for scene in &self.scenes {
                write(&scene.to_le_bytes())?;
            }
            for tile in &self.tiles {
                write(&tile.to_le_bytes())?;
            }
            for label in &self.labels {
                write(&label.to_le_bytes())?;
            }
            Ok(())
        })();
        written.map_err(io)?;
        let file = out.into_inner().map_err(|error| io(error.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)?;
        Ok(())
    }

    /// Reads and checks a matrix file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| GroundError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |why: &str| GroundError::BadMatrix {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| bad("shorter than its header"))?;
        let field = |at: usize| array::<8>(header, at);
        if header.get(..8) != Some(MAGIC.as_slice()) {
            return Err(bad("not an orbhash code matrix (bad magic)"));
        }
        let version = u32::from_le_bytes(array(header, 8));
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        let bits = u16::from_le_bytes(array(header, 12));
        let words = usize::from(u16::from_le_bytes(array(header, 14)));
        if !orbhash_wire::code::is_supported_length(bits) || words != words_for(bits) {
            return Err(bad(&format!(
                "unsupported code length {bits} ({words} words)"
            )));
        }
        let model_id = ModelId(field(16));
        let count = usize::try_from(u64::from_le_bytes(field(24)))
            .map_err(|_| bad("record count does not fit in memory"))?;
        let max_record_id = i64::from_le_bytes(field(32));
        let checksum = u64::from_le_bytes(field(40));
        let row_bytes = 8 * words + 8 + 8 + 4 + 4 + 2;
        let expected = count
            .checked_mul(row_bytes)
            .and_then(|body| body.checked_add(HEADER_LEN))
            .ok_or_else(|| bad("record count overflows"))?;
        if bytes.len() != expected {
            return Err(bad(&format!(
                "{} bytes, expected {expected} for {count} records (truncated or torn write)",
                bytes.len()
            )));
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or(&[]);
        let mut at = 0usize;
        let mut take = |len: usize| -> &[u8] {
            let slice = body.get(at..at + len).unwrap_or(&[]);
            at += len;
            slice
        };
        let codes_bytes = take(8 * words * count);
        let ids_bytes = take(8 * count);
        let times_bytes = take(8 * count);
        let scenes_bytes = take(4 * count);
        let tiles_bytes = take(4 * count);
        let labels_bytes = take(2 * count);
        let u64s = |raw: &[u8]| -> Vec<u64> {
            raw.chunks_exact(8)
                .map(|c| u64::from_le_bytes(array(c, 0)))
                .collect()
        };
        let matrix = Self {
            model_id,
            bits,
            words,
            codes: u64s(codes_bytes),
            ids: u64s(ids_bytes).into_iter().map(|id| id as i64).collect(),
            times: u64s(times_bytes),
            scenes: scenes_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(array(c, 0)))
                .collect(),
            tiles: tiles_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(array(c, 0)))
                .collect(),
            labels: labels_bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes(array(c, 0)))
                .collect(),
            max_record_id,
        };
        if matrix.checksum() != checksum {
            return Err(bad("checksum mismatch (damaged file)"));
        }
        Ok(matrix)
    }

    /// A 64-bit checksum of every column (FNV-1a over 64-bit words): catches torn or damaged files,
    /// not adversaries.
    pub fn checksum(&self) -> u64 {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |word: u64| hash = (hash ^ word).wrapping_mul(PRIME);
        self.codes.iter().for_each(|w| mix(*w));
        self.ids.iter().for_each(|w| mix(*w as u64));
        self.times.iter().for_each(|w| mix(*w));
        self.scenes.iter().for_each(|w| mix(u64::from(*w)));
        self.tiles.iter().for_each(|w| mix(u64::from(*w)));
        self.labels.iter().for_each(|w| mix(u64::from(*w)));
        mix(self.len() as u64);
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.ohm");
        let mut matrix = CodeMatrix::new(ModelId([1; 8]), 128);
        for row in 0..10u8 {
            matrix.push(i64::from(row) + 1, &[row; 16], u16::from(row), 3, 7, 99);
        }
        matrix.write(&path).expect("write");
        assert_eq!(CodeMatrix::read(&path).expect("read"), matrix);
        let mut bytes = std::fs::read(&path).expect("bytes");
        bytes[70] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");
        assert!(matches!(
            CodeMatrix::read(&path),
            Err(GroundError::BadMatrix { .. })
        ));
        bytes.truncate(100);
        std::fs::write(&path, &bytes).expect("truncate");
        assert!(matches!(
            CodeMatrix::read(&path),
            Err(GroundError::BadMatrix { .. })
        ));
    }
}
