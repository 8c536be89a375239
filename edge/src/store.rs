//! The on-board scene store: the raw scenes the board hashed, kept so that operators can task
//! their full tiles later, within a bounded capacity and age.
//!
//! The store is a directory and the directory is its index: one entry per scene, named
//! `scene-XXXXXXXX` (the scene id in hex) plus the source's extension for a scene file, or a
//! directory of the source's tile files. An entry is written under a `.partial` name, synced and
//! then renamed, so a crash leaves either the whole entry or a partial one that the next open
//! removes; its age is the modification time the store sets when it completes the entry.
//! Eviction takes the oldest entries first until the policy holds; every eviction is returned to
//! the caller to report. A policy set by the ground (`set-retention`) is kept in `policy`
//! (`<capacity bytes> <max age s>`, replaced atomically) and outranks the command line's from then
//! on: the last word on the policy is the operators'.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use orbhash_wire::RetentionPolicy;
use serde::Serialize;

const PREFIX: &str = "scene-";
const PARTIAL: &str = ".partial";
const POLICY_FILE: &str = "policy";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("scene store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "scene {scene_id:08x} is {bytes} bytes, more than the store's whole capacity of {capacity} \
         bytes: it is not kept"
    )]
    TooLarge {
        scene_id: u32,
        bytes: u64,
        capacity: u64,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One kept scene.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredScene {
    pub scene_id: u32,
    pub bytes: u64,
    /// Seconds since the Unix epoch when the store completed the entry.
    pub stored_at_s: u64,
    /// The same, to the file system's resolution: two scenes kept within one second are still
    /// in order.
    #[serde(skip)]
    pub stored_at: SystemTime,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Why a scene left the store: one meaning on board and in the reports that tell the ground.
pub use orbhash_wire::EvictionCause;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eviction {
    pub scene_id: u32,
    pub bytes: u64,
    pub cause: EvictionCause,
}

impl Eviction {
    /// The report that tells the ground.
    pub fn report(&self) -> orbhash_wire::Report {
        orbhash_wire::Report::SceneEvicted {
            scene_id: self.scene_id,
            bytes: self.bytes,
            cause: self.cause,
        }
    }
}

/// The store in a directory under one retention policy.
#[derive(Debug)]
pub struct SceneStore {
    root: PathBuf,
    policy: RetentionPolicy,
}

impl SceneStore {
    /// Opens (creating) the store at `root`, removing entries a crash left half-written. `policy`
    /// applies unless the ground has set one.
    pub fn open(root: &Path, policy: RetentionPolicy) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(io_error(root))?;
        for entry in fs::read_dir(root).map_err(io_error(root))? {
            let path = entry.map_err(io_error(root))?.path();
            let partial = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(PARTIAL));
            if partial {
                remove(&path)?;
            }
        }
        let policy_path = root.join(POLICY_FILE);
        let policy = match fs::read_to_string(&policy_path) {
            Ok(text) => {
                let mut fields = text.split_whitespace().map(str::parse::<u64>);
                match (fields.next(), fields.next()) {
                    (Some(Ok(capacity_bytes)), Some(Ok(max_age_s))) => RetentionPolicy {
                        capacity_bytes,
                        max_age_s: u32::try_from(max_age_s).unwrap_or(u32::MAX),
                    },
                    _ => {
                        return Err(StoreError::Io {
                            path: policy_path,
                            source: io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{text:?} is not `<capacity bytes> <max age s>`"),
                            ),
                        })
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => policy,
            Err(error) => return Err(io_error(&policy_path)(error)),
        };
        Ok(Self {
            root: root.to_path_buf(),
            policy,
        })
    }

    pub fn policy(&self) -> RetentionPolicy {
        self.policy
    }

    /// The kept scenes, oldest first (ties by scene id).
    pub fn scenes(&self) -> Result<Vec<StoredScene>, StoreError> {
        let mut scenes = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_error(&self.root))? {
            let path = entry.map_err(io_error(&self.root))?.path();
            let Some(scene_id) = scene_id_of_entry(&path) else {
                continue;
            };
            let metadata = fs::metadata(&path).map_err(io_error(&path))?;
            let stored_at = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let stored_at_s = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |age| age.as_secs());
            scenes.push(StoredScene {
                scene_id,
                bytes: entry_bytes(&path)?,
                stored_at_s,
                stored_at,
                path,
            });
        }
        scenes.sort_by_key(|scene| (scene.stored_at, scene.scene_id));
        Ok(scenes)
    }

    /// The entry of `scene_id`, if it is still on board.
    pub fn find(&self, scene_id: u32) -> Result<Option<StoredScene>, StoreError> {
        Ok(self
            .scenes()?
            .into_iter()
            .find(|scene| scene.scene_id == scene_id))
    }

    /// Keeps `source` (a scene file, or a directory of tile files) as scene `scene_id`, replacing
    /// an older copy of it, then evicts what the policy no longer allows. Returns the evictions.
    pub fn keep(
        &mut self,
        scene_id: u32,
        source: &Path,
        now: SystemTime,
    ) -> Result<Vec<Eviction>, StoreError> {
        let bytes = entry_bytes(source)?;
        if bytes > self.policy.capacity_bytes {
            return Err(StoreError::TooLarge {
                scene_id,
                bytes,
                capacity: self.policy.capacity_bytes,
            });
        }
        let name = match source.extension().and_then(|e| e.to_str()) {
            Some(extension) if source.is_file() => format!("{PREFIX}{scene_id:08x}.{extension}"),
            _ => format!("{PREFIX}{scene_id:08x}"),
        };
        let final_path = self.root.join(&name);
        let partial = self.root.join(format!("{name}{PARTIAL}"));
        if partial.exists() {
            remove(&partial)?;
        }
        copy_synced(source, &partial)?;
        set_modified(&partial, now)?;
        if let Some(old) = self.find(scene_id)? {
            remove(&old.path)?;
        }
        fs::rename(&partial, &final_path).map_err(io_error(&final_path))?;
        sync_dir(&self.root)?;
        self.enforce(now)
    }

    /// Applies a new policy (a `set-retention` command) and evicts what it no longer allows.
    pub fn set_policy(
        &mut self,
        policy: RetentionPolicy,
        now: SystemTime,
    ) -> Result<Vec<Eviction>, StoreError> {
        let path = self.root.join(POLICY_FILE);
        let partial = self.root.join(format!("{POLICY_FILE}{PARTIAL}"));
        fs::write(
            &partial,
            format!("{} {}\n", policy.capacity_bytes, policy.max_age_s),
        )
        .and_then(|()| fs::File::open(&partial)?.sync_all())
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(io_error(&path))?;
        sync_dir(&self.root)?;
        self.policy = policy;
        self.enforce(now)
    }

    fn enforce(&mut self, now: SystemTime) -> Result<Vec<Eviction>, StoreError> {
        let mut evictions = Vec::new();
        let mut scenes = self.scenes()?;
        if self.policy.max_age_s > 0 {
            let now_s = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            let oldest_allowed = now_s.saturating_sub(u64::from(self.policy.max_age_s));
            let (expired, kept): (Vec<_>, Vec<_>) = scenes
                .into_iter()
                .partition(|scene| scene.stored_at_s < oldest_allowed);
            for scene in expired {
                remove(&scene.path)?;
                evictions.push(Eviction {
                    scene_id: scene.scene_id,
                    bytes: scene.bytes,
                    cause: EvictionCause::Age,
                });
            }
            scenes = kept;
        }
        let mut total: u64 = scenes.iter().map(|scene| scene.bytes).sum();
        for scene in scenes {
            if total <= self.policy.capacity_bytes {
                break;
            }
            remove(&scene.path)?;
            total -= scene.bytes;
            evictions.push(Eviction {
                scene_id: scene.scene_id,
                bytes: scene.bytes,
                cause: EvictionCause::Capacity,
            });
        }
        if !evictions.is_empty() {
            sync_dir(&self.root)?;
        }
        Ok(evictions)
    }
}

