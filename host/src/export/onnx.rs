//! Writing a [`Network`] as an ONNX `ModelProto` with tract's prost types.
//!
//! Opset 13 (IR version 7), the default domain only: every operator used here (Conv, QLinearConv,
//! QuantizeLinear/DequantizeLinear, Clip with tensor bounds, Gemm, Softmax on one axis) has had
//! its present form since opset 13, and onnxruntime and tract both run it. Weights are stored as
//! little-endian `raw_data`. The batch dimension is symbolic (`batch`).
//!
//! Values are named by the network's value numbers: `v{n}` (f32, after the activation) or `q{n}`
//! (int8), so calibration can ask tract for any of them by name.

use std::collections::HashMap;

use orbhash_contract::card::{HASH_OUTPUT, IMAGE_INPUT, PROBS_OUTPUT};
use orbhash_infer::model::f32_value_info;
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use super::graph::{Conv, Linear, Network, Step};

pub const OPSET: i64 = 13;
const IR_VERSION: i64 = 7;

/// Name of network value `n` in an f32 graph.
pub fn value_name(n: usize) -> String {
    if n == 0 {
        IMAGE_INPUT.to_string()
    } else {
        format!("v{n}")
    }
}

/// An activation range, as calibration measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// Affine int8 quantisation of one tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i8,
}

impl QuantParams {
    /// Covers `range` widened to include 0 (ONNX needs zero exactly representable); for a value
    /// after ReLU6 the range starts at 0, so saturation at -128 is the ReLU itself.
    pub fn for_range(range: Range) -> Self {
        let (min, max) = (range.min.min(0.0), range.max.max(0.0));
        let scale = ((max - min) / 255.0).max(1e-8);
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
        Self { scale, zero_point }
    }
}

/// How int8 weights are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum WeightScaling {
    /// One scale per output channel: follows channels of very different magnitude, as batch-norm
    /// folding makes them.
    PerChannel,
    /// One scale per tensor.
    PerTensor,
}

#[derive(Default)]
struct GraphWriter {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    has_relu6_bounds: bool,
}

/// Convolutions an int8 graph keeps in f32 (between DequantizeLinear and QuantizeLinear), where
/// int8 costs the most accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum KeepF32 {
    /// The first convolution, which sees the raw normalised image.
    Stem,
    /// Depthwise convolutions: one 3x3 or 5x5 filter per channel, few weights to average out
    /// rounding.
    Depthwise,
    /// 1x1 projections without activation, which feed the residual sums.
    Project,
    /// Nothing: every convolution in int8.
    None,
}

/// Whether an int8 graph keeping `keep` in f32 computes `conv` (reading value `input`) in f32.
pub fn runs_in_f32(keep: &[KeepF32], input: usize, conv: &Conv) -> bool {
    keep.iter().any(|k| k.matches(input, conv))
}

impl KeepF32 {
    fn matches(self, input: usize, conv: &Conv) -> bool {
        match self {
            Self::Stem => input == 0,
            Self::Depthwise => conv.groups > 1,
            Self::Project => conv.kernel == 1 && !conv.relu6,
            Self::None => false,
        }
    }
}

