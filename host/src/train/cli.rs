//! `orbhash train` and `orbhash bench train-step`: their options and what they print.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::data::Augment;
use crate::eval::cli::EvalArgs;
use crate::model::backbone::BackboneKind;
use crate::torch::DeviceChoice;

use super::loss::{Combination, LossConfig, Objective, PairwiseGradient};
use super::schedule::Schedule;
use super::step_bench::{timings_table, train_step_bench, TrainStepOptions};
use super::trainer::{BackboneTraining, BandSelection};
use super::TrainConfig;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackboneTrainingArg {
    /// The pretrained backbone stays fixed; its features are computed once (per orientation
    /// with --augment) and the hash layer and classifier train on them: a minute on a CPU.
    Frozen,
    /// effnet-lite0's blocks from --from-block on and its head convolution train too, batch
    /// norm fixed; the earlier blocks' outputs are computed once: a few minutes on a CPU.
    LastBlocks,
    /// Every layer, every batch through the whole network (the paper's; a GPU's job).
    Full,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BandsArg {
    /// Every band of the data set (e.g. B04, B03, B02, B08 on s2-brandenburg); the stem widens.
    All,
    /// Red, green and blue only.
    Rgb,
}

impl From<BandsArg> for BandSelection {
    fn from(bands: BandsArg) -> Self {
        match bands {
            BandsArg::All => BandSelection::All,
            BandsArg::Rgb => BandSelection::Rgb,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PairwiseGradientArg {
    /// (σ(Θ) − S)·U: the MatConvNet code's hand-written gradient, --scale times autodiff's.
    Authors,
    /// Autodiff of the pairwise loss with Θ = uᵀv / scale: 1/scale of the authors' push.
    Autodiff,
}

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
    /// Which of the data set's bands the model reads.
    #[arg(long, value_enum, default_value = "all")]
    pub bands: BandsArg,
    /// Θ = uᵀv / scale in the pairwise term: 32 (the paper's code) or 2 (DPSH).
    #[arg(long, default_value_t = 32.0)]
    pub scale: f64,
    #[arg(long, value_enum, default_value = "matconvnet")]
    pub combination: CombinationArg,
    /// The gradient of the pairwise term (docs/dhcnn.md, "Which gradient").
    #[arg(long, value_enum, default_value = "authors")]
    pub pairwise_gradient: PairwiseGradientArg,
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
    /// Which part of the backbone learns.
    #[arg(long, value_enum, default_value = "full")]
    pub backbone_training: BackboneTrainingArg,
    /// First effnet-lite0 block (of 16) that learns under --backbone-training last-blocks: 11 is
    /// the last two stages, 15 the last block only.
    #[arg(long, default_value_t = 11)]
    pub from_block: usize,
    #[arg(long, value_enum, default_value = "none")]
    pub augment: AugmentArg,
    /// Share of each class used as queries, for data sets without a manifest.
    #[arg(long, default_value_t = 0.2)]
    pub query_ratio: f64,
    /// Tune settings without the test tiles: leave the queries out, and hold out a fifth of the
    /// database's spatial blocks as validation queries (training and evaluation both see this
    /// split).
    #[arg(long)]
    pub validation: bool,
    /// Clip each band to the database tiles' central window: values below the (100 − P)th and
    /// above the P-th percentile saturate, on every scene the model reads (the card keeps the
    /// window). 100 keeps the sensor's full range; bright outliers then cost int8 its precision.
    #[arg(long, default_value_t = crate::train::trainer::DEFAULT_CLIP_PERCENTILE)]
    pub clip_percentile: f64,
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
            bands: self.bands.into(),
            loss: LossConfig {
                scale: self.scale,
                combination,
                pairwise_gradient: match self.pairwise_gradient {
                    PairwiseGradientArg::Authors => PairwiseGradient::Authors,
                    PairwiseGradientArg::Autodiff => PairwiseGradient::Autodiff,
                },
                objective: Objective::PairwiseLikelihood,
            },
            without_classifier: self.no_classifier,
            schedule,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            backbone_training: match self.backbone_training {
                BackboneTrainingArg::Frozen => BackboneTraining::Frozen,
                BackboneTrainingArg::LastBlocks => BackboneTraining::LastBlocks {
                    from_block: self.from_block,
                },
                BackboneTrainingArg::Full => BackboneTraining::Full,
            },
            augment,
            query_ratio: self.query_ratio,
            validation: self.validation,
            clip_percentile: self.clip_percentile,
        })
    }
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
        crate::eval::cli::run(&EvalArgs {
            checkpoint: outcome.checkpoint,
            data: None,
            out: None,
            json: false,
            device: args.device,
        })?;
    }
    Ok(())
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

pub fn run_train_step(args: &TrainStepArgs) -> anyhow::Result<()> {
    let options = TrainStepOptions {
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
    let timings = train_step_bench(&options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&timings)?);
    } else {
        print!("{}", timings_table(&options, &timings));
    }
    Ok(())
}
