//! `orbhash export --verify`: the exported file, run by tract as the board runs it, against tch's
//! forward of the checkpoint on the data set's real tiles.
//!
//! Thresholds: f32 — max |Δhash| ≤ 1e-4, identical labels, identical code bits except where tch's
//! activation is within 1e-4 of zero; int8 — ≥ 98 % of code bits and ≥ 99 % of labels agree, and
//! retrieval mAP within 0.01 of the f32 model's.

use std::path::Path;

use orbhash_contract::card::Precision;
use orbhash_infer::Hasher;
use serde::Serialize;
use tch::{Device, Tensor};

use crate::data::folder::Dataset;
use crate::data::SplitName;
use crate::eval::checkpoint::{hash_dataset, HashedDataset};
use crate::train::checkpoint::Checkpoint;
use crate::train::trainer::load_dataset_as_trained;

use super::ExportedModel;

pub const F32_MAX_HASH_ERROR: f32 = 1e-4;
pub const INT8_MIN_BIT_AGREEMENT: f64 = 0.98;
pub const INT8_MIN_LABEL_AGREEMENT: f64 = 0.99;
pub const INT8_MAX_MAP_LOSS: f64 = 0.01;
const VERIFY_BATCH: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub precision: &'static str,
    pub tiles: usize,
    pub max_hash_error: f32,
    pub bit_agreement: f64,
    /// Bits that differ although tch's activation is at least 1e-4 from zero.
    pub bits_flipped_beyond_tolerance: usize,
    pub label_agreement: f64,
    /// The same two on the query tiles alone: int8 calibration and bias correction use database
    /// tiles, so these are the tiles the export never saw.
    pub query_bit_agreement: f64,
    pub query_label_agreement: f64,
    /// mAP of the data set's queries against its database: tch's f32 forward and the file's.
    pub map_checkpoint: f64,
    pub map_model: f64,
    pub oa_checkpoint: f64,
    pub oa_model: f64,
    /// Each threshold missed, in words; empty when the model passes.
    pub failures: Vec<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Hash activations and class probabilities of every sample, by tract, through the board's own
/// loader (which also checks the model card against the graph).
pub fn run_with_tract(
    model_bytes: &[u8],
    dataset: &Dataset,
) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let hasher = Hasher::from_bytes(model_bytes, VERIFY_BATCH, "exported model")?;
    let inputs: Vec<Vec<f32>> = dataset.samples.iter().map(|s| s.pixels.to_vec()).collect();
    Ok(hasher.activations(&inputs)?)
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(index, _)| index)
}

