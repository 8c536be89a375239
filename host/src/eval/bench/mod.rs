//! `orbhash bench retrieval`: every method of issue 5 on one data set, one split and one set of
//! cached frozen backbone features, so the table compares like with like ([`BenchTable`]).
//!
//! - LSH and ITQ hash the backbone features directly (fitted on the database, as in
//!   [`super::baselines`]);
//! - DPSH, HashNet, CSQ, GreedyHash, classification-only and DHCNN train the hash layer (and
//!   classifier) on the same features with the step `orbhash train --backbone-training frozen`
//!   takes ([`Stepper`]), differing only in their loss ([`Method::train_config`]).
//!
//! The backbone runs once per data set; each trained run then takes seconds on a CPU.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::folder::Dataset;
use crate::data::SplitName;
use crate::model::backbone::load_pretrained;
use crate::torch::{select_device, DeviceChoice};
use crate::train::loss::{Combination, Objective};
use crate::train::network::Dhcnn;
use crate::train::trainer::{
    backbone_features, load_dataset, select_rows, BackboneTraining, Stepper,
};
use crate::train::TrainConfig;

use super::checkpoint::{data_set_name, tensor_rows, ClassifierInput, HashedDataset};
use super::{evaluate, itq_with_pca, lsh, EvalOptions, EvalReport, FeatureMatrix, ItqOptions, Pca};

pub mod cv;
mod cv_table;
mod table;

pub use cv::{cross_validated_bench, CvOptions, CvOutcome, Grid};
pub use table::{mean_std, BenchRow, BenchTable, STANDARD_METHODS};

/// The compared methods, in the table's order ([`STANDARD_METHODS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Lsh,
    Itq,
    Dpsh,
    HashNet,
    Csq,
    GreedyHash,
    ClassificationOnly,
    Dhcnn,
    /// The cross-validated bench's simple baselines ([`cv`]): no hash code, no training.
    Majority,
    LogisticBands,
    KnnBands,
    KnnFeatures,
    LogisticFeatures,
}

impl Method {
    /// Every method the cross-validated bench runs by default, in its table's order.
    pub const CROSS_VALIDATED: [Self; 13] = [
        Self::Majority,
        Self::LogisticBands,
        Self::KnnBands,
        Self::KnnFeatures,
        Self::LogisticFeatures,
        Self::Lsh,
        Self::Itq,
        Self::Dpsh,
        Self::HashNet,
        Self::Csq,
        Self::GreedyHash,
        Self::ClassificationOnly,
        Self::Dhcnn,
    ];

    /// The hashing methods of issue 5: what the single-split bench runs.
    pub const ALL: [Self; 5] = [
        Self::Lsh,
        Self::Itq,
        Self::Dpsh,
        Self::ClassificationOnly,
        Self::Dhcnn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lsh => "LSH",
            Self::Itq => "ITQ",
            Self::Dpsh => "DPSH",
            Self::HashNet => "HashNet",
            Self::Csq => "CSQ",
            Self::GreedyHash => "GreedyHash",
            Self::ClassificationOnly => "classification-only",
            Self::Dhcnn => "DHCNN",
            Self::Majority => "majority class",
            Self::LogisticBands => "LR (band stats)",
            Self::KnnBands => "kNN (band stats)",
            Self::KnnFeatures => "kNN (backbone, cosine)",
            Self::LogisticFeatures => "LR (backbone)",
        }
    }

    /// Whether the method gives hash codes (and so depends on the code length).
    pub fn hashes(self) -> bool {
        !matches!(
            self,
            Self::Majority
                | Self::LogisticBands
                | Self::KnnBands
                | Self::KnnFeatures
                | Self::LogisticFeatures
        )
    }

    /// The training configuration of a trained method at `bits` and `seed`, derived from DHCNN's
    /// (`base`) so that only the loss differs; `None` for the unsupervised baselines.
    pub fn train_config(self, base: &TrainConfig, bits: usize, seed: u64) -> Option<TrainConfig> {
        let mut config = TrainConfig {
            bits: bits as i64,
            seed,
            backbone_training: BackboneTraining::Frozen,
            ..base.clone()
        };
        match self {
            Self::Lsh
            | Self::Itq
            | Self::Majority
            | Self::LogisticBands
            | Self::KnnBands
            | Self::KnnFeatures
            | Self::LogisticFeatures => return None,
            Self::Dhcnn => {}
            // η = 0: the hash layer learns from the classifier's cross-entropy alone.
            Self::ClassificationOnly => config.loss.combination = with_hash_weight(base, 0.0),
            Self::Dpsh => {
                config.loss.scale = 2.0;
                config.without_classifier = true;
                // With no classifier the only thing η < 1 would do is shrink the step size, so
                // DPSH gets the whole gradient of its pairwise and quantisation terms.
                config.loss.combination = with_hash_weight(base, 1.0);
            }
            // The reference settings (DeepHash-pytorch); the cross-validated bench chooses the
            // weight from its grid instead.
            Self::HashNet => {
                config.without_classifier = true;
                config.loss.objective = Objective::HashNet {
                    alpha: 0.1,
                    continuation_epochs: 20,
                };
            }
            Self::Csq => {
                config.without_classifier = true;
                config.loss.objective = Objective::Csq { lambda: 1e-4 };
            }
            Self::GreedyHash => config.loss.objective = Objective::GreedyHash { alpha: 0.1 },
        }
        Some(config)
    }
}

