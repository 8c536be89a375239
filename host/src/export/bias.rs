//! Empirical bias correction of the int8 graph (Nagel et al., "Data-Free Quantization Through
//! Weight Equalization and Bias Correction", ICCV 2019, the empirical variant).
//!
//! Rounding weights and activations to int8 shifts the mean of each output channel a little, and
//! every later layer passes the shift on. Global average pooling averages the rounding noise away
//! but keeps the shift whole, so the hash layer, whose sign is the code, sees all of it. Each
//! layer's bias absorbs its own shift, measured on the calibration tiles.
//!
//! The int8 graph is simulated in tch beside the f32 one, one layer at a time over all tiles at
//! once (int8 values as their dequantised reals, with the graph's scales, zero points and
//! clipping), so each layer is corrected with its input as the layers before it, already
//! corrected, make it. A convolution's bias absorbs the shift of its mean output per channel
//! before the activation, as Nagel et al. correct it; the hash layer's bias absorbs the shift of
//! the pooled features.

use anyhow::Context;
use tch::{Kind, Tensor};

use super::graph::{Conv, Network, Step};
use super::onnx::{QuantParams, Range};

/// `network` with the biases of its convolutions and hash layer corrected for the int8 graph
/// that `ranges` (per network value) and `int8_weights(input, conv)` describe; `int8_weights`
/// gives the dequantised weights of an int8 convolution, `None` for one the graph keeps in f32.
/// `images`: calibration tiles, `[N, C, H, W]`.
pub fn corrected(
    network: &Network,
    ranges: &[Range],
    int8_weights: impl Fn(usize, &Conv) -> Option<Vec<f32>>,
    images: &Tensor,
) -> anyhow::Result<Network> {
    let values = network.last_value() + 1;
    anyhow::ensure!(
        ranges.len() == values,
        "ranges of {} values for a network of {values}",
        ranges.len()
    );
    let params: Vec<QuantParams> = ranges.iter().copied().map(QuantParams::for_range).collect();
    let last_read = last_reads(network);
    let mut out = network.clone();
    // Only values a later step still reads are kept: every value of a whole calibration batch at
    // once would take gigabytes.
    let mut f32_values: Vec<Option<Tensor>> = (0..values).map(|_| None).collect();
    let mut int8_values: Vec<Option<Tensor>> = (0..values).map(|_| None).collect();
    f32_values[0] = Some(images.shallow_clone());
    let mut image = images.f_detach_copy()?;
    fake_quantise(&mut image, params[0])?;
    int8_values[0] = Some(image);
    for (index, step) in out.steps.iter_mut().enumerate() {
        let n = index + 1;
        let read = |values: &[Option<Tensor>], v: usize| {
            values[v]
                .as_ref()
                .map(Tensor::shallow_clone)
                .with_context(|| format!("value {v} was dropped before step {n} read it"))
        };
        // In place where the values are large: a 96-channel 64×64 value of 159 tiles is 250 MB.
        let (f32_value, mut int8_value) = match step {
            Step::Conv { input, conv } => {
                let weight = int8_weights(*input, conv);
                let mut f32_value = convolve(&read(&f32_values, *input)?, conv, &conv.weight)?;
                let mut int8_value = convolve(
                    &read(&int8_values, *input)?,
                    conv,
                    weight.as_deref().unwrap_or(&conv.weight),
                )?;
                let shift: Vec<f64> =
                    Vec::try_from(channel_means(&int8_value)?.f_sub(&channel_means(&f32_value)?)?)?;
                add_bias_and_activate(&mut f32_value, &conv.bias, conv.relu6)?;
                for (bias, shift) in conv.bias.iter_mut().zip(shift) {
                    *bias = (f64::from(*bias) - shift) as f32;
                }
                add_bias_and_activate(&mut int8_value, &conv.bias, conv.relu6)?;
                (f32_value, int8_value)
            }
            Step::Add { a, b } => (
                read(&f32_values, *a)?.f_add(&read(&f32_values, *b)?)?,
                read(&int8_values, *a)?.f_add(&read(&int8_values, *b)?)?,
            ),
        };
        fake_quantise(&mut int8_value, params[n])?;
        f32_values[n] = Some(f32_value);
        int8_values[n] = Some(int8_value);
        for v in 0..n {
            if last_read[v] <= n {
                f32_values[v] = None;
                int8_values[v] = None;
            }
        }
    }
    let last = network.last_value();
    let pooled = |values: &[Option<Tensor>]| -> anyhow::Result<Vec<f64>> {
        let value = values[last]
            .as_ref()
            .context("the last value was dropped")?;
        Ok(Vec::try_from(channel_means(value)?)?)
    };
    let (f32_features, int8_features) = (pooled(&f32_values)?, pooled(&int8_values)?);
    anyhow::ensure!(
        f32_features.len() == out.hash.inputs,
        "the pooled features have {} channels, the hash layer takes {}",
        f32_features.len(),
        out.hash.inputs
    );
    let inputs = out.hash.inputs;
    for (bias, row) in out.hash.bias.iter_mut().zip(out.hash.weight.chunks(inputs)) {
        let moved: f64 = row
            .iter()
            .zip(int8_features.iter().zip(&f32_features))
            .map(|(w, (int8, f32))| f64::from(*w) * (int8 - f32))
            .sum();
        *bias = (f64::from(*bias) - moved) as f32;
    }
    Ok(out)
}

/// For each value, the last step that reads it (the last value: one past the end, for the head).
fn last_reads(network: &Network) -> Vec<usize> {
    let mut last = vec![0; network.last_value() + 1];
    for (index, step) in network.steps.iter().enumerate() {
        match step {
            Step::Conv { input, .. } => last[*input] = index + 1,
            Step::Add { a, b } => {
                last[*a] = index + 1;
                last[*b] = index + 1;
            }
        }
    }
    last[network.last_value()] = network.last_value() + 1;
    last
}

