//! Where tiles come from: a directory of tile images, or a whole scene cut on the model's grid.
//!
//! A scene (GeoTIFF, TIFF, PNG, JPEG) is cut into `tile.size` squares every `tile.stride` pixels,
//! row-major; tile `t` of a scene `tiles_per_row` wide sits at row `(t / tiles_per_row) · stride`,
//! column `(t % tiles_per_row) · stride` ([`TileGrid`]). A GeoTIFF's georeferencing gives each tile
//! the map coordinates of its top-left corner. A directory's images are tiles in file-name order;
//! each must be `tile.size` square. A tile that cannot be used is reported and counted, never
//! fatal.

use std::path::{Path, PathBuf};

use orbhash_contract::card::TileSpec;
use orbhash_contract::raster::{read_image, RawImage};
use orbhash_wire::{scene_id_of, MapCoordinates, TileGrid};

/// One tile ready for preprocessing.
#[derive(Debug, Clone)]
pub struct Tile {
    pub scene_id: u32,
    pub tile_id: u32,
    pub row_px: u32,
    pub col_px: u32,
    pub map: Option<MapCoordinates>,
    /// File name (directory) or `scene@row,col`, for reports.
    pub name: String,
    pub image: RawImage,
}

/// A tile that could not be read or does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileProblem {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

pub enum TileSource {
    Directory {
        scene_id: u32,
        files: Vec<PathBuf>,
        tile: TileSpec,
    },
    Scene {
        scene_id: u32,
        name: String,
        image: RawImage,
        tile: TileSpec,
        grid: TileGrid,
        tiles: u32,
    },
}

const IMAGE_EXTENSIONS: [&str; 7] = ["tif", "tiff", "png", "jpg", "jpeg", "bmp", "jp2"];

impl TileSource {
    /// A directory of tiles or a scene file, cut for `tile`.
    pub fn open(path: &Path, tile: TileSpec) -> Result<Self, SourceError> {
        let unusable = |reason: String| SourceError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| unusable(e.to_string()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| {
                    file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(unusable("no image files".into()));
            }
            return Ok(Self::Directory {
                scene_id: scene_id_of(&name),
                files,
                tile,
            });
        }
        let image = read_image(path).map_err(|e| unusable(e.to_string()))?;
        if image.width < tile.size || image.height < tile.size {
            return Err(unusable(format!(
                "scene of {}x{} px is smaller than one {}-px tile",
                image.width, image.height, tile.size
            )));
        }
        let per_row = (image.width - tile.size) / tile.stride + 1;
        let rows = (image.height - tile.size) / tile.stride + 1;
        Ok(Self::Scene {
            scene_id: scene_id_of(&name),
            name,
            grid: TileGrid {
                tiles_per_row: per_row,
                tile_size_px: tile.size,
                stride_px: tile.stride,
            },
            tiles: per_row * rows,
            image,
            tile,
        })
    }

    pub fn scene_id(&self) -> u32 {
        match self {
            Self::Directory { scene_id, .. } | Self::Scene { scene_id, .. } => *scene_id,
        }
    }

    /// The grid the packets announce (none for a directory: positions travel explicitly).
    pub fn grid(&self) -> TileGrid {
        match self {
            Self::Directory { .. } => TileGrid::NONE,
            Self::Scene { grid, .. } => *grid,
        }
    }

    pub fn len(&self) -> u32 {
        match self {
            Self::Directory { files, .. } => files.len() as u32,
            Self::Scene { tiles, .. } => *tiles,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tile `tile_id`, read and cut.
    pub fn tile(&self, tile_id: u32) -> Result<Tile, TileProblem> {
        match self {
            Self::Directory {
                scene_id,
                files,
                tile,
            } => {
                let path = files.get(tile_id as usize).ok_or_else(|| TileProblem {
                    name: format!("tile {tile_id}"),
                    reason: "no such tile".into(),
                })?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let problem = |reason: String| TileProblem {
                    name: name.clone(),
                    reason,
                };
                let image = read_image(path).map_err(|e| problem(e.to_string()))?;
                if (image.width, image.height) != (tile.size, tile.size) {
                    return Err(problem(format!(
                        "{}x{} px; the model's tiles are {}x{}",
                        image.width, image.height, tile.size, tile.size
                    )));
                }
                Ok(Tile {
                    scene_id: *scene_id,
                    tile_id,
                    row_px: 0,
                    col_px: 0,
                    map: None,
                    name,
                    image,
                })
            }
            Self::Scene {
                scene_id,
                name,
                image,
                tile,
                grid,
                ..
            } => {
                let (row_px, col_px) = grid.predict(tile_id);
                let samples = image
                    .window(col_px, row_px, tile.size, tile.size)
                    .ok_or_else(|| TileProblem {
                        name: format!("{name}@{row_px},{col_px}"),
                        reason: "outside the scene".into(),
                    })?;
                let map = image.georeference.as_ref().and_then(|georeference| {
                    let epsg = georeference.crs.strip_prefix("EPSG:")?.parse().ok()?;
                    let (easting, northing) = georeference
                        .geo
                        .pixel_to_map(f64::from(col_px), f64::from(row_px));
                    Some(MapCoordinates {
                        epsg,
                        easting,
                        northing,
                    })
                });
                Ok(Tile {
                    scene_id: *scene_id,
                    tile_id,
                    row_px,
                    col_px,
                    map,
                    name: format!("{name}@{row_px},{col_px}"),
                    image: RawImage {
                        width: tile.size,
                        height: tile.size,
                        bands: image.bands,
                        samples,
                        georeference: None,
                    },
                })
            }
        }
    }
}
