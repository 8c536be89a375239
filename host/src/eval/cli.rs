//! `orbhash eval` (a checkpoint's report) and `orbhash bench retrieval` (every method compared on
//! one data set): their options and what they print.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::model::backbone::BackboneKind;
use crate::torch::DeviceChoice;
use crate::train::cli::pretrained_weights;
use crate::train::loss::{Combination, LossConfig};
use crate::train::schedule::Schedule;
use crate::train::trainer::BackboneTraining;
use crate::train::TrainConfig;

use super::bench::{retrieval_bench, write_outcome, Method, RetrievalBenchOptions};
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
    ClassificationOnly,
    Dhcnn,
}

impl From<MethodArg> for Method {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Lsh => Self::Lsh,
            MethodArg::Itq => Self::Itq,
            MethodArg::Dpsh => Self::Dpsh,
            MethodArg::ClassificationOnly => Self::ClassificationOnly,
            MethodArg::Dhcnn => Self::Dhcnn,
        }
    }
}

/// Defaults are the main job's frozen-head settings (scripts/main-job.sh), not the paper's
/// fine-tuning ones: a linear head on frozen features barely moves at the paper's rate.
#[derive(Debug, Args)]
pub struct RetrievalBenchArgs {
    #[arg(long, default_value = ".cache/data/s2-brandenburg")]
    pub data: PathBuf,
    /// Code lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    pub bits: Vec<usize>,
    /// Number of seeds (0, 1, …): initialisation and batch order, LSH's projections, ITQ's start.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Methods to run, comma-separated [default: all].
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
    /// DHCNN's and classification-only's Θ scale (DPSH always uses 2).
    #[arg(long, default_value_t = 32.0)]
    pub scale: f64,
    /// DHCNN's η (classification-only uses 0, DPSH 1).
    #[arg(long, default_value_t = 0.2)]
    pub eta: f64,
    /// β: weight of the quantisation term (DHCNN and DPSH).
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
        Ok(RetrievalBenchOptions {
            base,
            bits: self.bits.clone(),
            seeds: (0..self.seeds).collect(),
            methods,
        })
    }
}

pub fn run_retrieval_bench(args: &RetrievalBenchArgs) -> anyhow::Result<()> {
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
