//! Helpers shared by the integration tests that need a trained model but not a good one.

use std::path::{Path, PathBuf};

pub use orbhash_contract::card::Precision;
use orbhash_host::export::onnx::WeightScaling;
use orbhash_host::export::{export, Calibration, ExportOptions};
use orbhash_host::model::backbone::BackboneKind;
use orbhash_host::torch::DeviceChoice;
use orbhash_host::train::{train, TrainConfig};

/// A deterministic RGB noise image; `seed` picks the pattern.
pub fn write_png(path: &Path, width: u32, height: u32, seed: u32) {
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|i| {
            let x = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (x >> 13) as u8
        })
        .collect();
    image::save_buffer(path, &pixels, width, height, image::ExtendedColorType::Rgb8)
        .expect("writes PNG");
}

/// A tiny trained model: two classes of `tile`-px tiles, the small CNN, 16-bit codes, exported
/// in `precision` (int8: every convolution a `QLinearConv`).
pub fn tiny_model(dir: &Path, tile: u32, precision: Precision) -> PathBuf {
    let data = dir.join("data");
    for (class, offset) in [("dark", 0u32), ("bright", 1000)] {
        std::fs::create_dir_all(data.join(class)).expect("mkdir");
        for i in 0..6 {
            write_png(
                &data.join(class).join(format!("{i}.png")),
                tile,
                tile,
                offset + i,
            );
        }
    }
    orbhash_host::torch::init_for_tests();
    let config = TrainConfig {
        data: data.clone(),
        backbone: BackboneKind::SmallCnn,
        pretrained: None,
        bits: 16,
        input_size: tile,
        epochs: 1,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let outcome = train(&config, DeviceChoice::Cpu, &dir.join("run"), None).expect("trains");
    let out = dir.join(format!("tiny-{}.onnx", precision.name()));
    export(&ExportOptions {
        checkpoint: outcome.checkpoint,
        out: out.clone(),
        int8: precision == Precision::Int8,
        data: None,
        calibration: Calibration::MinMax,
        calibration_tiles: 8,
        weights: WeightScaling::PerChannel,
        keep_f32: vec![],
        bias_correction: true,
        pretrained: None,
    })
    .expect("exports");
    out
}
