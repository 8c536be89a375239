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
use orbhash_contract::card::{
    self, CardFormat, ConvKind, ModelCard, Precision, Quantisation, TileSpec, Training,
    TRAINING_PATH_KEYS,
};
use orbhash_infer::OnnxModel;
use orbhash_wire::ModelId;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::data::folder::Dataset;
use crate::data::{Manifest, SplitName};
use crate::train::checkpoint::Checkpoint;
use crate::train::trainer::{load_dataset_as_trained, plain_images};

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
    /// The pretrained weights file the checkpoint was trained from, for when it is not at the
    /// path the checkpoint recorded (trained on another machine); `None`: that path.
    pub pretrained: Option<PathBuf>,
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

    let pretrained_sha256 = pretrained_sha256(
        checkpoint.info.config.pretrained.as_deref(),
        options.pretrained.as_deref(),
    )?;
    let f32_graph = onnx::f32_graph(&network);
    let f32_card = card(
        &checkpoint,
        &network,
        manifest.as_ref(),
        &f32_graph,
        pretrained_sha256,
    )?;
    let f32_bytes = onnx::model_bytes(f32_graph, f32_card.to_props());

    let (bytes, card) = if options.int8 {
        let mut config = checkpoint.info.config.clone();
        config.data = data_dir.clone();
        let dataset = load_dataset_as_trained(&config, &checkpoint.info.input)?;
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
        let calibration = card::Calibration {
            method: match options.calibration {
                Calibration::MinMax => card::CalibrationMethod::MinMax,
                Calibration::Percentile(p) => card::CalibrationMethod::Percentile(p),
            },
            tiles: u32::try_from(indices.len()).context("calibration tile count")?,
            dataset: dataset_name(manifest.as_ref(), &data_dir),
            dataset_manifest_sha256: manifest_sha256(&data_dir),
            split: SplitName::Database.to_string(),
        };
        let card = ModelCard {
            model_id: ModelId::of_model(&onnx::graph_bytes(&graph)),
            precision: Precision::Int8,
            quantisation: Some(quantisation(options, calibration)),
            ..f32_card
        };
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

/// The f32 model's card; an int8 card differs in its model id, precision and quantisation.
fn card(
    checkpoint: &Checkpoint,
    network: &Network,
    manifest: Option<&Manifest>,
    graph: &tract_onnx::pb::GraphProto,
    pretrained_sha256: Option<String>,
) -> anyhow::Result<ModelCard> {
    let info = &checkpoint.info;
    let (band_names, tile) = match manifest {
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
        ),
        // A photo set without a manifest: RGB images, each one a tile.
        None => (
            vec!["red".into(), "green".into(), "blue".into()],
            TileSpec {
                size: info.input.size,
                stride: info.input.size,
            },
        ),
    };
    // The training set, which `--calibrate` does not change: by its manifest's name where this
    // machine has it, else by its folder's.
    let training_data = &info.config.data;
    let training_manifest = Manifest::read_optional(training_data).ok().flatten();
    Ok(ModelCard {
        format: CardFormat,
        model_id: ModelId::of_model(&onnx::graph_bytes(graph)),
        bits: u16::try_from(network.hash.outputs).context("code length")?,
        classes: info.classes.clone(),
        input: info.input.clone(),
        band_names,
        tile,
        precision: Precision::F32,
        dataset: dataset_name(training_manifest.as_ref(), training_data),
        dataset_manifest_sha256: info.manifest_sha256.clone(),
        training: Training {
            pretrained_sha256,
            config: training_config(&info.config)?,
        },
        quantisation: None,
        exporter: format!("orbhash {}", env!("CARGO_PKG_VERSION")),
    })
}

