//! The network as the exporter sees it: batch norm folded into the convolutions, every layer with
//! concrete weights and padding. Built from a checkpoint's tensors alone (no libtorch), then
//! written as an f32 or an int8 ONNX graph.

use anyhow::{bail, Context};

use crate::model::backbone::{BackboneKind, SMALL_CNN_LAYERS, SMALL_CNN_WIDTH};
use crate::model::effnet::{self, EfficientNetConfig, Padding};
use crate::train::checkpoint::Checkpoint;

/// Batch-norm epsilon of layers built with tch's defaults (the small CNN).
const TCH_BATCH_NORM_EPSILON: f64 = 1e-5;

/// A convolution with its batch norm folded in: `y = W * x + b`, optionally clipped to [0, 6].
#[derive(Debug, Clone)]
pub struct Conv {
    pub name: String,
    /// `[out, in / groups, kernel, kernel]`, row-major.
    pub weight: Vec<f32>,
    pub out_channels: usize,
    pub in_per_group: usize,
    pub kernel: usize,
    pub bias: Vec<f32>,
    pub stride: usize,
    /// ONNX order: top, left, bottom, right.
    pub pads: [usize; 4],
    pub groups: usize,
    pub relu6: bool,
}

/// A fully connected layer, `y = x Wᵀ + b`, `weight` `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Vec<f32>,
    pub outputs: usize,
    pub inputs: usize,
    pub bias: Vec<f32>,
}

/// One step of the backbone; values are numbered by the step that makes them, the image is
/// value 0 and step `i` makes value `i + 1`.
#[derive(Debug, Clone)]
pub enum Step {
    Conv {
        input: usize,
        conv: Conv,
    },
    /// Residual connection.
    Add {
        a: usize,
        b: usize,
    },
}

/// The whole exported network: backbone steps, global average pooling of the last value, the hash
/// layer and the classifier (softmax on top).
#[derive(Debug, Clone)]
pub struct Network {
    pub channels: usize,
    pub size: usize,
    pub steps: Vec<Step>,
    pub hash: Linear,
    pub classifier: Linear,
}

impl Network {
    /// The number of the backbone's output value (the one pooled into features).
    pub fn last_value(&self) -> usize {
        self.steps.len()
    }

    /// Reads a checkpoint's network. Fails, naming the problem, for a backbone the exporter cannot
    /// write, a missing or misshapen tensor, or a checkpoint without class names.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> anyhow::Result<Self> {
        let info = &checkpoint.info;
        if info.config.without_classifier {
            bail!(
                "the checkpoint was trained without a classifier (DPSH): a board model needs one \
                 for its `probs` output and the label it downlinks"
            );
        }
        if info.config.loss.objective.classifies_signs() {
            bail!(
                "the checkpoint's classifier was trained on the code's signs (GreedyHash): the \
                 board model's classifier reads the hash layer's outputs, so its labels would be \
                 another classifier's"
            );
        }
        if info.classes.is_empty() {
            bail!("the checkpoint has no class names: it cannot be exported with a model card");
        }
        let size = info.input.size as usize;
        let channels = info.input.channels();
        let mut builder = Builder {
            checkpoint,
            steps: Vec::new(),
            size,
        };
        let features = match info.config.backbone {
            BackboneKind::EffnetLite0 => builder.efficientnet(channels)?,
            BackboneKind::SmallCnn => builder.small_cnn(channels)?,
            other => bail!(
                "the exporter writes effnet-lite0 and small-cnn networks; this checkpoint's \
                 backbone is {other}"
            ),
        };
        let bits = info.config.bits as usize;
        let hash = linear(checkpoint, "head.hash", features, bits)?;
        let classifier = linear(checkpoint, "head.classifier", bits, info.classes.len())?;
        Ok(Self {
            channels,
            size,
            steps: builder.steps,
            hash,
            classifier,
        })
    }
}

fn tensor(checkpoint: &Checkpoint, name: &str, shape: &[usize]) -> anyhow::Result<Vec<f32>> {
    let (found, values) = checkpoint
        .f32_tensor(name)
        .context("the checkpoint is not of the architecture its configuration names")?;
    if found != shape {
        bail!(
            "{name} has shape {found:?}, expected {shape:?}: the checkpoint is not of the \
             architecture its configuration names"
        );
    }
    Ok(values)
}

fn linear(
    checkpoint: &Checkpoint,
    prefix: &str,
    inputs: usize,
    outputs: usize,
) -> anyhow::Result<Linear> {
    Ok(Linear {
        weight: tensor(checkpoint, &format!("{prefix}.weight"), &[outputs, inputs])?,
        bias: tensor(checkpoint, &format!("{prefix}.bias"), &[outputs])?,
        outputs,
        inputs,
    })
}

struct Builder<'a> {
    checkpoint: &'a Checkpoint,
    steps: Vec<Step>,
    /// Spatial edge of the latest value.
    size: usize,
}

