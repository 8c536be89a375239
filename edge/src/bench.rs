//! `orbhash-edge bench`: tiles/s and ms/tile of one or more models on real tiles, per batch size
//! and thread count, as a table; `orbhash-edge profile`: where one model's time goes, per tract
//! operator and node.

use std::path::{Path, PathBuf};
use std::time::Instant;

use orbhash_cli::{Align, Table};
use serde::Serialize;

use crate::source::{SourceError, TileSource};
use orbhash_infer::hasher::{Hasher, HasherError};
use orbhash_infer::model::NodeTime;
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
    let source = TileSource::open(tiles, hasher.card())?;
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
    let mut by_op = Table::new(["operator", "nodes", "ms/run", "share"]);
    for share in &profile.by_op {
        by_op.row([
            share.op.clone(),
            share.nodes.to_string(),
            format!("{:.3}", share.ms_per_run),
            format!("{:.1} %", share.share * 100.0),
        ]);
    }
    let mut nodes =
        Table::new(["ms/run", "operator", "node"]).align(&[Align::Right, Align::Left, Align::Left]);
    for node in profile.nodes.iter().take(top) {
        nodes.row([
            format!("{:.3}", node.seconds * 1e3),
            node.op.clone(),
            format!("{} [{}]", node.name, node.detail),
        ]);
    }
    format!(
        "{}: batch {}, {} thread(s), {} runs, {:.2} ms per run in the plan's nodes\n\n{by_op}\n\
         slowest {top} nodes\n{nodes}",
        profile.model, profile.batch, profile.threads, profile.runs, profile.ms_per_run
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The rows as an aligned text table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut table = Table::new([
        "model",
        "precision",
        "batch",
        "threads",
        "tiles",
        "ms/tile",
        "tiles/s",
    ]);
    for row in rows {
        table.row([
            row.model.clone(),
            row.precision.clone(),
            row.batch.to_string(),
            row.threads.to_string(),
            row.tiles.to_string(),
            format!("{:.2}", row.ms_per_tile),
            format!("{:.1}", row.tiles_per_second),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_through_the_one_table_printer() {
        let row = |model: &str, ms: f64| BenchRow {
            model: model.into(),
            precision: "int8".into(),
            batch: 1,
            threads: 2,
            tiles: 64,
            ms_per_tile: ms,
            tiles_per_second: 1e3 / ms,
        };
        let text = table(&[row("s2-int8.onnx", 12.5), row("f32.onnx", 3.25)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("  s2-int8.onnx"), "{text}");
        // Right-aligned numbers end in the same column.
        assert_eq!(lines[1].len(), lines[2].len(), "{text}");
        assert!(lines[2].ends_with("307.7"), "{text}");

        let profile = Profile {
            model: "m.onnx".into(),
            batch: 1,
            threads: 1,
            runs: 3,
            ms_per_run: 2.0,
            by_op: vec![OpShare {
                op: "OptMatMul".into(),
                nodes: 2,
                ms_per_run: 1.5,
                share: 0.75,
            }],
            nodes: vec![NodeTime {
                name: "conv1".into(),
                op: "OptMatMul".into(),
                detail: "k=3".into(),
                seconds: 1e-3,
            }],
        };
        let text = profile_table(&profile, 5);
        assert!(
            text.contains("  OptMatMul      2   1.500  75.0 %"),
            "{text}"
        );
        assert!(text.contains("   1.000  OptMatMul  conv1 [k=3]"), "{text}");
    }
}
