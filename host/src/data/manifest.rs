//! `manifest.json`: what a built data set is, where every patch came from and which side of the
//! split it is on. Written by the builders; read by `orbhash data show` and by the loader, which
//! then takes the split and the band scaling from it instead of inventing its own.

use std::path::{Path, PathBuf};

use orbhash_cli::Table;
use serde::{Deserialize, Serialize};

use super::error::{DataError, Result};
use super::geo::GeoTransform;
use super::preprocess::BandScale;

pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when a field changes meaning; [`Manifest::read`] refuses any other.
///
/// - `/2`: `bands[].scale` is the sensor's fixed radiometric range (it was each scene's 2nd-98th
///   percentile in `/1`, so a model read every other scene through one scene's stretch);
///   `split.method` may be `"by-date"`, `split.block_size` is absent then, and a patch's `block`
///   is its scene's date; `rgb_bands` may be a false colour.
pub const MANIFEST_FORMAT: &str = "orbhash-imagefolder/2";

/// The two sides of the retrieval protocol. The database doubles as the training set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Database,
    Query,
}

impl std::fmt::Display for SplitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitName::Database => "database",
            SplitName::Query => "query",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub description: String,
    /// Caveats a reader of any number measured on this set must see.
    pub note: String,
    pub sources: Vec<Source>,
    /// Coordinate reference system of every map coordinate below.
    pub crs: String,
    pub scenes: Vec<Scene>,
    pub patch: PatchGeometry,
    /// How each patch is stored: see `FORMAT.md`.
    pub patch_format: String,
    /// Stored bands in file order, with the scaling that maps raw values to [0, 1].
    pub bands: Vec<BandInfo>,
    /// Indices into `bands` shown as red, green and blue in the pictures, and the model's default
    /// 3-band input: true colour where the sensor has blue, else a false colour `description`
    /// names.
    pub rgb_bands: [usize; 3],
    pub classes: Vec<ClassInfo>,
    pub split: SplitInfo,
    pub patches: Vec<PatchRecord>,
    pub build: BuildInfo,
}