/// `base`'s combination with the hashing terms weighted `weight` and classification `1 − weight`
/// (η in the MatConvNet form, 1 − η in the PyTorch port's).
fn with_hash_weight(base: &TrainConfig, weight: f64) -> Combination {
    match base.loss.combination {
        Combination::MatConvNet { beta, .. } => Combination::MatConvNet { eta: weight, beta },
        Combination::PyTorchPort { lambda, .. } => Combination::PyTorchPort {
            eta: 1.0 - weight,
            lambda,
        },
    }
}

/// What `orbhash bench retrieval` runs.
#[derive(Debug, Clone)]
pub struct RetrievalBenchOptions {
    /// DHCNN's configuration: data set, backbone, pretrained weights, optimiser and schedule.
    /// Bits, seed and loss settings are replaced per run.
    pub base: TrainConfig,
    pub bits: Vec<usize>,
    pub seeds: Vec<u64>,
    pub methods: Vec<Method>,
}

/// One method at one code length and seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRun {
    pub method: String,
    pub bits: usize,
    pub seed: u64,
    pub map: f64,
    pub overall_accuracy: Option<f64>,
    pub average_accuracy: Option<f64>,
    pub kappa: Option<f64>,
    /// Fitting or training plus evaluation, backbone excluded.
    pub seconds: f64,
    /// The training configuration of trained methods.
    pub config: Option<TrainConfig>,
}

/// The table and every run behind it: what `--out` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchOutcome {
    pub table: BenchTable,
    pub runs: Vec<BenchRun>,
    pub database: usize,
    pub queries: usize,
    /// Seconds spent computing the backbone features, once for all runs.
    pub backbone_seconds: f64,
}

/// Loads the data set, computes its frozen backbone features once and runs every method on them.
pub fn retrieval_bench(
    options: &RetrievalBenchOptions,
    device: DeviceChoice,
    progress: &mut dyn FnMut(&BenchRun),
) -> anyhow::Result<BenchOutcome> {
    let device = select_device(device)?;
    let dataset = load_dataset(&options.base)?;
    let (features, backbone_seconds) = frozen_features(&options.base, &dataset, device)?;
    let mut outcome = bench_on_features(&dataset, &features, options, device, progress)?;
    outcome.backbone_seconds = backbone_seconds;
    Ok(outcome)
}

