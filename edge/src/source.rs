//! Where tiles come from: a directory of tile images, or a whole scene cut on the model's grid.
//!
//! A scene (GeoTIFF, TIFF, PNG, JPEG) is cut into `tile.size` squares every `tile.stride` pixels,
//! row-major; tile `t` of a scene `tiles_per_row` wide sits at row `(t / tiles_per_row) · stride`,
//! column `(t % tiles_per_row) · stride` ([`TileGrid`]). A GeoTIFF's georeferencing gives each tile
//! the map coordinates of its top-left corner. A directory's images are tiles in file-name order;
//! each must be `tile.size` square. A tile that cannot be used is reported and counted, never
//! fatal.
//!
//! The bands are checked against the model card once, when the source opens, before any tile is
//! hashed: by name where the file names its bands (GDAL band descriptions), else by count, and
//! then the card's names are assumed ([`TileSource::assumed_bands`]). A directory is checked on
//! its first image, and each tile again on its own (a mixed directory loses only the odd tiles).

use std::path::{Path, PathBuf};

use orbhash_contract::card::{BandMatch, BandMismatch, ModelCard, TileSpec};
use orbhash_contract::raster::{read_image, GeoTransform, Georeference, RasterError, RawImage};
use orbhash_wire::{scene_id_of, MapCoordinates, TileGrid};

use orbhash_cli::error_chain;

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
    #[error("{}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("{}: cannot list the directory", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] RasterError),
    #[error("{}: not the bands this model was trained on", path.display())]
    Bands {
        path: PathBuf,
        #[source]
        source: BandMismatch,
    },
}

pub struct TileSource {
    kind: Kind,
    bands: BandMatch,
    /// Every image must hold these bands (the model card's check).
    card: ModelCard,
}

