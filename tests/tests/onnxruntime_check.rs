//! The shipped models are valid ONNX for everyone, not just for tract: onnxruntime (from PyPI, in
//! a venv of its own; test-only) runs each file on real tiles and must agree with tract.
//!
//! Set-up installs `onnxruntime` and `numpy` into `.cache/ort-venv`; `ORBHASH_ORT_PYTHON` names
//! another Python that has them. Without one the test fails under CI and says why it skipped
//! elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use orbhash_contract::card::ModelCard;
use orbhash_contract::raster::read_image;
use orbhash_infer::OnnxModel;
use orbhash_test_support::{missing, repo_root};
use tract_onnx::prelude::Tensor;

fn python_with_onnxruntime() -> Option<PathBuf> {
    let python = std::env::var_os("ORBHASH_ORT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/ort-venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|status| status.success());
    ok.then_some(python)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("onnxruntime output")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn onnxruntime_runs_the_shipped_models_as_tract_does() {
    let Some(python) = python_with_onnxruntime() else {
        missing(
            "a Python with onnxruntime and numpy (scripts/setup.sh installs .cache/ort-venv, or \
             set ORBHASH_ORT_PYTHON)",
        );
        return;
    };
    let root = repo_root();
    let data = root.join(".cache/data/s2-brandenburg");
    let tiles: Vec<PathBuf> = std::fs::read_dir(data.join("forest"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "tif"))
                .take(4)
                .collect()
        })
        .unwrap_or_default();
    if tiles.is_empty() {
        missing(".cache/data/s2-brandenburg/forest tiles (run scripts/setup.sh, then scripts/datasets.sh)");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    for name in [
        "s2-brandenburg-dhcnn64-f32.onnx",
        "s2-brandenburg-dhcnn64-int8.onnx",
    ] {
        let model_path = root.join("models").join(name);
        let model = OnnxModel::open(&model_path, tiles.len()).expect("tract loads");
        let card = ModelCard::from_props(model.metadata()).expect("card");
        let mut input = Vec::new();
        for tile in &tiles {
            let image = read_image(tile).expect("tile");
            input.extend(
                card.input
                    .to_chw(image.width, image.height, image.bands, &image.samples)
                    .expect("preprocesses"),
            );
        }
        let shape = model.input_shape().to_vec();
        let input_file = work.path().join("input.f32");
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input_file, bytes).expect("writes input");
        let prefix = work.path().join(name);
        let status = Command::new(&python)
            .arg(root.join("scripts/check/onnxruntime_run.py"))
            .arg(&model_path)
            .arg(&input_file)
            .args(shape.iter().map(|d| d.to_string()))
            .arg(&prefix)
            .status()
            .expect("python runs");
        assert!(status.success(), "onnxruntime failed on {name}");
        let ort_hash = read_f32(&prefix.with_extension("onnx.hash.f32"));

        let outputs = model
            .run(Tensor::from_shape(&shape, &input).expect("tensor"))
            .expect("tract runs");
        let slot = model
            .output_names()
            .iter()
            .position(|n| n == "hash")
            .expect("hash output");
        let tract_hash: Vec<f32> = outputs[slot]
            .to_plain_array_view::<f32>()
            .expect("f32")
            .iter()
            .copied()
            .collect();
        assert_eq!(ort_hash.len(), tract_hash.len(), "{name}");
        let max_error = ort_hash
            .iter()
            .zip(&tract_hash)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let bits_agree = ort_hash
            .iter()
            .zip(&tract_hash)
            .filter(|(a, b)| (**a > 0.0) == (**b > 0.0))
            .count() as f64
            / ort_hash.len() as f64;
        println!(
            "{name}: onnxruntime vs tract max |Δhash| {max_error:.2e}, code bits agree {:.2} %",
            bits_agree * 100.0
        );
        // f32 must agree to rounding; int8 runtimes may round requantisation differently.
        if name.contains("f32") {
            assert!(max_error < 1e-3, "{name}: {max_error}");
        } else {
            assert!(bits_agree > 0.95, "{name}: {bits_agree}");
        }
    }
}
