//! The training loop of `orbhash train`.
//!
//! Three modes ([`BackboneTraining`]):
//! - frozen backbone: every image goes through the backbone once (once per orientation when
//!   augmenting); the hash layer and the classifier then train on the cached features, which
//!   takes a minute on a CPU;
//! - last blocks: the stem and the first EfficientNet blocks stay fixed and their activations
//!   are cached the same way; the last blocks, the head convolution, the hash layer and the
//!   classifier train, batch norm fixed: a few minutes on a CPU;
//! - full fine-tuning: every batch goes through the whole network (a GPU's job).
//!
//! Either way the loss is DHCNN's, against a memory bank that holds the latest hash-layer output
//! of every training image; as in the authors' code, the batch's rows are refreshed with its new
//! outputs before the loss is computed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::data::folder::Dataset;
use crate::data::preprocess::{dihedral, EXTRA_BAND_MEAN, EXTRA_BAND_STD};
use crate::data::{Augment, BandScale, ImageFolder, InputSpec, LoaderOptions, Manifest, SplitName};
use crate::model::backbone::{load_pretrained, BackboneKind};
use crate::model::effnet::EfficientNetLite0;
use crate::torch::{select_device, DeviceChoice};

use super::checkpoint::{self, Checkpoint, CheckpointInfo};
use super::loss::{hash_centres, training_loss, LossConfig, LossTerms, Objective, StepInputs};
use super::network::{Dhcnn, Head, SUPPORTED_BITS};
use super::schedule::Schedule;

/// Which part of the backbone learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BackboneTraining {
    /// The pretrained backbone stays as it is; only the hash layer and the classifier train.
    Frozen,
    /// EfficientNet-Lite0's blocks `from_block..` (of 16) and its head convolution train with
    /// batch norm fixed (running statistics and affine terms); the stem and earlier blocks stay
    /// as pretrained. 11 trains the last two stages (192 and 320 channels).
    LastBlocks { from_block: usize },
    /// Every layer, batch norm included, as in the paper.
    Full,
}

/// Which of a data set's bands feed the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BandSelection {
    /// Every band the manifest lists, in its order (red, green, blue first).
    #[default]
    All,
    /// The manifest's red, green and blue bands only.
    Rgb,
}

/// Everything that defines a training run; stored in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The data set root (`<root>/<class>/<image>`, with or without manifest.json).
    pub data: PathBuf,
    pub backbone: BackboneKind,
    /// Pretrained backbone weights (safetensors); `None` trains the backbone from scratch.
    pub pretrained: Option<PathBuf>,
    pub bits: i64,
    /// Edge of the square model input, in pixels; tiles are resized to it.
    pub input_size: u32,
    pub bands: BandSelection,
    pub loss: LossConfig,
    /// Train without the classifier (DPSH): the loss is the pairwise and quantisation terms.
    pub without_classifier: bool,
    pub schedule: Schedule,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    pub backbone_training: BackboneTraining,
    pub augment: Augment,
    /// Query share of the per-class split, for data sets without a manifest.
    pub query_ratio: f64,
    /// Tune, don't test: the queries are left out and a fifth of the database's spatial blocks
    /// become the queries, so settings are chosen without looking at the test tiles.
    pub validation: bool,
    /// Per band, the database's values outside its (100 − p)th and p-th percentiles are clipped:
    /// the card's scale narrows from the sensor's range to that window, fixed for every scene.
    /// 100 keeps the sensor's full range. A few bright roofs and haze pixels would otherwise
    /// stretch the input far past what the network saw, and an int8 model spends its steps on
    /// them (docs/results.md, issue 16).
    #[serde(default = "full_sensor_range")]
    pub clip_percentile: f64,
}

/// What checkpoints written before `clip_percentile` existed used.
fn full_sensor_range() -> f64 {
    100.0
}

/// The default clip: 1 value in 1,000 per band, at each end.
pub const DEFAULT_CLIP_PERCENTILE: f64 = 99.9;

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from(".cache/data/s2-brandenburg"),
            backbone: BackboneKind::EffnetLite0,
            pretrained: None,
            bits: 64,
            input_size: 128,
            bands: BandSelection::default(),
            loss: LossConfig::default(),
            without_classifier: false,
            schedule: Schedule::default(),
            momentum: 0.0,
            weight_decay: 5e-4,
            batch_size: 10,
            epochs: 100,
            seed: 0,
            backbone_training: BackboneTraining::Full,
            augment: Augment::default(),
            query_ratio: 0.2,
            validation: false,
            clip_percentile: DEFAULT_CLIP_PERCENTILE,
        }
    }
}

