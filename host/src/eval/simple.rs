//! The trivial and simple baselines of the cross-validated benchmark (issue 16 §4), pure Rust:
//! per-band statistics of each tile, nearest-neighbour votes, and the distance matrices the
//! rankings are built from.
//!
//! A hashing method is only worth its training if it beats these on the same folds:
//! - the majority class (OA) and the query-ignoring ranking (every query ranks the database by
//!   class frequency, most frequent class first);
//! - logistic regression and kNN on each tile's per-band mean and standard deviation, plus the
//!   NDVI's when the data set has red and near-infrared bands;
//! - kNN on the float backbone features by cosine distance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::{InputSpec, Manifest};

use super::{EvalError, FeatureMatrix};

/// Per-tile band statistics and what each column is.
#[derive(Debug, Clone)]
pub struct BandStatistics {
    pub features: FeatureMatrix,
    pub columns: Vec<String>,
    /// Where the values came from, for the report.
    pub source: String,
}

/// The band whose manifest description starts with `prefix` ("red", "near infrared").
fn band_index(manifest: &Manifest, prefix: &str) -> Option<usize> {
    manifest
        .bands
        .iter()
        .position(|b| b.description.to_ascii_lowercase().starts_with(prefix))
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (n, sum) = values
        .clone()
        .fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var.sqrt())
}

/// Statistics of every sample, in sample order.
///
/// With a manifest each tile's file is read again with all its stored bands (the model sees only
/// RGB): mean and standard deviation of each band after the manifest's scaling to [0, 1], and of
/// the NDVI, (NIR − red) / (NIR + red), computed on the raw values (a ratio of the sensor's
/// numbers, not of the per-scene stretch). Without a manifest only the model input is at hand:
/// its channels with the input normalisation undone (x · std + mean), and no NDVI.
pub fn band_statistics(
    root: &Path,
    paths: &[PathBuf],
    pixels: &[&[f32]],
    spec: &InputSpec,
) -> Result<BandStatistics, EvalError> {
    let manifest = Manifest::read_optional(root).map_err(|e| EvalError::Io {
        path: Manifest::path(root),
        source: std::io::Error::other(e.to_string()),
    })?;
    let Some(manifest) = manifest else {
        return input_statistics(pixels, spec);
    };
    let red = band_index(&manifest, "red");
    let nir = band_index(&manifest, "near infrared");
    let ndvi = red.zip(nir);
    let known: HashMap<PathBuf, ()> = manifest
        .patches
        .iter()
        .map(|p| (root.join(&p.file), ()))
        .collect();
    let bands = manifest.bands.len();
    let mut data = Vec::new();
    for path in paths {
        if !known.contains_key(path) {
            return Err(EvalError::InvalidOption {
                what: "band statistics",
                value: path.display().to_string(),
                why: "the tile is not listed in the data set's manifest",
            });
        }
        let image = orbhash_contract::raster::read_image(path).map_err(|e| EvalError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if image.bands != bands {
            return Err(EvalError::RaggedRow {
                what: "tile bands (file against manifest)",
                row: 0,
                expected: bands,
                got: image.bands,
            });
        }
        let samples = &image.samples;
        for (b, info) in manifest.bands.iter().enumerate() {
            let values = samples
                .iter()
                .skip(b)
                .step_by(bands)
                .map(|&v| f64::from(info.scale.apply(v)));
            let (m, s) = mean_std(values);
            data.extend([m as f32, s as f32]);
        }
        if let Some((r, n)) = ndvi {
            let values = samples.chunks_exact(bands).map(|px| {
                let (red, nir) = (f64::from(px[r]), f64::from(px[n]));
                let sum = red + nir;
                // A pixel dark in both bands has no defined index: count it as 0, not NaN.
                if sum.abs() > 1e-9 {
                    (nir - red) / sum
                } else {
                    0.0
                }
            });
            let (m, s) = mean_std(values);
            data.extend([m as f32, s as f32]);
        }
    }
    let mut columns: Vec<String> = manifest
        .bands
        .iter()
        .flat_map(|b| [format!("{} mean", b.name), format!("{} std", b.name)])
        .collect();
    if ndvi.is_some() {
        columns.extend(["NDVI mean".to_string(), "NDVI std".to_string()]);
    }
    let cols = columns.len();
    Ok(BandStatistics {
        features: FeatureMatrix::from_flat(data, cols)?,
        source: format!(
            "all {bands} stored bands from the tiles' files{}",
            if ndvi.is_some() {
                ", plus NDVI"
            } else {
                " (no red/NIR pair: no NDVI)"
            }
        ),
        columns,
    })
}

fn input_statistics(pixels: &[&[f32]], spec: &InputSpec) -> Result<BandStatistics, EvalError> {
    let channels = spec.channels();
    let mut data = Vec::with_capacity(pixels.len() * channels * 2);
    for sample in pixels {
        let plane = sample.len() / channels.max(1);
        for c in 0..channels {
            let values = sample[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| f64::from(v * spec.std[c] + spec.mean[c]));
            let (m, s) = mean_std(values);
            data.extend([m as f32, s as f32]);
        }
    }
    let columns = (0..channels)
        .flat_map(|c| [format!("channel {c} mean"), format!("channel {c} std")])
        .collect::<Vec<_>>();
    Ok(BandStatistics {
        features: FeatureMatrix::from_flat(data, channels * 2)?,
        columns,
        source: "the model input's channels (no manifest: no other bands, no NDVI)".into(),
    })
}

/// Rows `indices` of `features` as their own matrix.
pub fn select(features: &FeatureMatrix, indices: &[usize]) -> Result<FeatureMatrix, EvalError> {
    let mut data = Vec::with_capacity(indices.len() * features.cols());
    for &i in indices {
        let row = features.row(i).ok_or(EvalError::CodeIndex {
            index: i,
            len: features.rows(),
        })?;
        data.extend_from_slice(row);
    }
    FeatureMatrix::from_flat(data, features.cols())
}

/// Euclidean distances from each query to each database row after standardising every column
/// with the database's mean and standard deviation (so no band's units dominate). Row-major,
/// queries × database.
pub fn standardised_euclidean(database: &FeatureMatrix, queries: &FeatureMatrix) -> Vec<f32> {
    let (n, d) = (database.rows(), database.cols());
    let mut mean = vec![0.0f64; d];
    let mut std = vec![0.0f64; d];
    for row in database.as_slice().chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / n as f64;
        }
    }
    for row in database.as_slice().chunks_exact(d) {
        for ((s, &v), m) in std.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2) / n as f64;
        }
    }
    let scale: Vec<f64> = std
        .iter()
        .map(|&v| if v > 1e-24 { 1.0 / v.sqrt() } else { 0.0 })
        .collect();
    let z = |row: &[f32]| -> Vec<f64> {
        row.iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((&v, m), s)| (f64::from(v) - m) * s)
            .collect()
    };
    let database_z: Vec<Vec<f64>> = database.as_slice().chunks_exact(d).map(z).collect();
    let mut out = Vec::with_capacity(queries.rows() * n);
    for q in queries.as_slice().chunks_exact(d) {
        let q = z(q);
        for row in &database_z {
            let d2: f64 = q.iter().zip(row).map(|(a, b)| (a - b).powi(2)).sum();
            out.push(d2.sqrt() as f32);
        }
    }
    out
}