/// One file taken from a registry package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub package: String,
    pub version: String,
    /// Path inside the package (wheel).
    pub file: String,
    /// What the file is used for: "band B04", "labels" ...
    pub role: String,
    pub licence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub id: String,
    pub sensor: String,
    pub acquired: String,
    pub width: usize,
    pub height: usize,
    pub geotransform: GeoTransform,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchGeometry {
    pub size: usize,
    pub stride: usize,
    pub min_majority: f32,
    /// Ground sampling distance in metres.
    pub pixel_size_m: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandInfo {
    pub name: String,
    pub description: String,
    /// The sensor's fixed radiometric range mapped to [0, 1] (for reflectance × 10000: 0..10000,
    /// for 8-bit DNs: 0..255): the same for every scene of that sensor, never computed from the
    /// pixels. Per-channel standardisation is the trainer's, from the training split.
    pub scale: BandScale,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub name: String,
    /// Patches kept (database + query).
    pub count: usize,
    pub database: usize,
    pub query: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// "spatial-blocks" (one scene: whole square blocks to one side) or "by-date" (a time
    /// series of one place: whole dates to one side).
    pub method: String,
    pub seed: u64,
    pub query_ratio: f64,
    /// Block edge in pixels; absent for a split by date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Distinct `block`s of the patches: spatial blocks, or dates.
    pub blocks: usize,
    pub database: usize,
    pub query: usize,
    /// Database patches dropped because they shared pixels with a query patch.
    pub dropped_overlap: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// Relative to the data set root: `<class>/<name>.tif`.
    pub file: String,
    pub class: String,
    pub scene: String,
    /// Top-left pixel in the scene.
    pub row: usize,
    pub col: usize,
    /// Map coordinates of the patch's outer edges, in `crs`.
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
    /// Share of the patch covered by its class.
    pub majority: f32,
    /// What the split assigned as a whole: the spatial block (row, column), or for a split by
    /// date the scene's date as (year, day of the year). Folds over blocks keep its meaning.
    pub block: [usize; 2],
    pub split: SplitName,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub tool: String,
    pub seconds: f64,
}

impl Manifest {
    pub fn path(root: &Path) -> PathBuf {
        root.join(MANIFEST_FILE)
    }

    /// Reads `<root>/manifest.json`; `Ok(None)` when there is none (a plain ImageFolder). A
    /// manifest of another format is an error, never read as this one: its fields may look the
    /// same and mean something else (a `/1` scale is one scene's stretch).
    pub fn read_optional(root: &Path) -> Result<Option<Manifest>> {
        let path = Self::path(root);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DataError::io(path, e)),
        };
        Self::from_json(&path, &bytes).map(Some)
    }

    /// Parses a manifest, checking its format first so that an old one gets the advice to
    /// rebuild instead of a complaint about some field.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Format {
            format: Option<String>,
        }
        let json_err = |source| DataError::Json {
            path: path.to_path_buf(),
            source,
        };
        let found = serde_json::from_slice::<Format>(bytes)
            .map_err(json_err)?
            .format;
        if found.as_deref() != Some(MANIFEST_FORMAT) {
            return Err(DataError::ManifestFormat {
                path: path.to_path_buf(),
                found: found.unwrap_or_else(|| "none".into()),
                expected: MANIFEST_FORMAT,
            });
        }
        serde_json::from_slice(bytes).map_err(json_err)
    }

    pub fn read(root: &Path) -> Result<Manifest> {
        Self::read_optional(root)?.ok_or_else(|| DataError::Empty {
            path: Self::path(root),
            reason: "no manifest: not a data set built by `orbhash data build`".into(),
        })
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn write(&self, root: &Path) -> Result<()> {
        let path = Self::path(root);
        let tmp = root.join(".manifest.json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|source| DataError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))
    }

    /// Class counts and split sizes as a table for people.
    pub fn summary(&self) -> String {
        let blocks = match self.split.block_size {
            Some(px) => format!("{} blocks of {px} px", self.split.blocks),
            None => format!("{} dates", self.split.blocks),
        };
        let mut s = format!(
            "{}: {} patches of {}x{} px ({} m) from {} scene(s), {} classes, split {} (seed {}, \
             {blocks})\n",
            self.name,
            self.patches.len(),
            self.patch.size,
            self.patch.size,
            self.patch.pixel_size_m,
            self.scenes.len(),
            self.classes.len(),
            self.split.method,
            self.split.seed,
        );
        let counts = self
            .classes
            .iter()
            .map(|c| (c.name.as_str(), c.database, c.query));
        s.push_str(&class_count_table("patches", counts).to_string());
        if self.split.dropped_overlap > 0 {
            s.push_str(&format!(
                "  ({} database patches dropped for sharing pixels with a query patch)\n",
                self.split.dropped_overlap
            ));
        }
        s.push_str(&format!("  note: {}", self.note));
        s
    }
}

/// Each class's database and query counts, and their totals: the table `orbhash data` prints for
/// built and plain data sets alike. `unit` names what is counted ("patches", "images").
pub fn class_count_table<'a>(
    unit: &str,
    counts: impl IntoIterator<Item = (&'a str, usize, usize)>,
) -> Table {
    let mut table = Table::new(["class", unit, "database", "query"]);
    let (mut database_total, mut query_total) = (0, 0);
    for (class, database, query) in counts {
        database_total += database;
        query_total += query;
        table.row([
            class.to_string(),
            (database + query).to_string(),
            database.to_string(),
            query.to_string(),
        ]);
    }
    table.row([
        "total".to_string(),
        (database_total + query_total).to_string(),
        database_total.to_string(),
        query_total.to_string(),
    ]);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_or_unnamed_format_is_refused_with_the_advice_to_rebuild() {
        let path = Path::new("set/manifest.json");
        // Only the format is looked at first: a /1 manifest with every field still fails.
        for (json, found) in [
            (
                r#"{"format": "orbhash-imagefolder/1", "name": "s2"}"#,
                "orbhash-imagefolder/1",
            ),
            (r#"{"name": "s2"}"#, "none"),
        ] {
            let error = Manifest::from_json(path, json.as_bytes()).expect_err(json);
            match &error {
                DataError::ManifestFormat {
                    found: f, expected, ..
                } => {
                    assert_eq!(f, found);
                    assert_eq!(*expected, MANIFEST_FORMAT);
                }
                other => panic!("{other:?}"),
            }
            assert!(error.to_string().contains("orbhash data build"), "{error}");
        }
    }

    #[test]
    fn broken_json_is_a_json_error_naming_the_file() {
        let error = Manifest::from_json(Path::new("m.json"), b"{").expect_err("broken");
        assert!(matches!(error, DataError::Json { .. }), "{error:?}");
        assert!(error.to_string().starts_with("m.json"), "{error}");
    }
}