/// The frozen backbone's features of every sample (in sample order), computed once, and the
/// seconds it took.
pub(crate) fn frozen_features(
    base: &TrainConfig,
    dataset: &Dataset,
    device: Device,
) -> anyhow::Result<(Tensor, f64)> {
    let started = Instant::now();
    let classes = dataset.classes.len() as i64;
    let channels = dataset.spec.channels();
    let mut model = Dhcnn::new(base.backbone, 64, classes, channels, device)?;
    match &base.pretrained {
        Some(weights) => load_pretrained(&mut model.backbone_store, weights)?,
        None => eprintln!(
            "orbhash: benchmarking on the features of an untrained {} backbone",
            base.backbone
        ),
    }
    let features = backbone_features(&model, dataset, base.batch_size.max(32), device);
    Ok((features, started.elapsed().as_secs_f64()))
}

/// Runs every method of `options` on `features` (`[samples, D]`, in `dataset`'s sample order;
/// the samples' images are not used).
pub fn bench_on_features(
    dataset: &Dataset,
    features: &Tensor,
    options: &RetrievalBenchOptions,
    device: Device,
    progress: &mut dyn FnMut(&BenchRun),
) -> anyhow::Result<BenchOutcome> {
    let database = dataset.indices(SplitName::Database);
    let queries = dataset.indices(SplitName::Query);
    if database.is_empty() || queries.is_empty() {
        bail!(
            "{} needs both database and query images ({} and {})",
            options.base.data.display(),
            database.len(),
            queries.len()
        );
    }
    if options.bits.is_empty() || options.seeds.is_empty() {
        bail!("give at least one code length and one seed");
    }
    if let Some(method) = options.methods.iter().find(|m| !m.hashes()) {
        bail!(
            "{} runs only in the cross-validated bench (--folds 2 or more)",
            method.name()
        );
    }
    let name = data_set_name(&options.base.data);
    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let side_labels = |indices: &[usize]| indices.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let (database_labels, query_labels) = (side_labels(&database), side_labels(&queries));

    let cpu_features = features.to_device(Device::Cpu).to_kind(Kind::Float);
    let dims = cpu_features.size()[1] as usize;
    let database_features = FeatureMatrix::from_flat(tensor_rows(&cpu_features, &database)?, dims)?;
    let query_features = FeatureMatrix::from_flat(tensor_rows(&cpu_features, &queries)?, dims)?;
    // The eigensolve is the costly part of ITQ and does not depend on the seed: once, at the
    // longest code.
    let longest = options.bits.iter().copied().max().unwrap_or(0);
    let pca = if options.methods.contains(&Method::Itq) {
        Some(Pca::fit(&database_features, longest)?)
    } else {
        None
    };

    let mut table = BenchTable::new(name.clone(), &options.bits);
    table.rows.retain(|row| {
        options
            .methods
            .iter()
            .any(|method| method.name() == row.method)
    });
    let mut runs = Vec::new();
    for &method in &options.methods {
        for &bits in &options.bits {
            for &seed in &options.seeds {
                let started = Instant::now();
                let report = match method {
                    Method::Lsh | Method::Itq => {
                        let hash = if method == Method::Lsh {
                            lsh(&database_features, bits, seed)?
                        } else {
                            let pca = pca.as_ref().context("PCA is fitted for ITQ")?;
                            let itq_options = ItqOptions {
                                seed,
                                ..Default::default()
                            };
                            itq_with_pca(&database_features, pca, bits, &itq_options)?.hash
                        };
                        let mut eval_options = EvalOptions::new(method.name(), name.clone());
                        eval_options.classes = Some(dataset.classes.len());
                        evaluate(
                            &hash.encode(&database_features)?,
                            &database_labels,
                            &hash.encode(&query_features)?,
                            &query_labels,
                            None,
                            &eval_options,
                        )?
                    }
                    _ => {
                        let config = method
                            .train_config(&options.base, bits, seed)
                            .context("a trained method has a training configuration")?;
                        train_and_report(method, &config, dataset, features, &name, device)?
                    }
                };
                table.record(&report);
                let classification = report.classification.as_ref();
                let run = BenchRun {
                    method: method.name().to_string(),
                    bits,
                    seed,
                    map: report.retrieval.map,
                    overall_accuracy: classification.map(|c| c.overall_accuracy),
                    average_accuracy: classification.map(|c| c.average_accuracy),
                    kappa: classification.map(|c| c.kappa),
                    seconds: started.elapsed().as_secs_f64(),
                    config: method.train_config(&options.base, bits, seed),
                };
                progress(&run);
                runs.push(run);
            }
        }
    }
    Ok(BenchOutcome {
        table,
        runs,
        database: database.len(),
        queries: queries.len(),
        backbone_seconds: 0.0,
    })
}