/// Cosine distances 1 − cos(q, x), row-major queries × database. A zero row is at distance 1
/// from everything.
pub fn cosine_distances(database: &FeatureMatrix, queries: &FeatureMatrix) -> Vec<f32> {
    let d = database.cols();
    let unit = |m: &FeatureMatrix| -> Vec<Vec<f64>> {
        m.as_slice()
            .chunks_exact(d)
            .map(|row| {
                let norm = row
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                row.iter().map(|&v| f64::from(v) * inv).collect()
            })
            .collect()
    };
    let (database, queries) = (unit(database), unit(queries));
    let mut out = Vec::with_capacity(queries.len() * database.len());
    for q in &queries {
        for x in &database {
            let cos: f64 = q.iter().zip(x).map(|(a, b)| a * b).sum();
            out.push((1.0 - cos) as f32);
        }
    }
    out
}

/// The query-ignoring ranking: every query sees the database ordered by how frequent each item's
/// class is in the database, most frequent first (−frequency as the distance). Row-major.
pub fn class_frequency_distances(
    database_labels: &[usize],
    queries: usize,
    classes: usize,
) -> Vec<f32> {
    let mut frequency = vec![0usize; classes];
    for &l in database_labels {
        frequency[l] += 1;
    }
    let row: Vec<f32> = database_labels
        .iter()
        .map(|&l| -(frequency[l] as f32))
        .collect();
    row.repeat(queries)
}