impl TrainConfig {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !SUPPORTED_BITS.contains(&self.bits) {
            bail!(
                "unsupported code length {} (supported: {SUPPORTED_BITS:?})",
                self.bits
            );
        }
        if self.batch_size == 0 || self.epochs == 0 {
            bail!("batch size and epochs must be at least 1");
        }
        if !(50.0..=100.0).contains(&self.clip_percentile) {
            bail!(
                "clip percentile {} is outside 50..=100 (100 keeps the sensor's range)",
                self.clip_percentile
            );
        }
        if let BackboneTraining::LastBlocks { from_block } = self.backbone_training {
            if self.backbone != BackboneKind::EffnetLite0 {
                bail!(
                    "training the last blocks is built for effnet-lite0, not {}: use \
                     --backbone-training frozen or full",
                    self.backbone
                );
            }
            if from_block > EFFNET_BLOCKS {
                bail!("--from-block {from_block}: effnet-lite0 has {EFFNET_BLOCKS} blocks");
            }
        }
        Ok(())
    }
}

/// The result of a run: where the checkpoint is and the codes it gives the data set.
pub struct TrainOutcome {
    pub checkpoint: PathBuf,
    pub epochs_done: usize,
    pub interrupted: bool,
    pub final_loss: f64,
    pub images_per_second: f64,
}

/// One line of the JSONL metrics log.
#[derive(Debug, Serialize)]
struct StepRecord {
    epoch: usize,
    step: usize,
    loss: f64,
    pairwise: f64,
    quantisation: f64,
    classification: f64,
    learning_rate: f64,
    images_per_second: f64,
}

/// Longest stretch of training a crash may lose.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// A flag that Ctrl-C raises; training checks it between steps and stops with a checkpoint.
fn interrupt_flag() -> Arc<AtomicBool> {
    INTERRUPTED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let raised = flag.clone();
            // A second handler cannot be installed; without one, Ctrl-C just ends the process.
            if let Err(error) = ctrlc::set_handler(move || raised.store(true, Ordering::SeqCst)) {
                eprintln!("orbhash: Ctrl-C will not save a checkpoint: {error}");
            }
            flag
        })
        .clone()
}

/// MBConv blocks of EfficientNet-Lite0.
const EFFNET_BLOCKS: usize = 16;

/// The input spec before standardisation: for a built data set, the chosen bands with the
/// manifest's fixed radiometric scale and an identity mean/std (set by [`standardise`]); for a
/// folder of photographs, the normalisation the backbone's pretrained weights expect.
fn unstandardised_spec(folder: &ImageFolder, config: &TrainConfig) -> InputSpec {
    let mut spec = folder.spec.clone();
    spec.size = config.input_size;
    match &folder.manifest {
        Some(manifest) => {
            spec.bands = match config.bands {
                BandSelection::All => (0..manifest.bands.len()).collect(),
                BandSelection::Rgb => manifest.rgb_bands.to_vec(),
            };
            spec.scale = spec
                .bands
                .iter()
                .map(|&b| manifest.bands[b].scale)
                .collect();
            spec.mean = vec![0.0; spec.bands.len()];
            spec.std = vec![1.0; spec.bands.len()];
        }
        None => {
            let (mean, std) = config.backbone.pretrained_mean_std();
            let rgb = spec.channels().min(3);
            spec.mean[..rgb].copy_from_slice(&mean[..rgb]);
            spec.std[..rgb].copy_from_slice(&std[..rgb]);
        }
    }
    spec
}