fn raw_tensor(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn attribute_ints(name: &str, values: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

fn attribute_int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

impl GraphWriter {
    fn f32s(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers
            .push(raw_tensor(name, dims, DataType::Float, raw));
        name.to_string()
    }

    fn i8s(&mut self, name: &str, dims: &[usize], values: &[i8]) -> String {
        let raw = values.iter().map(|&v| v as u8).collect();
        self.initializers
            .push(raw_tensor(name, dims, DataType::Int8, raw));
        name.to_string()
    }

    fn i32s(&mut self, name: &str, dims: &[usize], values: &[i32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers
            .push(raw_tensor(name, dims, DataType::Int32, raw));
        name.to_string()
    }

    /// A scalar scale and zero point for an activation.
    fn quant_params(&mut self, prefix: &str, params: QuantParams) -> (String, String) {
        (
            self.f32s(&format!("{prefix}_scale"), &[], &[params.scale]),
            self.i8s(&format!("{prefix}_zero_point"), &[], &[params.zero_point]),
        )
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute: attributes,
            ..Default::default()
        });
    }

    fn conv_attributes(conv: &Conv) -> Vec<pb::AttributeProto> {
        vec![
            attribute_ints("kernel_shape", &[conv.kernel, conv.kernel]),
            attribute_ints("strides", &[conv.stride, conv.stride]),
            attribute_ints("pads", &conv.pads),
            attribute_ints("dilations", &[1, 1]),
            attribute_int("group", conv.groups as i64),
        ]
    }

    /// Conv in f32 (with `Clip` for ReLU6) from `input` to `out`.
    fn f32_conv(&mut self, conv: &Conv, input: &str, out: &str) {
        if !self.has_relu6_bounds {
            self.f32s("relu6_min", &[], &[0.0]);
            self.f32s("relu6_max", &[], &[6.0]);
            self.has_relu6_bounds = true;
        }
        let weight = self.f32s(
            &format!("{}.weight", conv.name),
            &Self::weight_dims(conv),
            &conv.weight,
        );
        let bias = self.f32s(
            &format!("{}.bias", conv.name),
            &[conv.out_channels],
            &conv.bias,
        );
        let conv_out = if conv.relu6 {
            format!("{out}_conv")
        } else {
            out.to_string()
        };
        self.node(
            "Conv",
            &conv_out,
            &[input, &weight, &bias],
            &conv_out,
            Self::conv_attributes(conv),
        );
        if conv.relu6 {
            self.node(
                "Clip",
                out,
                &[&conv_out, "relu6_min", "relu6_max"],
                out,
                vec![],
            );
        }
    }

    fn weight_dims(conv: &Conv) -> [usize; 4] {
        [
            conv.out_channels,
            conv.in_per_group,
            conv.kernel,
            conv.kernel,
        ]
    }

    /// `features` (f32, `[N, C, H, W]`) → pooled → hash → probs, in f32.
    fn head(&mut self, network: &Network, features: &str) {
        self.node("GlobalAveragePool", "pool", &[features], "pooled4d", vec![]);
        self.node(
            "Flatten",
            "flatten",
            &["pooled4d"],
            "pooled",
            vec![attribute_int("axis", 1)],
        );
        self.linear("pooled", &network.hash, "hash_weight", HASH_OUTPUT);
        self.linear(
            HASH_OUTPUT,
            &network.classifier,
            "classifier_weight",
            "logits",
        );
        self.node(
            "Softmax",
            PROBS_OUTPUT,
            &["logits"],
            PROBS_OUTPUT,
            vec![attribute_int("axis", 1)],
        );
    }

    fn linear(&mut self, input: &str, linear: &Linear, weight_name: &str, output: &str) {
        let weight = self.f32s(
            weight_name,
            &[linear.outputs, linear.inputs],
            &linear.weight,
        );
        let bias = self.f32s(
            &format!("{weight_name}_bias"),
            &[linear.outputs],
            &linear.bias,
        );
        self.node(
            "Gemm",
            output,
            &[input, &weight, &bias],
            output,
            vec![attribute_int("transB", 1)],
        );
    }

    fn finish(self, network: &Network, graph_name: &str) -> pb::GraphProto {
        use pb::tensor_shape_proto::dimension::Value::{DimParam, DimValue};
        let batch = || DimParam("batch".to_string());
        let size = network.size as i64;
        pb::GraphProto {
            name: graph_name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![f32_value_info(
                IMAGE_INPUT,
                vec![
                    batch(),
                    DimValue(network.channels as i64),
                    DimValue(size),
                    DimValue(size),
                ],
            )],
            output: vec![
                f32_value_info(
                    HASH_OUTPUT,
                    vec![batch(), DimValue(network.hash.outputs as i64)],
                ),
                f32_value_info(
                    PROBS_OUTPUT,
                    vec![batch(), DimValue(network.classifier.outputs as i64)],
                ),
            ],
            ..Default::default()
        }
    }
}

/// The f32 graph: Conv (batch norm folded) + Clip for ReLU6, Add for residuals.
pub fn f32_graph(network: &Network) -> pb::GraphProto {
    let mut writer = GraphWriter::default();
    for (index, step) in network.steps.iter().enumerate() {
        let out = value_name(index + 1);
        match step {
            Step::Conv { input, conv } => {
                writer.f32_conv(conv, &value_name(*input), &out);
            }
            Step::Add { a, b } => {
                writer.node(
                    "Add",
                    &out,
                    &[&value_name(*a), &value_name(*b)],
                    &out,
                    vec![],
                );
            }
        }
    }
    writer.head(network, &value_name(network.last_value()));
    writer.finish(network, "orbhash-dhcnn-f32")
}

/// The int8 graph in the operator form tract runs as integer kernels: QLinearConv with int8
/// activations and weights and int32 bias, ReLU6 folded into the output's range, residual adds
/// through DequantizeLinear → Add → QuantizeLinear (tract has no QLinearAdd), and the pooling,
/// hash layer and classifier in f32: they are a sliver of the work, and the code is the sign of
/// the hash layer, which int8 would blur near zero.
///
/// `ranges[n]` is the calibrated range of value `n` (0 = the image).
pub fn int8_graph(
    network: &Network,
    ranges: &[Range],
    weights: WeightScaling,
    keep_f32: &[KeepF32],
) -> anyhow::Result<pb::GraphProto> {
    anyhow::ensure!(
        ranges.len() == network.steps.len() + 1,
        "calibration measured {} values, the network has {}",
        ranges.len(),
        network.steps.len() + 1
    );
    let params: Vec<QuantParams> = ranges.iter().copied().map(QuantParams::for_range).collect();
    let mut writer = GraphWriter::default();
    let q = |n: usize| format!("q{n}");
    let mut scale_names: HashMap<usize, (String, String)> = HashMap::new();
    let mut qparams = |writer: &mut GraphWriter, n: usize| {
        scale_names
            .entry(n)
            .or_insert_with(|| writer.quant_params(&q(n), params[n]))
            .clone()
    };
    let (s0, z0) = qparams(&mut writer, 0);
    writer.node(
        "QuantizeLinear",
        "quantize_image",
        &[IMAGE_INPUT, &s0, &z0],
        &q(0),
        vec![],
    );
    for (index, step) in network.steps.iter().enumerate() {
        let n = index + 1;
        let (out_scale, out_zero) = qparams(&mut writer, n);
        match step {
            Step::Conv { input, conv } if runs_in_f32(keep_f32, *input, conv) => {
                let (in_scale, in_zero) = qparams(&mut writer, *input);
                let dequantised = format!("{}_f32", q(*input));
                writer.node(
                    "DequantizeLinear",
                    &dequantised,
                    &[&q(*input), &in_scale, &in_zero],
                    &dequantised,
                    vec![],
                );
                let out = format!("{}_f32", value_name(n));
                writer.f32_conv(conv, &dequantised, &out);
                writer.node(
                    "QuantizeLinear",
                    &q(n),
                    &[&out, &out_scale, &out_zero],
                    &q(n),
                    vec![],
                );
            }
            Step::Conv { input, conv } => {
                let (in_scale, in_zero) = qparams(&mut writer, *input);
                let (w_q, w_scales) = quantise_weights(conv, weights);
                let dims = GraphWriter::weight_dims(conv);
                let weight = writer.i8s(&format!("{}.weight_q", conv.name), &dims, &w_q);
                let (scale_dims, zero_points): (Vec<usize>, Vec<i8>) = match weights {
                    WeightScaling::PerChannel => (vec![conv.out_channels], vec![0; w_scales.len()]),
                    WeightScaling::PerTensor => (vec![], vec![0]),
                };
                let w_scale = writer.f32s(
                    &format!("{}.weight_scale", conv.name),
                    &scale_dims,
                    &w_scales,
                );
                let w_zero = writer.i8s(
                    &format!("{}.weight_zero_point", conv.name),
                    &scale_dims,
                    &zero_points,
                );
                let x_scale = params[*input].scale;
                let bias: Vec<i32> = conv
                    .bias
                    .iter()
                    .enumerate()
                    .map(|(o, b)| {
                        let w_scale = output_scale(&w_scales, o);
                        (f64::from(*b) / (f64::from(x_scale) * f64::from(w_scale)))
                            .round()
                            .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                            as i32
                    })
                    .collect();
                let bias = writer.i32s(
                    &format!("{}.bias_q", conv.name),
                    &[conv.out_channels],
                    &bias,
                );
                writer.node(
                    "QLinearConv",
                    &q(n),
                    &[
                        &q(*input),
                        &in_scale,
                        &in_zero,
                        &weight,
                        &w_scale,
                        &w_zero,
                        &out_scale,
                        &out_zero,
                        &bias,
                    ],
                    &q(n),
                    GraphWriter::conv_attributes(conv),
                );
            }
            Step::Add { a, b } => {
                let mut dequantised = Vec::new();
                for operand in [*a, *b] {
                    let (scale, zero) = qparams(&mut writer, operand);
                    let name = format!("add{n}_operand{operand}");
                    writer.node(
                        "DequantizeLinear",
                        &name,
                        &[&q(operand), &scale, &zero],
                        &name,
                        vec![],
                    );
                    dequantised.push(name);
                }
                let sum = format!("add{n}");
                writer.node(
                    "Add",
                    &sum,
                    &[&dequantised[0], &dequantised[1]],
                    &sum,
                    vec![],
                );
                writer.node(
                    "QuantizeLinear",
                    &q(n),
                    &[&sum, &out_scale, &out_zero],
                    &q(n),
                    vec![],
                );
            }
        }
    }
    let last = network.last_value();
    let (scale, zero) = qparams(&mut writer, last);
    writer.node(
        "DequantizeLinear",
        "features",
        &[&q(last), &scale, &zero],
        "features",
        vec![],
    );
    writer.head(network, "features");
    Ok(writer.finish(network, "orbhash-dhcnn-int8"))
}

/// The weights an int8 graph computes `conv` with: its int8 weights times their scale.
pub fn dequantised_weights(conv: &Conv, scaling: WeightScaling) -> Vec<f32> {
    let (quantised, scales) = quantise_weights(conv, scaling);
    let per_output = quantised.len() / conv.out_channels.max(1);
    quantised
        .iter()
        .enumerate()
        .map(|(i, q)| f32::from(*q) * output_scale(&scales, i / per_output))
        .collect()
}

/// The weight scale of output channel `output`: one per channel, or one for the whole tensor.
fn output_scale(scales: &[f32], output: usize) -> f32 {
    scales[if scales.len() == 1 { 0 } else { output }]
}

/// Symmetric int8 weights and their scale(s).
fn quantise_weights(conv: &Conv, scaling: WeightScaling) -> (Vec<i8>, Vec<f32>) {
    let per_output = conv.weight.len() / conv.out_channels;
    let scale_of = |values: &[f32]| {
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            max / 127.0
        } else {
            1.0
        }
    };
    let scales: Vec<f32> = match scaling {
        WeightScaling::PerTensor => vec![scale_of(&conv.weight)],
        WeightScaling::PerChannel => conv.weight.chunks(per_output).map(scale_of).collect(),
    };
    let quantised = conv
        .weight
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let scale = output_scale(&scales, i / per_output);
            (w / scale).round().clamp(-127.0, 127.0) as i8
        })
        .collect();
    (quantised, scales)
}

