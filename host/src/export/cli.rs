//! `orbhash export` on the command line.

use std::path::PathBuf;

use orbhash_cli::Table;
use orbhash_contract::card::Precision;

use super::onnx::{KeepF32, WeightScaling};
use super::{export, verify, Calibration, ExportOptions};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  orbhash export runs/dhcnn/checkpoint.safetensors --out models/s2-dhcnn64.onnx --verify
  orbhash export runs/dhcnn/checkpoint.safetensors --out models/s2-dhcnn64-int8.onnx --int8 --verify

The file carries its model card as one JSON document in the ONNX metadata_props (key
`orbhash.card`): model id, K, classes, input definition, band names, tile grid, training data,
pretrained weights by SHA-256, training configuration, and for int8 how it was quantised.
`orbhash-edge inspect FILE` prints it.")]
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
    /// The pretrained backbone weights the checkpoint was trained from, when they are not at the
    /// path the checkpoint recorded (it was trained on another machine). The card records them
    /// by SHA-256, never by path.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
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

/// The verification as two tables: agreement with the checkpoint, then retrieval and
/// classification of both.
pub fn verify_tables(report: &verify::VerifyReport) -> String {
    let percent = |fraction: f64| format!("{:.3} %", fraction * 100.0);
    let mut agreement = Table::new([
        "tiles",
        "count",
        "max |Δhash|",
        "code bits agree",
        "labels agree",
    ]);
    agreement.row([
        "all".to_string(),
        report.tiles.to_string(),
        format!("{:.2e}", report.max_hash_error),
        percent(report.bit_agreement),
        percent(report.label_agreement),
    ]);
    // Only int8 is fitted to tiles (calibration, bias correction), all of them database tiles:
    // the query tiles show how it does on tiles it never saw.
    if report.precision == Precision::Int8.name() {
        agreement.row([
            "query (unseen)".to_string(),
            String::new(),
            String::new(),
            percent(report.query_bit_agreement),
            percent(report.query_label_agreement),
        ]);
    }
    let mut quality = Table::new(["model", "mAP", "OA"]);
    quality.row([
        "checkpoint (tch)".to_string(),
        format!("{:.4}", report.map_checkpoint),
        format!("{:.4}", report.oa_checkpoint),
    ]);
    quality.row([
        format!("exported {} (tract)", report.precision),
        format!("{:.4}", report.map_model),
        format!("{:.4}", report.oa_model),
    ]);
    format!("verify, tract against the checkpoint:\n{agreement}{quality}")
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
        pretrained: args.pretrained.clone(),
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
            print!("{}", verify_tables(report));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_prints_through_the_one_table_printer() {
        let report = verify::VerifyReport {
            precision: "int8",
            tiles: 202,
            max_hash_error: 0.31,
            bit_agreement: 0.9944,
            bits_flipped_beyond_tolerance: 70,
            label_agreement: 0.9901,
            query_bit_agreement: 0.9887,
            query_label_agreement: 42.0 / 43.0,
            map_checkpoint: 0.5293,
            map_model: 0.5274,
            oa_checkpoint: 0.3953,
            oa_model: 0.4186,
            failures: Vec::new(),
        };
        let text = verify_tables(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("  tiles"), "{text}");
        assert!(
            lines[2].starts_with("  all") && lines[2].ends_with("99.010 %"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("  query (unseen)") && lines[3].ends_with("97.674 %"),
            "{text}"
        );
        assert_eq!(lines[2].len(), lines[3].len(), "{text}");
        assert!(
            text.contains("exported int8 (tract)  0.5274  0.4186"),
            "{text}"
        );
    }
}
