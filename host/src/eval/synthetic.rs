//! Seeded synthetic data for unit tests of the metrics and baselines ONLY: Gaussian clusters, one
//! per class. Numbers computed on it say the code works, nothing about any method, and are never
//! reported as results.

use super::baselines::{FeatureMatrix, Gaussian};
use super::{CodeSet, EvalError};

/// `per_class` feature vectors of `dims` values for each of `classes` classes: class centres are
/// standard normal vectors scaled by `separation`, and each sample adds standard normal noise.
/// Labels are `0..classes`, class by class.
pub fn clustered_features(
    classes: usize,
    per_class: usize,
    dims: usize,
    separation: f64,
    seed: u64,
) -> Result<(FeatureMatrix, Vec<usize>), EvalError> {
    let mut gaussian = Gaussian::new(seed);
    let centres: Vec<Vec<f64>> = (0..classes)
        .map(|_| (0..dims).map(|_| separation * gaussian.sample()).collect())
        .collect();
    let mut data = Vec::with_capacity(classes * per_class * dims);
    let mut labels = Vec::with_capacity(classes * per_class);
    for (class, centre) in centres.iter().enumerate() {
        for _ in 0..per_class {
            data.extend(centre.iter().map(|c| (c + gaussian.sample()) as f32));
            labels.push(class);
        }
    }
    Ok((FeatureMatrix::from_flat(data, dims)?, labels))
}

/// `per_class` codes of `bits` bits for each of `classes` classes: a random prototype code per
/// class with each bit flipped with probability `flip`. Labels are `0..classes`, class by class.
pub fn clustered_codes(
    classes: usize,
    per_class: usize,
    bits: usize,
    flip: f64,
    seed: u64,
) -> Result<(CodeSet, Vec<usize>), EvalError> {
    let mut gaussian = Gaussian::new(seed);
    let prototypes: Vec<Vec<bool>> = (0..classes)
        .map(|_| (0..bits).map(|_| gaussian.uniform_index(2) == 1).collect())
        .collect();
    let mut codes = CodeSet::new(bits)?;
    let mut labels = Vec::with_capacity(classes * per_class);
    let threshold = (flip.clamp(0.0, 1.0) * 1_000_000.0) as usize;
    for (class, prototype) in prototypes.iter().enumerate() {
        for _ in 0..per_class {
            let code: Vec<bool> = prototype
                .iter()
                .map(|&b| b ^ (gaussian.uniform_index(1_000_000) < threshold))
                .collect();
            codes.push_bools(&code)?;
            labels.push(class);
        }
    }
    Ok((codes, labels))
}

/// Uniformly random codes with labels cycling through `classes`: the chance floor.
pub fn random_codes(
    n: usize,
    classes: usize,
    bits: usize,
    seed: u64,
) -> Result<(CodeSet, Vec<usize>), EvalError> {
    let mut gaussian = Gaussian::new(seed);
    let mut codes = CodeSet::new(bits)?;
    for _ in 0..n {
        let code: Vec<bool> = (0..bits).map(|_| gaussian.uniform_index(2) == 1).collect();
        codes.push_bools(&code)?;
    }
    Ok((codes, (0..n).map(|i| i % classes.max(1)).collect()))
}
