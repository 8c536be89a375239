//! Tile requests from the ground: the board's durable list of tiles to send, and the cutting of
//! a requested tile from the scene store into a GeoTIFF.
//!
//! The list lives in `tasks` in the queue directory, one line per tile
//! (`<request> <scene hex> <tile>`), rewritten atomically on every change. A tile leaves it once
//! its file (the GeoTIFF, or the "no longer on board" answer) has been acknowledged by the ground,
//! so a restart of the board in between sends it again.

use std::path::{Path, PathBuf};

use orbhash_contract::card::ModelCard;
use orbhash_contract::raster::{write_u16_tiff, Georeference, RasterError};
pub use orbhash_link::delivery::tile_file_name;
use orbhash_wire::TileRef;

use crate::source::TileSource;
use crate::store::{SceneStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task list {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("task list {}: line {line}: {text:?} is not `<request> <scene hex> <tile>`", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Raster(#[from] RasterError),
}

/// One requested tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub request: u32,
    pub tile: TileRef,
}

/// The tiles still to send, in request order.
#[derive(Debug)]
pub struct TaskList {
    path: PathBuf,
    tasks: Vec<Task>,
}

impl TaskList {
    pub fn open(queue_dir: &Path) -> Result<Self, TaskError> {
        let path = queue_dir.join("tasks");
        let io = |source| TaskError::Io {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(io(error)),
        };
        let mut tasks = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let mut fields = line.split_whitespace();
            let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(request), Some(scene), Some(tile), None) => {
                    match (
                        request.parse(),
                        u32::from_str_radix(scene, 16),
                        tile.parse(),
                    ) {
                        (Ok(request), Ok(scene), Ok(tile)) => Some(Task {
                            request,
                            tile: TileRef { scene, tile },
                        }),
                        _ => None,
                    }
                }
                _ => None,
            };
            tasks.push(parsed.ok_or_else(|| TaskError::Corrupt {
                path: path.clone(),
                line: number + 1,
                text: line.to_string(),
            })?);
        }
        Ok(Self { path, tasks })
    }

    fn save(&self) -> Result<(), TaskError> {
        let io = |source| TaskError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        for task in &self.tasks {
            text.push_str(&format!(
                "{} {:08x} {}\n",
                task.request, task.tile.scene, task.tile.tile
            ));
        }
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, text).map_err(io)?;
        std::fs::File::open(&partial)
            .and_then(|file| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&partial, &self.path).map_err(io)
    }

    /// Adds the tiles of `request` not already listed (a request repeated by the ground adds
    /// nothing); returns how many were new.
    pub fn add(
        &mut self,
        request: u32,
        tiles: impl IntoIterator<Item = TileRef>,
    ) -> Result<usize, TaskError> {
        let before = self.tasks.len();
        for tile in tiles {
            if !self.tasks.iter().any(|t| t.tile == tile) {
                self.tasks.push(Task { request, tile });
            }
        }
        let added = self.tasks.len() - before;
        if added > 0 {
            self.save()?;
        }
        Ok(added)
    }

    /// Drops what is left of `request`; returns how many tiles.
    pub fn cancel(&mut self, request: u32) -> Result<usize, TaskError> {
        let before = self.tasks.len();
        self.tasks.retain(|t| t.request != request);
        let dropped = before - self.tasks.len();
        if dropped > 0 {
            self.save()?;
        }
        Ok(dropped)
    }

    /// The first tile still to send.
    pub fn next(&self) -> Option<Task> {
        self.tasks.first().copied()
    }

    /// `task` is done: its file reached the ground.
    pub fn done(&mut self, task: &Task) -> Result<(), TaskError> {
        let before = self.tasks.len();
        self.tasks.retain(|t| t != task);
        if self.tasks.len() != before {
            self.save()?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// What the board can send for a requested tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The tile as a GeoTIFF at this path.
    Tile(PathBuf),
    /// A "no longer on board" answer at this path: a line saying why.
    Absent(PathBuf),
}

/// Cuts `tile` from the scene store into `out_dir`, as a 16-bit GeoTIFF with the scene's bands
/// (named) and the tile's georeference; or writes the answer that it is not on board.
pub fn prepare_tile(
    store: &SceneStore,
    card: &ModelCard,
    tile: TileRef,
    out_dir: &Path,
) -> Result<Prepared, TaskError> {
    std::fs::create_dir_all(out_dir).map_err(|source| TaskError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let absent = |why: String| -> Result<Prepared, TaskError> {
        let path = out_dir.join(tile_file_name(tile, true));
        std::fs::write(&path, format!("{why}\n")).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Prepared::Absent(path))
    };
    let Some(scene) = store.find(tile.scene)? else {
        return absent(format!(
            "no longer on board: scene {:08x} is not in the scene store (evicted, or never kept)",
            tile.scene
        ));
    };
    let source = match TileSource::open(&scene.path, card) {
        Ok(source) => source,
        Err(error) => return absent(format!("unreadable on board: {error}")),
    };
    let cut = match source.tile(tile.tile) {
        Ok(cut) => cut,
        Err(problem) => {
            return absent(format!(
                "not on board: tile {} of scene {:08x}: {}",
                tile.tile, tile.scene, problem.reason
            ))
        }
    };
    let samples: Option<Vec<u16>> = cut
        .image
        .samples
        .iter()
        .map(|&v| (v.fract() == 0.0 && (0.0..=65535.0).contains(&v)).then_some(v as u16))
        .collect();
    let Some(samples) = samples else {
        return absent("not sendable: the scene's samples are not 16-bit integers".into());
    };
    let georeference: Option<Georeference> = cut.image.georeference.clone();
    let names = cut
        .image
        .band_names
        .clone()
        .unwrap_or_else(|| card.band_names.clone());
    let path = out_dir.join(tile_file_name(tile, false));
    write_u16_tiff(
        &path,
        cut.image.width,
        cut.image.height,
        cut.image.bands,
        &samples,
        georeference.as_ref(),
        Some(&names),
    )?;
    std::fs::File::open(&path)
        .and_then(|file| file.sync_all())
        .map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(Prepared::Tile(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_list_survives_a_reopen_and_repeats_add_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tasks = TaskList::open(dir.path()).expect("opens");
        let a = TileRef {
            scene: 0xabcd,
            tile: 3,
        };
        let b = TileRef {
            scene: 0xabcd,
            tile: 9,
        };
        assert_eq!(tasks.add(1, [a, b]).expect("adds"), 2);
        assert_eq!(tasks.add(2, [b]).expect("adds"), 0);
        let tasks = TaskList::open(dir.path()).expect("reopens");
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            tasks.next(),
            Some(Task {
                request: 1,
                tile: a
            })
        );
        let mut tasks = tasks;
        tasks.cancel(1).expect("cancels");
        assert!(TaskList::open(dir.path()).expect("reopens").is_empty());
        std::fs::write(dir.path().join("tasks"), "1 zz 3\n").expect("writes");
        assert!(matches!(
            TaskList::open(dir.path()),
            Err(TaskError::Corrupt { line: 1, .. })
        ));
    }
}
