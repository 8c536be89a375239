//! `orbhash export`: a trained DHCNN checkpoint → an ONNX model for the board, written from Rust
//! (tch has no ONNX export) with its model card inside.
//!
//! - [`graph`] reads the checkpoint into layers with batch norm folded;
//! - [`onnx`] writes them as an f32 graph or an int8 graph (QLinearConv, which tract runs as
//!   integer kernels), opset 13;
//! - int8 activation ranges are calibrated on real training tiles by running the f32 graph with
//!   tract and reading every intermediate value; [`bias`] then corrects the int8 graph's biases
//!   against the mean shift that quantisation leaves, measured on the same tiles;
//! - [`verify`] runs the exported file with tract against tch's forward of the checkpoint.

pub mod bias;
pub mod cli;
pub mod graph;
pub mod onnx;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::Context;
use orbhash_infer::OnnxModel;
use orbhash_contract::card::{ModelCard, Precision, TileSpec};
use orbhash_wire::ModelId;
use serde::Serialize;

use crate::data::folder::Dataset;
use crate::data::{Manifest, SplitName};
use crate::train::checkpoint::Checkpoint;
use crate::train::trainer::{load_dataset, plain_images};

use graph::Network;
use onnx::{KeepF32, Range, WeightScaling};

/// How activation ranges are read off the calibration tiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The given lower and upper percentile of each batch, averaged over batches: a few extreme
    /// activations then do not stretch the range and cost every other value precision.
    Percentile(f64),
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    pub int8: bool,
    /// Data set for calibration and verification; `None`: the one the checkpoint was trained on.
    pub data: Option<PathBuf>,
    pub calibration: Calibration,
    /// Database tiles used for calibration at most.
    pub calibration_tiles: usize,
    pub weights: WeightScaling,
    /// Convolutions an int8 export keeps in f32.
    pub keep_f32: Vec<KeepF32>,
    /// Correct the int8 graph's biases for the mean shift quantisation leaves ([`bias`]).
    pub bias_correction: bool,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub path: PathBuf,
    pub model_id: String,
    pub precision: &'static str,
    pub bytes: usize,
}

/// The exported model in memory, with what verification needs.
pub struct ExportedModel {
    pub bytes: Vec<u8>,
    pub card: ModelCard,
    /// The f32 model (the same as `bytes` for an f32 export): int8 is judged against it.
    pub f32_bytes: Vec<u8>,
}

/// Builds the model for `options` and writes it atomically; returns it for verification.
pub fn export(options: &ExportOptions) -> anyhow::Result<(Exported, ExportedModel)> {
    let checkpoint = Checkpoint::open(&options.checkpoint)?;
    let network = Network::from_checkpoint(&checkpoint)?;
    let data_dir = options
        .data
        .clone()
        .unwrap_or_else(|| checkpoint.info.config.data.clone());
    let manifest = Manifest::read_optional(&data_dir)
        .with_context(|| format!("cannot read the manifest of {}", data_dir.display()))?;

    let f32_graph = onnx::f32_graph(&network);
    let f32_card = card(
        &checkpoint,
        &network,
        manifest.as_ref(),
        &f32_graph,
        Precision::F32,
    )?;
    let f32_bytes = onnx::model_bytes(f32_graph, f32_card.to_props());

    let (bytes, card) = if options.int8 {
        let mut config = checkpoint.info.config.clone();
        config.data = data_dir;
        let dataset = load_dataset(&config)?;
        let indices: Vec<usize> = dataset
            .indices(SplitName::Database)
            .into_iter()
            .take(options.calibration_tiles.max(1))
            .collect();
        let ranges = calibrate(
            &f32_bytes,
            &network,
            &dataset,
            &indices,
            options.calibration,
        )?;
        let graph = int8_graph(&network, &ranges, options, &dataset, &indices)?;
        let card = card(
            &checkpoint,
            &network,
            manifest.as_ref(),
            &graph,
            Precision::Int8,
        )?;
        (onnx::model_bytes(graph, card.to_props()), card)
    } else {
        (f32_bytes.clone(), f32_card)
    };
    // The file must load as the board would load it before it is written anywhere.
    OnnxModel::from_bytes(&bytes, 1, &options.out.display().to_string())
        .context("the exported graph does not load in tract")?;
    write_atomically(&options.out, &bytes)?;
    let exported = Exported {
        path: options.out.clone(),
        model_id: card.model_id.to_string(),
        precision: card.precision.name(),
        bytes: bytes.len(),
    };
    Ok((
        exported,
        ExportedModel {
            bytes,
            card,
            f32_bytes,
        },
    ))
}