/// Trains a fresh head on the cached features as `orbhash train --freeze-backbone` would, then
/// evaluates it on the data set's own split.
fn train_and_report(
    method: Method,
    config: &TrainConfig,
    dataset: &Dataset,
    features: &Tensor,
    name: &str,
    device: Device,
) -> anyhow::Result<EvalReport> {
    let database = dataset.indices(SplitName::Database);
    let hashed = train_and_encode(method, config, dataset, features, &database, device)?;
    hashed.report(method.name(), name)
}

/// The one place every trained method of both benches is trained: a fresh head (and classifier)
/// on the cached backbone features of the samples `train`, as `orbhash train --freeze-backbone`
/// would, then the hash-layer outputs and class probabilities of *every* sample. Swapping this
/// function (for fine-tuning, say) changes every trained row of both tables at once.
///
/// The head trains on a view of `dataset` whose database side is `train` (everything else is a
/// query), so that with `train` = the data set's own database this is exactly the old bench's
/// run, batch order included.
pub fn train_and_encode(
    method: Method,
    config: &TrainConfig,
    dataset: &Dataset,
    features: &Tensor,
    train: &[usize],
    device: Device,
) -> anyhow::Result<HashedDataset> {
    config.validate()?;
    let dims = features.size()[1];
    if dims != config.backbone.feature_size() {
        bail!(
            "features of {dims} values, but {} gives {}",
            config.backbone,
            config.backbone.feature_size()
        );
    }
    if train.is_empty() {
        bail!("{}: no training samples", method.name());
    }
    let mut in_train = vec![false; dataset.samples.len()];
    for &i in train {
        *in_train
            .get_mut(i)
            .with_context(|| format!("training sample {i} is not in the data set"))? = true;
    }
    let view = Dataset {
        samples: dataset
            .samples
            .iter()
            .zip(&in_train)
            .map(|(sample, &train)| crate::data::Sample {
                split: if train {
                    SplitName::Database
                } else {
                    SplitName::Query
                },
                ..sample.clone()
            })
            .collect(),
        ..dataset.clone()
    };
    // The whole network is built, backbone included, so the head's initial weights draw the same
    // random numbers as in `orbhash train --seed`: a bench run can be reproduced by a train run.
    tch::manual_seed(config.seed as i64);
    let model = Dhcnn::new(
        config.backbone,
        config.bits,
        dataset.classes.len() as i64,
        dataset.spec.channels(),
        device,
    )?;
    let database = view.indices(SplitName::Database);
    let labels: Vec<usize> = view.samples.iter().map(|s| s.label).collect();
    let bank = Tensor::zeros([database.len() as i64, config.bits], (Kind::Float, device));
    let mut stepper = Stepper::new(
        config,
        &model.head_store,
        None,
        &labels,
        &database,
        bank,
        device,
    )?;
    for epoch in 0..config.epochs {
        stepper.start_epoch(epoch, config.schedule.rate(epoch, config.epochs));
        let order = view.epoch_order(SplitName::Database, config.seed, epoch as u64);
        for indices in order.chunks(config.batch_size) {
            let terms = stepper.step(
                &model.head,
                &select_rows(features, indices, device),
                indices,
            );
            let loss = terms.total.double_value(&[]);
            if !loss.is_finite() {
                return Err(Diverged {
                    method,
                    bits: config.bits,
                    seed: config.seed,
                    epoch: epoch + 1,
                }
                .into());
            }
        }
    }
    Ok(HashedDataset::from_features(
        &model.head,
        features,
        &view,
        ClassifierInput::of(config),
    ))
}

