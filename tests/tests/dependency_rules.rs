//! The data-flow rules of the workspace, checked on the real dependency graph: shared imports none
//! of the other crates, the edge never links libtorch, and the ground station builds without it.

use std::path::Path;
use std::process::Command;

/// The packages `package` pulls in for a normal build, as `name vX.Y.Z` lines.
fn normal_dependencies(package: &str, extra: &[&str]) -> Vec<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace");
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args([
            "tree",
            "--offline",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "--package", package])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_string())
        .collect()
}

fn named(dependencies: &[String], crate_name: &str) -> bool {
    dependencies
        .iter()
        .any(|line| line.split(' ').next() == Some(crate_name))
}

#[test]
fn shared_imports_no_other_orbhash_crate() {
    let dependencies = normal_dependencies("orbhash-wire", &[]);
    assert!(named(&dependencies, "orbhash-wire"), "{dependencies:?}");
    for other in ["orbhash-host", "orbhash-edge", "orbhash-tests"] {
        assert!(!named(&dependencies, other), "shared depends on {other}");
    }
}

#[test]
fn edge_never_links_libtorch() {
    let dependencies = normal_dependencies("orbhash-edge", &[]);
    assert!(named(&dependencies, "tract-onnx"), "{dependencies:?}");
    for forbidden in ["tch", "torch-sys", "orbhash-host"] {
        assert!(
            !named(&dependencies, forbidden),
            "edge depends on {forbidden}"
        );
    }
}

#[test]
fn ground_station_builds_without_libtorch() {
    let with_training = normal_dependencies("orbhash-host", &[]);
    assert!(named(&with_training, "tch"), "{with_training:?}");
    let ground_only = normal_dependencies("orbhash-host", &["--no-default-features"]);
    for forbidden in ["tch", "torch-sys"] {
        assert!(
            !named(&ground_only, forbidden),
            "ground-only host depends on {forbidden}"
        );
    }
}
