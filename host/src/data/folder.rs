//! The general ImageFolder loader: `<root>/<class>/<image>`, as UC Merced, AID, NWPU-RESISC45,
//! EuroSAT, PatternNet and WHU-RS19 unpack, and as `orbhash data build` writes.
//!
//! 1. [`ImageFolder::scan`] lists the images and assigns each to the database or the queries:
//!    from the data set's `manifest.json` when it has one (the builders' spatially blocked split),
//!    otherwise by the paper's per-class random split (`query_ratio`, `seed`).
//! 2. [`ImageFolder::load`] decodes every image in parallel (rayon), resizes it to the model input
//!    and normalises it by the [`InputSpec`], keeping the CHW `f32` buffers in memory (and, when
//!    asked, in a cache file on disk), so that epochs after the first do no I/O and no decoding.
//! 3. [`Dataset::batch`] assembles batches, optionally augmented (flips, 90° rotations).
//!
//! Memory: channels × size² × 4 bytes per image, e.g. 602 KB at 3×224×224: UC Merced (2,100
//! images) takes 1.3 GB, AID (10,000) 6 GB.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand_chacha::rand_core::RngCore;
use rayon::prelude::*;

use super::error::{DataError, Result};
use super::manifest::{Manifest, SplitName};
use super::preprocess::{Augment, InputSpec};
use super::split::{per_class_split, rng, shuffle};

/// File extensions taken as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "tif", "tiff", "bmp"];

/// What to do with a file that cannot be decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadFilePolicy {
    /// Stop with an error naming the file.
    #[default]
    Fail,
    /// Print a warning naming the file, leave it out and count it in the [`LoadReport`].
    Skip,
}

/// Where the database/query split comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitSource {
    /// The manifest's split when the root has a `manifest.json`, else [`SplitSource::PerClass`].
    Auto { query_ratio: f64, seed: u64 },
    /// The paper's per-class random split, even when a manifest exists.
    PerClass { query_ratio: f64, seed: u64 },
}

impl Default for SplitSource {
    /// 20 % queries per class, seed 0: the paper's UC Merced protocol (1,680 / 420).
    fn default() -> Self {
        SplitSource::Auto {
            query_ratio: 0.2,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoaderOptions {
    /// Model input; `None`: from the manifest (its RGB bands, its scaling, patch-sized), else
    /// ImageNet RGB at 224 px.
    pub input: Option<InputSpec>,
    pub split: SplitSource,
    pub bad_files: BadFilePolicy,
    /// Directory for a cache file of the decoded buffers, reused while the image files and the
    /// input spec are unchanged.
    pub disk_cache: Option<PathBuf>,
}

/// One listed image.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub path: PathBuf,
    pub label: usize,
    pub split: SplitName,
}

/// A scanned ImageFolder, not yet decoded.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Class names; a label is an index into this list (alphabetical for plain folders, the
    /// manifest's order otherwise).
    pub classes: Vec<String>,
    pub entries: Vec<Entry>,
    pub spec: InputSpec,
    pub manifest: Option<Manifest>,
    /// Files under class folders whose extension is not an image's, left out.
    pub ignored: usize,
    bad_files: BadFilePolicy,
    disk_cache: Option<PathBuf>,
}

/// A decoded image, ready for the model.
#[derive(Clone, Debug)]
pub struct Sample {
    /// CHW, `spec.len()` values, normalised. Shared, so batches copy it only once.
    pub pixels: Arc<[f32]>,
    pub label: usize,
    pub split: SplitName,
    pub path: PathBuf,
}

/// What [`ImageFolder::load`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub decoded: usize,
    /// Files left out under [`BadFilePolicy::Skip`], with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Whether the buffers came from the disk cache.
    pub from_cache: bool,
    pub seconds: f64,
}

/// All decoded images of a folder.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub spec: InputSpec,
    pub samples: Vec<Sample>,
    pub report: LoadReport,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

impl ImageFolder {
    /// Lists `<root>/<class>/<image>` and assigns the split. Hidden files and folders are
    /// ignored, and so are files directly under `root` (a manifest, pictures).
    pub fn scan(root: &Path, options: &LoaderOptions) -> Result<ImageFolder> {
        let manifest = Manifest::read_optional(root)?;
        let (ratio, seed, use_manifest) = match options.split {
            SplitSource::Auto { query_ratio, seed } => (query_ratio, seed, manifest.is_some()),
            SplitSource::PerClass { query_ratio, seed } => (query_ratio, seed, false),
        };
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(DataError::InvalidOption(format!(
                "query ratio {ratio} is not in (0, 1)"
            )));
        }

