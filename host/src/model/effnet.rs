//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for edge int8): ReLU6 instead of swish,
//! no squeeze-and-excitation, stem (32) and head (1280) fixed. Built so the variable names match
//! the TensorFlow-port checkpoint (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ...), which
//! then loads with no renaming.
//!
//! That checkpoint was converted from TensorFlow, whose "SAME" padding is asymmetric for strided
//! convolutions (the extra row and column go at the bottom and right) and whose batch-norm epsilon
//! is 1e-3. Both are options here because they change the network's outputs: `orbhash weights
//! classify` on real photos decides which the weights expect (see the model's docs).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Output channels of the final 1x1 convolution: the backbone's feature size.
pub const FEATURE_SIZE: i64 = 1280;
/// Channels out of the stem convolution.
pub const STEM_CHANNELS: i64 = 32;

/// One stage of MBConv blocks: (repeats, kernel, first stride, expand ratio, output channels).
const STAGES: [(usize, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// One MBConv block as laid out by [`STAGES`]: what the tch network and the ONNX exporter both
/// build, so the two cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlan {
    /// Position in `_blocks`.
    pub index: usize,
    pub input: i64,
    /// Channels after the 1x1 expansion (equal to `input` when there is none).
    pub expanded: i64,
    pub output: i64,
    pub kernel: i64,
    pub stride: i64,
    /// Whether the block has a 1x1 expansion convolution (expand ratio above 1).
    pub expand: bool,
    /// Whether the block adds its input to its output.
    pub residual: bool,
}

/// The 16 blocks of EfficientNet-Lite0 after the stem.
pub fn block_plan() -> Vec<BlockPlan> {
    let mut plan = Vec::new();
    let mut channels = STEM_CHANNELS;
    for (repeats, kernel, first_stride, expand_ratio, output) in STAGES {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { first_stride } else { 1 };
            plan.push(BlockPlan {
                index: plan.len(),
                input: channels,
                expanded: channels * expand_ratio,
                output,
                kernel,
                stride,
                expand: expand_ratio != 1,
                residual: stride == 1 && channels == output,
            });
            channels = output;
        }
    }
    plan
}

/// Padding (before, after) of one spatial axis of `extent` pixels under TensorFlow's "SAME" rule:
/// output size ceil(extent / stride), the odd pixel after.
pub fn tf_same_pads(extent: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let output = (extent + stride - 1) / stride;
    let total = ((output - 1) * stride + kernel - extent).max(0);
    (total / 2, total - total / 2)
}

/// How strided convolutions pad their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow's "SAME": output size ceil(input / stride), extra padding at bottom/right.
    TfSame,
    /// PyTorch's usual kernel/2 on every side.
    Symmetric,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetConfig {
    /// Bands of the input: 3 for the ImageNet network, more for a stem widened to NIR or SWIR
    /// (see [`crate::model::backbone::load_pretrained`] for how the extra filters start).
    pub input_channels: i64,
    pub padding: Padding,
    pub batch_norm_epsilon: f64,
    /// Highest stochastic-depth drop rate (reached at the last block) while training.
    pub drop_connect_rate: f64,
    /// ImageNet classes of the classifier head; `None` builds the backbone alone.
    pub imagenet_classes: Option<i64>,
}

impl Default for EfficientNetConfig {
    fn default() -> Self {
        Self {
            input_channels: 3,
            padding: Padding::TfSame,
            batch_norm_epsilon: 1e-3,
            drop_connect_rate: 0.2,
            imagenet_classes: None,
        }
    }
}