/// Compares the exported model with the checkpoint on the data set (`data`, or the checkpoint's).
pub fn verify(
    checkpoint_path: &Path,
    exported: &ExportedModel,
    data: Option<&Path>,
) -> anyhow::Result<VerifyReport> {
    let checkpoint = Checkpoint::open(checkpoint_path)?;
    let mut config = checkpoint.info.config.clone();
    if let Some(data) = data {
        config.data = data.to_path_buf();
    }
    let dataset = load_dataset_as_trained(&config, &checkpoint.info.input)?;
    let reference = hash_dataset(&checkpoint, Some(&config.data), Device::Cpu)?;
    let reference_hash: Vec<f32> = Vec::try_from(reference.codes.flatten(0, -1))?;
    let reference_probs: Vec<f32> = match &reference.probabilities {
        Some(probabilities) => Vec::try_from(probabilities.flatten(0, -1))?,
        None => anyhow::bail!(
            "the checkpoint was trained without a classifier: nothing to export as `probs`"
        ),
    };
    let (hash, probs) = run_with_tract(&exported.bytes, &dataset)?;
    anyhow::ensure!(
        hash.len() == reference_hash.len() && probs.len() == reference_probs.len(),
        "the model's outputs have {} hash and {} probability values; the checkpoint gives {} and {}",
        hash.len(),
        probs.len(),
        reference_hash.len(),
        reference_probs.len()
    );

    let max_hash_error = hash
        .iter()
        .zip(&reference_hash)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let flipped = |tolerance: f32| {
        hash.iter()
            .zip(&reference_hash)
            .filter(|(a, b)| (**a > 0.0) != (**b > 0.0) && b.abs() >= tolerance)
            .count()
    };
    let (classes, bits) = (reference.classes.len(), reference.bits);
    // Code bits and labels that agree, over the given tiles.
    let agreeing = |tiles: &[usize]| -> (usize, usize) {
        let mut same_bits = 0;
        let mut same_labels = 0;
        for &tile in tiles {
            let codes = tile * bits..(tile + 1) * bits;
            same_bits += hash[codes.clone()]
                .iter()
                .zip(&reference_hash[codes])
                .filter(|(a, b)| (**a > 0.0) == (**b > 0.0))
                .count();
            let row = tile * classes..(tile + 1) * classes;
            same_labels +=
                usize::from(argmax(&probs[row.clone()]) == argmax(&reference_probs[row]));
        }
        (same_bits, same_labels)
    };
    let fractions = |(same_bits, same_labels): (usize, usize), tiles: usize| {
        let tiles = tiles.max(1) as f64;
        (
            same_bits as f64 / (tiles * bits.max(1) as f64),
            same_labels as f64 / tiles,
        )
    };
    let (bits_agreeing, labels_agreeing) =
        agreeing(&(0..dataset.samples.len()).collect::<Vec<_>>());
    let (bit_agreement, label_agreement) =
        fractions((bits_agreeing, labels_agreeing), dataset.samples.len());
    let queries = dataset.indices(SplitName::Query);
    let (query_bit_agreement, query_label_agreement) = fractions(agreeing(&queries), queries.len());

    let data_name = config
        .data
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reference_report = reference.report("checkpoint (tch)", &data_name)?;
    let exported_hashed = HashedDataset {
        codes: Tensor::from_slice(&hash).view([-1, reference.bits as i64]),
        probabilities: Some(Tensor::from_slice(&probs).view([-1, classes as i64])),
        ..reference
    };
    let model_report = exported_hashed.report("exported (tract)", &data_name)?;
    let (map_checkpoint, map_model) = (reference_report.retrieval.map, model_report.retrieval.map);
    let accuracy = |report: &crate::eval::EvalReport| {
        report
            .classification
            .as_ref()
            .map_or(0.0, |c| c.overall_accuracy)
    };

    let mut failures = Vec::new();
    let precision = exported.card.precision;
    match precision {
        Precision::F32 => {
            if max_hash_error > F32_MAX_HASH_ERROR {
                failures.push(format!(
                    "max |Δhash| {max_hash_error:.2e} > {F32_MAX_HASH_ERROR:.0e}"
                ));
            }
            if labels_agreeing != dataset.samples.len() {
                failures.push(format!(
                    "{} of {} labels differ",
                    dataset.samples.len() - labels_agreeing,
                    dataset.samples.len()
                ));
            }
            let beyond = flipped(F32_MAX_HASH_ERROR);
            if beyond > 0 {
                failures.push(format!(
                    "{beyond} code bits differ where |activation| ≥ {F32_MAX_HASH_ERROR:.0e}"
                ));
            }
        }
        Precision::Int8 => {
            if bit_agreement < INT8_MIN_BIT_AGREEMENT {
                failures.push(format!(
                    "code bits agree {:.2} % < {:.0} %",
                    bit_agreement * 100.0,
                    INT8_MIN_BIT_AGREEMENT * 100.0
                ));
            }
            if label_agreement < INT8_MIN_LABEL_AGREEMENT {
                failures.push(format!(
                    "labels agree {:.2} % < {:.0} %",
                    label_agreement * 100.0,
                    INT8_MIN_LABEL_AGREEMENT * 100.0
                ));
            }
            if map_model < map_checkpoint - INT8_MAX_MAP_LOSS {
                failures.push(format!(
                    "mAP {map_model:.4} is more than {INT8_MAX_MAP_LOSS} below f32's {map_checkpoint:.4}"
                ));
            }
        }
    }
    Ok(VerifyReport {
        precision: precision.name(),
        tiles: dataset.samples.len(),
        max_hash_error,
        bit_agreement,
        bits_flipped_beyond_tolerance: flipped(F32_MAX_HASH_ERROR),
        label_agreement,
        query_bit_agreement,
        query_label_agreement,
        map_checkpoint,
        map_model,
        oa_checkpoint: accuracy(&reference_report),
        oa_model: accuracy(&model_report),
        failures,
    })
}
