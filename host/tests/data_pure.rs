//! The data module's pure parts on small synthetic inputs: no network, no assets, a few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use geo_types::{coord, LineString, MultiPolygon, Polygon};
use orbhash_contract::raster::{read_image, Georeference};
use orbhash_host::data::folder::{BadFilePolicy, ImageFolder, LoaderOptions, SplitSource};
use orbhash_host::data::geo::{jp2_georef, write_u16_tiff, GeoTransform};
use orbhash_host::data::gpkg::{gpkg_wkb, read_polygons};
use orbhash_host::data::patches::majority_patches;
use orbhash_host::data::preprocess::{dihedral, Augment, BandScale, InputSpec};
use orbhash_host::data::rasterize::{burn_all, LabelGrid};
use orbhash_host::data::split::{blocked_split, per_class_split, query_count, rng, Footprint};
use orbhash_host::data::{DataError, SplitName};

/// Unit pixels, north-up, map y = 10 at the top row's upper edge.
const GRID: GeoTransform = GeoTransform {
    origin_x: 0.0,
    origin_y: 10.0,
    pixel_width: 1.0,
    pixel_height: 1.0,
};

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> LineString<f64> {
    LineString(vec![
        coord! { x: x0, y: y0 },
        coord! { x: x1, y: y0 },
        coord! { x: x1, y: y1 },
        coord! { x: x0, y: y1 },
        coord! { x: x0, y: y0 },
    ])
}

#[test]
fn rasterises_by_pixel_centre_with_holes() {
    // Square 2..8 × 2..8 (map) with a hole 4..6 × 4..6.
    let shape = MultiPolygon(vec![Polygon::new(
        rect(2.0, 2.0, 8.0, 8.0),
        vec![rect(4.0, 4.0, 6.0, 6.0)],
    )]);
    let mut grid = LabelGrid::new(10, 10);
    grid.burn(&shape, &GRID, 3);
    let filled = grid.data.iter().filter(|&&v| v == 3).count();
    assert_eq!(filled, 36 - 4);
    // Map y 8..2 is rows 2..8; x 2..8 is columns 2..8.
    assert_eq!(grid.get(2, 2), 3);
    assert_eq!(grid.get(7, 7), 3);
    assert_eq!(grid.get(1, 2), 0);
    assert_eq!(grid.get(8, 7), 0);
    assert_eq!(grid.get(4, 4), 0, "hole stays empty");
    assert_eq!(grid.get(5, 5), 0, "hole stays empty");

    // A sliver between pixel centres (x 0.6..1.4) covers no centre; 0.4..1.6 covers two.
    let mut grid = LabelGrid::new(4, 4);
    grid.burn(
        &MultiPolygon(vec![Polygon::new(rect(0.6, 7.0, 1.4, 10.0), vec![])]),
        &GRID,
        1,
    );
    assert!(grid.data.iter().all(|&v| v == 0));
    grid.burn(
        &MultiPolygon(vec![Polygon::new(rect(0.4, 9.0, 1.6, 10.0), vec![])]),
        &GRID,
        1,
    );
    assert_eq!(grid.data.iter().filter(|&&v| v == 1).count(), 2);
}

#[test]
fn smaller_polygons_are_drawn_over_larger_ones() {
    let lake = MultiPolygon(vec![Polygon::new(rect(3.0, 3.0, 5.0, 5.0), vec![])]);
    let forest = MultiPolygon(vec![Polygon::new(rect(0.0, 0.0, 10.0, 10.0), vec![])]);
    let mut grid = LabelGrid::new(10, 10);
    // The lake comes first in the input but must survive the forest.
    burn_all(&mut grid, &GRID, &[(&lake, 2), (&forest, 1)]);
    assert_eq!(grid.data.iter().filter(|&&v| v == 2).count(), 4);
    assert_eq!(grid.data.iter().filter(|&&v| v == 1).count(), 96);
}