/// Standardises a built data set's channels with its database split's statistics, mapped onto
/// the statistics the pretrained weights saw: channel k of a tile ends up with the mean and
/// spread that ImageNet's channel k had through the backbone's own normalisation (the mean of
/// the three for NIR and SWIR). A fixed per-band mean/std, stored in the card, rather than a
/// per-scene stretch: the board reads any scene the way training read this one.
fn standardise(dataset: &mut Dataset, backbone: BackboneKind) {
    let channels = dataset.spec.channels();
    let plane = (dataset.spec.size * dataset.spec.size) as usize;
    let (pretrained_mean, pretrained_std) = backbone.pretrained_mean_std();
    let (imagenet_mean, imagenet_std) = (
        crate::data::preprocess::IMAGENET_MEAN,
        crate::data::preprocess::IMAGENET_STD,
    );
    let mut mean = Vec::with_capacity(channels);
    let mut std = Vec::with_capacity(channels);
    for k in 0..channels {
        let (mut sum, mut squares, mut count) = (0f64, 0f64, 0f64);
        for v in database_channel(dataset, k) {
            sum += f64::from(v);
            squares += f64::from(v) * f64::from(v);
            count += 1.0;
        }
        let band_mean = sum / count.max(1.0);
        let band_std = (squares / count.max(1.0) - band_mean * band_mean)
            .max(0.0)
            .sqrt()
            .max(1e-4);
        // What the pretrained network's input had on ImageNet, as the backbone normalised it.
        let (seen_mean, seen_std) = match (imagenet_mean.get(k), imagenet_std.get(k)) {
            (Some(&m), Some(&s)) => (m, s),
            _ => (EXTRA_BAND_MEAN, EXTRA_BAND_STD),
        };
        let (norm_mean, norm_std) = (
            pretrained_mean.get(k).copied().unwrap_or(0.5),
            pretrained_std.get(k).copied().unwrap_or(0.5),
        );
        let target_mean = f64::from((seen_mean - norm_mean) / norm_std);
        let target_std = f64::from(seen_std / norm_std);
        let channel_std = band_std / target_std;
        std.push(channel_std as f32);
        mean.push((band_mean - target_mean * channel_std) as f32);
    }
    for sample in &mut dataset.samples {
        let mut pixels = sample.pixels.to_vec();
        for (k, chunk) in pixels.chunks_mut(plane).enumerate() {
            for v in chunk {
                *v = (*v - mean[k]) / std[k];
            }
        }
        sample.pixels = pixels.into();
    }
    dataset.spec.mean = mean;
    dataset.spec.std = std;
}

fn manifest_sha256(root: &Path) -> Option<String> {
    let bytes = std::fs::read(Manifest::path(root)).ok()?;
    Some(orbhash_wire::hex::encode(&Sha256::digest(&bytes)))
}

/// Loads the data set as training will see it, its input spec derived from the data (the
/// database split's band statistics).
pub fn load_dataset(config: &TrainConfig) -> anyhow::Result<Dataset> {
    let folder = scan(config)?;
    let spec = unstandardised_spec(&folder, config);
    let standardised = folder.manifest.is_some();
    let mut dataset = load_with_spec(folder, spec, config)?;
    if standardised {
        if config.clip_percentile < 100.0 {
            // Reloaded rather than clamped in place: the board clamps before resizing, and
            // training must read tiles exactly as the board will.
            let clipped = clip_to_database(&dataset, config.clip_percentile);
            dataset = load_with_spec(scan(config)?, clipped, config)?;
        }
        standardise(&mut dataset, config.backbone);
    }
    Ok(dataset)
}

/// Channel `k`'s values over the database split's tiles: the statistics the card's input
/// definition is fixed from, never the queries'.
fn database_channel(dataset: &Dataset, k: usize) -> impl Iterator<Item = f32> + '_ {
    let plane = (dataset.spec.size * dataset.spec.size) as usize;
    dataset
        .samples
        .iter()
        .filter(|s| s.split == SplitName::Database)
        .flat_map(move |s| s.pixels[k * plane..(k + 1) * plane].iter().copied())
}

/// The spec with each channel's scale narrowed to the database tiles' central `percentile`
/// window, as the model sees them (scaled to [0, 1] and resized).
fn clip_to_database(dataset: &Dataset, percentile: f64) -> InputSpec {
    let mut spec = dataset.spec.clone();
    for (k, scale) in spec.scale.iter_mut().enumerate() {
        let values: Vec<f32> = database_channel(dataset, k).collect();
        let Some(window) = BandScale::from_percentiles(&values, 100.0 - percentile, percentile)
        else {
            continue;
        };
        let span = scale.high - scale.low;
        let (low, high) = (
            scale.low + window.low * span,
            scale.low + window.high.min(1.0) * span,
        );
        // `from_percentiles` widens a constant band to one unit above its value, which the
        // min above cuts back into [0, 1]; only a band saturated at the top then has no window,
        // and it keeps the sensor's range.
        if high > low {
            *scale = BandScale { low, high };
        }
    }
    spec
}