/// A trained method's loss stopped being finite: its learning rate is too high for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} ({bits} bits, seed {seed}) diverged at epoch {epoch}: try a lower learning rate",
    method.name()
)]
pub struct Diverged {
    pub method: Method,
    pub bits: i64,
    pub seed: u64,
    pub epoch: usize,
}

/// Writes the outcome as pretty JSON.
pub fn write_outcome(outcome: &BenchOutcome, path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(outcome)?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::data::folder::Sample;
    use crate::data::InputSpec;
    use crate::eval::synthetic::clustered_features;
    use crate::model::backbone::BackboneKind;
    use crate::train::schedule::Schedule;

    const CLASSES: usize = 4;
    const PER_CLASS: usize = 30;
    const DATABASE_PER_CLASS: usize = 20;

    /// Synthetic clusters standing in for backbone features (never a result): the first
    /// `DATABASE_PER_CLASS` of each class form the database, the rest the queries. The samples'
    /// images are empty because the bench reads features only.
    pub(super) fn synthetic() -> (Dataset, Tensor) {
        // The small CNN's feature size, so the heads built for it fit these features.
        let dims = BackboneKind::SmallCnn.feature_size() as usize;
        let (features, labels) =
            clustered_features(CLASSES, PER_CLASS, dims, 0.5, 7).expect("synthetic features");
        let samples = labels
            .iter()
            .enumerate()
            .map(|(i, &label)| Sample {
                pixels: Arc::from(Vec::<f32>::new()),
                label,
                split: if i % PER_CLASS < DATABASE_PER_CLASS {
                    SplitName::Database
                } else {
                    SplitName::Query
                },
                path: PathBuf::from(format!("synthetic/{i}")),
            })
            .collect();
        let dataset = Dataset {
            classes: (0..CLASSES).map(|c| format!("class{c}")).collect(),
            spec: InputSpec::imagenet_rgb(8),
            samples,
            report: Default::default(),
        };
        let tensor = Tensor::from_slice(features.as_slice()).view([-1, dims as i64]);
        (dataset, tensor)
    }

    pub(super) fn options() -> RetrievalBenchOptions {
        RetrievalBenchOptions {
            base: TrainConfig {
                data: PathBuf::from("synthetic"),
                backbone: BackboneKind::SmallCnn,
                pretrained: None,
                loss: crate::train::loss::LossConfig {
                    scale: 32.0,
                    combination: Combination::MatConvNet {
                        eta: 0.2,
                        beta: 1.0,
                    },
                    ..Default::default()
                },
                schedule: Schedule::LogDecay {
                    start: 1e-2,
                    end: 1e-4,
                },
                momentum: 0.9,
                epochs: 30,
                backbone_training: BackboneTraining::Frozen,
                ..TrainConfig::default()
            },
            bits: vec![16, 32],
            seeds: vec![0, 1],
            methods: Method::ALL.to_vec(),
        }
    }

    #[test]
    fn bench_fills_every_cell_and_supervision_beats_the_floors() {
        crate::torch::init_for_tests();
        let (dataset, features) = synthetic();
        let mut seen = 0;
        let outcome = bench_on_features(&dataset, &features, &options(), Device::Cpu, &mut |_| {
            seen += 1
        })
        .expect("bench runs");
        assert_eq!(seen, 5 * 2 * 2);
        assert_eq!(outcome.runs.len(), seen);
        assert_eq!(
            (outcome.database, outcome.queries),
            (
                CLASSES * DATABASE_PER_CLASS,
                CLASSES * (PER_CLASS - DATABASE_PER_CLASS)
            )
        );
        let table = &outcome.table;
        let methods: Vec<&str> = table.rows.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, STANDARD_METHODS);
        assert_eq!(table.oa_bits, 32);
        for row in &table.rows {
            for cell in &row.map {
                assert_eq!(cell.len(), 2, "{}: one mAP per seed", row.method);
                assert!(
                    cell.iter().all(|m| (0.0..=1.0).contains(m)),
                    "{}",
                    row.method
                );
            }
            // OA only where a trained classifier exists: DPSH's is left out, not reported.
            let classifies = matches!(row.method.as_str(), "classification-only" | "DHCNN");
            assert_eq!(
                row.oa.len(),
                if classifies { 2 } else { 0 },
                "{}",
                row.method
            );
        }
        let mean = |method: &str, column: usize| {
            let row = table.rows.iter().find(|r| r.method == method).expect("row");
            mean_std(&row.map[column]).expect("values").0
        };
        // The clusters overlap enough that unsupervised codes stay well below what the labels
        // allow; every supervised method must use the labels.
        let floor = mean("LSH", 1).max(mean("ITQ", 1));
        for method in ["DPSH", "classification-only", "DHCNN"] {
            assert!(
                mean(method, 1) > floor + 0.1,
                "{method} {:.3} vs unsupervised {floor:.3}",
                mean(method, 1)
            );
        }
        // Seeds change LSH's projections.
        let lsh = &table.rows[0].map[1];
        assert_ne!(lsh[0], lsh[1]);
    }

    #[test]
    fn trained_runs_repeat_exactly_and_honour_the_method_settings() {
        crate::torch::init_for_tests();
        let (dataset, features) = synthetic();
        let mut options = options();
        options.methods = vec![Method::Dhcnn];
        options.bits = vec![16];
        options.seeds = vec![3];
        let run = |options: &RetrievalBenchOptions| {
            bench_on_features(&dataset, &features, options, Device::Cpu, &mut |_| {})
                .expect("bench runs")
                .runs[0]
                .map
        };
        assert_eq!(run(&options), run(&options));

        let base = &options.base;
        let dpsh = Method::Dpsh.train_config(base, 32, 1).expect("trained");
        assert_eq!(dpsh.loss.scale, 2.0);
        assert!(dpsh.without_classifier);
        assert_eq!(
            dpsh.loss.combination,
            Combination::MatConvNet {
                eta: 1.0,
                beta: 1.0
            }
        );
        let classification = Method::ClassificationOnly
            .train_config(base, 32, 1)
            .expect("trained");
        assert!(matches!(
            classification.loss.combination,
            Combination::MatConvNet { eta, .. } if eta == 0.0
        ));
        let dhcnn = Method::Dhcnn.train_config(base, 64, 2).expect("trained");
        assert_eq!((dhcnn.bits, dhcnn.seed, dhcnn.loss), (64, 2, base.loss));
        assert!(Method::Lsh.train_config(base, 32, 0).is_none());
    }

    #[test]
    fn the_deephash_set_uses_the_labels_and_only_greedy_hash_classifies() {
        crate::torch::init_for_tests();
        let (dataset, features) = synthetic();
        let mut options = options();
        options.methods = vec![
            Method::Lsh,
            Method::Itq,
            Method::HashNet,
            Method::Csq,
            Method::GreedyHash,
        ];
        options.bits = vec![32];
        options.seeds = vec![0];
        let outcome = bench_on_features(&dataset, &features, &options, Device::Cpu, &mut |_| {})
            .expect("bench runs");
        let map = |method: Method| {
            let run = outcome
                .runs
                .iter()
                .find(|run| run.method == method.name())
                .expect("run");
            (run.map, run.overall_accuracy)
        };
        let floor = map(Method::Lsh).0.max(map(Method::Itq).0);
        for method in [Method::HashNet, Method::Csq, Method::GreedyHash] {
            let (method_map, accuracy) = map(method);
            assert!(
                method_map > floor + 0.1,
                "{}: {method_map:.3} vs unsupervised {floor:.3}",
                method.name()
            );
            assert_eq!(accuracy.is_some(), method == Method::GreedyHash);
        }
        let hashnet = Method::HashNet
            .train_config(&options.base, 32, 0)
            .expect("trained");
        assert!(hashnet.without_classifier);
        assert!(matches!(
            hashnet.loss.objective,
            Objective::HashNet { alpha, continuation_epochs: 20 } if alpha == 0.1
        ));
    }
}