/// The database's most frequent class (the lowest index on a tie).
pub fn majority_class(database_labels: &[usize], classes: usize) -> usize {
    let mut frequency = vec![0usize; classes];
    for &l in database_labels {
        frequency[l] += 1;
    }
    (0..classes)
        .max_by(|&a, &b| frequency[a].cmp(&frequency[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// Distances for a classifier without codes: database item j is at −p_q(label_j), the query's
/// predicted probability of j's class, so the database is ranked class by class in the order of
/// the query's class probabilities (the dot product of the probabilities with j's one-hot label).
pub fn class_probability_distances(
    probabilities: &[Vec<f64>],
    database_labels: &[usize],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(probabilities.len() * database_labels.len());
    for p in probabilities {
        out.extend(
            database_labels
                .iter()
                .map(|&l| -(p.get(l).copied().unwrap_or(0.0) as f32)),
        );
    }
    out
}

/// kNN labels: a majority vote among each query's `k` nearest database items (row-major
/// `distances`); a tied vote goes to the tied class of the nearest voter.
pub fn knn_predict(
    distances: &[f32],
    database_labels: &[usize],
    k: usize,
    classes: usize,
) -> Vec<usize> {
    let n = database_labels.len();
    let k = k.clamp(1, n.max(1));
    let mut order: Vec<usize> = (0..n).collect();
    distances
        .chunks_exact(n.max(1))
        .map(|row| {
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            let mut votes = vec![0usize; classes];
            for &j in &order[..k] {
                votes[database_labels[j]] += 1;
            }
            let best = votes.iter().copied().max().unwrap_or(0);
            order[..k]
                .iter()
                .map(|&j| database_labels[j])
                .find(|&c| votes[c] == best)
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{evaluate_float_ranking, RetrievalOptions, TieRule};

    #[test]
    fn the_query_ignoring_ranking_has_the_hand_computed_map() {
        // Database: class 0 three times, class 1 once. Every query sees the three class-0 items
        // (tied) first, then the class-1 item.
        // - A class-0 query: its relevant items fill ranks 1–3 whatever the order: AP 1.
        // - A class-1 query: its one relevant item is at rank 4: AP 1/4.
        // mAP over one query of each class: (1 + 1/4) / 2 = 0.625.
        let database = [0, 1, 0, 0];
        let queries = [0, 1];
        let distances = class_frequency_distances(&database, queries.len(), 2);
        let options = RetrievalOptions {
            ties: TieRule::Expected,
            ..Default::default()
        };
        let metrics =
            evaluate_float_ranking(&distances, &database, &queries, &options).expect("ranking");
        assert!((metrics.map - 0.625).abs() < 1e-12, "{}", metrics.map);
        assert!((metrics.average_precision[0] - 1.0).abs() < 1e-12);
        assert!((metrics.average_precision[1] - 0.25).abs() < 1e-12);
        assert_eq!(majority_class(&database, 2), 0);
    }

    #[test]
    fn ties_in_a_float_ranking_get_their_expected_ap() {
        // One relevant item tied with one irrelevant at the top: AP is 1 or 1/2 with equal
        // chance, 0.75 expected; the stable rule takes database order (the irrelevant first).
        let database = [1, 0];
        let distances = [0.5f32, 0.5];
        let expected = RetrievalOptions {
            ties: TieRule::Expected,
            ..Default::default()
        };
        let stable = RetrievalOptions::default();
        let e = evaluate_float_ranking(&distances, &database, &[0], &expected).expect("ranking");
        let s = evaluate_float_ranking(&distances, &database, &[0], &stable).expect("ranking");
        assert!((e.map - 0.75).abs() < 1e-12);
        assert!((s.map - 0.5).abs() < 1e-12);
        assert!(e.radius.is_empty());
    }

    #[test]
    fn knn_votes_and_breaks_ties_by_the_nearest() {
        let database = [0, 1, 1, 0];
        // Nearest: item 0 (class 0), then 1 and 2 (class 1), then 3.
        let distances = [0.1f32, 0.2, 0.3, 0.9];
        assert_eq!(knn_predict(&distances, &database, 1, 2), vec![0]);
        assert_eq!(knn_predict(&distances, &database, 3, 2), vec![1]);
        // k = 2: one vote each, the nearest (class 0) wins.
        assert_eq!(knn_predict(&distances, &database, 2, 2), vec![0]);
    }

    #[test]
    fn distances_are_what_they_say() {
        let database = FeatureMatrix::from_flat(vec![1.0, 0.0, 0.0, 2.0], 2).expect("matrix");
        let queries = FeatureMatrix::from_flat(vec![3.0, 0.0], 2).expect("matrix");
        let cosine = cosine_distances(&database, &queries);
        assert!((cosine[0] - 0.0).abs() < 1e-6 && (cosine[1] - 1.0).abs() < 1e-6);
        let euclid = standardised_euclidean(&database, &queries);
        // Columns standardised by the database: x has mean 0.5, std 0.5; y mean 1, std 1.
        // Query z = (5, −1); items z = (1, −1) and (−1, 1).
        assert!((euclid[0] - 4.0).abs() < 1e-5, "{euclid:?}");
        assert!((euclid[1] - 40f32.sqrt()).abs() < 1e-5, "{euclid:?}");
        let p = class_probability_distances(&[vec![0.2, 0.8]], &[0, 1]);
        assert_eq!(p, vec![-0.2, -0.8]);
    }
}