/// A data set's name: its manifest's, else its folder's.
fn dataset_name(manifest: Option<&Manifest>, root: &Path) -> String {
    match manifest {
        Some(manifest) => manifest.name.clone(),
        None => root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    orbhash_wire::hex::encode(&Sha256::digest(bytes))
}

/// SHA-256 of a data set's manifest.json, as the trainer records it for the training set.
fn manifest_sha256(root: &Path) -> Option<String> {
    std::fs::read(Manifest::path(root))
        .ok()
        .map(|bytes| sha256_hex(&bytes))
}

/// The training configuration as the card carries it: without the paths of the training
/// machine (the data set and the pretrained weights, which the card names otherwise).
fn training_config(
    config: &crate::train::TrainConfig,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(mut fields) = serde_json::to_value(config)? else {
        anyhow::bail!("the training configuration is not a JSON object");
    };
    for key in TRAINING_PATH_KEYS {
        fields.remove(key);
    }
    Ok(fields)
}

/// SHA-256 of the pretrained weights the checkpoint was trained from: the file at `recorded`
/// (the checkpoint's path), or `given` when the weights are elsewhere on this machine.
fn pretrained_sha256(
    recorded: Option<&Path>,
    given: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    let Some(recorded) = recorded else {
        anyhow::ensure!(
            given.is_none(),
            "--pretrained: the checkpoint's backbone was trained from scratch, from no weights"
        );
        return Ok(None);
    };
    let path = given.unwrap_or(recorded);
    let bytes = std::fs::read(path).with_context(|| {
        if given.is_some() {
            format!("cannot read the pretrained weights {}", path.display())
        } else {
            format!(
                "the checkpoint was trained from the pretrained weights {}, which cannot be \
                 read here; the card records them by SHA-256: give the same file with \
                 --pretrained FILE",
                path.display()
            )
        }
    })?;
    Ok(Some(sha256_hex(&bytes)))
}

/// How an int8 export was made, as its card records it.
fn quantisation(options: &ExportOptions, calibration: card::Calibration) -> Quantisation {
    let mut keep_f32: Vec<ConvKind> = options
        .keep_f32
        .iter()
        .filter_map(|keep| match keep {
            KeepF32::Stem => Some(ConvKind::Stem),
            KeepF32::Depthwise => Some(ConvKind::Depthwise),
            KeepF32::Project => Some(ConvKind::Project),
            KeepF32::None => None,
        })
        .collect();
    keep_f32.sort();
    keep_f32.dedup();
    Quantisation {
        weights: match options.weights {
            WeightScaling::PerChannel => card::WeightScaling::PerChannel,
            WeightScaling::PerTensor => card::WeightScaling::PerTensor,
        },
        keep_f32,
        calibration,
        bias_correction: options.bias_correction,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainConfig;

    #[test]
    fn the_card_records_training_without_paths_and_the_weights_by_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let weights = dir.path().join("effnet-lite0.safetensors");
        std::fs::write(&weights, b"weights").expect("writes");
        let config = TrainConfig {
            pretrained: Some(weights.clone()),
            data: dir.path().join("s2-brandenburg"),
            ..TrainConfig::default()
        };
        let fields = training_config(&config).expect("serialises");
        let text = serde_json::Value::Object(fields.clone()).to_string();
        assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
        assert!(!fields.contains_key("data") && !fields.contains_key("pretrained"));
        assert_eq!(fields["bits"], 64);

        let sha = pretrained_sha256(config.pretrained.as_deref(), None).expect("hashes");
        assert_eq!(sha.as_deref(), Some(sha256_hex(b"weights").as_str()));
        assert_eq!(sha.as_ref().map(String::len), Some(64));
        assert_eq!(pretrained_sha256(None, None).expect("scratch"), None);
    }

    #[test]
    fn missing_pretrained_weights_are_named_and_can_be_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("copy.safetensors");
        std::fs::write(&elsewhere, b"weights").expect("writes");
        let recorded = Path::new("/home/trainer/.cache/weights/effnet-lite0.safetensors");
        let error = pretrained_sha256(Some(recorded), None).expect_err("not on this machine");
        let text = format!("{error:#}");
        assert!(
            text.contains("--pretrained FILE") && text.contains(&*recorded.to_string_lossy()),
            "{text}"
        );
        assert_eq!(
            pretrained_sha256(Some(recorded), Some(&elsewhere)).expect("given"),
            Some(sha256_hex(b"weights"))
        );
        assert!(pretrained_sha256(None, Some(&elsewhere)).is_err());
    }

    #[test]
    fn the_quantisation_lists_each_kept_convolution_once() {
        let options = ExportOptions {
            checkpoint: PathBuf::new(),
            out: PathBuf::new(),
            int8: true,
            data: None,
            calibration: Calibration::Percentile(99.99),
            calibration_tiles: 256,
            weights: WeightScaling::PerTensor,
            keep_f32: vec![
                KeepF32::Depthwise,
                KeepF32::None,
                KeepF32::Stem,
                KeepF32::Depthwise,
            ],
            bias_correction: false,
            pretrained: None,
        };
        let calibration = card::Calibration {
            method: card::CalibrationMethod::Percentile(99.99),
            tiles: 159,
            dataset: "s2-brandenburg".into(),
            dataset_manifest_sha256: None,
            split: "database".into(),
        };
        let quantisation = quantisation(&options, calibration);
        assert_eq!(
            quantisation.keep_f32,
            vec![ConvKind::Stem, ConvKind::Depthwise]
        );
        assert_eq!(quantisation.weights, card::WeightScaling::PerTensor);
        assert!(!quantisation.bias_correction);
    }
}
