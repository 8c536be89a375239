//! `orbhash eval` (a checkpoint's report) and `orbhash bench retrieval` (every method compared on
//! one data set): their options and what they print.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::model::backbone::BackboneKind;
use crate::torch::DeviceChoice;
use crate::train::cli::{pretrained_weights, BandsArg};
use crate::train::loss::{Combination, LossConfig};
use crate::train::schedule::Schedule;
use crate::train::trainer::BackboneTraining;
use crate::train::TrainConfig;

use super::bench::{
    cross_validated_bench, retrieval_bench, write_outcome, CvOptions, Grid, Method,
    RetrievalBenchOptions,
};
use super::checkpoint::evaluate_checkpoint;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `orbhash train`.
    pub checkpoint: PathBuf,
    /// Evaluate on this data set instead of the one the checkpoint was trained on (same classes).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where report.json and the plots go [default: beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => args
            .checkpoint
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let (report, written) =
        evaluate_checkpoint(&args.checkpoint, args.data.as_deref(), &out, args.device)?;
    if args.json {
        println!("{}", report.to_json()?);
    } else {
        println!("{}", report.to_table());
        for path in written {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// The hash-training methods `--methods` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    Lsh,
    Itq,
    Dpsh,
    /// HashNet: weighted pairwise likelihood of tanh codes with continuation.
    Hashnet,
    /// CSQ: each class's code pulled to a Hadamard hash centre.
    Csq,
    /// GreedyHash: a classifier on the signs, straight-through gradient.
    GreedyHash,
    ClassificationOnly,
    Dhcnn,
    /// Majority class; every query ranks the database by class frequency.
    Majority,
    /// Logistic regression on per-band mean/std (and NDVI's).
    LrBands,
    /// kNN on per-band statistics (standardised Euclidean).
    KnnBands,
    /// kNN on the frozen backbone features (cosine).
    KnnFeatures,
    /// Logistic regression on the frozen backbone features (a linear probe).
    LrFeatures,
}

impl From<MethodArg> for Method {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Lsh => Self::Lsh,
            MethodArg::Itq => Self::Itq,
            MethodArg::Dpsh => Self::Dpsh,
            MethodArg::Hashnet => Self::HashNet,
            MethodArg::Csq => Self::Csq,
            MethodArg::GreedyHash => Self::GreedyHash,
            MethodArg::ClassificationOnly => Self::ClassificationOnly,
            MethodArg::Dhcnn => Self::Dhcnn,
            MethodArg::Majority => Self::Majority,
            MethodArg::LrBands => Self::LogisticBands,
            MethodArg::KnnBands => Self::KnnBands,
            MethodArg::KnnFeatures => Self::KnnFeatures,
            MethodArg::LrFeatures => Self::LogisticFeatures,
        }
    }
}

/// Defaults are the main job's frozen-head settings (scripts/main-job.sh), not the paper's
/// fine-tuning ones: a linear head on frozen features barely moves at the paper's rate.
#[derive(Debug, Args)]
pub struct RetrievalBenchArgs {
    #[arg(long, default_value = ".cache/data/s2-brandenburg")]
    pub data: PathBuf,
    /// Spatial-block cross-validation folds; 1 = the data set's own database/query split (the
    /// bench before issue 16, stable tie rule, hashing methods only).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Code lengths, comma-separated [default: 64 with --folds ≥ 2, 16,32,64 with --folds 1].
    #[arg(long, value_delimiter = ',')]
    pub bits: Vec<usize>,
    /// Seeds, comma-separated: initialisation and batch order, LSH's projections, ITQ's start.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Seed of the fold assignment, the inner splits and the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub fold_seed: u64,
    /// DHCNN's β values for the inner-fold choice (every β with every η).
    #[arg(long, value_delimiter = ',', default_value = "1,5,25")]
    pub grid_beta: Vec<f64>,
    /// DHCNN's η values for the inner-fold choice.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.5")]
    pub grid_eta: Vec<f64>,
    /// DPSH's β values for the inner-fold choice.
    #[arg(long, value_delimiter = ',', default_value = "1,5,25")]
    pub grid_dpsh_beta: Vec<f64>,
    /// HashNet's α values (inner-product scale) for the inner-fold choice.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1,0.2,0.5")]
    pub grid_hashnet_alpha: Vec<f64>,
    /// CSQ's λ values (quantisation weight) for the inner-fold choice.
    #[arg(long, value_delimiter = ',', default_value = "0.0001,0.01,1")]
    pub grid_csq_lambda: Vec<f64>,
    /// GreedyHash's α values (weight of the cubic pull to ±1) for the inner-fold choice.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    pub grid_greedy_hash_alpha: Vec<f64>,
    /// First learning rates for the inner-fold choice, for every trained method (the schedule
    /// keeps the ratio --lr-end / --lr); with --folds ≥ 2 these replace --lr.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1")]
    pub grid_lr: Vec<f64>,
    /// Logistic regression's L2 penalties for the inner-fold choice (by validation log-loss).
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.01,0.1,1")]
    pub grid_l2: Vec<f64>,
    /// kNN's k values for the inner-fold choice (by validation OA).
    #[arg(long, value_delimiter = ',', default_value = "1,5,15")]
    pub grid_k: Vec<usize>,
    /// Bootstrap resamples over queries for DHCNN's intervals.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Methods to run, comma-separated [default: all; the simple baselines (majority, lr-*,
    /// knn-*) need --folds ≥ 2].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<MethodArg>,
    /// Write every run and the table as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the table as markdown too (for docs/results.md).
    #[arg(long)]
    pub markdown: bool,
    #[arg(long, default_value = "effnet-lite0")]
    pub backbone: BackboneKind,
    #[arg(long, default_value = "auto")]
    pub pretrained: String,
    #[arg(long, default_value_t = 128)]
    pub input_size: u32,
    /// Which bands the trained methods' backbone reads (the band-statistics baselines always
    /// use every band).
    #[arg(long, value_enum, default_value = "all")]
    pub bands: BandsArg,
    /// As `orbhash train --clip-percentile`.
    #[arg(long, default_value_t = crate::train::trainer::DEFAULT_CLIP_PERCENTILE)]
    pub clip_percentile: f64,
    /// DHCNN's and classification-only's Θ scale (DPSH always uses 2).
    #[arg(long, default_value_t = 32.0)]
    pub scale: f64,
    /// DHCNN's η (classification-only uses 0, DPSH 1); with --folds ≥ 2 the grid's values.
    #[arg(long, default_value_t = 0.2)]
    pub eta: f64,
    /// β: weight of the quantisation term (DHCNN and DPSH); with --folds ≥ 2 the grid's values.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub lr_end: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

impl RetrievalBenchArgs {
    pub fn options(&self) -> anyhow::Result<RetrievalBenchOptions> {
        let base = TrainConfig {
            data: self.data.clone(),
            backbone: self.backbone,
            pretrained: pretrained_weights(&self.pretrained, self.backbone)?,
            input_size: self.input_size,
            bands: self.bands.into(),
            clip_percentile: self.clip_percentile,
            loss: LossConfig {
                scale: self.scale,
                combination: Combination::MatConvNet {
                    eta: self.eta,
                    beta: self.beta,
                },
                ..LossConfig::default()
            },
            schedule: Schedule::LogDecay {
                start: self.lr,
                end: self.lr_end,
            },
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            backbone_training: BackboneTraining::Frozen,
            ..TrainConfig::default()
        };
        let methods = if self.methods.is_empty() {
            Method::ALL.to_vec()
        } else {
            self.methods.iter().map(|&m| m.into()).collect()
        };
        let bits = if self.bits.is_empty() {
            vec![16, 32, 64]
        } else {
            self.bits.clone()
        };
        Ok(RetrievalBenchOptions {
            base,
            bits,
            seeds: self.seeds.clone(),
            methods,
        })
    }

