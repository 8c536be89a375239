//! The data-flow rules of `docs/architecture.md`, checked on the real dependency graph that
//! `cargo tree` resolves (normal and build edges, the features each binary is built with). Cargo
//! itself only refuses cycles; every rule below is one it would let a change break silently.

use std::path::Path;
use std::process::Command;

/// The packages `package` pulls in for a normal build, by crate name.
fn dependencies_of(package: &str, extra: &[&str]) -> Vec<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace");
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["tree", "--offline", "--edges", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}", "--package", package])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(' ').next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.iter().any(|name| name == package),
        "cargo tree of {package} does not list {package} itself: {names:?}"
    );
    names
}

/// Fails naming every forbidden crate found, with the package whose graph it was found in.
fn assert_none_of(package: &str, dependencies: &[String], forbidden: &[&str]) {
    let found: Vec<&str> = forbidden
        .iter()
        .copied()
        .filter(|name| dependencies.iter().any(|dependency| dependency == name))
        .collect();
    assert!(
        found.is_empty(),
        "{package} must not depend on {found:?} (see docs/architecture.md)"
    );
}

fn orbhash_crates(dependencies: &[String], except: &str) -> Vec<String> {
    dependencies
        .iter()
        .filter(|name| name.starts_with("orbhash-") && name.as_str() != except)
        .cloned()
        .collect()
}

#[test]
fn the_wire_crate_imports_no_other_orbhash_crate() {
    for features in [&[][..], &["--features", "std"][..]] {
        let dependencies = dependencies_of("orbhash-wire", features);
        assert_eq!(
            orbhash_crates(&dependencies, "orbhash-wire"),
            Vec::<String>::new(),
            "orbhash-wire {features:?}"
        );
        // Image decoding and JSON have no place in the crate both sides must trust.
        assert_none_of(
            "orbhash-wire",
            &dependencies,
            &["image", "tiff", "serde_json", "tokio"],
        );
    }
}

#[test]
fn the_model_contract_builds_on_the_wire_crate_alone() {
    let dependencies = dependencies_of("orbhash-contract", &[]);
    assert_eq!(
        orbhash_crates(&dependencies, "orbhash-contract"),
        vec!["orbhash-wire".to_string()]
    );
    assert_none_of("orbhash-contract", &dependencies, &["tract-onnx", "tch"]);
}

#[test]
fn the_link_builds_on_the_wire_crate_alone_and_links_no_sqlite_or_libtorch() {
    // Both sides run it: it must not pull the ground's archive onto the board, or inference or
    // training into either.
    let dependencies = dependencies_of("orbhash-link", &[]);
    assert!(dependencies.iter().any(|name| name == "cfdp-rs"));
    assert_eq!(
        orbhash_crates(&dependencies, "orbhash-link"),
        vec!["orbhash-wire".to_string()]
    );
    assert_none_of(
        "orbhash-link",
        &dependencies,
        &["rusqlite", "tch", "torch-sys", "tract-onnx", "tokio"],
    );
}

#[test]
fn the_inference_library_links_neither_the_board_program_nor_libtorch() {
    let dependencies = dependencies_of("orbhash-infer", &[]);
    assert!(dependencies.iter().any(|name| name == "tract-onnx"));
    // The ground hashes one query image through it: no queue, no tokio pipeline, no SQLite.
    assert_none_of(
        "orbhash-infer",
        &dependencies,
        &[
            "orbhash-edge",
            "orbhash-ground",
            "orbhash-host",
            "tokio",
            "rusqlite",
            "tch",
            "torch-sys",
        ],
    );
}

#[test]
fn the_board_binary_as_flown_links_neither_libtorch_nor_sqlite() {
    // Exactly the flight build's graph: aarch64, without the default `multithread` feature.
    for extra in [
        &[
            "--no-default-features",
            "--target",
            "aarch64-unknown-linux-gnu",
        ][..],
        &[][..],
    ] {
        let dependencies = dependencies_of("orbhash-edge", extra);
        assert!(dependencies.iter().any(|name| name == "orbhash-infer"));
        assert_none_of(
            "orbhash-edge",
            &dependencies,
            &[
                "tch",
                "torch-sys",
                "rusqlite",
                "libsqlite3-sys",
                "orbhash-ground",
                "orbhash-host",
            ],
        );
    }
}

#[test]
fn the_ground_station_links_no_libtorch_and_no_data_builders() {
    let dependencies = dependencies_of("orbhash-ground", &[]);
    assert!(dependencies.iter().any(|name| name == "rusqlite"));
    assert_none_of(
        "orbhash-ground",
        &dependencies,
        &[
            "tch",
            "torch-sys",
            // The data builders' and evaluation's dependencies.
            "jpeg2k",
            "plotters",
            "nalgebra",
            "wkb",
            // The board program (queue, links, pipeline) and the training side.
            "orbhash-edge",
            "orbhash-host",
        ],
    );
}

#[test]
fn the_exporter_does_not_import_the_board_program() {
    let dependencies = dependencies_of("orbhash-host", &[]);
    assert!(dependencies.iter().any(|name| name == "tch"));
    assert_none_of("orbhash-host", &dependencies, &["orbhash-edge"]);
}
