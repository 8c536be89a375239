//! Backbones selectable by name: the CNN that turns a tile into the feature vector the hash layer
//! reads. Variable names follow each architecture's usual checkpoint naming (TensorFlow-port
//! EfficientNet, torchvision AlexNet and ResNet), so converted weights load without renaming.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::effnet::{self, EfficientNetConfig, EfficientNetLite0};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// EfficientNet-Lite0, ImageNet-pretrained weights from the fetched checkpoint: the on-board
    /// default (ReLU6, no squeeze-excitation: built for edge int8).
    #[default]
    EffnetLite0,
    /// AlexNet to its fc7 layer (4096-d, after ReLU): the paper's backbone family (VGG-F is
    /// AlexNet-like). Pretrained weights: a torchvision AlexNet converted to safetensors.
    Alexnet,
    /// ResNet-18 to its pooled 512-d features; torchvision weights converted to safetensors.
    Resnet18,
    /// Four small convolutions: fast, untrained, for tests and quick experiments.
    SmallCnn,
}

impl BackboneKind {
    pub const ALL: [Self; 4] = [
        Self::EffnetLite0,
        Self::Alexnet,
        Self::Resnet18,
        Self::SmallCnn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EffnetLite0 => "effnet-lite0",
            Self::Alexnet => "alexnet",
            Self::Resnet18 => "resnet18",
            Self::SmallCnn => "small-cnn",
        }
    }

    /// Per-channel mean and standard deviation (of RGB values in [0, 1]) that the pretrained
    /// weights expect: TensorFlow's EfficientNet-Lite was trained on [-1, 1] inputs, the
    /// torchvision models on ImageNet statistics.
    pub fn pretrained_mean_std(self) -> ([f32; 3], [f32; 3]) {
        use crate::data::preprocess::{IMAGENET_MEAN, IMAGENET_STD};
        match self {
            Self::EffnetLite0 | Self::SmallCnn => ([0.5; 3], [0.5; 3]),
            Self::Alexnet | Self::Resnet18 => (IMAGENET_MEAN, IMAGENET_STD),
        }
    }

    /// Length of the feature vector the backbone produces.
    pub fn feature_size(self) -> i64 {
        match self {
            Self::EffnetLite0 => effnet::FEATURE_SIZE,
            Self::Alexnet => 4096,
            Self::Resnet18 => 512,
            Self::SmallCnn => SMALL_CNN_WIDTH * 4,
        }
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackboneKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|kind| kind.name()).collect();
                format!(
                    "unknown backbone `{text}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// Channels of the small CNN's first layer; its four layers have 1, 2, 4, 4 times as many.
pub const SMALL_CNN_WIDTH: i64 = 16;
/// Width multiples of the small CNN's layers.
pub const SMALL_CNN_LAYERS: [i64; 4] = [1, 2, 4, 4];

/// A backbone network built into a variable store.
pub struct Backbone {
    kind: BackboneKind,
    network: Network,
}

/// EfficientNet is kept as its own type so that its blocks can be run apart (the fixed part
/// once, the trained part per step); the others only run whole.
enum Network {
    Effnet(Box<EfficientNetLite0>),
    Whole(Box<dyn ModuleT + Send>),
}

impl fmt::Debug for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backbone")
            .field("kind", &self.kind)
            .finish()
    }
}

impl Backbone {
    /// The `kind` network for `channels` input bands. EfficientNet-Lite0 widens its stem
    /// ([`load_pretrained`] says how the extra filters start) and the untrained small CNN takes
    /// any count; the torchvision networks take three.
    pub fn new(path: &nn::Path, kind: BackboneKind, channels: usize) -> anyhow::Result<Self> {
        let any_bands = matches!(kind, BackboneKind::EffnetLite0 | BackboneKind::SmallCnn);
        if channels != 3 && !any_bands {
            anyhow::bail!(
                "the {kind} backbone takes 3 bands (red, green, blue), not {channels}: train it \
                 with --bands rgb, or use effnet-lite0 or small-cnn, which take every band"
            );
        }
        let network = match kind {
            BackboneKind::EffnetLite0 => Network::Effnet(Box::new(EfficientNetLite0::new(
                path,
                &EfficientNetConfig {
                    input_channels: channels as i64,
                    ..Default::default()
                },
            ))),
            BackboneKind::Alexnet => Network::Whole(Box::new(alexnet_fc7(path))),
            BackboneKind::Resnet18 => {
                Network::Whole(Box::new(tch::vision::resnet::resnet18_no_final_layer(path)))
            }
            BackboneKind::SmallCnn => Network::Whole(Box::new(small_cnn(path, channels as i64))),
        };
        Ok(Self { kind, network })
    }

    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// `[batch, feature_size]` features of a `[batch, channels, height, width]` normalised batch.
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match &self.network {
            Network::Effnet(network) => network.features_t(xs, train),
            Network::Whole(network) => network.forward_t(xs, train),
        }
    }

    /// EfficientNet-Lite0 itself, for running its blocks apart; `None` for other kinds.
    pub fn efficientnet(&self) -> Option<&EfficientNetLite0> {
        match &self.network {
            Network::Effnet(network) => Some(network),
            Network::Whole(_) => None,
        }
    }
}