enum Kind {
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
    /// A directory of tiles or a scene file, cut on `card`'s tile grid; refused when its bands
    /// are not the card's.
    pub fn open(path: &Path, card: &ModelCard) -> Result<Self, SourceError> {
        let tile = card.tile;
        let unusable = |reason: String| SourceError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let check = |image: &RawImage, image_path: &Path| {
            card.check_bands(image.bands, image.band_names.as_deref())
                .map_err(|source| SourceError::Bands {
                    path: image_path.to_path_buf(),
                    source,
                })
        };
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| SourceError::List {
                    path: path.to_path_buf(),
                    source,
                })?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| {
                    file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            files.sort();
            let Some(first) = files.first() else {
                return Err(unusable("no image files".into()));
            };
            // An unreadable first file is that tile's problem, reported with the others.
            let bands = match read_image(first) {
                Ok(image) => check(&image, first)?,
                Err(_) => BandMatch::Assumed(card.band_names.clone()),
            };
            return Ok(Self {
                kind: Kind::Directory {
                    scene_id: scene_id_of(&name),
                    files,
                    tile,
                },
                bands,
                card: card.clone(),
            });
        }
        let image = read_image(path)?;
        let bands = check(&image, path)?;
        if image.width < tile.size || image.height < tile.size {
            return Err(unusable(format!(
                "scene of {}x{} px is smaller than one {}-px tile",
                image.width, image.height, tile.size
            )));
        }
        let per_row = (image.width - tile.size) / tile.stride + 1;
        let rows = (image.height - tile.size) / tile.stride + 1;
        Ok(Self {
            kind: Kind::Scene {
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
            },
            bands,
            card: card.clone(),
        })
    }

    /// The card's band names when the source does not name its bands and they are assumed to
    /// be these (same count); `None` when the names were checked. For saying so once.
    pub fn assumed_bands(&self) -> Option<&[String]> {
        match &self.bands {
            BandMatch::Named => None,
            BandMatch::Assumed(names) => Some(names),
        }
    }

    pub fn scene_id(&self) -> u32 {
        match &self.kind {
            Kind::Directory { scene_id, .. } | Kind::Scene { scene_id, .. } => *scene_id,
        }
    }

    /// The grid the packets announce (none for a directory: positions travel explicitly).
    pub fn grid(&self) -> TileGrid {
        match &self.kind {
            Kind::Directory { .. } => TileGrid::NONE,
            Kind::Scene { grid, .. } => *grid,
        }
    }

    pub fn len(&self) -> u32 {
        match &self.kind {
            Kind::Directory { files, .. } => files.len() as u32,
            Kind::Scene { tiles, .. } => *tiles,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tile `tile_id`, read and cut.
    pub fn tile(&self, tile_id: u32) -> Result<Tile, TileProblem> {
        match &self.kind {
            Kind::Directory {
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
                let image = read_image(path).map_err(|e| problem(error_chain(&e)))?;
                self.card
                    .check_bands(image.bands, image.band_names.as_deref())
                    .map_err(|e| problem(e.to_string()))?;
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
            Kind::Scene {
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
                        // The tile's own grid: the scene's, moved to the tile's corner.
                        georeference: image.georeference.as_ref().map(|scene| {
                            let (origin_x, origin_y) =
                                scene.geo.pixel_to_map(f64::from(col_px), f64::from(row_px));
                            Georeference {
                                geo: GeoTransform {
                                    origin_x,
                                    origin_y,
                                    ..scene.geo
                                },
                                crs: scene.crs.clone(),
                            }
                        }),
                        band_names: image.band_names.clone(),
                    },
                })
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use orbhash_contract::card::{CardFormat, Precision, Training};
    use orbhash_contract::input::{BandScale, InputSpec};
    use orbhash_wire::ModelId;

    /// The shipped Sentinel-2 models' card, in what matters here: bands and grid (f32).
    pub(crate) fn s2_card() -> ModelCard {
        ModelCard {
            format: CardFormat,
            model_id: ModelId::of_model(b"graph"),
            bits: 64,
            classes: vec!["farm".into(), "water".into()],
            input: InputSpec::multispectral(128, vec![0, 1, 2], vec![BandScale::U16; 3]),
            band_names: ["B04", "B03", "B02", "B08"].map(String::from).to_vec(),
            tile: TileSpec {
                size: 32,
                stride: 32,
            },
            precision: Precision::F32,
            dataset: "s2-brandenburg".into(),
            dataset_manifest_sha256: None,
            training: Training {
                pretrained_sha256: None,
                config: Default::default(),
            },
            quantisation: None,
            exporter: "test".into(),
        }
    }

    /// A 64×64 uint16 GeoTIFF-free TIFF of `bands` bands, its bands named by GDAL_METADATA
    /// band descriptions when `names` are given.
    fn write_u16(path: &Path, bands: usize, names: Option<&[&str]>) {
        use tiff::encoder::{colortype, TiffEncoder};
        use tiff::tags::Tag;
        let file = std::fs::File::create(path).expect("creates");
        let mut encoder = TiffEncoder::new(file).expect("encoder");
        let (w, h) = (64u32, 64u32);
        let samples = vec![1000u16; bands * (w * h) as usize];
        let xml = names.map(|names| {
            let items: String = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    format!(
                        "<Item name=\"DESCRIPTION\" sample=\"{i}\" role=\"description\">{name}</Item>"
                    )
                })
                .collect();
            format!("<GDALMetadata>{items}</GDALMetadata>")
        });
        macro_rules! write {
            ($colour:ty) => {{
                let mut image = encoder.new_image::<$colour>(w, h).expect("image");
                if let Some(xml) = &xml {
                    image
                        .encoder()
                        .write_tag(Tag::Unknown(42112), xml.as_str())
                        .expect("tag");
                }
                image.write_data(&samples).expect("writes");
            }};
        }
        match bands {
            1 => write!(colortype::Gray16),
            3 => write!(colortype::RGB16),
            4 => write!(colortype::RGBA16),
            _ => panic!("1, 3 or 4 bands"),
        }
    }

    #[test]
    fn a_scene_of_other_bands_is_refused_once_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let card = s2_card();
        // A Landsat 8 scene of three uint16 bands (B4, B3, B2), unnamed, and a 1-band image:
        // before this check the first was hashed silently, the second failed tile by tile.
        for bands in [1, 3] {
            let path = dir.path().join(format!("scene{bands}.tif"));
            write_u16(&path, bands, None);
            let error = TileSource::open(&path, &card).err().expect("refused");
            let text = error_chain(&error);
            assert!(matches!(error, SourceError::Bands { .. }), "{text}");
            assert!(
                text.contains(&format!("has {bands} band(s)")) && text.contains("B08"),
                "{text}"
            );
        }
        // Named bands are checked by name: four bands, but Landsat's.
        let landsat = dir.path().join("landsat.tif");
        write_u16(&landsat, 4, Some(&["B4", "B3", "B2", "B5"]));
        let error = TileSource::open(&landsat, &card).err().expect("refused");
        assert!(
            error_chain(&error).contains("\"B5\""),
            "{}",
            error_chain(&error)
        );
    }

    #[test]
    fn named_bands_that_match_are_not_assumed_and_unnamed_ones_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let card = s2_card();
        let named = dir.path().join("named.tif");
        write_u16(&named, 4, Some(&["B04", "B03", "B02", "B08"]));
        let source = TileSource::open(&named, &card).expect("opens");
        assert_eq!(source.assumed_bands(), None);
        assert_eq!(source.len(), 4);
        let unnamed = dir.path().join("unnamed.tif");
        write_u16(&unnamed, 4, None);
        let source = TileSource::open(&unnamed, &card).expect("opens");
        assert_eq!(source.assumed_bands(), Some(&card.band_names[..]));
    }

    #[test]
    fn a_directory_is_checked_on_its_first_tile_and_then_tile_by_tile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut card = s2_card();
        card.tile = TileSpec {
            size: 64,
            stride: 64,
        };
        write_u16(&dir.path().join("a.tif"), 3, None);
        let error = TileSource::open(dir.path(), &card).err().expect("refused");
        assert!(matches!(error, SourceError::Bands { .. }), "{error}");

        write_u16(&dir.path().join("a.tif"), 4, None);
        write_u16(&dir.path().join("b.tif"), 1, None);
        let source = TileSource::open(dir.path(), &card).expect("opens");
        assert!(source.tile(0).is_ok());
        let problem = source.tile(1).expect_err("one band");
        assert!(problem.reason.contains("1 band(s)"), "{problem:?}");
    }

    #[test]
    fn the_real_scenes_are_checked_by_count() {
        let card = s2_card();
        if let Some(s2) = orbhash_test_support::asset(
            ".cache/data/s2-brandenburg/scenes/T33UUU_20170216T102101.tif",
        ) {
            let source = TileSource::open(&s2, &card).expect("the model's own scene");
            assert_eq!(source.assumed_bands(), Some(&card.band_names[..]));
            assert_eq!(source.len(), 48 * 24);
            let tile = source.tile(0).expect("a tile");
            assert_eq!((tile.image.bands, tile.image.width), (4, 32));
        }
        // Landsat 7's five bands (B3, B2, B1, B4, B5), not this model's.
        if let Some(landsat) =
            orbhash_test_support::asset(".cache/data/nc-landsat/scenes/lsat7_2000.tif")
        {
            let error = TileSource::open(&landsat, &card).err().expect("refused");
            assert!(
                error_chain(&error).contains("has 5 band(s)"),
                "{}",
                error_chain(&error)
            );
        }
    }
}