#[test]
fn majority_labels_count_unlabelled_pixels_against_the_class() {
    // 4×4 grid, 2×2 patches: top-left all class 1; top-right 2 of class 2 + 2 unlabelled;
    // bottom-left 1 of class 1 + 3 unlabelled; bottom-right 3 of class 3 + 1 no-data pixel.
    let mut grid = LabelGrid::new(4, 4);
    let mut set = |c: usize, r: usize, v: u8| grid.data[r * 4 + c] = v;
    for (c, r) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        set(c, r, 1);
    }
    set(2, 0, 2);
    set(3, 0, 2);
    set(0, 2, 1);
    for (c, r) in [(2, 2), (3, 2), (2, 3), (3, 3)] {
        set(c, r, 3);
    }
    let valid = |c: usize, r: usize| (c, r) != (3, 3);
    let kept = majority_patches(&grid, 2, 2, 0.5, valid);
    let summary: Vec<(usize, usize, u8, f32)> = kept
        .iter()
        .map(|p| (p.row, p.col, p.class, p.fraction))
        .collect();
    assert_eq!(summary, vec![(0, 0, 1, 1.0), (0, 2, 2, 0.5)]);
    // A stricter threshold drops the half-covered patch; stride 1 gives overlapping windows.
    assert_eq!(majority_patches(&grid, 2, 2, 0.75, |_, _| true).len(), 2);
    assert_eq!(majority_patches(&grid, 2, 1, 1.0, |_, _| true).len(), 2);
}

/// Overlapping patches (stride 8, size 16) over a 256×256 scene, classes in bands so that
/// several blocks hold each class.
fn synthetic_patches() -> Vec<Footprint> {
    let mut out = Vec::new();
    for row in (0..240).step_by(8) {
        for col in (0..240).step_by(8) {
            let class = match (row / 48, col / 96) {
                (0, _) => 1,
                (1, 0) => 4, // rare-ish
                (1, _) => 2,
                _ if row == 200 && col < 40 => 5, // rare: 5 patches
                _ => 3,
            };
            out.push(Footprint {
                row,
                col,
                size: 16,
                class,
            });
        }
    }
    out
}

#[test]
fn blocked_split_never_straddles_and_shares_no_pixel() {
    let patches = synthetic_patches();
    let split = blocked_split(&patches, 64, 0.2, 42);
    let mut side_of_block: BTreeMap<(usize, usize), SplitName> = BTreeMap::new();
    let mut per_class: BTreeMap<u8, BTreeSet<SplitName>> = BTreeMap::new();
    for (i, side) in split.assignment.iter().enumerate() {
        let block = split.block[i];
        // Every patch's centre lies in its block.
        let p = patches[i];
        assert_eq!(((p.row + 8) / 64, (p.col + 8) / 64), block);
        if let Some(side) = side {
            // A block is on one side only (dropped patches aside).
            let first = side_of_block.entry(block).or_insert(*side);
            assert_eq!(first, side, "block {block:?} straddles the split");
            per_class.entry(p.class).or_default().insert(*side);
        }
    }
    // No database patch shares a pixel with a query patch.
    let assignment = &split.assignment;
    let on = |s: SplitName| -> Vec<Footprint> {
        (0..patches.len())
            .filter(|&i| assignment[i] == Some(s))
            .map(|i| patches[i])
            .collect()
    };
    for q in on(SplitName::Query) {
        for d in on(SplitName::Database) {
            let overlap = q.row < d.row + d.size
                && d.row < q.row + q.size
                && q.col < d.col + d.size
                && d.col < q.col + q.size;
            assert!(!overlap, "query {q:?} overlaps database {d:?}");
        }
    }
    assert!(
        split.dropped_overlap > 0,
        "stride < size must drop border patches"
    );
    // Every class spread over two blocks or more is on both sides; class 5 lies in one block,
    // which goes to the database.
    for (class, sides) in &per_class {
        if *class == 5 {
            assert_eq!(sides.iter().collect::<Vec<_>>(), [&SplitName::Database]);
        } else {
            assert_eq!(sides.len(), 2, "class {class} only on {sides:?}");
        }
    }
    // Roughly the asked share of queries.
    let queries = on(SplitName::Query).len() as f64;
    let kept = split.assignment.iter().flatten().count() as f64;
    assert!(
        (0.1..0.35).contains(&(queries / kept)),
        "{}",
        queries / kept
    );
    // Seeded: the same seed gives the same split, another seed another one.
    assert!(
        blocked_split(&patches, 64, 0.2, 42) == split,
        "not reproducible"
    );
    assert!(
        (0..10).any(|seed| blocked_split(&patches, 64, 0.2, seed).assignment != split.assignment),
        "the seed changes nothing"
    );
}

