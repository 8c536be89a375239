//! `orbhash train`: its options and what it prints.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::data::Augment;
use crate::model::backbone::BackboneKind;
use crate::torch::DeviceChoice;

use super::loss::{Combination, LossConfig};
use super::schedule::Schedule;
use super::TrainConfig;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CombinationArg {
    /// The paper's MatConvNet code: backbone and hash layer get η∇(L_p + β L_q) + (1−η)∇L_c,
    /// the classifier ∇L_c only.
    Matconvnet,
    /// The PyTorch port: (1−η)(L_p + λ L_q) + η L_c.
    Pytorch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// From --lr down to --lr-end, log-uniformly over the epochs (the paper's).
    LogDecay,
    /// --lr times --lr-factor every --lr-every epochs (the PyTorch port's).
    Step,
    Constant,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AugmentArg {
    None,
    Flips,
    Rot90,
    /// Flips and 90° rotations: all eight orientations of a square.
    Dihedral,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data set root: `<root>/<class>/<image>`, with the manifest.json of `orbhash data build`
    /// (its spatially blocked split is used) or without (the paper's per-class split).
    #[arg(long, default_value = ".cache/data/s2-brandenburg")]
    pub data: PathBuf,
    /// Where the checkpoint (checkpoint.safetensors) and metrics log (metrics.jsonl) go.
    #[arg(long, default_value = "runs/dhcnn")]
    pub out: PathBuf,
    /// Backbone: effnet-lite0, alexnet, resnet18 or small-cnn.
    #[arg(long, default_value = "effnet-lite0")]
    pub backbone: BackboneKind,
    /// Pretrained backbone weights (safetensors). `auto`: the fetched EfficientNet-Lite0
    /// ImageNet weights for effnet-lite0 (imported on first use), none for the others; `none`
    /// trains from scratch.
    #[arg(long, default_value = "auto")]
    pub pretrained: String,
    /// Code length K in bits: 16, 32, 48, 64 or 128.
    #[arg(long, default_value_t = 64)]
    pub bits: i64,
    /// Model input edge in pixels; tiles are resized to it.
    #[arg(long, default_value_t = 128)]
    pub input_size: u32,
    /// Θ = uᵀv / scale in the pairwise term: 32 (the paper's code) or 2 (DPSH).
    #[arg(long, default_value_t = 32.0)]
    pub scale: f64,
    #[arg(long, value_enum, default_value = "matconvnet")]
    pub combination: CombinationArg,
    /// η: weight of the hashing terms (matconvnet) or of the classification term (pytorch).
    #[arg(long, default_value_t = 0.2)]
    pub eta: f64,
    /// β (matconvnet) or λ (pytorch): weight of the quantisation term.
    #[arg(long, default_value_t = 25.0)]
    pub beta: f64,
    /// Train without the classifier: DPSH's loss (use with --scale 2).
    #[arg(long)]
    pub no_classifier: bool,
    #[arg(long, value_enum, default_value = "log-decay")]
    pub schedule: ScheduleArg,
    /// Initial learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Final learning rate of --schedule log-decay.
    #[arg(long, default_value_t = 1e-5)]
    pub lr_end: f64,
    /// Epochs between drops of --schedule step.
    #[arg(long, default_value_t = 30)]
    pub lr_every: usize,
    /// Factor of each drop of --schedule step.
    #[arg(long, default_value_t = 0.1)]
    pub lr_factor: f64,
    /// SGD momentum (the paper's code uses none).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Seed of initialisation, batch order and augmentation: runs on the CPU are repeatable.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the pretrained backbone fixed and train the hash layer and classifier on its cached
    /// features: minutes on a CPU.
    #[arg(long)]
    pub freeze_backbone: bool,
    #[arg(long, value_enum, default_value = "none")]
    pub augment: AugmentArg,
    /// Share of each class used as queries, for data sets without a manifest.
    #[arg(long, default_value_t = 0.2)]
    pub query_ratio: f64,
    /// `auto` (CUDA when usable), `cpu` or `cuda`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Continue the run of this checkpoint from its last complete epoch (same options).
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

/// Resolves `--pretrained`: `auto` imports the fetched EfficientNet-Lite0 checkpoint once.
pub fn pretrained_weights(choice: &str, backbone: BackboneKind) -> anyhow::Result<Option<PathBuf>> {
    match choice {
        "none" => Ok(None),
        "auto" if backbone == BackboneKind::EffnetLite0 => {
            let converted = crate::assets::in_cache("weights/effnet-lite0.safetensors");
            if !converted.is_file() {
                let checkpoint = crate::assets::efficientnet_lite0_checkpoint().context(
                    "the EfficientNet-Lite0 weights are not fetched: run scripts/setup.sh, or \
                     pass --pretrained none",
                )?;
                crate::model::pth::import(&checkpoint, &converted)?;
            }
            Ok(Some(converted))
        }
        "auto" => {
            eprintln!("orbhash: no pretrained weights are fetched for {backbone}; training it from scratch");
            Ok(None)
        }
        path => Ok(Some(PathBuf::from(path))),
    }
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let combination = match self.combination {
            CombinationArg::Matconvnet => Combination::MatConvNet {
                eta: self.eta,
                beta: self.beta,
            },
            CombinationArg::Pytorch => Combination::PyTorchPort {
                eta: self.eta,
                lambda: self.beta,
            },
        };
        let schedule = match self.schedule {
            ScheduleArg::LogDecay => Schedule::LogDecay {
                start: self.lr,
                end: self.lr_end,
            },
            ScheduleArg::Step => Schedule::Step {
                start: self.lr,
                factor: self.lr_factor,
                every: self.lr_every,
            },
            ScheduleArg::Constant => Schedule::Constant { rate: self.lr },
        };
        let augment = match self.augment {
            AugmentArg::None => Augment::default(),
            AugmentArg::Flips => Augment {
                flips: true,
                rot90: false,
            },
            AugmentArg::Rot90 => Augment {
                flips: false,
                rot90: true,
            },
            AugmentArg::Dihedral => Augment {
                flips: true,
                rot90: true,
            },
        };
        Ok(TrainConfig {
            data: self.data.clone(),
            backbone: self.backbone,
            pretrained: pretrained_weights(&self.pretrained, self.backbone)?,
            bits: self.bits,
            input_size: self.input_size,
            loss: LossConfig {
                scale: self.scale,
                combination,
            },
            without_classifier: self.no_classifier,
            schedule,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            freeze_backbone: self.freeze_backbone,
            augment,
            query_ratio: self.query_ratio,
        })
    }
}

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

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let outcome = super::train(&config, args.device, &args.out, args.resume.as_deref())?;
    println!(
        "{} after {} epoch(s): loss {:.4}, {:.0} images/s in the last step; checkpoint {}",
        if outcome.interrupted {
            "stopped"
        } else {
            "trained"
        },
        outcome.epochs_done,
        outcome.final_loss,
        outcome.images_per_second,
        outcome.checkpoint.display()
    );
    if !outcome.interrupted {
        run_eval(&EvalArgs {
            checkpoint: outcome.checkpoint,
            data: None,
            out: None,
            json: false,
            device: args.device,
        })?;
    }
    Ok(())
}

pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => args
            .checkpoint
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let (report, written) = super::evaluate::evaluate_checkpoint(
        &args.checkpoint,
        args.data.as_deref(),
        &out,
        args.device,
    )?;
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

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// LSH, ITQ, DPSH, classification-only and DHCNN on one data set, split and set of cached
    /// frozen backbone features: one table of mAP (mean ± std over seeds) per code length and OA.
    Retrieval(Box<RetrievalBenchArgs>),
    /// Time one full fine-tuning step (forward, DHCNN loss, backward, SGD update) on the CPU at
    /// each thread count; its PyTorch peer is scripts/bench/train_step_torch.py.
    TrainStep(TrainStepArgs),
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

impl From<MethodArg> for super::bench::Method {
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
    pub fn options(&self) -> anyhow::Result<super::bench::RetrievalBenchOptions> {
        use super::bench::Method;
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
            },
            schedule: Schedule::LogDecay {
                start: self.lr,
                end: self.lr_end,
            },
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            freeze_backbone: true,
            ..TrainConfig::default()
        };
        let methods = if self.methods.is_empty() {
            Method::ALL.to_vec()
        } else {
            self.methods.iter().map(|&m| m.into()).collect()
        };
        Ok(super::bench::RetrievalBenchOptions {
            base,
            bits: self.bits.clone(),
            seeds: (0..self.seeds).collect(),
            methods,
        })
    }
}

#[derive(Debug, Args)]
pub struct TrainStepArgs {
    /// libtorch intra-op thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub input_size: u32,
    #[arg(long, default_value_t = 64)]
    pub bits: i64,
    /// Classes of the classifier (s2-brandenburg has 7).
    #[arg(long, default_value_t = 7)]
    pub classes: usize,
    /// Rows of the memory bank (s2-brandenburg's database has 159).
    #[arg(long, default_value_t = 159)]
    pub bank: usize,
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Print the timings as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Retrieval(args) => {
            let options = args.options()?;
            let outcome = super::bench::retrieval_bench(&options, args.device, &mut |run| {
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
                super::bench::write_outcome(&outcome, path)?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        BenchCommand::TrainStep(args) => {
            let options = super::step_bench::TrainStepOptions {
                config: TrainConfig {
                    bits: args.bits,
                    input_size: args.input_size,
                    batch_size: args.batch_size,
                    momentum: args.momentum,
                    ..TrainConfig::default()
                },
                classes: args.classes,
                bank_size: args.bank,
                threads: args.threads.clone(),
                warmup: args.warmup,
                steps: args.steps,
            };
            crate::torch::cuda_support();
            let timings = super::step_bench::train_step_bench(&options)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&timings)?);
            } else {
                print!("{}", super::step_bench::timings_table(&options, &timings));
            }
            Ok(())
        }
    }
}