/// Loads pretrained weights into the variables of a store whose names match the file's; extra
/// tensors in the file (an ImageNet head, batch-norm counters) are ignored.
///
/// A convolution of the store that takes more input channels than the file's three-channel one
/// (the EfficientNet stem widened to NIR, SWIR) starts from the pretrained filters: each extra
/// channel gets the mean of the red, green and blue filters, and all channels are scaled by
/// 3/N. The response to a tile whose bands are all alike is then the pretrained response, so the
/// network starts where ImageNet left it, and the extra bands enter as another view of brightness
/// and texture that training can sharpen.
pub fn load_pretrained(store: &mut nn::VarStore, weights: &Path) -> anyhow::Result<()> {
    let file: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(weights)
        .with_context(|| format!("cannot load pretrained weights {}", weights.display()))?
        .into_iter()
        .collect();
    let variables = store.variables();
    let mut missing: Vec<&String> = variables
        .keys()
        .filter(|name| !file.contains_key(*name))
        .collect();
    missing.sort();
    anyhow::ensure!(
        missing.is_empty(),
        "{} lacks {} of the backbone's tensors (first: {}); is it the right architecture?",
        weights.display(),
        missing.len(),
        missing.first().map_or("", |name| name.as_str())
    );
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, variable) in &variables {
            let Some(pretrained) = file.get(name) else {
                continue;
            };
            let value = adapt_input_channels(pretrained, &variable.size()).with_context(|| {
                format!(
                    "{}: tensor {name} has shape {:?}, the backbone's {:?}; is it the right \
                     architecture?",
                    weights.display(),
                    pretrained.size(),
                    variable.size()
                )
            })?;
            variable
                .shallow_clone()
                .f_copy_(&value.to_kind(variable.kind()).to_device(variable.device()))?;
        }
        Ok(())
    })
}

/// `pretrained` as a tensor of `shape`: unchanged when the shapes agree; widened from 3 to N
/// input channels as [`load_pretrained`] describes when only the input channels differ.
fn adapt_input_channels(pretrained: &Tensor, shape: &[i64]) -> anyhow::Result<Tensor> {
    let have = pretrained.size();
    if have == shape {
        return Ok(pretrained.shallow_clone());
    }
    let widenable = have.len() == 4
        && shape.len() == 4
        && have[1] == 3
        && shape[1] > 3
        && have[0] == shape[0]
        && have[2..] == shape[2..];
    anyhow::ensure!(widenable, "shapes differ");
    let extra = shape[1] - 3;
    let mean = pretrained.mean_dim(1, true, pretrained.kind());
    let widened = Tensor::cat(
        &[pretrained.shallow_clone(), mean.repeat([1, extra, 1, 1])],
        1,
    );
    Ok(widened * (3.0 / shape[1] as f64))
}

fn alexnet_fc7(path: &nn::Path) -> impl ModuleT {
    let conv = |name: &str, input, output, kernel, padding, stride| {
        nn::conv2d(
            path / "features" / name,
            input,
            output,
            kernel,
            nn::ConvConfig {
                stride,
                padding,
                ..Default::default()
            },
        )
    };
    let pool = |xs: Tensor| xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
    let fc6 = nn::linear(
        path / "classifier" / "1",
        256 * 6 * 6,
        4096,
        Default::default(),
    );
    let fc7 = nn::linear(path / "classifier" / "4", 4096, 4096, Default::default());
    nn::seq_t()
        .add(conv("0", 3, 64, 11, 2, 4))
        .add_fn(move |xs| pool(xs.relu()))
        .add(conv("3", 64, 192, 5, 2, 1))
        .add_fn(move |xs| pool(xs.relu()))
        .add(conv("6", 192, 384, 3, 1, 1))
        .add_fn(|xs| xs.relu())
        .add(conv("8", 384, 256, 3, 1, 1))
        .add_fn(|xs| xs.relu())
        .add(conv("10", 256, 256, 3, 1, 1))
        .add_fn(move |xs| pool(xs.relu()).adaptive_avg_pool2d([6, 6]).flatten(1, -1))
        .add_fn_t(|xs, train| xs.dropout(0.5, train))
        .add(fc6)
        .add_fn(|xs| xs.relu())
        .add_fn_t(|xs, train| xs.dropout(0.5, train))
        .add(fc7)
        .add_fn(|xs| xs.relu())
}