/// `conv` without its bias, with `weight`, zero padding as the ONNX graph pads.
fn convolve(input: &Tensor, conv: &Conv, weight: &[f32]) -> anyhow::Result<Tensor> {
    let k = conv.kernel as i64;
    let weight = Tensor::from_slice(weight).f_view([
        conv.out_channels as i64,
        conv.in_per_group as i64,
        k,
        k,
    ])?;
    let [top, left, bottom, right] = conv.pads.map(|p| p as i64);
    let stride = conv.stride as i64;
    Ok(input
        .f_constant_pad_nd([left, right, top, bottom])?
        .f_conv2d(
            &weight,
            None::<Tensor>,
            [stride, stride],
            [0, 0],
            [1, 1],
            conv.groups as i64,
        )?)
}

fn add_bias_and_activate(values: &mut Tensor, bias: &[f32], relu6: bool) -> anyhow::Result<()> {
    let _ = values.f_add_(&Tensor::from_slice(bias).f_view([1, -1, 1, 1])?)?;
    if relu6 {
        let _ = values.f_clamp_(0.0, 6.0)?;
    }
    Ok(())
}

/// Round trip through int8 as QuantizeLinear and DequantizeLinear do (saturating to the range),
/// in place.
fn fake_quantise(values: &mut Tensor, params: QuantParams) -> anyhow::Result<()> {
    let zero = f64::from(params.zero_point);
    let scale = f64::from(params.scale);
    let _ = values.f_div_scalar_(scale)?;
    let _ = values.f_round_()?;
    let _ = values.f_add_scalar_(zero)?;
    let _ = values.f_clamp_(-128.0, 127.0)?;
    let _ = values.f_sub_scalar_(zero)?;
    let _ = values.f_mul_scalar_(scale)?;
    Ok(())
}

/// Per channel of `[N, C, H, W]`, the mean over tiles and positions, in f64.
fn channel_means(values: &Tensor) -> anyhow::Result<Tensor> {
    Ok(values.f_mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::graph::Linear;

    /// One 1x1 convolution (2 channels → 1) on constant tiles, then a one-bit hash layer.
    fn network() -> Network {
        Network {
            channels: 2,
            size: 3,
            steps: vec![Step::Conv {
                input: 0,
                conv: Conv {
                    name: "conv".into(),
                    weight: vec![0.5, 0.25],
                    out_channels: 1,
                    in_per_group: 2,
                    kernel: 1,
                    bias: vec![0.1],
                    stride: 1,
                    pads: [0; 4],
                    groups: 1,
                    relu6: true,
                },
            }],
            hash: Linear {
                weight: vec![2.0],
                outputs: 1,
                inputs: 1,
                bias: vec![-0.5],
            },
            classifier: Linear {
                weight: vec![1.0, -1.0],
                outputs: 2,
                inputs: 1,
                bias: vec![0.0, 0.0],
            },
        }
    }

    #[test]
    fn biases_absorb_the_shift_of_int8_weights_and_of_the_last_rounding() {
        crate::torch::init_for_tests();
        let network = network();
        // 1.0 is exact in the image's int8 grid (0..1 in 255 steps).
        let images = Tensor::ones([4, 2, 3, 3], (Kind::Float, tch::Device::Cpu));
        let ranges = [Range { min: 0.0, max: 1.0 }, Range { min: 0.0, max: 1.0 }];
        // The int8 weights are 0.01 and 0.02 heavier: the output mean rises by 0.03.
        let corrected = corrected(&network, &ranges, |_, _| Some(vec![0.51, 0.27]), &images)
            .expect("correction runs");
        let Step::Conv { conv, .. } = &corrected.steps[0] else {
            panic!("the step stays a convolution");
        };
        assert!((conv.bias[0] - 0.07).abs() < 1e-6, "bias {}", conv.bias[0]);
        // The output, 0.85 again, rounds to 217/255 in its int8 grid: 0.85098; the hash layer
        // takes twice that shift off its bias.
        let expected = -0.5 - 2.0 * (217.0 / 255.0 - 0.85);
        assert!(
            (f64::from(corrected.hash.bias[0]) - expected).abs() < 1e-6,
            "hash bias {} vs {expected}",
            corrected.hash.bias[0]
        );
        assert_eq!(corrected.classifier.bias, network.classifier.bias);
    }

    #[test]
    fn a_convolution_the_graph_keeps_in_f32_moves_only_with_its_input() {
        crate::torch::init_for_tests();
        let network = network();
        let images = Tensor::ones([2, 2, 3, 3], (Kind::Float, tch::Device::Cpu));
        let ranges = [
            Range { min: 0.0, max: 1.0 },
            Range {
                min: 0.0,
                max: 0.85,
            },
        ];
        let corrected =
            corrected(&network, &ranges, |_, _| None, &images).expect("correction runs");
        let Step::Conv { conv, .. } = &corrected.steps[0] else {
            panic!("the step stays a convolution");
        };
        // Exact input, f32 weights, output on its grid's last step: nothing to correct.
        assert!((conv.bias[0] - 0.1).abs() < 1e-7);
        assert!((corrected.hash.bias[0] + 0.5).abs() < 1e-6);
    }

    #[test]
    fn ranges_must_cover_every_value() {
        crate::torch::init_for_tests();
        let images = Tensor::ones([1, 2, 3, 3], (Kind::Float, tch::Device::Cpu));
        let error = corrected(
            &network(),
            &[Range { min: 0.0, max: 1.0 }],
            |_, _| None,
            &images,
        )
        .expect_err("one range for two values");
        assert!(error.to_string().contains("ranges of 1 values"), "{error}");
    }
}
