//! `orbhash-edge bench`: tiles/s and ms/tile of one or more models on real tiles, per batch size
//! and thread count, as a table; `orbhash-edge profile`: where one model's time goes, per tract
//! operator and node.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use orbhash_infer::hasher::{Hasher, HasherError};
use orbhash_infer::model::NodeTime;
use crate::source::{SourceError, TileSource};
use orbhash_infer::threads::{use_threads, ThreadsUnavailable};

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
    #[error(transparent)]
    Threads(#[from] ThreadsUnavailable),
    #[error("no usable tile in {0}")]
    NoTiles(PathBuf),
}

/// The first `count` usable tiles of `tiles`, preprocessed for `hasher`'s model.
fn real_inputs(hasher: &Hasher, tiles: &Path, count: usize) -> Result<Vec<Vec<f32>>, BenchError> {
    let source = TileSource::open(tiles, hasher.card().tile)?;
    let inputs: Vec<Vec<f32>> = (0..source.len())
        .filter_map(|id| source.tile(id).ok())
        .filter_map(|tile| hasher.preprocess(&tile.image).ok())
        .take(count.max(1))
        .collect();
    if inputs.is_empty() {
        return Err(BenchError::NoTiles(tiles.to_path_buf()));
    }
    Ok(inputs)
}

/// Runs every combination; threads are tract's matrix-multiply executor.
pub fn bench(options: &BenchOptions) -> Result<Vec<BenchRow>, BenchError> {
    let mut rows = Vec::new();
    for model_path in &options.models {
        let probe = Hasher::open(model_path, 1)?;
        let inputs = real_inputs(&probe, &options.tiles, options.tiles_per_run)?;
        for &threads in &options.threads {
            use_threads(threads)?;
            for &batch in &options.batches {
                let hasher = Hasher::open(model_path, batch.max(1))?;
                hasher.hash(&inputs[..batch.min(inputs.len())])?;
                let timer = Instant::now();
                hasher.hash(&inputs)?;
                let seconds = timer.elapsed().as_secs_f64();
                rows.push(BenchRow {
                    model: file_name(model_path),
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
    use_threads(1)?;
    Ok(rows)
}

/// What `orbhash-edge profile` measures: one model, one batch size, one thread count.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    pub model: PathBuf,
    pub tiles: PathBuf,
    pub batch: usize,
    pub threads: usize,
    /// Timed runs (after one untimed).
    pub runs: usize,
}

/// Time per run of one kind of tract operator.
#[derive(Debug, Clone, Serialize)]
pub struct OpShare {
    pub op: String,
    pub nodes: usize,
    pub ms_per_run: f64,
    pub share: f64,
}

/// A model's per-node profile on real tiles, and its sum per operator kind.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub model: String,
    pub batch: usize,
    pub threads: usize,
    pub runs: usize,
    pub ms_per_run: f64,
    pub by_op: Vec<OpShare>,
    /// Slowest first.
    pub nodes: Vec<NodeTime>,
}

/// Times every node of the optimised plan on a batch of real tiles.
pub fn profile(options: &ProfileOptions) -> Result<Profile, BenchError> {
    let batch = options.batch.max(1);
    let hasher = Hasher::open(&options.model, batch)?;
    let inputs = real_inputs(&hasher, &options.tiles, batch)?;
    use_threads(options.threads)?;
    let timed = hasher
        .batch_tensor(&inputs)
        .and_then(|input| Ok(hasher.model().profile(input, options.runs)?));
    use_threads(1)?;
    let mut nodes: Vec<NodeTime> = timed?;
    let total: f64 = nodes.iter().map(|node| node.seconds).sum();
    let mut by_op: Vec<OpShare> = Vec::new();
    for node in &nodes {
        match by_op.iter_mut().find(|share| share.op == node.op) {
            Some(share) => {
                share.nodes += 1;
                share.ms_per_run += node.seconds * 1e3;
            }
            None => by_op.push(OpShare {
                op: node.op.clone(),
                nodes: 1,
                ms_per_run: node.seconds * 1e3,
                share: 0.0,
            }),
        }
    }
    for share in &mut by_op {
        share.share = share.ms_per_run / (total * 1e3).max(f64::MIN_POSITIVE);
    }
    by_op.sort_by(|a, b| b.ms_per_run.total_cmp(&a.ms_per_run));
    nodes.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(Profile {
        model: file_name(&options.model),
        batch,
        threads: options.threads,
        runs: options.runs.max(1),
        ms_per_run: total * 1e3,
        by_op,
        nodes,
    })
}

/// The profile as text: operator kinds by time, then the `top` slowest nodes.
pub fn profile_table(profile: &Profile, top: usize) -> String {
    let mut out = format!(
        "{}: batch {}, {} thread(s), {} runs, {:.2} ms per run in the plan's nodes\n\n",
        profile.model, profile.batch, profile.threads, profile.runs, profile.ms_per_run
    );
    out.push_str(&format!(
        "{:<28} {:>6} {:>11} {:>7}\n",
        "operator", "nodes", "ms/run", "share"
    ));
    for share in &profile.by_op {
        out.push_str(&format!(
            "{:<28} {:>6} {:>11.3} {:>6.1}%\n",
            share.op,
            share.nodes,
            share.ms_per_run,
            share.share * 100.0
        ));
    }
    out.push_str(&format!(
        "\nslowest {top} nodes\n{:>9}  {:<16} {}\n",
        "ms/run", "operator", "node"
    ));
    for node in profile.nodes.iter().take(top) {
        out.push_str(&format!(
            "{:>9.3}  {:<16} {} [{}]\n",
            node.seconds * 1e3,
            node.op,
            node.name,
            node.detail
        ));
    }
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
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