fn small_cnn(path: &nn::Path, input_channels: i64) -> impl ModuleT {
    let mut network = nn::seq_t();
    let mut channels = input_channels;
    for (index, width) in SMALL_CNN_LAYERS.into_iter().enumerate() {
        let output = SMALL_CNN_WIDTH * width;
        let config = nn::ConvConfig {
            stride: 2,
            padding: 1,
            bias: false,
            ..Default::default()
        };
        network = network
            .add(nn::conv2d(
                path / format!("conv{index}"),
                channels,
                output,
                3,
                config,
            ))
            .add(nn::batch_norm2d(
                path / format!("bn{index}"),
                output,
                Default::default(),
            ))
            .add_fn(|xs| xs.relu6());
        channels = output;
    }
    network.add_fn(|xs| xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn every_backbone_gives_its_declared_feature_size() {
        crate::torch::init_for_tests();
        for kind in BackboneKind::ALL {
            let store = nn::VarStore::new(Device::Cpu);
            let backbone = Backbone::new(&store.root(), kind, 3).expect("builds");
            // AlexNet needs a real-sized input for its 6x6 pooling to be meaningful.
            let side = if kind == BackboneKind::Alexnet {
                224
            } else {
                64
            };
            let xs = Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu));
            let features = tch::no_grad(|| backbone.features_t(&xs, false));
            assert_eq!(features.size(), vec![2, kind.feature_size()], "{kind}");
            assert_eq!(kind.name().parse::<BackboneKind>(), Ok(kind));
        }
        assert!("vgg-f".parse::<BackboneKind>().is_err());
    }

    #[test]
    fn weights_of_another_architecture_are_refused_by_name() {
        crate::torch::init_for_tests();
        let source = nn::VarStore::new(Device::Cpu);
        let _resnet = Backbone::new(&source.root(), BackboneKind::SmallCnn, 3).expect("builds");
        let dir = std::env::temp_dir().join(format!("orbhash-backbone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("small.safetensors");
        source.save(&file).expect("saves");
        let mut target = nn::VarStore::new(Device::Cpu);
        let _effnet = Backbone::new(&target.root(), BackboneKind::EffnetLite0, 3).expect("builds");
        let error = load_pretrained(&mut target, &file).expect_err("wrong architecture");
        assert!(error.to_string().contains("right architecture"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_widened_stem_starts_from_the_pretrained_filters() {
        crate::torch::init_for_tests();
        let source = nn::VarStore::new(Device::Cpu);
        let _rgb = Backbone::new(&source.root(), BackboneKind::EffnetLite0, 3).expect("builds");
        let dir = std::env::temp_dir().join(format!("orbhash-widen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("rgb.safetensors");
        source.save(&file).expect("saves");
        let mut target = nn::VarStore::new(Device::Cpu);
        let wide = Backbone::new(&target.root(), BackboneKind::EffnetLite0, 5).expect("builds");
        load_pretrained(&mut target, &file).expect("widens");
        std::fs::remove_dir_all(&dir).ok();
        let stem = |store: &nn::VarStore| {
            store
                .variables()
                .remove("_conv_stem.weight")
                .expect("stem weight")
        };
        let (rgb_stem, wide_stem) = (stem(&source), stem(&target));
        assert_eq!(wide_stem.size(), vec![32, 5, 3, 3]);
        let rgb_part = wide_stem.narrow(1, 0, 3) * (5.0 / 3.0);
        assert!((rgb_part - &rgb_stem).abs().max().double_value(&[]) < 1e-6);
        let extra_filter = wide_stem.narrow(1, 4, 1) * (5.0 / 3.0);
        let mean_filter = rgb_stem.mean_dim(1, true, Kind::Float);
        assert!((extra_filter - mean_filter).abs().max().double_value(&[]) < 1e-6);
        // A tile whose five bands are alike meets the pretrained stem's response to its RGB copy.
        let plane = Tensor::randn([1, 1, 32, 32], (Kind::Float, Device::Cpu));
        let response = |weight: &Tensor, channels: i64| {
            plane
                .repeat([1, channels, 1, 1])
                .conv2d::<Tensor>(weight, None, 2, 1, 1, 1)
        };
        let gap = (response(&wide_stem, 5) - response(&rgb_stem, 3))
            .abs()
            .max();
        assert!(gap.double_value(&[]) < 1e-5);
        let features = tch::no_grad(|| {
            wide.features_t(
                &Tensor::zeros([1, 5, 64, 64], (Kind::Float, Device::Cpu)),
                false,
            )
        });
        assert_eq!(features.size(), vec![1, 1280]);
    }

    #[test]
    fn only_effnet_takes_other_than_three_bands() {
        crate::torch::init_for_tests();
        let store = nn::VarStore::new(Device::Cpu);
        let error = Backbone::new(&store.root(), BackboneKind::Resnet18, 4).expect_err("refused");
        assert!(error.to_string().contains("--bands rgb"), "{error}");
    }
}
