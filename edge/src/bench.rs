//! `orbhash-edge bench`: tiles/s and ms/tile of one or more models on real tiles, per batch size
//! and thread count, as a table.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::hasher::{Hasher, HasherError};
use crate::source::{SourceError, TileSource};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub models: Vec<PathBuf>,
    pub tiles: PathBuf,
    pub batches: Vec<usize>,
    pub threads: Vec<usize>,
    /// Tiles hashed per measurement (after one warm-up batch).
    pub tiles_per_run: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub model: String,
    pub precision: String,
    pub batch: usize,
    pub threads: usize,
    pub tiles: usize,
    pub ms_per_tile: f64,
    pub tiles_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] HasherError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no usable tile in {0}")]
    NoTiles(PathBuf),
}

/// Runs every combination; threads are tract's matrix-multiply executor (`multithread-mm`).
pub fn bench(options: &BenchOptions) -> Result<Vec<BenchRow>, BenchError> {
    let mut rows = Vec::new();
    for model_path in &options.models {
        let probe = Hasher::open(model_path, 1)?;
        let source = TileSource::open(&options.tiles, probe.card().tile)?;
        let inputs: Vec<Vec<f32>> = (0..source.len())
            .filter_map(|id| source.tile(id).ok())
            .filter_map(|tile| probe.preprocess(&tile.image).ok())
            .take(options.tiles_per_run.max(1))
            .collect();
        if inputs.is_empty() {
            return Err(BenchError::NoTiles(options.tiles.clone()));
        }
        for &threads in &options.threads {
            let executor = if threads <= 1 {
                tract_linalg::multithread::Executor::SingleThread
            } else {
                tract_linalg::multithread::Executor::multithread(threads)
            };
            tract_linalg::multithread::set_default_executor(executor);
            for &batch in &options.batches {
                let hasher = Hasher::open(model_path, batch.max(1))?;
                hasher.hash(&inputs[..batch.min(inputs.len())])?;
                let timer = Instant::now();
                hasher.hash(&inputs)?;
                let seconds = timer.elapsed().as_secs_f64();
                rows.push(BenchRow {
                    model: model_path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    precision: hasher.card().precision.name().to_string(),
                    batch,
                    threads,
                    tiles: inputs.len(),
                    ms_per_tile: seconds * 1e3 / inputs.len() as f64,
                    tiles_per_second: inputs.len() as f64 / seconds,
                });
            }
        }
    }
    tract_linalg::multithread::set_default_executor(
        tract_linalg::multithread::Executor::SingleThread,
    );
    Ok(rows)
}

/// The rows as an aligned text table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<28} {:>9} {:>6} {:>8} {:>6} {:>11} {:>10}\n",
        "model", "precision", "batch", "threads", "tiles", "ms/tile", "tiles/s"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<28} {:>9} {:>6} {:>8} {:>6} {:>11.2} {:>10.1}\n",
            row.model,
            row.precision,
            row.batch,
            row.threads,
            row.tiles,
            row.ms_per_tile,
            row.tiles_per_second
        ));
    }
    out
}
