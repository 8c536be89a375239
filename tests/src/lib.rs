//! Helpers for orbhash's end-to-end tests, which live in `tests/tests/`.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The real data set `s2-brandenburg` as set-up builds it, and the scene its patches were cut
/// from (the first, by name); `None` before `scripts/setup.sh` has run.
pub fn s2_data_set() -> Option<(PathBuf, PathBuf)> {
    let data = repo_root().join(".cache/data/s2-brandenburg");
    let mut scenes: Vec<PathBuf> = std::fs::read_dir(data.join("scenes"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "tif"))
        .collect();
    scenes.sort();
    let scene = scenes.into_iter().next()?;
    Some((data, scene))
}