/// A convolution without bias followed by batch norm, padded as configured.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    kernel: i64,
    stride: i64,
    padding: Padding,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        conv_path: nn::Path,
        bn_path: nn::Path,
        input: i64,
        output: i64,
        kernel: i64,
        stride: i64,
        groups: i64,
        config: &EfficientNetConfig,
    ) -> Self {
        let symmetric = match config.padding {
            Padding::Symmetric => kernel / 2,
            // Stride 1 with an odd kernel pads k/2 on every side in TensorFlow too.
            Padding::TfSame if stride == 1 => kernel / 2,
            Padding::TfSame => 0,
        };
        let conv = nn::conv2d(
            conv_path,
            input,
            output,
            kernel,
            nn::ConvConfig {
                stride,
                padding: symmetric,
                groups,
                bias: false,
                ..Default::default()
            },
        );
        let bn = nn::batch_norm2d(
            bn_path,
            output,
            nn::BatchNormConfig {
                eps: config.batch_norm_epsilon,
                // TensorFlow's moving-average decay of 0.99.
                momentum: 0.01,
                ..Default::default()
            },
        );
        Self {
            conv,
            bn,
            kernel,
            stride,
            padding: config.padding,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let padded;
        let input = if self.padding == Padding::TfSame && self.stride > 1 {
            padded = tf_same_pad(xs, self.kernel, self.stride);
            &padded
        } else {
            xs
        };
        input.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// Pads height and width as TensorFlow's "SAME" does for a strided convolution.
fn tf_same_pad(xs: &Tensor, kernel: i64, stride: i64) -> Tensor {
    let size = xs.size();
    let (height, width) = (size[size.len() - 2], size[size.len() - 1]);
    let (top, bottom) = tf_same_pads(height, kernel, stride);
    let (left, right) = tf_same_pads(width, kernel, stride);
    xs.constant_pad_nd([left, right, top, bottom])
}

/// Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, residual when shapes allow.
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
    drop_rate: f64,
}

impl MbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match &self.expand {
            Some(expand) => expand.forward_t(xs, train).relu6(),
            None => xs.shallow_clone(),
        };
        ys = self.depthwise.forward_t(&ys, train).relu6();
        ys = self.project.forward_t(&ys, train);
        if !self.residual {
            return ys;
        }
        if train && self.drop_rate > 0.0 {
            ys = drop_connect(&ys, self.drop_rate);
        }
        ys + xs
    }
}

/// Stochastic depth: drops the whole residual branch for a random subset of the batch.
fn drop_connect(xs: &Tensor, rate: f64) -> Tensor {
    let keep = 1.0 - rate;
    let batch = xs.size()[0];
    let mask = (Tensor::rand([batch, 1, 1, 1], (xs.kind(), xs.device())) + keep).floor();
    xs / keep * mask
}

/// EfficientNet-Lite0 up to its pooled 1280-d features, with the ImageNet head when configured.
#[derive(Debug)]
pub struct EfficientNetLite0 {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    classifier: Option<nn::Linear>,
}

impl EfficientNetLite0 {
    pub fn new(root: &nn::Path, config: &EfficientNetConfig) -> Self {
        let stem = ConvBn::new(
            root / "_conv_stem",
            root / "_bn0",
            config.input_channels,
            STEM_CHANNELS,
            3,
            2,
            1,
            config,
        );
        let plan = block_plan();
        let total_blocks = plan.len();
        let mut blocks = Vec::with_capacity(total_blocks);
        for block in &plan {
            let path = root / "_blocks" / block.index;
            let expand = block.expand.then(|| {
                ConvBn::new(
                    &path / "_expand_conv",
                    &path / "_bn0",
                    block.input,
                    block.expanded,
                    1,
                    1,
                    1,
                    config,
                )
            });
            let depthwise = ConvBn::new(
                &path / "_depthwise_conv",
                &path / "_bn1",
                block.expanded,
                block.expanded,
                block.kernel,
                block.stride,
                block.expanded,
                config,
            );
            let project = ConvBn::new(
                &path / "_project_conv",
                &path / "_bn2",
                block.expanded,
                block.output,
                1,
                1,
                1,
                config,
            );
            blocks.push(MbConv {
                expand,
                depthwise,
                project,
                residual: block.residual,
                drop_rate: config.drop_connect_rate * block.index as f64 / total_blocks as f64,
            });
        }
        let channels = plan.last().map_or(STEM_CHANNELS, |block| block.output);
        let head = ConvBn::new(
            root / "_conv_head",
            root / "_bn1",
            channels,
            FEATURE_SIZE,
            1,
            1,
            1,
            config,
        );
        let classifier = config
            .imagenet_classes
            .map(|classes| nn::linear(root / "_fc", FEATURE_SIZE, classes, Default::default()));
        Self {
            stem,
            blocks,
            head,
            classifier,
        }
    }

    /// Pooled features, `[batch, 1280]`.
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.stem_and_blocks_t(xs, self.blocks.len(), train);
        self.blocks_and_head_t(&ys, self.blocks.len(), train)
    }

    /// The stem and the first `blocks` MBConv blocks: the part that stays fixed, and is computed
    /// once per tile, when only the last blocks train.
    pub fn stem_and_blocks_t(&self, xs: &Tensor, blocks: usize, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train).relu6();
        for block in self.blocks.iter().take(blocks) {
            ys = block.forward_t(&ys, train);
        }
        ys
    }

    /// Blocks `from..` and the head, pooled: the rest of [`Self::features_t`] after
    /// [`Self::stem_and_blocks_t`] with `blocks = from`.
    pub fn blocks_and_head_t(&self, ys: &Tensor, from: usize, train: bool) -> Tensor {
        let mut ys = ys.shallow_clone();
        for block in self.blocks.iter().skip(from) {
            ys = block.forward_t(&ys, train);
        }
        self.head
            .forward_t(&ys, train)
            .relu6()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }

    /// MBConv blocks after the stem (16).
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// ImageNet logits, when the model was built with its classifier head.
    pub fn imagenet_logits(&self, xs: &Tensor) -> Option<Tensor> {
        let classifier = self.classifier.as_ref()?;
        Some(self.features_t(xs, false).apply(classifier))
    }
}