        let mut classes: Vec<String> = Vec::new();
        let mut files: Vec<(PathBuf, usize)> = Vec::new();
        let mut ignored = 0;
        let mut splits: Vec<SplitName> = Vec::new();
        match (&manifest, use_manifest) {
            (Some(m), true) => {
                classes = m.classes.iter().map(|c| c.name.clone()).collect();
                for p in &m.patches {
                    let label = classes.iter().position(|c| *c == p.class).ok_or_else(|| {
                        DataError::format(
                            Manifest::path(root),
                            format!("patch {} has unlisted class {}", p.file, p.class),
                        )
                    })?;
                    files.push((root.join(&p.file), label));
                    splits.push(p.split);
                }
            }
            _ => {
                // A built data set keeps its whole scenes beside the class folders; they are not
                // a class. Only the manifest's classes count when there is a manifest.
                let manifest_classes: Option<Vec<&str>> = manifest
                    .as_ref()
                    .map(|m| m.classes.iter().map(|c| c.name.as_str()).collect());
                for dir in sorted_dir(root)? {
                    if !dir.is_dir() {
                        continue;
                    }
                    let listed =
                        dir.file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| {
                                manifest_classes.as_ref().is_none_or(|m| m.contains(&name))
                            });
                    if !listed {
                        continue;
                    }
                    let label = classes.len();
                    let mut found = 0;
                    for file in sorted_dir(&dir)? {
                        if file.is_file() && is_image(&file) {
                            files.push((file, label));
                            found += 1;
                        } else {
                            ignored += 1;
                        }
                    }
                    if found > 0 {
                        let name = dir
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        classes.push(name);
                    }
                }
                let labels: Vec<usize> = files.iter().map(|f| f.1).collect();
                splits = per_class_split(&labels, ratio, seed);
            }
        }
        if files.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                reason: "no images found under <root>/<class>/".into(),
            });
        }
        let entries = files
            .into_iter()
            .zip(splits)
            .map(|((path, label), split)| Entry { path, label, split })
            .collect();

        let spec = match (&options.input, &manifest) {
            (Some(spec), _) => spec.clone(),
            (None, Some(m)) => InputSpec::multispectral(
                m.patch.size as u32,
                m.rgb_bands.to_vec(),
                m.rgb_bands.iter().map(|&b| m.bands[b].scale).collect(),
            ),
            (None, None) => InputSpec::imagenet_rgb(224),
        };
        spec.validate()?;
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            entries,
            spec,
            manifest,
            ignored,
            bad_files: options.bad_files,
            disk_cache: options.disk_cache.clone(),
        })
    }

    /// Number of images per (class, split): the table `orbhash data show` prints.
    pub fn counts(&self) -> BTreeMap<(usize, SplitName), usize> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            *out.entry((e.label, e.split)).or_default() += 1;
        }
        out
    }

    /// Decodes and preprocesses every image (in parallel), or reads them from the disk cache.
    pub fn load(&self) -> Result<Dataset> {
        let started = Instant::now();
        let cache_file = self
            .disk_cache
            .as_ref()
            .map(|dir| dir.join(self.cache_name()));
        if let Some(file) = &cache_file {
            if let Some(decoded) = self.read_cache(file) {
                return Ok(self.assemble(decoded, Vec::new(), true, started));
            }
        }
        let results: Vec<std::result::Result<Vec<f32>, DataError>> = self
            .entries
            .par_iter()
            .map(|e| decode(&e.path, &self.spec))
            .collect();
        let mut decoded = Vec::with_capacity(results.len());
        let mut skipped = Vec::new();
        for (entry, result) in self.entries.iter().zip(results) {
            match result {
                Ok(pixels) => decoded.push(Some(pixels)),
                Err(error) => match self.bad_files {
                    BadFilePolicy::Fail => return Err(error),
                    BadFilePolicy::Skip => {
                        // The file, then every cause under it.
                        let reason = orbhash_cli::error_chain(&error);
                        eprintln!("warning: skipping {reason}");
                        skipped.push((entry.path.clone(), reason));
                        decoded.push(None);
                    }
                },
            }
        }
        if let Some(file) = &cache_file {
            // A cache that cannot be written only costs time next run: warn, go on.
            if let Err(e) = self.write_cache(file, &decoded) {
                eprintln!("warning: cannot write the decoded-image cache: {e}");
            }
        }
        if !skipped.is_empty() {
            eprintln!(
                "warning: skipped {} of {} images that could not be decoded",
                skipped.len(),
                self.entries.len()
            );
        }
        Ok(self.assemble(decoded, skipped, false, started))
    }

    fn assemble(
        &self,
        decoded: Vec<Option<Vec<f32>>>,
        skipped: Vec<(PathBuf, String)>,
        from_cache: bool,
        started: Instant,
    ) -> Dataset {
        let samples: Vec<Sample> = self
            .entries
            .iter()
            .zip(decoded)
            .filter_map(|(e, pixels)| {
                pixels.map(|p| Sample {
                    pixels: p.into(),
                    label: e.label,
                    split: e.split,
                    path: e.path.clone(),
                })
            })
            .collect();
        Dataset {
            classes: self.classes.clone(),
            spec: self.spec.clone(),
            report: LoadReport {
                decoded: samples.len(),
                skipped,
                from_cache,
                seconds: started.elapsed().as_secs_f64(),
            },
            samples,
        }
    }

    /// The cache key: FNV-1a over the spec and every file's path, size and modification time,
    /// so any change to the images or the preprocessing makes a new cache file.
    fn cache_name(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(serde_json::to_string(&self.spec)
            .unwrap_or_default()
            .as_bytes());
        for e in &self.entries {
            eat(e.path.to_string_lossy().as_bytes());
            if let Ok(meta) = std::fs::metadata(&e.path) {
                eat(&meta.len().to_le_bytes());
                if let Ok(t) = meta.modified() {
                    if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                        eat(&d.as_nanos().to_le_bytes());
                    }
                }
            }
        }
        format!("orbhash-images-{h:016x}.bin")
    }

    // Cache layout: magic, image count (u64 LE), values per image (u64 LE), one byte per image
    // (1 decoded, 0 skipped), then the decoded images' f32 LE values in entry order.
    const CACHE_MAGIC: &'static [u8; 8] = b"OHIMGC01";

    fn read_cache(&self, file: &Path) -> Option<Vec<Option<Vec<f32>>>> {
        let mut f = std::io::BufReader::new(std::fs::File::open(file).ok()?);
        let mut head = [0u8; 24];
        f.read_exact(&mut head).ok()?;
        let n = u64::from_le_bytes(head[8..16].try_into().ok()?) as usize;
        let len = u64::from_le_bytes(head[16..24].try_into().ok()?) as usize;
        if &head[..8] != Self::CACHE_MAGIC || n != self.entries.len() || len != self.spec.len() {
            return None;
        }
        let mut flags = vec![0u8; n];
        f.read_exact(&mut flags).ok()?;
        let mut buf = vec![0u8; len * 4];
        let mut out = Vec::with_capacity(n);
        for flag in flags {
            if flag == 1 {
                f.read_exact(&mut buf).ok()?;
                let values = buf
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                out.push(Some(values));
            } else {
                out.push(None);
            }
        }
        Some(out)
    }

    fn write_cache(&self, file: &Path, decoded: &[Option<Vec<f32>>]) -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("partial");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(Self::CACHE_MAGIC)?;
        f.write_all(&(decoded.len() as u64).to_le_bytes())?;
        f.write_all(&(self.spec.len() as u64).to_le_bytes())?;
        for d in decoded {
            f.write_all(&[u8::from(d.is_some())])?;
        }
        for values in decoded.iter().flatten() {
            for v in values {
                f.write_all(&v.to_le_bytes())?;
            }
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, file)
    }
}