#[test]
fn blocked_split_with_disjoint_patches_drops_nothing() {
    let patches: Vec<Footprint> = (0..16)
        .flat_map(|r| {
            (0..16).map(move |c| Footprint {
                row: r * 16,
                col: c * 16,
                size: 16,
                class: (1 + (r + c) % 3) as u8,
            })
        })
        .collect();
    let split = blocked_split(&patches, 64, 0.25, 1);
    assert_eq!(split.dropped_overlap, 0);
    assert!(split.assignment.iter().all(Option::is_some));
}

#[test]
fn per_class_split_matches_the_paper_on_uc_merced_sizes() {
    // 21 classes × 100 images, 80/20: 1,680 database, 420 queries, 20 per class.
    let labels: Vec<usize> = (0..2100).map(|i| i % 21).collect();
    let split = per_class_split(&labels, 0.2, 7);
    let queries = split.iter().filter(|s| **s == SplitName::Query).count();
    assert_eq!(queries, 420);
    for class in 0..21 {
        let q = (0..2100)
            .filter(|&i| labels[i] == class && split[i] == SplitName::Query)
            .count();
        assert_eq!(q, 20);
    }
    assert_eq!(per_class_split(&labels, 0.2, 7), split);
    assert_ne!(per_class_split(&labels, 0.2, 8), split);
    // AID's 50/50; and tiny classes still get one of each.
    assert_eq!(query_count(10_000, 0.5), 5_000);
    assert_eq!(query_count(2, 0.2), 1);
    assert_eq!(query_count(3, 0.9), 2);
    assert_eq!(query_count(1, 0.2), 0);
}

#[test]
fn normalisation_is_imagenet_on_unit_range() {
    let spec = InputSpec::imagenet_rgb(2);
    spec.validate().expect("valid");
    assert!((spec.normalise(0, 255.0) - (1.0 - 0.485) / 0.229).abs() < 1e-6);
    assert!((spec.normalise(2, 0.0) - (-0.406 / 0.225)).abs() < 1e-6);
    assert!((spec.normalise(1, 127.5) - (0.5 - 0.456) / 0.224).abs() < 1e-6);
    // Interleaved RGB 2×2 → CHW; same size, so no resampling.
    let rgb = [
        255.0, 0.0, 0.0, 0.0, 255.0, 0.0, 0.0, 0.0, 255.0, 255.0, 255.0, 255.0,
    ];
    let chw = spec.to_chw(2, 2, 3, &rgb).expect("converts");
    assert_eq!(chw.len(), 12);
    let hi = |k: usize| (1.0 - spec.mean[k]) / spec.std[k];
    let lo = |k: usize| -spec.mean[k] / spec.std[k];
    assert_eq!(chw[0..4], [hi(0), lo(0), lo(0), hi(0)]);
    assert_eq!(chw[4..8], [lo(1), hi(1), lo(1), hi(1)]);
    assert_eq!(chw[8..12], [lo(2), lo(2), hi(2), hi(2)]);
    // Resizing a constant image keeps it constant.
    let big = InputSpec::imagenet_rgb(5)
        .to_chw(2, 2, 3, &[51.0; 12])
        .expect("resizes");
    assert!(big[..25]
        .iter()
        .all(|v| (v - (0.2 - 0.485) / 0.229).abs() < 1e-5));
    // A spec asking for a band the image lacks is an error, not a panic.
    let four = InputSpec::multispectral(2, vec![0, 1, 2, 3], vec![BandScale::U16; 4]);
    assert!(four.to_chw(2, 2, 3, &rgb).is_err());
    assert_eq!(four.mean[3], 0.449);
}