impl ModuleT for EfficientNetLite0 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features_t(xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn tf_same_padding_puts_the_extra_pixel_at_the_bottom_right() {
        crate::torch::init_for_tests();
        let xs = Tensor::ones([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        // k=3, s=2 on 4 pixels: output 2, needs (2-1)*2+3-4 = 1 pixel: 0 before, 1 after.
        let padded = tf_same_pad(&xs, 3, 2);
        assert_eq!(padded.size(), vec![1, 1, 5, 5]);
        assert_eq!(padded.double_value(&[0, 0, 0, 0]), 1.0);
        assert_eq!(padded.double_value(&[0, 0, 4, 4]), 0.0);
    }

    #[test]
    fn has_the_reference_shapes_and_parameter_count() {
        crate::torch::init_for_tests();
        let store = nn::VarStore::new(Device::Cpu);
        let config = EfficientNetConfig {
            imagenet_classes: Some(1000),
            ..Default::default()
        };
        let model = EfficientNetLite0::new(&store.root(), &config);
        let variables = store.variables();
        // The checkpoint's 296 tensors, less 49 batch-norm `num_batches_tracked` counters.
        assert_eq!(variables.len(), 296 - 49);
        let parameters: i64 = store
            .trainable_variables()
            .iter()
            .map(|tensor| tensor.numel() as i64)
            .sum();
        assert_eq!(parameters, 4_652_008);
        let xs = Tensor::zeros([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        assert_eq!(model.features_t(&xs, false).size(), vec![2, FEATURE_SIZE]);
        let logits = model.imagenet_logits(&xs).expect("head configured");
        assert_eq!(logits.size(), vec![2, 1000]);
    }

    /// 1.5 sin(0.001 i) over the flat CHW index i: smooth, signed, and the same in Python.
    fn reference_input() -> Tensor {
        let values: Vec<f32> = (0..3 * 224 * 224)
            .map(|index| (1.5 * (0.001 * index as f64).sin()) as f32)
            .collect();
        Tensor::from_slice(&values).view([1, 3, 224, 224])
    }

    /// Pins the imported network to timm's `tf_efficientnet_lite0` with the same weights: the
    /// figures come from `host/tests/reference/effnet_lite0_reference.py`.
    #[test]
    fn imported_weights_reproduce_the_reference_implementation() {
        crate::torch::init_for_tests();
        let Some([checkpoint]) = orbhash_test_support::require_all(
            [crate::assets::efficientnet_lite0_checkpoint_path()],
            "run scripts/setup.sh",
        ) else {
            return;
        };
        let tensors = crate::model::pth::read_file(&checkpoint).expect("checkpoint reads");
        let dir = std::env::temp_dir().join(format!("orbhash-effnet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let weights = dir.join("effnet.safetensors");
        crate::model::pth::write_safetensors(&tensors, Default::default(), &weights)
            .expect("converts");
        let (_store, model) =
            crate::model::imagenet::load_classifier(&weights, Padding::TfSame, 1e-3)
                .expect("loads");
        std::fs::remove_dir_all(&dir).ok();

        let xs = reference_input();
        let features = tch::no_grad(|| model.features_t(&xs, false));
        let close = |actual: f64, expected: f64, tolerance: f64| {
            assert!(
                (actual - expected).abs() <= tolerance,
                "{actual} differs from the reference {expected}"
            );
        };
        close(features.sum(Kind::Float).double_value(&[]), 123.5444, 2e-3);
        close(features.norm().double_value(&[]), 14.85888, 2e-4);
        close(features.double_value(&[0, 5]), 0.016164, 1e-5);
        close(features.double_value(&[0, 6]), 0.019336, 1e-5);
        let logits = tch::no_grad(|| model.imagenet_logits(&xs)).expect("head");
        let expected_logits = [
            -0.45366, -0.73452, -0.01683, -1.42305, -0.89934, 0.09319, -1.97895, 0.66137,
        ];
        for (class, expected) in expected_logits.iter().enumerate() {
            close(logits.double_value(&[0, class as i64]), *expected, 1e-4);
        }
        let (_, top) = logits.topk(5, -1, true, true);
        let top: Vec<i64> = top.squeeze_dim(0).try_into().expect("indices");
        assert_eq!(top, vec![916, 905, 811, 753, 530]);
    }
}