    /// The cross-validated bench's options (`--folds` ≥ 2).
    pub fn cv_options(&self) -> anyhow::Result<CvOptions> {
        let single = self.options()?;
        let methods = if self.methods.is_empty() {
            Method::CROSS_VALIDATED.to_vec()
        } else {
            single.methods
        };
        Ok(CvOptions {
            base: single.base,
            bits: if self.bits.is_empty() {
                vec![64]
            } else {
                self.bits.clone()
            },
            seeds: self.seeds.clone(),
            methods,
            folds: self.folds,
            fold_seed: self.fold_seed,
            grid: Grid {
                dhcnn_beta: self.grid_beta.clone(),
                dhcnn_eta: self.grid_eta.clone(),
                dpsh_beta: self.grid_dpsh_beta.clone(),
                hashnet_alpha: self.grid_hashnet_alpha.clone(),
                csq_lambda: self.grid_csq_lambda.clone(),
                greedy_hash_alpha: self.grid_greedy_hash_alpha.clone(),
                lr: self.grid_lr.clone(),
                l2: self.grid_l2.clone(),
                knn_k: self.grid_k.clone(),
            },
            bootstrap: self.bootstrap,
        })
    }
}

fn run_cross_validated(args: &RetrievalBenchArgs) -> anyhow::Result<()> {
    let options = args.cv_options()?;
    let outcome = cross_validated_bench(&options, args.device, &mut |line| eprintln!("{line}"))?;
    println!(
        "backbone features in {:.1} s; protocol in {:.1} s",
        outcome.backbone_seconds, outcome.seconds
    );
    if let Some(source) = &outcome.band_statistics {
        println!("band statistics: {source}");
    }
    println!("{}", outcome.to_terminal());
    if args.markdown {
        println!("{}", outcome.to_markdown());
    }
    if let Some(path) = &args.out {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&outcome)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

pub fn run_retrieval_bench(args: &RetrievalBenchArgs) -> anyhow::Result<()> {
    match args.folds {
        0 => anyhow::bail!("--folds must be 1 (the data set's own split) or more"),
        1 => {}
        _ => return run_cross_validated(args),
    }
    let options = args.options()?;
    let outcome = retrieval_bench(&options, args.device, &mut |run| {
        eprintln!(
            "{:>20} {:>3} bits seed {}: mAP {:.4}{} ({:.1} s)",
            run.method,
            run.bits,
            run.seed,
            run.map,
            run.overall_accuracy
                .map(|oa| format!(", OA {oa:.4}"))
                .unwrap_or_default(),
            run.seconds
        );
    })?;
    println!(
        "{} database / {} query images; backbone features in {:.1} s",
        outcome.database, outcome.queries, outcome.backbone_seconds
    );
    println!("{}", outcome.table.to_terminal());
    if args.markdown {
        println!("{}", outcome.table.to_markdown());
    }
    if let Some(path) = &args.out {
        write_outcome(&outcome, path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
