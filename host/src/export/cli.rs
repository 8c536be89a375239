//! `orbhash export` on the command line.

use std::path::PathBuf;

use orbhash_contract::card::Precision;

use super::onnx::{KeepF32, WeightScaling};
use super::{export, verify, Calibration, ExportOptions};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  orbhash export runs/dhcnn/checkpoint.safetensors --out models/s2-dhcnn64.onnx --verify
  orbhash export runs/dhcnn/checkpoint.safetensors --out models/s2-dhcnn64-int8.onnx --int8 --verify

The file carries its model card (model id, K, classes, input definition, tile grid, training data
and configuration) as ONNX metadata_props: `orbhash-edge inspect FILE` prints it.")]
pub struct ExportArgs {
    /// A checkpoint written by `orbhash train`.
    pub checkpoint: PathBuf,
    /// The ONNX file to write (atomically: an interrupted export leaves no torn file).
    #[arg(long)]
    pub out: PathBuf,
    /// Quantise to int8 (QLinearConv), calibrated on the data set's database tiles.
    #[arg(long)]
    pub int8: bool,
    /// Data set to calibrate and verify on; default: the one the checkpoint was trained on.
    #[arg(long, value_name = "DATA")]
    pub calibrate: Option<PathBuf>,
    /// Activation ranges from the min and max seen, or from the given percentile per batch
    /// (e.g. 99.99), which ignores a few outliers.
    #[arg(long, default_value = "minmax", value_parser = parse_calibration)]
    pub calibration: Calibration,
    /// Database tiles used for calibration at most.
    #[arg(long, default_value_t = 256)]
    pub calibration_tiles: usize,
    /// int8 weight scales per output channel or per tensor.
    #[arg(long, value_enum, default_value = "per-channel")]
    pub weights: WeightScaling,
    /// int8: convolutions to keep in f32 (comma-separated: stem, depthwise, project; `none`
    /// quantises every one). The default keeps the depthwise ones, which tract runs with its
    /// vectorised channel-last kernel in f32 but as one integer matrix product per channel in
    /// int8 (slower than f32 on the board), and the stem, which sees the raw image.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "stem,depthwise"
    )]
    pub keep_f32: Vec<KeepF32>,
    /// int8: keep the checkpoint's biases. By default each layer's bias absorbs the shift of its
    /// mean output that rounding to int8 leaves (measured on the calibration tiles against the
    /// f32 network), which global pooling would pass on to the hash layer whole.
    #[arg(long = "no-bias-correction", action = clap::ArgAction::SetFalse)]
    pub bias_correction: bool,
    /// Run the written file with tract on the data set and compare with the checkpoint in tch;
    /// fails unless the parity thresholds hold (see `orbhash export --help`).
    #[arg(long)]
    pub verify: bool,
    /// Print the summary (and verification) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_calibration(text: &str) -> Result<Calibration, String> {
    if text == "minmax" {
        return Ok(Calibration::MinMax);
    }
    let percent: f64 = text
        .parse()
        .map_err(|_| format!("{text:?}: give `minmax` or a percentile such as 99.99"))?;
    if !(50.0..=100.0).contains(&percent) {
        return Err(format!("percentile {percent} is outside 50..100"));
    }
    Ok(Calibration::Percentile(percent))
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let options = ExportOptions {
        checkpoint: args.checkpoint.clone(),
        out: args.out.clone(),
        int8: args.int8,
        data: args.calibrate.clone(),
        calibration: args.calibration,
        calibration_tiles: args.calibration_tiles,
        weights: args.weights,
        keep_f32: args.keep_f32.clone(),
        bias_correction: args.bias_correction,
    };
    let (exported, model) = export(&options)?;
    let report = if args.verify {
        Some(verify::verify(
            &args.checkpoint,
            &model,
            args.calibrate.as_deref(),
        )?)
    } else {
        None
    };
    if args.json {
        let summary = serde_json::json!({ "exported": exported, "verify": report });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "wrote {} ({}, model id {}, {:.2} MB)",
            exported.path.display(),
            exported.precision,
            exported.model_id,
            exported.bytes as f64 / 1e6
        );
        if let Some(report) = &report {
            // Only int8 is fitted to tiles (calibration, bias correction), all of them database
            // tiles: the query tiles show how it does on tiles it never saw.
            let unseen = if report.precision == Precision::Int8.name() {
                format!(
                    " (query tiles alone, unseen by calibration: {:.3} %, {:.2} %)",
                    report.query_bit_agreement * 100.0,
                    report.query_label_agreement * 100.0
                )
            } else {
                String::new()
            };
            println!(
                "verify on {} tiles: max |Δhash| {:.2e}, code bits agree {:.3} %, labels agree {:.2} %{unseen}, \
                 mAP {:.4} (checkpoint {:.4}), OA {:.4} (checkpoint {:.4})",
                report.tiles,
                report.max_hash_error,
                report.bit_agreement * 100.0,
                report.label_agreement * 100.0,
                report.map_model,
                report.map_checkpoint,
                report.oa_model,
                report.oa_checkpoint
            );
        }
    }
    if let Some(report) = report.filter(|report| !report.passed()) {
        anyhow::bail!(
            "{} written but failed verification: {}",
            exported.path.display(),
            report.failures.join("; ")
        );
    }
    Ok(())
}