/// Loads a data set as a trained model reads it: with the model's own input spec, never one
/// derived from this data.
pub fn load_dataset_as_trained(config: &TrainConfig, spec: &InputSpec) -> anyhow::Result<Dataset> {
    load_with_spec(scan(config)?, spec.clone(), config)
}

fn scan(config: &TrainConfig) -> anyhow::Result<ImageFolder> {
    let options = LoaderOptions {
        split: crate::data::SplitSource::Auto {
            query_ratio: config.query_ratio,
            seed: config.seed,
        },
        ..Default::default()
    };
    ImageFolder::scan(&config.data, &options)
        .with_context(|| format!("cannot read data set {}", config.data.display()))
}

fn load_with_spec(
    mut folder: ImageFolder,
    spec: InputSpec,
    config: &TrainConfig,
) -> anyhow::Result<Dataset> {
    spec.validate()?;
    if let Some(&band) = folder
        .manifest
        .as_ref()
        .and_then(|manifest| spec.bands.iter().find(|&&b| b >= manifest.bands.len()))
    {
        bail!(
            "{} stores {} band(s); the model reads band index {band}",
            folder.root.display(),
            folder.manifest.as_ref().map_or(0, |m| m.bands.len())
        );
    }
    folder.spec = spec;
    let mut dataset = folder.load()?;
    if config.validation {
        let manifest = folder.manifest.as_ref().with_context(|| {
            format!(
                "{}: a validation split needs the manifest's spatial blocks",
                folder.root.display()
            )
        })?;
        hold_out_validation(&mut dataset, &folder.root, manifest, config.seed)?;
    }
    Ok(dataset)
}

/// Share of the database's tiles that a validation split holds out.
const VALIDATION_SHARE: f64 = 0.2;

/// Drops the query tiles and makes whole spatial blocks of the database, about a fifth of its
/// tiles drawn with `seed`, the queries: tuning then never sees a test tile, and no validation
/// tile shares a block with a training tile.
fn hold_out_validation(
    dataset: &mut Dataset,
    root: &Path,
    manifest: &Manifest,
    seed: u64,
) -> anyhow::Result<()> {
    let block_of: std::collections::HashMap<&str, [usize; 2]> = manifest
        .patches
        .iter()
        .map(|patch| (patch.file.as_str(), patch.block))
        .collect();
    dataset
        .samples
        .retain(|sample| sample.split == SplitName::Database);
    let mut blocks = Vec::with_capacity(dataset.samples.len());
    for sample in &dataset.samples {
        let file = sample.path.strip_prefix(root).unwrap_or(&sample.path);
        let key = file.to_string_lossy().replace('\\', "/");
        let block = block_of.get(key.as_str()).copied().with_context(|| {
            format!("{} is not in the manifest's patches", sample.path.display())
        })?;
        blocks.push(block);
    }
    let mut distinct: Vec<[usize; 2]> = blocks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut rng = crate::data::split::rng(seed ^ 0x7661_6c69_6461_7465);
    crate::data::split::shuffle(&mut distinct, &mut rng);
    let wanted = (dataset.samples.len() as f64 * VALIDATION_SHARE).round() as usize;
    let mut held_out = std::collections::HashSet::new();
    let mut count = 0;
    for block in distinct {
        if count >= wanted {
            break;
        }
        count += blocks.iter().filter(|&&b| b == block).count();
        held_out.insert(block);
    }
    for (sample, block) in dataset.samples.iter_mut().zip(&blocks) {
        if held_out.contains(block) {
            sample.split = SplitName::Query;
        }
    }
    anyhow::ensure!(
        count > 0 && count < dataset.samples.len(),
        "the database is too small to hold out validation blocks"
    );
    Ok(())
}

/// A batch of samples as an image tensor on `device`.
fn image_batch(
    dataset: &Dataset,
    indices: &[usize],
    augment: Augment,
    rng: &mut rand_chacha::ChaCha8Rng,
    device: Device,
) -> Tensor {
    let (pixels, _) = dataset.batch(indices, augment, rng);
    let size = i64::from(dataset.spec.size);
    let channels = dataset.spec.channels() as i64;
    Tensor::from_slice(&pixels)
        .view([indices.len() as i64, channels, size, size])
        .to_device(device)
}