/// `scene-XXXXXXXX[.ext]` → the scene id; `None` for anything else (partial entries included).
fn scene_id_of_entry(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(PARTIAL) {
        return None;
    }
    let hex = name.strip_prefix(PREFIX)?.split('.').next()?;
    (hex.len() == 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

fn entry_bytes(path: &Path) -> Result<u64, StoreError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    if metadata.is_file() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        let entry = entry.map_err(io_error(path))?;
        let metadata = entry.metadata().map_err(io_error(&entry.path()))?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}

fn copy_synced(source: &Path, target: &Path) -> Result<(), StoreError> {
    if fs::metadata(source).map_err(io_error(source))?.is_file() {
        fs::copy(source, target).map_err(io_error(target))?;
        return sync_file(target);
    }
    fs::create_dir(target).map_err(io_error(target))?;
    for entry in fs::read_dir(source).map_err(io_error(source))? {
        let entry = entry.map_err(io_error(source))?;
        if entry.metadata().map_err(io_error(&entry.path()))?.is_file() {
            let copy = target.join(entry.file_name());
            fs::copy(entry.path(), &copy).map_err(io_error(&copy))?;
            sync_file(&copy)?;
        }
    }
    sync_dir(target)
}

fn set_modified(path: &Path, time: SystemTime) -> Result<(), StoreError> {
    let file = fs::File::options()
        .read(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_modified(time).map_err(io_error(path))
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(path))
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

fn remove(path: &Path) -> Result<(), StoreError> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn scene_file(dir: &Path, name: &str, bytes: usize) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![7u8; bytes]).unwrap();
        path
    }

    fn policy(capacity_bytes: u64, max_age_s: u32) -> RetentionPolicy {
        RetentionPolicy {
            capacity_bytes,
            max_age_s,
        }
    }

    #[test]
    fn the_oldest_scene_goes_first_and_every_eviction_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = dir.path().join("in");
        fs::create_dir(&inputs).unwrap();
        let mut store = SceneStore::open(&dir.path().join("store"), policy(250, 0)).unwrap();
        for (i, scene) in [3u32, 1, 2].iter().enumerate() {
            let file = scene_file(&inputs, &format!("s{scene}.tif"), 100);
            let evicted = store.keep(*scene, &file, at(i as u64 * 10)).unwrap();
            if i < 2 {
                assert!(evicted.is_empty());
            } else {
                // Scene 3 was stored first: it goes, though its id is the largest.
                assert_eq!(
                    evicted,
                    vec![Eviction {
                        scene_id: 3,
                        bytes: 100,
                        cause: EvictionCause::Capacity
                    }]
                );
            }
        }
        let kept: Vec<u32> = store.scenes().unwrap().iter().map(|s| s.scene_id).collect();
        assert_eq!(kept, vec![1, 2]);
        assert!(store.find(3).unwrap().is_none());
        let two = store.find(2).unwrap().unwrap();
        assert_eq!(fs::read(&two.path).unwrap(), vec![7u8; 100]);
        assert!(two.path.to_string_lossy().ends_with("scene-00000002.tif"));

        // A tighter policy evicts by age, then by capacity.
        // Scene 1 (stored at 10) is past 5 s at 25; scene 2 (at 20) is not, but no capacity is left.
        let evicted = store.set_policy(policy(0, 5), at(25)).unwrap();
        let causes: Vec<(u32, EvictionCause)> =
            evicted.iter().map(|e| (e.scene_id, e.cause)).collect();
        assert_eq!(
            causes,
            vec![(1, EvictionCause::Age), (2, EvictionCause::Capacity)]
        );
        assert!(store.scenes().unwrap().is_empty());
    }

    #[test]
    fn tile_directories_are_kept_whole_and_crash_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tiles = dir.path().join("tiles");
        fs::create_dir(&tiles).unwrap();
        scene_file(&tiles, "0.tif", 40);
        scene_file(&tiles, "1.tif", 60);
        let root = dir.path().join("store");
        let mut store = SceneStore::open(&root, policy(1_000, 0)).unwrap();
        store.keep(0xabc, &tiles, at(0)).unwrap();
        let kept = store.find(0xabc).unwrap().unwrap();
        assert_eq!(kept.bytes, 100);
        assert_eq!(fs::read(kept.path.join("1.tif")).unwrap(), vec![7u8; 60]);
        // A crash mid-copy leaves a partial entry; reopening removes it and keeps the rest.
        fs::create_dir(root.join("scene-00000009.partial")).unwrap();
        drop(store);
        let store = SceneStore::open(&root, policy(1_000, 0)).unwrap();
        assert!(!root.join("scene-00000009.partial").exists());
        assert_eq!(store.scenes().unwrap().len(), 1);
    }

    #[test]
    fn a_scene_larger_than_the_store_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = scene_file(dir.path(), "big.tif", 500);
        let mut store = SceneStore::open(&dir.path().join("store"), policy(100, 0)).unwrap();
        let error = store.keep(5, &file, at(0)).unwrap_err();
        assert!(
            error.to_string().contains("scene 00000005 is 500 bytes"),
            "{error}"
        );
        assert!(store.scenes().unwrap().is_empty());
    }
}
