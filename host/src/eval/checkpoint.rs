//! `orbhash eval` on a checkpoint: hash a data set's database and queries with the restored
//! network, measure retrieval (mAP by Hamming ranking, precision/recall) and classification (OA,
//! AA, kappa), and write the report and its plots. The bridge from libtorch tensors to the plain
//! types the metrics take.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use crate::data::folder::Dataset;
use crate::data::SplitName;
use crate::torch::{select_device, DeviceChoice};
use crate::train::checkpoint::{restore_network, Checkpoint};
use crate::train::network::Head;
use crate::train::trainer::{backbone_features, load_dataset_as_trained};
use crate::train::TrainConfig;

use super::{evaluate, CodeSet, EvalOptions, EvalReport};

/// Hash-layer outputs and class probabilities of every sample of a data set.
pub struct HashedDataset {
    pub classes: Vec<String>,
    pub labels: Vec<usize>,
    pub splits: Vec<SplitName>,
    /// `[samples, bits]`, pre-sign.
    pub codes: Tensor,
    /// `[samples, classes]`; `None` for a head trained without its classifier (DPSH), whose
    /// untrained classifier would report chance as if it were a result.
    pub probabilities: Option<Tensor>,
    pub bits: usize,
}

/// What a trained head's classifier reads, if it was trained at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierInput {
    /// Trained without a classifier (DPSH, HashNet, CSQ): no labels to report.
    Untrained,
    /// The hash layer's outputs `u` (DHCNN, classification-only).
    Outputs,
    /// The code's signs (GreedyHash, which trains its classifier on them).
    Signs,
}

impl ClassifierInput {
    pub fn of(config: &TrainConfig) -> Self {
        if config.without_classifier {
            Self::Untrained
        } else if config.loss.objective.classifies_signs() {
            Self::Signs
        } else {
            Self::Outputs
        }
    }
}

/// Runs a checkpoint over its data set (or `data`, laid out the same way).
pub fn hash_dataset(
    checkpoint: &Checkpoint,
    data: Option<&Path>,
    device: Device,
) -> anyhow::Result<HashedDataset> {
    let mut config = checkpoint.info.config.clone();
    if let Some(data) = data {
        config.data = data.to_path_buf();
    }
    let dataset = load_dataset_as_trained(&config, &checkpoint.info.input)?;
    anyhow::ensure!(
        dataset.classes == checkpoint.info.classes,
        "{} has classes {:?}, the checkpoint was trained on {:?}",
        config.data.display(),
        dataset.classes,
        checkpoint.info.classes
    );
    let model = restore_network(checkpoint, device)?;
    let features = backbone_features(&model, &dataset, 64, device);
    Ok(HashedDataset::from_features(
        &model.head,
        &features,
        &dataset,
        ClassifierInput::of(&config),
    ))
}

impl HashedDataset {
    /// Runs a head over backbone features (`[samples, D]`, in `dataset`'s sample order).
    pub fn from_features(
        head: &Head,
        features: &Tensor,
        dataset: &Dataset,
        classifier: ClassifierInput,
    ) -> Self {
        let (codes, probabilities) = tch::no_grad(|| {
            let codes = head.hash(features);
            let classifier_input = match classifier {
                ClassifierInput::Untrained => None,
                ClassifierInput::Outputs => Some(codes.shallow_clone()),
                ClassifierInput::Signs => Some(codes.sign()),
            };
            let probabilities = classifier_input.map(|input| {
                head.classify(&input)
                    .softmax(-1, Kind::Float)
                    .to_device(Device::Cpu)
            });
            (codes, probabilities)
        });
        let bits = codes.size()[1] as usize;
        Self {
            classes: dataset.classes.clone(),
            labels: dataset.samples.iter().map(|s| s.label).collect(),
            splits: dataset.samples.iter().map(|s| s.split).collect(),
            codes: codes.to_device(Device::Cpu),
            probabilities,
            bits,
        }
    }

    fn side(&self, split: SplitName) -> Vec<usize> {
        (0..self.labels.len())
            .filter(|&i| self.splits[i] == split)
            .collect()
    }

    /// Retrieval and classification metrics: queries against the database.
    pub fn report(&self, method: &str, dataset: &str) -> anyhow::Result<EvalReport> {
        let database = self.side(SplitName::Database);
        let queries = self.side(SplitName::Query);
        let database_codes = CodeSet::from_signs(&tensor_rows(&self.codes, &database)?, self.bits)?;
        let query_codes = CodeSet::from_signs(&tensor_rows(&self.codes, &queries)?, self.bits)?;
        let classes = self.classes.len();
        let scores = match &self.probabilities {
            Some(probabilities) => Some(
                tensor_rows(probabilities, &queries)?
                    .chunks(classes)
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>(),
            ),
            None => None,
        };
        let mut options = EvalOptions::new(method, dataset);
        options.classes = Some(classes);
        let labels =
            |indices: &[usize]| indices.iter().map(|&i| self.labels[i]).collect::<Vec<_>>();
        Ok(evaluate(
            &database_codes,
            &labels(&database),
            &query_codes,
            &labels(&queries),
            scores.as_deref(),
            &options,
        )?)
    }
}

/// A data set's name in reports: its root folder's name.
pub fn data_set_name(root: &Path) -> String {
    root.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_string())
}

/// Rows `indices` of a CPU tensor, flattened row-major.
pub fn tensor_rows(tensor: &Tensor, indices: &[usize]) -> anyhow::Result<Vec<f32>> {
    let index: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let selected = tensor
        .index_select(0, &Tensor::from_slice(&index))
        .contiguous();
    Ok(Vec::try_from(selected.flatten(0, -1))?)
}

/// Evaluates a checkpoint and writes `report.json` and the plots into `out`.
pub fn evaluate_checkpoint(
    checkpoint_path: &Path,
    data: Option<&Path>,
    out: &Path,
    device: DeviceChoice,
) -> anyhow::Result<(EvalReport, Vec<PathBuf>)> {
    let device = select_device(device)?;
    let checkpoint = Checkpoint::open(checkpoint_path)?;
    let data_name = data_set_name(data.unwrap_or(&checkpoint.info.config.data));
    let hashed = hash_dataset(&checkpoint, data, device)?;
    let method = if checkpoint.info.config.without_classifier {
        "DPSH"
    } else {
        "DHCNN"
    };
    let report = hashed.report(method, &data_name)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let report_path = out.join("report.json");
    report.write_json(&report_path)?;
    let mut written = vec![report_path];
    let pr = out.join("pr_curve.png");
    crate::eval::plot::plot_pr_curves(&pr, &[&report])?;
    written.push(pr);
    let precision = out.join("precision_at_k.png");
    crate::eval::plot::plot_precision_at_k(&precision, &[&report])?;
    written.push(precision);
    let log = checkpoint_path.with_file_name("metrics.jsonl");
    if log.is_file() {
        let points = crate::eval::plot::read_metrics_log(&log)?;
        let loss = out.join("training_loss.png");
        crate::eval::plot::plot_training_loss(&loss, &points, "DHCNN training loss")?;
        written.push(loss);
    }
    Ok((report, written))
}