/// Samples `indices` as they are (no augmentation), as an image tensor on `device`.
pub fn plain_images(dataset: &Dataset, indices: &[usize], device: Device) -> Tensor {
    // The identity augmentation draws nothing from it.
    let mut unused = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    image_batch(dataset, indices, Augment::default(), &mut unused, device)
}

/// Backbone features of every sample, in sample order, computed once in evaluation mode.
pub fn backbone_features(model: &Dhcnn, dataset: &Dataset, batch: usize, device: Device) -> Tensor {
    fixed_outputs(dataset, 0, batch, device, &|images| {
        model.backbone.features_t(images, false)
    })
}

/// `run` (evaluation mode, no gradients) over every sample turned by dihedral element
/// `orientation`, in sample order.
fn fixed_outputs(
    dataset: &Dataset,
    orientation: u8,
    batch: usize,
    device: Device,
    run: &dyn Fn(&Tensor) -> Tensor,
) -> Tensor {
    let (channels, size) = (dataset.spec.channels(), dataset.spec.size as usize);
    let all: Vec<usize> = (0..dataset.samples.len()).collect();
    let chunks: Vec<Tensor> = all
        .chunks(batch.max(1))
        .map(|indices| {
            let mut pixels = Vec::with_capacity(indices.len() * dataset.spec.len());
            for &i in indices {
                pixels.extend(dihedral(
                    &dataset.samples[i].pixels,
                    channels,
                    size,
                    orientation,
                ));
            }
            let images = Tensor::from_slice(&pixels)
                .view([
                    indices.len() as i64,
                    channels as i64,
                    size as i64,
                    size as i64,
                ])
                .to_device(device);
            tch::no_grad(|| run(&images))
        })
        .collect();
    Tensor::cat(&chunks, 0)
}

/// The outputs of the backbone's fixed part for every sample in every orientation the
/// augmentation draws from, computed once: a training step then picks one orientation per
/// sample and starts from its row.
pub struct FixedPart {
    /// `[orientations × samples, …]`, orientation-major.
    outputs: Tensor,
    orientations: Vec<u8>,
    samples: usize,
}

impl FixedPart {
    /// The whole backbone's pooled features (frozen training) or EfficientNet's stem and first
    /// `from_block` blocks (last-blocks training).
    pub fn compute(
        model: &Dhcnn,
        dataset: &Dataset,
        training: BackboneTraining,
        augment: Augment,
        device: Device,
    ) -> anyhow::Result<Self> {
        let orientations = augment.orientations();
        let effnet = model.backbone.efficientnet();
        let run: Box<dyn Fn(&Tensor) -> Tensor> = match (training, effnet) {
            (BackboneTraining::Frozen, _) => {
                Box::new(|images: &Tensor| model.backbone.features_t(images, false))
            }
            (BackboneTraining::LastBlocks { from_block }, Some(effnet)) => {
                Box::new(move |images: &Tensor| effnet.stem_and_blocks_t(images, from_block, false))
            }
            (BackboneTraining::LastBlocks { .. }, None) => {
                bail!("training the last blocks needs the effnet-lite0 backbone")
            }
            (BackboneTraining::Full, _) => bail!("full training runs the whole network per batch"),
        };
        let outputs: Vec<Tensor> = orientations
            .iter()
            .map(|&orientation| fixed_outputs(dataset, orientation, 32, device, &run))
            .collect();
        Ok(Self {
            outputs: Tensor::cat(&outputs, 0),
            orientations,
            samples: dataset.samples.len(),
        })
    }

    /// Rows of `indices`, each in an orientation drawn from `rng` (always the first one, the
    /// identity, when there is only one).
    pub fn rows(
        &self,
        indices: &[usize],
        rng: &mut rand_chacha::ChaCha8Rng,
        device: Device,
    ) -> Tensor {
        use rand_chacha::rand_core::RngCore;
        let rows: Vec<usize> = indices
            .iter()
            .map(|&i| {
                let draw = if self.orientations.len() > 1 {
                    rng.next_u32() as usize % self.orientations.len()
                } else {
                    0
                };
                draw * self.samples + i
            })
            .collect();
        select_rows(&self.outputs, &rows, device)
    }
}