/// Decodes one image file to model input, as the board does (`orbhash_contract::raster`).
pub fn decode(path: &Path, spec: &InputSpec) -> Result<Vec<f32>> {
    let image = orbhash_contract::raster::read_image(path)?;
    spec.to_chw(image.width, image.height, image.bands, &image.samples)
        .map_err(|reason| DataError::format(path, reason.0))
}

impl Dataset {
    /// Indices of the samples on one side of the split.
    pub fn indices(&self, split: SplitName) -> Vec<usize> {
        (0..self.samples.len())
            .filter(|&i| self.samples[i].split == split)
            .collect()
    }

    /// The database (training) indices in a seeded random order for `epoch`.
    pub fn epoch_order(&self, split: SplitName, seed: u64, epoch: u64) -> Vec<usize> {
        let mut order = self.indices(split);
        // Mix the epoch into the seed so each epoch has its own order.
        let mut rng = rng(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        shuffle(&mut order, &mut rng);
        order
    }

    /// A batch as one N×C×H×W buffer plus labels, each image augmented by `augment`.
    pub fn batch(
        &self,
        indices: &[usize],
        augment: Augment,
        rng: &mut impl RngCore,
    ) -> (Vec<f32>, Vec<usize>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.spec.len());
        let mut labels = Vec::with_capacity(indices.len());
        let (channels, size) = (self.spec.channels(), self.spec.size as usize);
        for &i in indices {
            let sample = &self.samples[i];
            if augment.is_identity() {
                pixels.extend_from_slice(&sample.pixels);
            } else {
                pixels.extend(augment.apply(&sample.pixels, channels, size, rng));
            }
            labels.push(sample.label);
        }
        (pixels, labels)
    }
}