fn card(
    checkpoint: &Checkpoint,
    network: &Network,
    manifest: Option<&Manifest>,
    graph: &tract_onnx::pb::GraphProto,
    precision: Precision,
) -> anyhow::Result<ModelCard> {
    let info = &checkpoint.info;
    let (band_names, tile, dataset) = match manifest {
        Some(manifest) => (
            manifest
                .bands
                .iter()
                .map(|band| band.name.clone())
                .collect(),
            TileSpec {
                size: manifest.patch.size as u32,
                stride: manifest.patch.stride as u32,
            },
            manifest.name.clone(),
        ),
        // A photo set without a manifest: RGB images, each one a tile.
        None => (
            vec!["red".into(), "green".into(), "blue".into()],
            TileSpec {
                size: info.input.size,
                stride: info.input.size,
            },
            info.config
                .data
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    Ok(ModelCard {
        model_id: ModelId::of_model(&onnx::graph_bytes(graph)),
        bits: u16::try_from(network.hash.outputs).context("code length")?,
        classes: info.classes.clone(),
        input: info.input.clone(),
        band_names,
        tile,
        precision,
        dataset,
        dataset_manifest_sha256: info.manifest_sha256.clone().unwrap_or_default(),
        training: serde_json::to_string(&info.config)?,
        exporter: format!("orbhash {}", env!("CARGO_PKG_VERSION")),
    })
}

const CALIBRATION_BATCH: usize = 16;

/// Activation ranges of every network value over the calibration tiles `indices`.
fn calibrate(
    f32_bytes: &[u8],
    network: &Network,
    dataset: &Dataset,
    indices: &[usize],
    calibration: Calibration,
) -> anyhow::Result<Vec<Range>> {
    anyhow::ensure!(!indices.is_empty(), "no database tiles to calibrate on");
    let names: Vec<String> = (1..=network.last_value()).map(onnx::value_name).collect();
    let model =
        OnnxModel::from_bytes_with_outputs(f32_bytes, CALIBRATION_BATCH, "calibration", &names)?;
    let mut observed: Vec<Vec<(f32, f32)>> = vec![Vec::new(); names.len() + 1];
    for chunk in indices.chunks(CALIBRATION_BATCH) {
        let input = batch_tensor(dataset, chunk, CALIBRATION_BATCH, model.input_shape())?;
        // Padding rows (zeros) would add values no real tile makes: only the real rows count.
        let rows = chunk.len();
        let image = input.to_plain_array_view::<f32>()?;
        let per_row = image.len() / CALIBRATION_BATCH;
        let image = image.as_slice().context("contiguous input")?;
        observed[0].push(summarise(&image[..rows * per_row], calibration));
        for (slot, output) in model.run(input)?.iter().enumerate() {
            let view = output.to_plain_array_view::<f32>()?;
            let values = view.as_slice().context("contiguous output")?;
            let per_row = values.len() / CALIBRATION_BATCH;
            observed[slot + 1].push(summarise(&values[..rows * per_row], calibration));
        }
    }
    Ok(observed
        .into_iter()
        .map(|batches| combine(&batches, calibration))
        .collect())
}

/// The int8 graph of `network` with activation ranges `ranges`, its biases corrected on the
/// calibration tiles `indices` unless the options turn that off.
fn int8_graph(
    network: &Network,
    ranges: &[Range],
    options: &ExportOptions,
    dataset: &Dataset,
    indices: &[usize],
) -> anyhow::Result<tract_onnx::pb::GraphProto> {
    if !options.bias_correction {
        return onnx::int8_graph(network, ranges, options.weights, &options.keep_f32);
    }
    let int8_weights = |input: usize, conv: &graph::Conv| {
        (!onnx::runs_in_f32(&options.keep_f32, input, conv))
            .then(|| onnx::dequantised_weights(conv, options.weights))
    };
    let images = plain_images(dataset, indices, tch::Device::Cpu);
    let corrected = bias::corrected(network, ranges, int8_weights, &images)?;
    onnx::int8_graph(&corrected, ranges, options.weights, &options.keep_f32)
}

/// A batch of `batch` rows from `indices` (zero rows past the end) shaped as the model wants.
fn batch_tensor(
    dataset: &Dataset,
    indices: &[usize],
    batch: usize,
    shape: &[usize],
) -> anyhow::Result<tract_onnx::prelude::Tensor> {
    let per_row = dataset.spec.len();
    let mut values = Vec::with_capacity(batch * per_row);
    for &index in indices {
        values.extend_from_slice(&dataset.samples[index].pixels);
    }
    values.resize(batch * per_row, 0.0);
    tract_onnx::prelude::Tensor::from_shape(shape, &values)
}

fn summarise(values: &[f32], calibration: Calibration) -> (f32, f32) {
    match calibration {
        Calibration::MinMax => values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            }),
        Calibration::Percentile(percent) => {
            // Two selections instead of a sort: activations run to millions of values per batch.
            let mut values = values.to_vec();
            let mut at = |p: f64| {
                if values.is_empty() {
                    return 0.0;
                }
                let index = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
                *values.select_nth_unstable_by(index, f32::total_cmp).1
            };
            (at(100.0 - percent), at(percent))
        }
    }
}

fn combine(batches: &[(f32, f32)], calibration: Calibration) -> Range {
    match calibration {
        Calibration::MinMax => Range {
            min: batches.iter().map(|b| b.0).fold(f32::INFINITY, f32::min),
            max: batches
                .iter()
                .map(|b| b.1)
                .fold(f32::NEG_INFINITY, f32::max),
        },
        Calibration::Percentile(_) => {
            let n = batches.len().max(1) as f32;
            Range {
                min: batches.iter().map(|b| b.0).sum::<f32>() / n,
                max: batches.iter().map(|b| b.1).sum::<f32>() / n,
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let partial = path.with_extension("onnx.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