/// Makes only EfficientNet's blocks `from_block..` and head convolution learn, batch norm
/// excluded: the optimiser skips variables without gradients.
fn train_only_last_blocks(model: &Dhcnn, from_block: usize) {
    for (name, variable) in model.backbone_store.variables() {
        let block = name
            .strip_prefix("_blocks.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|index| index.parse::<usize>().ok());
        let trained_layer = match block {
            Some(index) => index >= from_block,
            None => name.starts_with("_conv_head."),
        };
        let batch_norm = name.split('.').any(|part| part.starts_with("_bn"));
        if !trained_layer || batch_norm {
            let _ = variable.shallow_clone().set_requires_grad(false);
        }
    }
}

/// The trained part of the backbone on a batch of fixed-part outputs.
fn trained_part(effnet: &EfficientNetLite0, fixed: &Tensor, from_block: usize) -> Tensor {
    // Evaluation mode: batch norm keeps its pretrained statistics (a batch of ten tiles would
    // give poor ones) and stochastic depth is off on these few blocks.
    effnet.blocks_and_head_t(fixed, from_block, false)
}

/// Rows `indices` of a per-sample tensor (cached features), on `device`.
pub fn select_rows(tensor: &Tensor, indices: &[usize], device: Device) -> Tensor {
    let rows: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    tensor.index_select(0, &Tensor::from_slice(&rows).to_device(device))
}

/// One SGD step at a time of DHCNN's loss against the memory bank: the core that `orbhash train`,
/// `orbhash bench retrieval` and `orbhash bench train-step` share, so the benchmarks measure the
/// step that training takes.
pub struct Stepper {
    loss: LossConfig,
    without_classifier: bool,
    head_optimizer: nn::Optimizer,
    /// `None` while the backbone is frozen.
    backbone_optimizer: Option<nn::Optimizer>,
    /// Latest hash-layer output of every database sample, one row each.
    pub bank: Tensor,
    bank_labels: Tensor,
    /// Row of each sample in the bank (`usize::MAX` for queries).
    bank_row: Vec<usize>,
    /// Label of each sample.
    labels: Vec<i64>,
    /// CSQ's hash centres, one row per class.
    centres: Option<Tensor>,
    epoch: usize,
    device: Device,
}

impl Stepper {
    /// `labels` has one entry per sample; `database` lists the samples the bank holds, in bank
    /// row order; `bank` is their starting codes (zeros for a new run).
    pub fn new(
        config: &TrainConfig,
        head_store: &nn::VarStore,
        backbone_store: Option<&nn::VarStore>,
        labels: &[usize],
        database: &[usize],
        bank: Tensor,
        device: Device,
    ) -> anyhow::Result<Self> {
        let sgd = nn::Sgd {
            momentum: config.momentum,
            wd: config.weight_decay,
            ..Default::default()
        };
        let rate = config.schedule.rate(0, config.epochs);
        let head_optimizer = sgd.build(head_store, rate)?;
        let backbone_optimizer = backbone_store
            .map(|store| sgd.build(store, rate))
            .transpose()?;
        let mut bank_row = vec![usize::MAX; labels.len()];
        for (row, &sample) in database.iter().enumerate() {
            bank_row[sample] = row;
        }
        let centres = matches!(config.loss.objective, Objective::Csq { .. }).then(|| {
            let classes = labels.iter().max().map_or(1, |&label| label + 1);
            hash_centres(classes, config.bits as usize, device)
        });
        let labels: Vec<i64> = labels.iter().map(|&label| label as i64).collect();
        let bank_labels =
            Tensor::from_slice(&database.iter().map(|&i| labels[i]).collect::<Vec<_>>())
                .to_device(device);
        Ok(Self {
            loss: config.loss,
            without_classifier: config.without_classifier,
            head_optimizer,
            backbone_optimizer,
            bank,
            bank_labels,
            bank_row,
            labels,
            centres,
            epoch: 0,
            device,
        })
    }

    /// Sets the learning rate and the epoch (from 0) of the steps that follow.
    pub fn start_epoch(&mut self, epoch: usize, rate: f64) {
        self.epoch = epoch;
        self.head_optimizer.set_lr(rate);
        if let Some(optimizer) = self.backbone_optimizer.as_mut() {
            optimizer.set_lr(rate);
        }
    }

    /// One step on the database samples `indices`, whose backbone features are `features` (with
    /// gradients when the backbone trains). Refreshes their bank rows with the new codes first.
    pub fn step(&mut self, head: &Head, features: &Tensor, indices: &[usize]) -> LossTerms {
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        let labels = Tensor::from_slice(&labels).to_device(self.device);
        let codes = head.hash(features);
        // The authors' order (`U(ix,:) = U0` before Θ): the batch meets its own new codes.
        let rows: Vec<i64> = indices.iter().map(|&i| self.bank_row[i] as i64).collect();
        let rows = Tensor::from_slice(&rows).to_device(self.device);
        tch::no_grad(|| {
            let _ = self.bank.index_copy_(0, &rows, &codes.detach());
        });
        let classify = |codes: &Tensor| head.classify(codes);
        let classifier: Option<&dyn Fn(&Tensor) -> Tensor> =
            (!self.without_classifier).then_some(&classify);
        let inputs = StepInputs {
            labels: &labels,
            bank_codes: &self.bank,
            bank_labels: &self.bank_labels,
            classify: classifier,
            centres: self.centres.as_ref(),
            epoch: self.epoch,
        };
        let terms = training_loss(&codes, &inputs, &self.loss);
        self.head_optimizer.zero_grad();
        if let Some(optimizer) = self.backbone_optimizer.as_mut() {
            optimizer.zero_grad();
        }
        terms.total.backward();
        self.head_optimizer.step();
        if let Some(optimizer) = self.backbone_optimizer.as_mut() {
            optimizer.step();
        }
        terms
    }
}

/// Trains DHCNN and writes its checkpoint (and a JSONL metrics log) into `out_dir`.
/// With `resume`, continues a checkpoint's run from its last completed epoch.
pub fn train(
    config: &TrainConfig,
    device_choice: DeviceChoice,
    out_dir: &Path,
    resume: Option<&Path>,
) -> anyhow::Result<TrainOutcome> {
    config.validate()?;
    let device = select_device(device_choice)?;
    tch::manual_seed(config.seed as i64);
    let dataset = load_dataset(config)?;
    let database = dataset.indices(SplitName::Database);
    if database.is_empty() {
        bail!(
            "the data set {} has no database (training) images",
            config.data.display()
        );
    }
    let classes = dataset.classes.len() as i64;
    let channels = dataset.spec.channels();
    let mut model = Dhcnn::new(config.backbone, config.bits, classes, channels, device)?;
    let mut start_epoch = 0;
    let mut bank = Tensor::zeros([database.len() as i64, config.bits], (Kind::Float, device));
    if let Some(path) = resume {
        let checkpoint = Checkpoint::open(path)?;
        if checkpoint.info.config != *config {
            bail!(
                "{} was trained with another configuration; resume it with the same options",
                path.display()
            );
        }
        checkpoint.restore("backbone", &mut model.backbone_store)?;
        checkpoint.restore("head", &mut model.head_store)?;
        bank = checkpoint.memory_bank()?.to_device(device);
        start_epoch = checkpoint.info.epochs_done;
    } else if let Some(weights) = &config.pretrained {
        load_pretrained(&mut model.backbone_store, weights)?;
    }
    // The EfficientNet whose blocks `from_block..` run per step, when only those train.
    let mut last_blocks = None;
    match config.backbone_training {
        BackboneTraining::Frozen => model.backbone_store.freeze(),
        BackboneTraining::LastBlocks { from_block } => {
            train_only_last_blocks(&model, from_block);
            let effnet = model
                .backbone
                .efficientnet()
                .context("training the last blocks needs effnet-lite0")?;
            last_blocks = Some((effnet, from_block));
        }
        BackboneTraining::Full => {}
    }
    let fixed = (config.backbone_training != BackboneTraining::Full)
        .then(|| {
            FixedPart::compute(
                &model,
                &dataset,
                config.backbone_training,
                config.augment,
                device,
            )
        })
        .transpose()?;
    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let trains_backbone = config.backbone_training != BackboneTraining::Frozen;
    let mut stepper = Stepper::new(
        config,
        &model.head_store,
        trains_backbone.then_some(&model.backbone_store),
        &labels,
        &database,
        bank,
        device,
    )?;

    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let checkpoint_path = out_dir.join("checkpoint.safetensors");
    let log_path = out_dir.join("metrics.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(resume.is_some())
        .write(true)
        .truncate(resume.is_none())
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let manifest = manifest_sha256(&config.data);
    let save = |epochs_done, model: &Dhcnn, bank: &Tensor| {
        let info = CheckpointInfo {
            config: config.clone(),
            classes: dataset.classes.clone(),
            input: dataset.spec.clone(),
            epochs_done,
            manifest_sha256: manifest.clone(),
        };
        checkpoint::save(
            &checkpoint_path,
            &info,
            &model.backbone_store,
            &model.head_store,
            bank,
        )
    };

    let interrupted = interrupt_flag();
    let steps_per_epoch = database.len().div_ceil(config.batch_size);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let mut final_loss = f64::NAN;
    let mut images_per_second = 0.0;
    let mut epochs_done = start_epoch;
    let mut stopped = false;
    let mut last_save = Instant::now();
    for epoch in start_epoch..config.epochs {
        let learning_rate = config.schedule.rate(epoch, config.epochs);
        stepper.start_epoch(epoch, learning_rate);
        let progress = ProgressBar::new(steps_per_epoch as u64);
        progress.set_style(
            ProgressStyle::with_template("epoch {prefix:>4} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        progress.set_prefix(format!("{}/{}", epoch + 1, config.epochs));
        let epoch_start = Instant::now();
        let mut epoch_loss = 0.0;
        let order = dataset.epoch_order(SplitName::Database, config.seed, epoch as u64);
        for (step, indices) in order.chunks(config.batch_size).enumerate() {
            let step_start = Instant::now();
            let batch_features = match (&fixed, last_blocks) {
                (Some(fixed), Some((effnet, from_block))) => {
                    trained_part(effnet, &fixed.rows(indices, &mut rng, device), from_block)
                }
                (Some(fixed), None) => fixed.rows(indices, &mut rng, device),
                (None, _) => {
                    let images = image_batch(&dataset, indices, config.augment, &mut rng, device);
                    model.backbone.features_t(&images, true)
                }
            };
            let terms = stepper.step(&model.head, &batch_features, indices);
            let loss = terms.total.double_value(&[]);
            if !loss.is_finite() {
                progress.abandon();
                bail!(
                    "the loss diverged at epoch {} step {step}: try a lower learning rate",
                    epoch + 1
                );
            }
            epoch_loss += loss;
            images_per_second = indices.len() as f64 / step_start.elapsed().as_secs_f64();
            let record = StepRecord {
                epoch: epoch + 1,
                step: epoch * steps_per_epoch + step + 1,
                loss,
                pairwise: terms.pairwise,
                quantisation: terms.quantisation,
                classification: terms.classification,
                learning_rate,
                images_per_second,
            };
            writeln!(log, "{}", serde_json::to_string(&record)?)?;
            progress.set_message(format!(
                "loss {loss:.4} lr {learning_rate:.2e} {images_per_second:.0} img/s"
            ));
            progress.inc(1);
            if interrupted.load(Ordering::SeqCst) {
                stopped = true;
                break;
            }
        }
        progress.finish_and_clear();
        final_loss = epoch_loss / steps_per_epoch as f64;
        if stopped {
            eprintln!(
                "interrupted during epoch {}: saving the last complete epoch's state",
                epoch + 1
            );
            break;
        }
        epochs_done = epoch + 1;
        // A summary line per epoch would bury the rest of the output on long runs.
        let report_every = (config.epochs / 10).max(1);
        if epochs_done % report_every == 0 || epochs_done == config.epochs {
            eprintln!(
                "epoch {}/{}: loss {final_loss:.4}, lr {learning_rate:.2e}, {:.1} s",
                epoch + 1,
                config.epochs,
                epoch_start.elapsed().as_secs_f64()
            );
        }
        // At most a minute of training is lost to a crash, without paying for a save each epoch.
        let last = epochs_done == config.epochs;
        if last || last_save.elapsed() >= CHECKPOINT_INTERVAL {
            last_save = Instant::now();
            save(epochs_done, &model, &stepper.bank)?;
        }
    }
    if stopped {
        // The weights moved during the partial epoch; record them with the count of complete
        // epochs so a resume repeats the interrupted one.
        save(epochs_done, &model, &stepper.bank)?;
    }
    Ok(TrainOutcome {
        checkpoint: checkpoint_path,
        epochs_done,
        interrupted: stopped,
        final_loss,
        images_per_second,
    })
}