#[test]
fn band_scale_percentiles_and_clamping() {
    let values: Vec<f32> = (0..=100).map(|v| v as f32).chain([f32::NAN]).collect();
    let scale = BandScale::from_percentiles(&values, 2.0, 98.0).expect("finite values");
    assert_eq!((scale.low, scale.high), (2.0, 98.0));
    assert_eq!(scale.apply(50.0), 0.5);
    assert_eq!(scale.apply(-5.0), 0.0);
    assert_eq!(scale.apply(500.0), 1.0);
    assert!(BandScale::from_percentiles(&[f32::NAN], 2.0, 98.0).is_none());
}

#[test]
fn augmentation_is_the_dihedral_group() {
    // One 2×2 channel: a b / c d.
    let img = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(dihedral(&img, 1, 2, 0), img);
    // 90° clockwise: c a / d b.
    assert_eq!(dihedral(&img, 1, 2, 2), [3.0, 1.0, 4.0, 2.0]);
    // Horizontal flip: b a / d c. Vertical flip (k = 5): c d / a b.
    assert_eq!(dihedral(&img, 1, 2, 1), [2.0, 1.0, 4.0, 3.0]);
    assert_eq!(dihedral(&img, 1, 2, 5), [3.0, 4.0, 1.0, 2.0]);
    // All 8 are distinct on a generic image, and each keeps the pixel multiset.
    let img3: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let all: BTreeSet<Vec<u32>> = (0..8)
        .map(|k| dihedral(&img3, 1, 3, k).iter().map(|v| *v as u32).collect())
        .collect();
    assert_eq!(all.len(), 8);
    let mut r = rng(3);
    let out = Augment {
        flips: true,
        rot90: true,
    }
    .apply(&img3, 1, 3, &mut r);
    let mut sorted = out.clone();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(sorted, img3);
}

#[test]
fn geopackage_header_and_features() {
    // Header with no envelope, then with an XY envelope, then an empty geometry.
    let mut blob = vec![b'G', b'P', 0, 0b0000_0001, 0x79, 0x7f, 0, 0];
    blob.extend([1, 2, 3]);
    assert_eq!(gpkg_wkb(&blob), Ok(Some(&[1u8, 2, 3][..])));
    let mut with_env = vec![b'G', b'P', 0, 0b0000_0011, 0, 0, 0, 0];
    with_env.extend([0u8; 32]);
    with_env.push(9);
    assert_eq!(gpkg_wkb(&with_env), Ok(Some(&[9u8][..])));
    assert_eq!(
        gpkg_wkb(&[b'G', b'P', 0, 0b0001_0001, 0, 0, 0, 0]),
        Ok(None)
    );
    assert!(gpkg_wkb(b"XX123456").is_err());

    // A minimal GeoPackage with one polygon in EPSG:32633.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("labels.gpkg");
    let conn = rusqlite::Connection::open(&path).expect("create");
    conn.execute_batch(
        "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, \
           organization TEXT, organization_coordsys_id INTEGER, definition TEXT);
         INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 / UTM zone 33N', 32633, 'EPSG', 32633, '');
         CREATE TABLE gpkg_geometry_columns (table_name TEXT, column_name TEXT, \
           geometry_type_name TEXT, srs_id INTEGER, z INTEGER, m INTEGER);
         INSERT INTO gpkg_geometry_columns VALUES ('land-use', 'geom', 'POLYGON', 32633, 0, 0);
         CREATE TABLE \"land-use\" (fid INTEGER PRIMARY KEY, geom BLOB, fclass TEXT);",
    )
    .expect("schema");
    let mut wkb = vec![1u8];
    wkb.extend(3u32.to_le_bytes()); // polygon
    wkb.extend(1u32.to_le_bytes()); // one ring
    wkb.extend(5u32.to_le_bytes()); // five points
    for (x, y) in [
        (0.0f64, 0.0f64),
        (4.0, 0.0),
        (4.0, 4.0),
        (0.0, 4.0),
        (0.0, 0.0),
    ] {
        wkb.extend(x.to_le_bytes());
        wkb.extend(y.to_le_bytes());
    }
    let mut geom = vec![b'G', b'P', 0, 0b0000_0001];
    geom.extend(32633i32.to_le_bytes());
    geom.extend(&wkb);
    conn.execute(
        "INSERT INTO \"land-use\" VALUES (1, ?1, 'forest'), (2, NULL, 'water')",
        [&geom],
    )
    .expect("insert");
    drop(conn);
    let layer = read_polygons(&path, None, "fclass").expect("reads");
    assert_eq!(layer.crs, "EPSG:32633");
    assert_eq!(layer.table, "land-use");
    assert_eq!(layer.features.len(), 1, "NULL geometry skipped");
    assert_eq!(layer.features[0].class, "forest");
    assert_eq!(
        orbhash_host::data::rasterize::area(&layer.features[0].geometry),
        16.0
    );
}

