//! `orbhash bench retrieval --folds K` (K ≥ 2): a protocol that can tell methods apart
//! (issue 16 §4).
//!
//! - **Spatial-block K-fold cross-validation** ([`crate::eval::folds`]): whole spatial blocks of
//!   the manifest go to one fold; fold f's tiles are the queries, all other tiles the database
//!   (and the training set). Every tile is a query exactly once, so the metrics pool over all
//!   tiles. A data set without a manifest gets one block per tile: a seeded per-class split.
//! - **Settings from an inner fold**: each outer database is cut by blocks into inner-train and
//!   inner-validation; every setting of the grid ([`Grid`]) trains on inner-train and is scored on
//!   inner-validation (mAP for the hashing methods, log-loss for logistic regression, OA for kNN);
//!   the best then retrains on the whole outer database. The outer queries are never seen before
//!   the final evaluation.
//! - **Seeds**: every seed-dependent method runs once per seed on every fold; the pooled metrics
//!   are then averaged over seeds (mean ± sample std). Seed-free baselines run once.
//! - **Baselines** on the same folds and sample order ([`crate::eval::simple`]).
//! - **Paired bootstrap** over the pooled queries of DHCNN against every other method, per-query AP
//!   and correctness averaged over seeds first ([`crate::eval::bootstrap`]).
//!
//! mAP uses the tie-aware rule ([`TieRule::Expected`]) throughout: a ranking that only orders
//! classes (majority, logistic regression) would otherwise be scored by database order.
//!
//! Rankings: hashing methods by Hamming distance; kNN methods by their float distance (Euclidean
//! on standardised band statistics, cosine on backbone features); logistic regression ranks the
//! database by the query's predicted probability of each item's class; the majority baseline ranks
//! every query's database by class frequency. kNN's k only changes its labels, not its ranking.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::folder::Dataset;
use crate::data::Manifest;
use crate::torch::{select_device, DeviceChoice};
use crate::train::loss::{Combination, Objective};
use crate::train::trainer::load_dataset;
use crate::train::TrainConfig;

use super::super::bootstrap::{paired_bootstrap, BootstrapInterval};
use super::super::checkpoint::{data_set_name, tensor_rows, HashedDataset};
use super::super::folds::{assign_folds, inner_split, Folds};
use super::super::logistic::{log_loss, Logistic, LogisticOptions};
use super::super::simple::{
    band_statistics, class_frequency_distances, class_probability_distances, cosine_distances,
    knn_predict, majority_class, select, standardised_euclidean,
};
use super::super::{
    classification_metrics, evaluate, evaluate_float_ranking, itq_with_pca, lsh, predictions,
    ClassificationMetrics, CodeSet, ConfusionMatrix, EvalOptions, FeatureMatrix, ItqOptions, Pca,
    RetrievalMetrics, RetrievalOptions, TieRule,
};
use super::{frozen_features, mean_std, train_and_encode, Diverged, Method};

/// The settings the inner fold chooses from. One value in a list means nothing is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// DHCNN's β (quantisation weight) and η (hash-term weight), every pair tried.
    pub dhcnn_beta: Vec<f64>,
    pub dhcnn_eta: Vec<f64>,
    /// DPSH's β.
    pub dpsh_beta: Vec<f64>,
    /// HashNet's α (the scale of its inner products).
    pub hashnet_alpha: Vec<f64>,
    /// CSQ's λ (its quantisation weight).
    pub csq_lambda: Vec<f64>,
    /// GreedyHash's α (the weight of its cubic pull towards ±1).
    pub greedy_hash_alpha: Vec<f64>,
    /// Every trained method's first learning rate: losses normalised differently need different
    /// steps under one SGD schedule. Empty: the base's rate.
    pub lr: Vec<f64>,
    /// Logistic regression's L2 penalty λ.
    pub l2: Vec<f64>,
    /// kNN's k.
    pub knn_k: Vec<usize>,
}

impl Default for Grid {
    fn default() -> Self {
        Self {
            dhcnn_beta: vec![1.0, 5.0, 25.0],
            dhcnn_eta: vec![0.2, 0.5],
            dpsh_beta: vec![1.0, 5.0, 25.0],
            hashnet_alpha: vec![0.05, 0.1, 0.2, 0.5],
            csq_lambda: vec![1e-4, 1e-2, 1.0],
            greedy_hash_alpha: vec![0.01, 0.1, 1.0],
            lr: vec![0.01, 0.1],
            l2: vec![1e-3, 1e-2, 1e-1, 1.0],
            knn_k: vec![1, 5, 15],
        }
    }
}

/// What the cross-validated bench runs.
#[derive(Debug, Clone)]
pub struct CvOptions {
    /// DHCNN's configuration; bits, seed, β and η are replaced per run.
    pub base: TrainConfig,
    pub bits: Vec<usize>,
    pub seeds: Vec<u64>,
    pub methods: Vec<Method>,
    pub folds: usize,
    /// Seeds the fold assignment, the inner splits and the bootstrap.
    pub fold_seed: u64,
    pub grid: Grid,
    pub bootstrap: usize,
}

