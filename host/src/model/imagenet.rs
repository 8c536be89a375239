//! An ImageNet sanity check for imported backbone weights: classify real photos and show the
//! top-5 classes. Right weights, wrong padding or normalisation still run; only real photos with
//! known content tell them apart.

use std::path::Path;

use anyhow::{bail, Context};
use image::imageops::FilterType;
use tch::{nn, Device, Kind, Tensor};

use super::effnet::{EfficientNetConfig, EfficientNetLite0, Padding};

/// The ImageNet evaluation crop: 224 px out of the image resized to 256 px (crop ratio 0.875).
const CROP: u32 = 224;
const RESIZE: u32 = 256;

/// How pixel values in [0, 1] are centred before the network sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Normalisation {
    /// torchvision's per-channel ImageNet mean and standard deviation.
    Imagenet,
    /// TensorFlow's EfficientNet-Lite convention: (x - 0.5) / 0.5, i.e. [-1, 1].
    Symmetric,
}

impl Normalisation {
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Self::Imagenet => (
                crate::data::preprocess::IMAGENET_MEAN,
                crate::data::preprocess::IMAGENET_STD,
            ),
            Self::Symmetric => ([0.5; 3], [0.5; 3]),
        }
    }
}

/// One class of a top-k list.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: i64,
    pub name: String,
    pub probability: f64,
}

/// The 1000 ImageNet class names, in class-index order, from two files of timm's package data:
/// `imagenet_synsets.txt` (one WordNet id per line, in index order) and
/// `imagenet_synset_to_lemma.txt` (WordNet id, tab, readable name).
pub fn class_names(synsets: &Path, lemmas: &Path) -> anyhow::Result<Vec<String>> {
    let synsets = std::fs::read_to_string(synsets)
        .with_context(|| format!("cannot read ImageNet synsets {}", synsets.display()))?;
    let lemmas = std::fs::read_to_string(lemmas)
        .with_context(|| format!("cannot read ImageNet class names {}", lemmas.display()))?;
    let lemma_of: std::collections::HashMap<&str, &str> = lemmas
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let names: Vec<String> = synsets
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|synset| {
            lemma_of
                .get(synset.trim())
                .map_or_else(|| synset.to_string(), |lemma| lemma.to_string())
        })
        .collect();
    if names.len() != 1000 {
        bail!("expected 1000 ImageNet classes, found {}", names.len());
    }
    Ok(names)
}

/// Decodes a photo and prepares it as ImageNet evaluation does: shorter side resized to 256 px
/// (bicubic), centre crop of 224 px, normalised; `[1, 3, 224, 224]`.
pub fn photo_tensor(path: &Path, normalisation: Normalisation) -> anyhow::Result<Tensor> {
    let photo = image::open(path)
        .with_context(|| format!("cannot decode image {}", path.display()))?
        .to_rgb8();
    let (width, height) = photo.dimensions();
    if width == 0 || height == 0 {
        bail!("image {} is empty", path.display());
    }
    let scale = RESIZE as f64 / width.min(height) as f64;
    let resized = image::imageops::resize(
        &photo,
        ((width as f64 * scale).round() as u32).max(CROP),
        ((height as f64 * scale).round() as u32).max(CROP),
        FilterType::CatmullRom,
    );
    let left = (resized.width() - CROP) / 2;
    let top = (resized.height() - CROP) / 2;
    let crop = image::imageops::crop_imm(&resized, left, top, CROP, CROP).to_image();
    let (mean, std) = normalisation.mean_std();
    let plane = (CROP * CROP) as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (index, pixel) in crop.pixels().enumerate() {
        for channel in 0..3 {
            let value = f32::from(pixel[channel]) / 255.0;
            chw[channel * plane + index] = (value - mean[channel]) / std[channel];
        }
    }
    Ok(Tensor::from_slice(&chw).view([1, 3, CROP as i64, CROP as i64]))
}

/// EfficientNet-Lite0 with its ImageNet head, weights loaded from a safetensors file.
pub fn load_classifier(
    weights: &Path,
    padding: Padding,
    batch_norm_epsilon: f64,
) -> anyhow::Result<(nn::VarStore, EfficientNetLite0)> {
    let mut store = nn::VarStore::new(Device::Cpu);
    let config = EfficientNetConfig {
        padding,
        batch_norm_epsilon,
        imagenet_classes: Some(1000),
        ..Default::default()
    };
    let model = EfficientNetLite0::new(&store.root(), &config);
    store.load(weights).with_context(|| {
        format!(
            "cannot load EfficientNet-Lite0 weights {}",
            weights.display()
        )
    })?;
    Ok((store, model))
}

/// The `k` most probable classes of one image.
pub fn top_k(
    model: &EfficientNetLite0,
    input: &Tensor,
    names: &[String],
    k: i64,
) -> anyhow::Result<Vec<Prediction>> {
    let logits =
        tch::no_grad(|| model.imagenet_logits(input)).context("the model has no ImageNet head")?;
    let probabilities = logits.softmax(-1, Kind::Float).squeeze_dim(0);
    let (values, indices) = probabilities.topk(k, -1, true, true);
    let values: Vec<f64> = values.try_into()?;
    let indices: Vec<i64> = indices.try_into()?;
    Ok(indices
        .into_iter()
        .zip(values)
        .map(|(class, probability)| Prediction {
            class,
            name: names
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {class}")),
            probability,
        })
        .collect())
}