struct ConvSpec {
    conv: String,
    bn: String,
    input: usize,
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    epsilon: f64,
    relu6: bool,
}

impl Builder<'_> {
    /// Adds a convolution + batch norm (folded) reading value `spec.input`; returns its value.
    fn conv_bn(&mut self, spec: ConvSpec) -> anyhow::Result<usize> {
        let in_per_group = spec.inputs / spec.groups;
        let k = spec.kernel;
        let mut weight = tensor(
            self.checkpoint,
            &format!("{}.weight", spec.conv),
            &[spec.outputs, in_per_group, k, k],
        )?;
        let bn = |field: &str| {
            tensor(
                self.checkpoint,
                &format!("{}.{field}", spec.bn),
                &[spec.outputs],
            )
        };
        let (gamma, beta, mean, var) = (
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        );
        let per_output = in_per_group * k * k;
        let mut bias = Vec::with_capacity(spec.outputs);
        for o in 0..spec.outputs {
            // Folded in f64: the scale can be large where a channel's variance is tiny.
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + spec.epsilon).sqrt();
            for w in &mut weight[o * per_output..(o + 1) * per_output] {
                *w = (f64::from(*w) * scale) as f32;
            }
            bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
        }
        let (k_i, s_i, size_i) = (k as i64, spec.stride as i64, self.size as i64);
        let (before, after) = match spec.padding {
            Padding::TfSame if spec.stride > 1 => effnet::tf_same_pads(size_i, k_i, s_i),
            _ => (k_i / 2, k_i / 2),
        };
        self.size = ((size_i + before + after - k_i) / s_i + 1) as usize;
        let (before, after) = (before as usize, after as usize);
        self.steps.push(Step::Conv {
            input: spec.input,
            conv: Conv {
                name: spec.conv.clone(),
                weight,
                out_channels: spec.outputs,
                in_per_group,
                kernel: k,
                bias,
                stride: spec.stride,
                pads: [before, before, after, after],
                groups: spec.groups,
                relu6: spec.relu6,
            },
        });
        Ok(self.steps.len())
    }

    fn efficientnet(&mut self, channels: usize) -> anyhow::Result<usize> {
        let config = EfficientNetConfig::default();
        let common =
            |conv: &str, bn: &str, input, inputs, outputs, kernel, stride, groups, relu6| {
                ConvSpec {
                    conv: conv.to_string(),
                    bn: bn.to_string(),
                    input,
                    inputs,
                    outputs,
                    kernel,
                    stride,
                    groups,
                    padding: config.padding,
                    epsilon: config.batch_norm_epsilon,
                    relu6,
                }
            };
        let stem = effnet::STEM_CHANNELS as usize;
        let mut value = self.conv_bn(common(
            "backbone._conv_stem",
            "backbone._bn0",
            0,
            channels,
            stem,
            3,
            2,
            1,
            true,
        ))?;
        let mut last_channels = stem;
        for block in effnet::block_plan() {
            let prefix = format!("backbone._blocks.{}", block.index);
            let names = |part: &str| format!("{prefix}.{part}");
            let block_input = value;
            let expanded = block.expanded as usize;
            if block.expand {
                value = self.conv_bn(common(
                    &names("_expand_conv"),
                    &names("_bn0"),
                    value,
                    block.input as usize,
                    expanded,
                    1,
                    1,
                    1,
                    true,
                ))?;
            }
            value = self.conv_bn(common(
                &names("_depthwise_conv"),
                &names("_bn1"),
                value,
                expanded,
                expanded,
                block.kernel as usize,
                block.stride as usize,
                expanded,
                true,
            ))?;
            value = self.conv_bn(common(
                &names("_project_conv"),
                &names("_bn2"),
                value,
                expanded,
                block.output as usize,
                1,
                1,
                1,
                false,
            ))?;
            if block.residual {
                self.steps.push(Step::Add {
                    a: value,
                    b: block_input,
                });
                value = self.steps.len();
            }
            last_channels = block.output as usize;
        }
        let features = effnet::FEATURE_SIZE as usize;
        self.conv_bn(common(
            "backbone._conv_head",
            "backbone._bn1",
            value,
            last_channels,
            features,
            1,
            1,
            1,
            true,
        ))?;
        Ok(features)
    }

    fn small_cnn(&mut self, channels: usize) -> anyhow::Result<usize> {
        let mut value = 0;
        let mut inputs = channels;
        for (index, multiple) in SMALL_CNN_LAYERS.into_iter().enumerate() {
            let outputs = (SMALL_CNN_WIDTH * multiple) as usize;
            value = self.conv_bn(ConvSpec {
                conv: format!("backbone.conv{index}"),
                bn: format!("backbone.bn{index}"),
                input: value,
                inputs,
                outputs,
                kernel: 3,
                stride: 2,
                groups: 1,
                padding: Padding::Symmetric,
                epsilon: TCH_BATCH_NORM_EPSILON,
                relu6: true,
            })?;
            inputs = outputs;
        }
        Ok(inputs)
    }
}
