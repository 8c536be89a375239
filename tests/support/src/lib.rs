//! What every orbhash test suite shares: where the repository's real assets are (set-up fetches
//! and cuts them into `.cache/`; `models/` ships with the repository), and one rule for a test
//! whose real asset is missing. CI always has every asset, so there a missing one is a failure;
//! elsewhere the test says what it skipped and why, never silently.
//!
//! ```no_run
//! let Some(data) = orbhash_test_support::asset(".cache/data/s2-brandenburg/manifest.json") else {
//!     return;
//! };
//! ```

use std::path::{Path, PathBuf};

/// The workspace root (this crate sits at `tests/support`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// Whether this run is CI (`CI=true`), where every real asset must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Reports a real asset (or tool) the test needs and does not have: under CI it panics, failing
/// the test; elsewhere it prints `skipped: ...` so the caller can return. `what` says what is
/// missing and how to get it.
#[track_caller]
pub fn missing(what: &str) {
    assert!(
        !in_ci(),
        "{what}: missing, and CI must have it (scripts/test.sh sets it up)"
    );
    println!("skipped: {what}");
}

/// `Some(paths)` when every one exists; otherwise [`missing`] for the first absent one (with
/// `how_to_get`, e.g. "run scripts/setup.sh") and `None`.
#[track_caller]
pub fn require_all<const N: usize>(paths: [PathBuf; N], how_to_get: &str) -> Option<[PathBuf; N]> {
    match paths.iter().find(|path| !path.exists()) {
        None => Some(paths),
        Some(absent) => {
            missing(&format!("{} is missing ({how_to_get})", absent.display()));
            None
        }
    }
}

/// `relative` (to the repository root) when it exists; otherwise [`missing`] and `None`.
#[track_caller]
pub fn asset(relative: &str) -> Option<PathBuf> {
    let [path] = require_all(
        [repo_root().join(relative)],
        "run scripts/setup.sh, then scripts/datasets.sh",
    )?;
    Some(path)
}

/// The real data set `s2-brandenburg` and the scene its patches were cut from (the first by
/// name), or [`missing`] and `None`.
pub fn s2_data_set() -> Option<(PathBuf, PathBuf)> {
    let data = asset(".cache/data/s2-brandenburg")?;
    let mut scenes: Vec<PathBuf> = std::fs::read_dir(data.join("scenes"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "tif"))
                .collect()
        })
        .unwrap_or_default();
    scenes.sort();
    match scenes.into_iter().next() {
        Some(scene) => Some((data, scene)),
        None => {
            missing(".cache/data/s2-brandenburg/scenes holds no scene (rebuild the data set)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests/support/Cargo.toml").is_file());
    }
}