/// A model around `graph` with the card's `metadata_props` ([`ModelCard::to_props`]: the card as
/// one JSON document).
///
/// [`ModelCard::to_props`]: orbhash_contract::card::ModelCard::to_props
pub fn model_bytes(graph: pb::GraphProto, props: Vec<(String, String)>) -> Vec<u8> {
    pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "orbhash".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(graph),
        metadata_props: props
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The graph's bytes, which the model id hashes: weights and structure, not the card.
pub fn graph_bytes(graph: &pb::GraphProto) -> Vec<u8> {
    graph.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_keeps_zero_exact_and_relu_ranges_start_at_minus_128() {
        let relu = QuantParams::for_range(Range { min: 0.0, max: 6.0 });
        assert_eq!(relu.zero_point, -128);
        assert!((relu.scale - 6.0 / 255.0).abs() < 1e-7);
        let signed = QuantParams::for_range(Range {
            min: -1.0,
            max: 1.0,
        });
        // Zero is the zero point itself; the range ends are within one step of -128 and 127.
        let real = |q: i32| signed.scale * (q - i32::from(signed.zero_point)) as f32;
        assert!((real(-128) + 1.0).abs() <= signed.scale, "{signed:?}");
        assert!((real(127) - 1.0).abs() <= signed.scale, "{signed:?}");
        let positive_only = QuantParams::for_range(Range { min: 2.0, max: 4.0 });
        assert_eq!(positive_only.zero_point, -128, "the range is widened to 0");
    }

    #[test]
    fn dequantised_weights_are_within_half_a_step_of_each_channels_weights() {
        let conv = Conv {
            name: "c".into(),
            // Channel 0 spans ±1, channel 1 ±100: per-channel scales differ by 100×.
            weight: vec![1.0, -0.3, 0.01, -1.0, 100.0, -30.0, 1.0, -100.0],
            out_channels: 2,
            in_per_group: 4,
            kernel: 1,
            bias: vec![0.0; 2],
            stride: 1,
            pads: [0; 4],
            groups: 1,
            relu6: false,
        };
        let per_channel = dequantised_weights(&conv, WeightScaling::PerChannel);
        for (i, (got, want)) in per_channel.iter().zip(&conv.weight).enumerate() {
            let half_step = if i < 4 { 1.0 / 254.0 } else { 100.0 / 254.0 };
            assert!(
                (got - want).abs() <= half_step * 1.0001,
                "{i}: {got} vs {want}"
            );
        }
        // One scale for both channels: channel 0's small weights round to whole steps of 100/127.
        let per_tensor = dequantised_weights(&conv, WeightScaling::PerTensor);
        assert_eq!(per_tensor[2], 0.0);
        assert!((per_tensor[0] - 100.0 / 127.0).abs() < 1e-5);
    }
}
