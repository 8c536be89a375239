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

/// A real Milvus server (the one milvus-lite 2.5.1 carries, set up in `.cache/milvus-lite`) on a
/// free loopback port, with its data in a directory of its own; killed when dropped.
pub struct MilvusServer {
    child: std::process::Child,
    pub url: String,
    /// Where its data lives, so a restarted server finds it again.
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl MilvusServer {
    /// The server binary, or [`missing`] and `None`.
    #[track_caller]
    pub fn binary() -> Option<PathBuf> {
        let [binary] = require_all(
            [repo_root().join(".cache/milvus-lite/milvus_lite/lib/milvus")],
            "run scripts/setup.sh: it installs milvus-lite 2.5.1",
        )?;
        Some(binary)
    }

    /// Starts a server on fresh data and waits until it listens; [`missing`] and `None` without
    /// the binary.
    #[track_caller]
    pub fn start() -> Option<Self> {
        let binary = Self::binary()?;
        let dir = tempfile::tempdir().expect("a directory for Milvus");
        let data = dir.path().join("milvus.db");
        let mut server = Self::start_on(&binary, &data, None);
        server._dir = Some(dir);
        Some(server)
    }

    /// Starts the server binary on `data` (a port of its own unless given) and waits for it.
    pub fn start_on(binary: &Path, data: &Path, port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .expect("a free port")
        });
        let lib = binary.parent().expect("the binary's directory");
        let work = data.parent().expect("the data's directory");
        let child = std::process::Command::new(binary)
            .arg(data)
            .arg(format!("127.0.0.1:{port}"))
            .arg("ERROR")
            .env("LD_LIBRARY_PATH", lib)
            .current_dir(work)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the Milvus server starts");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data: data.to_path_buf(),
            _dir: None,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the Milvus server did not listen on port {port} within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0)
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MilvusServer {
    fn drop(&mut self) {
        self.kill();
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