/// One setting of the grid, as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Setting {
    /// A trained method's loss weight, η and starting learning rate; `None` leaves the base's.
    Trained {
        weight: Option<LossWeight>,
        /// DHCNN's weight of the hash terms against classification.
        eta: Option<f64>,
        /// The schedule's first rate (its last scales with it).
        lr: Option<f64>,
    },
    L2(f64),
    K(usize),
}

/// The weight each trained method's own grid varies, under its paper's name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LossWeight {
    /// The quantisation term's weight: DHCNN's and DPSH's β, CSQ's λ.
    Beta(f64),
    /// HashNet's inner-product scale, GreedyHash's weight of its cubic pull to ±1.
    Alpha(f64),
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Trained { weight, eta, lr } => {
                let mut parts = Vec::new();
                match weight {
                    Some(LossWeight::Beta(beta)) => parts.push(format!("β {beta}")),
                    Some(LossWeight::Alpha(alpha)) => parts.push(format!("α {alpha}")),
                    None => {}
                }
                parts.extend(eta.map(|eta| format!("η {eta}")));
                parts.extend(lr.map(|lr| format!("lr {lr}")));
                write!(f, "{}", parts.join(" "))
            }
            Setting::L2(l2) => write!(f, "λ {l2}"),
            Setting::K(k) => write!(f, "k {k}"),
        }
    }
}

/// One method at one code length (`None` for baselines without codes) and one seed (`None` for
/// seed-free ones), pooled over the folds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PooledRun {
    pub seed: Option<u64>,
    /// Mean AP over all pooled queries (tie-aware).
    pub map: f64,
    /// OA, AA, κ, confusion matrix of the pooled queries; `None` for methods without labels.
    pub classification: Option<ClassificationMetrics>,
    pub per_class_f1: Option<Vec<Option<f64>>>,
    /// Mean precision at k = 1..=len over all queries (k up to the smallest fold database).
    pub precision_at_k: Vec<f64>,
    /// (recall, precision): over Hamming radii 0..=K for codes, over cut-offs k for float rankings.
    pub pr_curve: Vec<(f64, f64)>,
    /// The setting each fold chose (`None` where nothing was chosen).
    pub chosen: Vec<Option<Setting>>,
    /// AP of every sample as a query, in sample order.
    pub average_precision: Vec<f64>,
    /// Predicted label of every sample as a query, in sample order.
    pub predicted: Option<Vec<usize>>,
    pub seconds: f64,
}

/// Mean ± sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Self> {
        mean_std(values).map(|(mean, std)| Self {
            mean,
            std,
            n: values.len(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub bits: Option<usize>,
    pub runs: Vec<PooledRun>,
    pub map: Spread,
    pub overall_accuracy: Option<Spread>,
    pub average_accuracy: Option<Spread>,
    pub kappa: Option<Spread>,
    /// DHCNN at the same code length (the longest, for baselines) minus this method.
    pub dhcnn_minus_this_map: Option<BootstrapInterval>,
    pub dhcnn_minus_this_oa: Option<BootstrapInterval>,
}

/// Levels a method must beat to have learnt anything.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chance {
    /// 1 / classes.
    pub uniform_oa: f64,
    /// Share of the most frequent class over all tiles.
    pub majority_share: f64,
    /// Pooled expected mAP of a random ranking (every database item tied).
    pub random_map: f64,
}

/// What `--out` writes in cross-validated mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvOutcome {
    pub dataset: String,
    pub tiles: usize,
    pub classes: Vec<String>,
    /// How the folds were made ("spatial blocks from the manifest" or the fallback).
    pub fold_source: String,
    pub spatial_blocks: usize,
    pub folds: Folds,
    pub seeds: Vec<u64>,
    pub bits: Vec<usize>,
    pub grid: Grid,
    pub ties: TieRule,
    pub bootstrap_resamples: usize,
    pub band_statistics: Option<String>,
    pub chance: Chance,
    pub methods: Vec<MethodResult>,
    pub backbone_seconds: f64,
    pub seconds: f64,
}

/// A sample's spatial block: (scene, block row, block column) from the manifest, or its own index
/// when there is none.
type Block = (String, usize, usize);