#[test]
fn gml_georeferencing_is_read_from_jp2_boxes() {
    let gml = r#"<gml:FeatureCollection><gml:RectifiedGrid dimension="2">
        <gml:origin><gml:Point srsName="urn:ogc:def:crs:EPSG::32633">
        <gml:pos>330005 5822035</gml:pos></gml:Point></gml:origin>
        <gml:offsetVector srsName="urn:ogc:def:crs:EPSG::32633">10 0</gml:offsetVector>
        <gml:offsetVector srsName="urn:ogc:def:crs:EPSG::32633">0 -10</gml:offsetVector>
        </gml:RectifiedGrid></gml:FeatureCollection>"#;
    let boxed = |kind: &[u8], body: &[u8]| {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend(kind);
        b.extend(body);
        b
    };
    let file = boxed(b"asoc", &boxed(b"xml ", gml.as_bytes()));
    let (geo, crs) = jp2_georef(&file).expect("found");
    assert_eq!(crs, "EPSG:32633");
    // GML's origin is the first pixel's centre; the grid corner is half a pixel up-left.
    assert_eq!(
        geo,
        GeoTransform {
            origin_x: 330000.0,
            origin_y: 5822040.0,
            pixel_width: 10.0,
            pixel_height: 10.0
        }
    );
    assert_eq!(geo.pixel_to_map(1536.0, 768.0), (345360.0, 5814360.0));
}

#[test]
fn multiband_tiff_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("patch.tif");
    let data: Vec<u16> = (0..3 * 2 * 4).map(|v| v * 1000).collect();
    write_u16_tiff(&path, 3, 2, 4, &data, None, None).expect("writes");
    let image = read_image(&path).expect("reads");
    assert_eq!((image.width, image.height, image.bands), (3, 2, 4));
    assert_eq!(
        image.samples,
        data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );
    assert_eq!(image.georeference, None);
}

#[test]
fn a_scene_geotiff_keeps_its_grid_and_crs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scene.tif");
    let georeference = Georeference {
        geo: GeoTransform {
            origin_x: 330000.0,
            origin_y: 5822040.0,
            pixel_width: 10.0,
            pixel_height: 10.0,
        },
        crs: "EPSG:32633".into(),
    };
    let data: Vec<u16> = (0..4 * 4 * 2).collect();
    write_u16_tiff(&path, 4, 4, 2, &data, Some(&georeference), None).expect("writes");
    let image = read_image(&path).expect("reads");
    assert_eq!(image.georeference, Some(georeference));
    assert_eq!(image.window(2, 2, 1, 1), Some(vec![20.0, 21.0]));
}

fn write_png(path: &Path, value: u8) {
    let pixels = vec![value; 8 * 8 * 3];
    image::save_buffer(path, &pixels, 8, 8, image::ExtendedColorType::Rgb8).expect("png");
}