/// The blocks of the data set's samples and where they came from.
fn spatial_blocks(root: &std::path::Path, dataset: &Dataset) -> anyhow::Result<(Vec<Block>, bool)> {
    let Some(manifest) = Manifest::read_optional(root)? else {
        let own = (0..dataset.samples.len())
            .map(|i| ("tile".to_string(), i, 0))
            .collect();
        return Ok((own, false));
    };
    let by_path: BTreeMap<std::path::PathBuf, Block> = manifest
        .patches
        .iter()
        .map(|p| {
            (
                root.join(&p.file),
                (p.scene.clone(), p.block[0], p.block[1]),
            )
        })
        .collect();
    let blocks = dataset
        .samples
        .iter()
        .map(|s| {
            by_path
                .get(&s.path)
                .cloned()
                .with_context(|| format!("{} is not a patch of the manifest", s.path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((blocks, true))
}

/// Loads the data set, computes the frozen backbone features and band statistics once, and runs
/// the protocol.
pub fn cross_validated_bench(
    options: &CvOptions,
    device: DeviceChoice,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<CvOutcome> {
    let device = select_device(device)?;
    let dataset = load_dataset(&options.base)?;
    let (features, backbone_seconds) = frozen_features(&options.base, &dataset, device)?;
    let (blocks, from_manifest) = spatial_blocks(&options.base.data, &dataset)?;
    let wants_bands = options
        .methods
        .iter()
        .any(|m| matches!(m, Method::LogisticBands | Method::KnnBands));
    let bands = if wants_bands {
        let paths: Vec<_> = dataset.samples.iter().map(|s| s.path.clone()).collect();
        let pixels: Vec<&[f32]> = dataset.samples.iter().map(|s| &*s.pixels).collect();
        Some(band_statistics(
            &options.base.data,
            &paths,
            &pixels,
            &dataset.spec,
        )?)
    } else {
        None
    };
    let source = if from_manifest {
        "spatial blocks from the manifest".to_string()
    } else {
        "no manifest: one block per tile, i.e. a seeded per-class split".to_string()
    };
    let band_source = bands.as_ref().map(|b| b.source.clone());
    let mut outcome = cv_on_features(
        &dataset,
        &features,
        &blocks,
        bands.map(|b| b.features).as_ref(),
        options,
        device,
        progress,
    )?;
    outcome.fold_source = source;
    outcome.band_statistics = band_source;
    outcome.backbone_seconds = backbone_seconds;
    Ok(outcome)
}

/// One fold's evaluation of one method.
struct FoldEval {
    queries: Vec<usize>,
    metrics: RetrievalMetrics,
    predicted: Option<Vec<usize>>,
    chosen: Option<Setting>,
}

/// Everything per data set that the methods share.
struct Shared<'a> {
    dataset: &'a Dataset,
    features: &'a Tensor,
    float_features: FeatureMatrix,
    bands: Option<&'a FeatureMatrix>,
    labels: Vec<usize>,
    classes: usize,
    folds: Folds,
    /// Per outer fold: (inner-train, inner-validation).
    inner: Vec<(Vec<usize>, Vec<usize>)>,
    options: &'a CvOptions,
    device: Device,
    name: String,
    retrieval: RetrievalOptions,
}

impl Shared<'_> {
    fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }

    /// Hash-code evaluation of `hashed` (codes of every sample): `queries` against `database`.
    fn evaluate_codes(
        &self,
        hashed_codes: &Tensor,
        probabilities: Option<&Tensor>,
        database: &[usize],
        queries: &[usize],
    ) -> anyhow::Result<(RetrievalMetrics, Option<Vec<usize>>)> {
        let bits = hashed_codes.size()[1] as usize;
        let database_codes = CodeSet::from_signs(&tensor_rows(hashed_codes, database)?, bits)?;
        let query_codes = CodeSet::from_signs(&tensor_rows(hashed_codes, queries)?, bits)?;
        let scores = match probabilities {
            Some(p) => Some(
                tensor_rows(p, queries)?
                    .chunks(self.classes)
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>(),
            ),
            None => None,
        };
        let mut options = EvalOptions::new("", self.name.clone());
        options.classes = Some(self.classes);
        options.retrieval = self.retrieval;
        let report = evaluate(
            &database_codes,
            &self.labels_of(database),
            &query_codes,
            &self.labels_of(queries),
            None,
            &options,
        )?;
        let predicted = scores.as_deref().map(predictions).transpose()?;
        Ok((report.retrieval, predicted))
    }

    fn evaluate_hashed(
        &self,
        hashed: &HashedDataset,
        database: &[usize],
        queries: &[usize],
    ) -> anyhow::Result<(RetrievalMetrics, Option<Vec<usize>>)> {
        self.evaluate_codes(
            &hashed.codes,
            hashed.probabilities.as_ref(),
            database,
            queries,
        )
    }

    fn float_ranking(
        &self,
        distances: &[f32],
        database: &[usize],
        queries: &[usize],
    ) -> anyhow::Result<RetrievalMetrics> {
        Ok(evaluate_float_ranking(
            distances,
            &self.labels_of(database),
            &self.labels_of(queries),
            &self.retrieval,
        )?)
    }

    /// The trained methods' configuration under one setting.
    fn trained_config(
        &self,
        method: Method,
        setting: Option<Setting>,
        bits: usize,
        seed: u64,
    ) -> anyhow::Result<TrainConfig> {
        let mut base = self.options.base.clone();
        let Some(Setting::Trained { weight, eta, lr }) = setting else {
            return method
                .train_config(&base, bits, seed)
                .context("a trained method has a training configuration");
        };
        if let Some(lr) = lr {
            base.schedule = base.schedule.starting_at(lr);
        }
        let beta = match weight {
            Some(LossWeight::Beta(beta)) => Some(beta),
            _ => None,
        };
        base.loss.combination = match base.loss.combination {
            Combination::MatConvNet {
                eta: old,
                beta: old_beta,
            } => Combination::MatConvNet {
                eta: eta.unwrap_or(old),
                beta: beta.unwrap_or(old_beta),
            },
            // The port weights the hash terms 1 − η and quantisation λ inside them.
            Combination::PyTorchPort { eta: old, lambda } => Combination::PyTorchPort {
                eta: eta.map_or(old, |eta| 1.0 - eta),
                lambda: beta.unwrap_or(lambda),
            },
        };
        let mut config = method
            .train_config(&base, bits, seed)
            .context("a trained method has a training configuration")?;
        match (weight, &mut config.loss.objective) {
            (Some(LossWeight::Alpha(weight)), Objective::HashNet { alpha, .. })
            | (Some(LossWeight::Alpha(weight)), Objective::GreedyHash { alpha })
            | (Some(LossWeight::Beta(weight)), Objective::Csq { lambda: alpha }) => *alpha = weight,
            _ => {}
        }
        Ok(config)
    }

    fn grid(&self, method: Method) -> Vec<Setting> {
        let grid = &self.options.grid;
        let betas = |values: &[f64]| -> Vec<(Option<LossWeight>, Option<f64>)> {
            values
                .iter()
                .map(|&b| (Some(LossWeight::Beta(b)), None))
                .collect()
        };
        let alphas = |values: &[f64]| -> Vec<(Option<LossWeight>, Option<f64>)> {
            values
                .iter()
                .map(|&a| (Some(LossWeight::Alpha(a)), None))
                .collect()
        };
        let weights = match method {
            Method::Dhcnn => grid
                .dhcnn_beta
                .iter()
                .flat_map(|&beta| {
                    grid.dhcnn_eta
                        .iter()
                        .map(move |&eta| (Some(LossWeight::Beta(beta)), Some(eta)))
                })
                .collect(),
            Method::Dpsh => betas(&grid.dpsh_beta),
            Method::Csq => betas(&grid.csq_lambda),
            Method::HashNet => alphas(&grid.hashnet_alpha),
            Method::GreedyHash => alphas(&grid.greedy_hash_alpha),
            Method::ClassificationOnly => vec![(None, None)],
            Method::LogisticBands | Method::LogisticFeatures => {
                return grid.l2.iter().map(|&l2| Setting::L2(l2)).collect()
            }
            Method::KnnBands | Method::KnnFeatures => {
                return grid.knn_k.iter().map(|&k| Setting::K(k)).collect()
            }
            Method::Majority | Method::Lsh | Method::Itq => return Vec::new(),
        };
        // No rate listed: the base's.
        let rates: Vec<Option<f64>> = if grid.lr.is_empty() {
            vec![None]
        } else {
            grid.lr.iter().copied().map(Some).collect()
        };
        weights
            .iter()
            .flat_map(|&(weight, eta)| {
                rates
                    .iter()
                    .map(move |&lr| Setting::Trained { weight, eta, lr })
            })
            .collect()
    }

    /// Trains `method` under `setting` on the samples `train` and hashes every sample; `None`
    /// when its loss diverged.
    fn train_unless_diverged(
        &self,
        method: Method,
        setting: Option<Setting>,
        bits: usize,
        seed: u64,
        train: &[usize],
    ) -> anyhow::Result<Option<HashedDataset>> {
        let config = self.trained_config(method, setting, bits, seed)?;
        match train_and_encode(
            method,
            &config,
            self.dataset,
            self.features,
            train,
            self.device,
        ) {
            Ok(hashed) => Ok(Some(hashed)),
            Err(error) if error.downcast_ref::<Diverged>().is_some() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One trained method on outer fold `fold`: the setting chosen on the inner split, then the
    /// retrained head on the outer database.
    fn trained_fold(
        &self,
        method: Method,
        bits: usize,
        seed: u64,
        fold: usize,
    ) -> anyhow::Result<FoldEval> {
        let grid = self.grid(method);
        // The grid in order of preference: best validation mAP first, ties in grid order.
        let ranked: Vec<Option<Setting>> = if grid.len() > 1 {
            let (train, validation) = &self.inner[fold];
            let mut scored: Vec<(Setting, f64)> = Vec::new();
            for &setting in &grid {
                // A rate too high for this loss is a setting the grid rules out, not a failed
                // benchmark.
                let Some(hashed) =
                    self.train_unless_diverged(method, Some(setting), bits, seed, train)?
                else {
                    continue;
                };
                let (metrics, _) = self.evaluate_hashed(&hashed, train, validation)?;
                scored.push((setting, metrics.map));
            }
            // Stable: a tie keeps the earlier (grid-order) setting first.
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored
                .into_iter()
                .map(|(setting, _)| Some(setting))
                .collect()
        } else {
            vec![grid.first().copied()]
        };
        let database = self.folds.others(fold);
        let queries = self.folds.members(fold);
        // A setting that trained on the inner split can still diverge on the larger outer
        // database: the next one in the ranking is taken then, and the report says which ran.
        let mut outcome = None;
        for &setting in &ranked {
            if let Some(hashed) =
                self.train_unless_diverged(method, setting, bits, seed, &database)?
            {
                outcome = Some((setting, hashed));
                break;
            }
        }
        let Some((chosen, hashed)) = outcome else {
            bail!(
                "{} ({bits} bits, seed {seed}) diverged on fold {} under every setting of its \
                 grid: lower --grid-lr",
                method.name(),
                fold + 1
            );
        };
        let (metrics, predicted) = self.evaluate_hashed(&hashed, &database, &queries)?;
        Ok(FoldEval {
            queries,
            metrics,
            predicted,
            chosen: (grid.len() > 1).then_some(chosen).flatten(),
        })
    }

    fn unsupervised_fold(
        &self,
        method: Method,
        bits: usize,
        seed: u64,
        fold: usize,
        pca: &mut BTreeMap<usize, Pca>,
    ) -> anyhow::Result<FoldEval> {
        let database = self.folds.others(fold);
        let queries = self.folds.members(fold);
        let database_features = select(&self.float_features, &database)?;
        let query_features = select(&self.float_features, &queries)?;
        let hash = if method == Method::Lsh {
            lsh(&database_features, bits, seed)?
        } else {
            // The eigensolve does not depend on the seed or the code length: once per fold, at
            // the longest code.
            if let std::collections::btree_map::Entry::Vacant(slot) = pca.entry(fold) {
                let longest = self.options.bits.iter().copied().max().unwrap_or(bits);
                slot.insert(Pca::fit(&database_features, longest)?);
            }
            let pca = pca.get(&fold).context("PCA fitted for this fold")?;
            let itq_options = ItqOptions {
                seed,
                ..Default::default()
            };
            itq_with_pca(&database_features, pca, bits, &itq_options)?.hash
        };
        let mut options = EvalOptions::new(method.name(), self.name.clone());
        options.classes = Some(self.classes);
        options.retrieval = self.retrieval;
        let report = evaluate(
            &hash.encode(&database_features)?,
            &self.labels_of(&database),
            &hash.encode(&query_features)?,
            &self.labels_of(&queries),
            None,
            &options,
        )?;
        Ok(FoldEval {
            queries,
            metrics: report.retrieval,
            predicted: None,
            chosen: None,
        })
    }

    fn feature_matrix(&self, method: Method) -> anyhow::Result<&FeatureMatrix> {
        match method {
            Method::LogisticBands | Method::KnnBands => self
                .bands
                .context("band statistics are needed for the band-statistics baselines"),
            _ => Ok(&self.float_features),
        }
    }

    /// Distances for kNN (float features) between two sample lists.
    fn knn_distances(
        &self,
        method: Method,
        database: &[usize],
        queries: &[usize],
    ) -> anyhow::Result<Vec<f32>> {
        let features = self.feature_matrix(method)?;
        let (d, q) = (select(features, database)?, select(features, queries)?);
        Ok(if method == Method::KnnBands {
            standardised_euclidean(&d, &q)
        } else {
            cosine_distances(&d, &q)
        })
    }

    fn logistic(
        &self,
        method: Method,
        l2: f64,
        train: &[usize],
        queries: &[usize],
    ) -> anyhow::Result<Vec<Vec<f64>>> {
        let features = self.feature_matrix(method)?;
        let options = LogisticOptions {
            l2,
            ..Default::default()
        };
        let model = Logistic::fit(
            &select(features, train)?,
            &self.labels_of(train),
            self.classes,
            &options,
        )?;
        Ok(model.probabilities(&select(features, queries)?)?)
    }

    /// A seed-free baseline on outer fold `fold`.
    fn baseline_fold(&self, method: Method, fold: usize) -> anyhow::Result<FoldEval> {
        let database = self.folds.others(fold);
        let queries = self.folds.members(fold);
        let database_labels = self.labels_of(&database);
        let grid = self.grid(method);
        let (train, validation) = &self.inner[fold];
        let validation_labels = self.labels_of(validation);
        let (distances, predicted, chosen) = match method {
            Method::Majority => {
                let majority = majority_class(&database_labels, self.classes);
                (
                    class_frequency_distances(&database_labels, queries.len(), self.classes),
                    vec![majority; queries.len()],
                    None,
                )
            }
            Method::LogisticBands | Method::LogisticFeatures => {
                let mut best: Option<(f64, f64)> = None;
                if grid.len() > 1 {
                    for setting in &grid {
                        let Setting::L2(l2) = *setting else { continue };
                        let p = self.logistic(method, l2, train, validation)?;
                        let score = log_loss(&p, &validation_labels);
                        if best.is_none_or(|(_, s)| score < s) {
                            best = Some((l2, score));
                        }
                    }
                }
                let l2 = best.map(|(l2, _)| l2).or(match grid.first() {
                    Some(Setting::L2(l2)) => Some(*l2),
                    _ => None,
                });
                let l2 = l2.context("give at least one L2 penalty")?;
                let p = self.logistic(method, l2, &database, &queries)?;
                let predicted = p
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                            .unwrap_or(0)
                    })
                    .collect();
                (
                    class_probability_distances(&p, &database_labels),
                    predicted,
                    (grid.len() > 1).then_some(Setting::L2(l2)),
                )
            }
            Method::KnnBands | Method::KnnFeatures => {
                let ks: Vec<usize> = grid
                    .iter()
                    .filter_map(|s| match s {
                        Setting::K(k) => Some(*k),
                        _ => None,
                    })
                    .collect();
                let k = if ks.len() > 1 {
                    let inner = self.knn_distances(method, train, validation)?;
                    let train_labels = self.labels_of(train);
                    let mut best: Option<(usize, usize)> = None;
                    for &k in &ks {
                        let right = knn_predict(&inner, &train_labels, k, self.classes)
                            .iter()
                            .zip(&validation_labels)
                            .filter(|(p, t)| p == t)
                            .count();
                        if best.is_none_or(|(_, r)| right > r) {
                            best = Some((k, right));
                        }
                    }
                    best.map(|(k, _)| k)
                } else {
                    ks.first().copied()
                };
                let k = k.context("give at least one k")?;
                let distances = self.knn_distances(method, &database, &queries)?;
                let predicted = knn_predict(&distances, &database_labels, k, self.classes);
                (
                    distances,
                    predicted,
                    (ks.len() > 1).then_some(Setting::K(k)),
                )
            }
            _ => bail!("{} is not a seed-free baseline", method.name()),
        };
        let metrics = self.float_ranking(&distances, &database, &queries)?;
        Ok(FoldEval {
            queries,
            metrics,
            predicted: Some(predicted),
            chosen,
        })
    }

    /// Pools the folds of one run: every sample is a query in exactly one fold.
    fn pool(
        &self,
        folds: Vec<FoldEval>,
        seed: Option<u64>,
        seconds: f64,
    ) -> anyhow::Result<PooledRun> {
        let n = self.labels.len();
        let mut average_precision = vec![f64::NAN; n];
        let mut predicted: Option<Vec<usize>> = folds
            .iter()
            .all(|f| f.predicted.is_some())
            .then(|| vec![0; n]);
        let shortest = folds
            .iter()
            .map(|f| f.metrics.precision_at_k.len())
            .min()
            .unwrap_or(0);
        let mut precision_at_k = vec![0.0; shortest];
        let mut recall_at_k = vec![0.0; shortest];
        let radii = folds
            .iter()
            .map(|f| f.metrics.radius.len())
            .min()
            .unwrap_or(0);
        let mut radius = vec![(0.0, 0.0); radii];
        for fold in &folds {
            let weight = fold.queries.len() as f64 / n as f64;
            for (q, &sample) in fold.queries.iter().enumerate() {
                average_precision[sample] = fold.metrics.average_precision[q];
                if let (Some(all), Some(mine)) = (predicted.as_mut(), fold.predicted.as_ref()) {
                    all[sample] = mine[q];
                }
            }
            for k in 0..shortest {
                precision_at_k[k] += weight * fold.metrics.precision_at_k[k];
                recall_at_k[k] += weight * fold.metrics.recall_at_k[k];
            }
            for (r, point) in radius.iter_mut().zip(&fold.metrics.radius) {
                r.0 += weight * point.recall;
                r.1 += weight * point.precision;
            }
        }
        if let Some(sample) = average_precision.iter().position(|v| v.is_nan()) {
            bail!("sample {sample} was never a query: the folds do not cover the data set");
        }
        let pr_curve = if radii > 0 {
            radius
        } else {
            recall_at_k
                .into_iter()
                .zip(precision_at_k.iter().copied())
                .collect()
        };
        let classification = predicted
            .as_ref()
            .map(|p| classification_metrics(p, &self.labels, self.classes))
            .transpose()?;
        let per_class_f1 = classification
            .as_ref()
            .map(|c| ConfusionMatrix::per_class_f1(&c.confusion));
        let mut chosen = vec![None; self.folds.folds];
        for (f, fold) in folds.iter().enumerate() {
            chosen[f] = fold.chosen;
        }
        Ok(PooledRun {
            seed,
            map: average_precision.iter().sum::<f64>() / n as f64,
            classification,
            per_class_f1,
            precision_at_k,
            pr_curve,
            chosen,
            average_precision,
            predicted,
            seconds,
        })
    }
}

fn summarise(method: Method, bits: Option<usize>, runs: Vec<PooledRun>) -> MethodResult {
    let of = |f: &dyn Fn(&ClassificationMetrics) -> f64| {
        let values: Option<Vec<f64>> = runs
            .iter()
            .map(|r| r.classification.as_ref().map(f))
            .collect();
        values.and_then(|v| Spread::of(&v))
    };
    let maps: Vec<f64> = runs.iter().map(|r| r.map).collect();
    MethodResult {
        method: method.name().to_string(),
        bits,
        map: Spread::of(&maps).unwrap_or(Spread {
            mean: f64::NAN,
            std: f64::NAN,
            n: 0,
        }),
        overall_accuracy: of(&|c| c.overall_accuracy),
        average_accuracy: of(&|c| c.average_accuracy),
        kappa: of(&|c| c.kappa),
        runs,
        dhcnn_minus_this_map: None,
        dhcnn_minus_this_oa: None,
    }
}

/// Per-sample AP and correctness averaged over a method's seeds.
fn per_query_means(result: &MethodResult, labels: &[usize]) -> (Vec<f64>, Option<Vec<f64>>) {
    let n = labels.len();
    let seeds = result.runs.len().max(1) as f64;
    let mut ap = vec![0.0; n];
    let mut correct = Some(vec![0.0; n]);
    for run in &result.runs {
        for (a, v) in ap.iter_mut().zip(&run.average_precision) {
            *a += v / seeds;
        }
        match (&mut correct, &run.predicted) {
            (Some(c), Some(p)) => {
                for ((c, p), t) in c.iter_mut().zip(p).zip(labels) {
                    *c += f64::from(u8::from(p == t)) / seeds;
                }
            }
            _ => correct = None,
        }
    }
    (ap, correct)
}

/// Runs the protocol on `features` (`[samples, D]`, sample order) with each sample's `blocks`
/// and, for the band baselines, its band statistics.
pub fn cv_on_features(
    dataset: &Dataset,
    features: &Tensor,
    blocks: &[Block],
    bands: Option<&FeatureMatrix>,
    options: &CvOptions,
    device: Device,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<CvOutcome> {
    let started = Instant::now();
    if options.bits.is_empty() || options.seeds.is_empty() || options.methods.is_empty() {
        bail!("give at least one code length, one seed and one method");
    }
    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let classes = dataset.classes.len();
    let folds = assign_folds(blocks, &labels, classes, options.folds, options.fold_seed)?;
    let inner = (0..options.folds)
        .map(|f| inner_split(&folds, f, blocks, &labels, classes, options.fold_seed))
        .collect::<Result<Vec<_>, _>>()?;
    let cpu = features.to_device(Device::Cpu).to_kind(Kind::Float);
    let dims = cpu.size()[1] as usize;
    let float_features = FeatureMatrix::from_flat(Vec::try_from(cpu.flatten(0, -1))?, dims)?;
    let spatial_blocks = blocks
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let context = Shared {
        dataset,
        features,
        float_features,
        bands,
        labels,
        classes,
        folds,
        inner,
        options,
        device,
        name: data_set_name(&options.base.data),
        retrieval: RetrievalOptions {
            ties: TieRule::Expected,
            ..Default::default()
        },
    };
    progress(&format!(
        "{} tiles, {classes} classes, {} folds over {spatial_blocks} blocks: {} queries per fold",
        context.labels.len(),
        options.folds,
        context
            .folds
            .counts
            .iter()
            .map(|c| c.iter().sum::<usize>().to_string())
            .collect::<Vec<_>>()
            .join("/")
    ));

    // Chance: the pooled expected AP of a ranking that ties every database item.
    let mut random = Vec::new();
    for f in 0..options.folds {
        let database = context.folds.others(f);
        let queries = context.folds.members(f);
        let zeros = vec![0.0f32; database.len() * queries.len()];
        let metrics = context.float_ranking(&zeros, &database, &queries)?;
        random.push(FoldEval {
            queries,
            metrics,
            predicted: None,
            chosen: None,
        });
    }
    let random_map = context.pool(random, None, 0.0)?.map;
    let mut counts = vec![0usize; classes];
    for &l in &context.labels {
        counts[l] += 1;
    }
    let chance = Chance {
        uniform_oa: 1.0 / classes as f64,
        majority_share: counts.iter().copied().max().unwrap_or(0) as f64
            / context.labels.len() as f64,
        random_map,
    };

    let mut results: Vec<MethodResult> = Vec::new();
    let mut pca = BTreeMap::new();
    for &method in &options.methods {
        if !method.hashes() {
            let t = Instant::now();
            let folds = (0..options.folds)
                .map(|f| context.baseline_fold(method, f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let run = context.pool(folds, None, t.elapsed().as_secs_f64())?;
            progress(&describe(method, None, &run));
            results.push(summarise(method, None, vec![run]));
            continue;
        }
        for &bits in &options.bits {
            let mut runs = Vec::new();
            for &seed in &options.seeds {
                let t = Instant::now();
                let folds = (0..options.folds)
                    .map(|f| match method {
                        Method::Lsh | Method::Itq => {
                            context.unsupervised_fold(method, bits, seed, f, &mut pca)
                        }
                        _ => context.trained_fold(method, bits, seed, f),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let run = context.pool(folds, Some(seed), t.elapsed().as_secs_f64())?;
                progress(&describe(method, Some(bits), &run));
                runs.push(run);
            }
            results.push(summarise(method, Some(bits), runs));
        }
    }

    // DHCNN against every other method, at the same code length (baselines: at each DHCNN
    // length, the row keeps the longest).
    let longest = options.bits.iter().copied().max().unwrap_or(0);
    let dhcnn: BTreeMap<usize, (Vec<f64>, Option<Vec<f64>>)> = results
        .iter()
        .filter(|r| r.method == Method::Dhcnn.name())
        .filter_map(|r| r.bits.map(|b| (b, per_query_means(r, &context.labels))))
        .collect();
    for result in &mut results {
        if result.method == Method::Dhcnn.name() {
            continue;
        }
        let Some((dhcnn_ap, dhcnn_correct)) = dhcnn.get(&result.bits.unwrap_or(longest)) else {
            continue;
        };
        let (ap, correct) = per_query_means(result, &context.labels);
        result.dhcnn_minus_this_map = Some(paired_bootstrap(
            dhcnn_ap,
            &ap,
            options.bootstrap,
            options.fold_seed,
        )?);
        if let (Some(a), Some(b)) = (dhcnn_correct, correct) {
            result.dhcnn_minus_this_oa = Some(paired_bootstrap(
                a,
                &b,
                options.bootstrap,
                options.fold_seed,
            )?);
        }
    }

    Ok(CvOutcome {
        dataset: context.name.clone(),
        tiles: context.labels.len(),
        classes: dataset.classes.clone(),
        fold_source: String::new(),
        spatial_blocks,
        folds: context.folds.clone(),
        seeds: options.seeds.clone(),
        bits: options.bits.clone(),
        grid: options.grid.clone(),
        ties: TieRule::Expected,
        bootstrap_resamples: options.bootstrap,
        band_statistics: None,
        chance,
        methods: results,
        backbone_seconds: 0.0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn describe(method: Method, bits: Option<usize>, run: &PooledRun) -> String {
    let chosen: Vec<String> = run
        .chosen
        .iter()
        .map(|c| c.map_or_else(|| "-".into(), |s| s.to_string()))
        .collect();
    format!(
        "{:>22} {} seed {}: mAP {:.4}{} ({:.1} s){}",
        method.name(),
        bits.map_or_else(|| "   -   ".into(), |b| format!("{b:>2} bits")),
        run.seed.map_or_else(|| "-".into(), |s| s.to_string()),
        run.map,
        run.classification
            .as_ref()
            .map(|c| format!(", OA {:.4}", c.overall_accuracy))
            .unwrap_or_default(),
        run.seconds,
        if run.chosen.iter().any(Option::is_some) {
            format!("; chosen per fold: {}", chosen.join(" | "))
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{options as single_split_options, synthetic};
    use super::*;

    fn cv_options(methods: Vec<Method>) -> CvOptions {
        let single = single_split_options();
        CvOptions {
            base: TrainConfig {
                epochs: 10,
                ..single.base
            },
            bits: vec![16],
            seeds: vec![0, 1],
            methods,
            folds: 3,
            fold_seed: 0,
            grid: Grid {
                dhcnn_beta: vec![1.0, 5.0],
                dhcnn_eta: vec![0.2],
                dpsh_beta: vec![1.0],
                hashnet_alpha: vec![0.05, 0.2],
                csq_lambda: vec![1e-4],
                greedy_hash_alpha: vec![0.1],
                lr: vec![0.01],
                l2: vec![1e-2, 1.0],
                knn_k: vec![1, 5],
            },
            bootstrap: 500,
        }
    }

    /// Synthetic clusters standing in for backbone features (never a result), in blocks of 4.
    fn blocks(n: usize) -> Vec<Block> {
        (0..n).map(|i| ("scene".to_string(), i / 4, 0)).collect()
    }

    #[test]
    fn every_method_pools_every_tile_and_dhcnn_is_compared_with_all() {
        crate::torch::init_for_tests();
        let (dataset, features) = synthetic();
        let n = dataset.samples.len();
        let cpu = features.to_kind(Kind::Float);
        // Band statistics: the first four feature columns stand in.
        let narrow = cpu.narrow(1, 0, 4).contiguous();
        let bands =
            FeatureMatrix::from_flat(Vec::try_from(narrow.flatten(0, -1)).expect("values"), 4)
                .expect("bands");
        let options = cv_options(vec![
            Method::Majority,
            Method::LogisticBands,
            Method::KnnBands,
            Method::KnnFeatures,
            Method::Lsh,
            Method::HashNet,
            Method::Dhcnn,
        ]);
        let mut lines = 0;
        let outcome = cv_on_features(
            &dataset,
            &features,
            &blocks(n),
            Some(&bands),
            &options,
            Device::Cpu,
            &mut |_| lines += 1,
        )
        .expect("cross-validation runs");
        assert_eq!(outcome.tiles, n);
        assert_eq!(outcome.methods.len(), 7);
        for result in &outcome.methods {
            for run in &result.runs {
                assert_eq!(run.average_precision.len(), n, "{}", result.method);
                assert!(run
                    .average_precision
                    .iter()
                    .all(|ap| (0.0..=1.0).contains(ap)));
                assert_eq!(run.chosen.len(), 3);
            }
            if result.method != "DHCNN" {
                assert!(result.dhcnn_minus_this_map.is_some(), "{}", result.method);
            }
        }
        let find = |name: &str| {
            outcome
                .methods
                .iter()
                .find(|r| r.method == name)
                .expect("method")
        };
        let dhcnn = find("DHCNN");
        assert_eq!(dhcnn.runs.len(), 2);
        // DHCNN's grid has two settings, so every fold reports its choice.
        assert!(dhcnn
            .runs
            .iter()
            .all(|r| r.chosen.iter().all(Option::is_some)));
        // HashNet's α is chosen the same way, from its own grid.
        assert!(find("HashNet")
            .runs
            .iter()
            .all(|r| r.chosen.iter().all(|setting| matches!(
                setting,
                Some(Setting::Trained {
                    weight: Some(LossWeight::Alpha(a)),
                    eta: None,
                    lr: Some(_),
                }) if [0.05, 0.2].contains(a)
            ))));
        // Majority: near-chance κ (each fold predicts its own database's majority class, so the
        // pooled labels are not all one class) and a query-ignoring ranking, far below a
        // supervised method.
        let majority = find("majority class");
        let kappa = majority.kappa.expect("kappa").mean;
        assert!(kappa.abs() < 0.15, "{kappa}");
        assert!(dhcnn.map.mean > majority.map.mean + 0.2);
        let interval = find("majority class")
            .dhcnn_minus_this_map
            .expect("interval");
        assert!(interval.low > 0.0, "{interval:?}");
        assert!(outcome.chance.random_map < dhcnn.map.mean);
    }
}