/// `<root>/<class>/<image>` with 2 classes × 5 images, one broken file, one non-image.
fn make_folder(root: &Path) {
    for (class, value) in [("forest", 40u8), ("beach", 220)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..5 {
            write_png(&dir.join(format!("{class}{i:02}.png")), value);
        }
    }
    std::fs::write(root.join("beach/broken.jpg"), b"not a jpeg").expect("write");
    std::fs::write(root.join("beach/readme.txt"), b"ignored").expect("write");
}

#[test]
fn image_folder_splits_per_class_and_names_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_folder(dir.path());
    let options = LoaderOptions {
        input: Some(InputSpec::imagenet_rgb(4)),
        split: SplitSource::PerClass {
            query_ratio: 0.2,
            seed: 1,
        },
        ..LoaderOptions::default()
    };
    let folder = ImageFolder::scan(dir.path(), &options).expect("scan");
    assert_eq!(folder.classes, ["beach", "forest"]);
    assert_eq!(folder.entries.len(), 11);
    assert_eq!(folder.ignored, 1);
    let counts = folder.counts();
    assert_eq!(counts[&(0, SplitName::Query)], 1); // 6 beach files × 0.2
    assert_eq!(counts[&(1, SplitName::Query)], 1);

    // Default policy: stop, naming the file.
    let err = folder.load().expect_err("broken file");
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.jpg"), "{err}");

    // Skip policy: warn and count.
    let options = LoaderOptions {
        bad_files: BadFilePolicy::Skip,
        disk_cache: Some(dir.path().join(".cache")),
        ..options
    };
    let folder = ImageFolder::scan(dir.path(), &options).expect("scan");
    let data = folder.load().expect("load");
    assert_eq!(data.report.decoded, 10);
    assert_eq!(data.report.skipped.len(), 1);
    assert!(data.report.skipped[0].0.ends_with("broken.jpg"));
    assert!(!data.report.from_cache);
    // Pixel values: beach 220 → (220/255 − mean) / std on channel 0.
    let beach = &data.samples[0];
    assert_eq!(beach.label, 0);
    assert_eq!(beach.pixels.len(), 3 * 4 * 4);
    assert!((beach.pixels[0] - (220.0 / 255.0 - 0.485) / 0.229).abs() < 1e-5);

    // Second load: from the disk cache, same buffers, no decoding.
    let again = folder.load().expect("load from cache");
    assert!(again.report.from_cache);
    assert_eq!(again.samples.len(), 10);
    for (a, b) in data.samples.iter().zip(&again.samples) {
        assert_eq!(a.pixels, b.pixels);
        assert_eq!((a.label, a.split), (b.label, b.split));
    }

    // Batches: N×C×H×W plus labels; augmentation keeps the shape.
    let db = data.indices(SplitName::Database);
    assert_eq!(db.len(), 8);
    let mut r = rng(0);
    let (pixels, labels) = data.batch(
        &db[..3],
        Augment {
            flips: true,
            rot90: true,
        },
        &mut r,
    );
    assert_eq!(pixels.len(), 3 * data.spec.len());
    assert_eq!(labels.len(), 3);
    let epoch0 = data.epoch_order(SplitName::Database, 5, 0);
    let epoch1 = data.epoch_order(SplitName::Database, 5, 1);
    assert_eq!(epoch0.len(), 8);
    assert_ne!(epoch0, epoch1);
}

#[test]
fn empty_or_invalid_folders_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = ImageFolder::scan(dir.path(), &LoaderOptions::default()).expect_err("empty");
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    let bad_ratio = LoaderOptions {
        split: SplitSource::PerClass {
            query_ratio: 1.5,
            seed: 0,
        },
        ..LoaderOptions::default()
    };
    let err = ImageFolder::scan(dir.path(), &bad_ratio).expect_err("ratio");
    assert!(matches!(err, DataError::InvalidOption(_)), "{err:?}");
}
