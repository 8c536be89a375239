//! Paired bootstrap over queries: is method A's mean per-query score (AP, or 1/0 for a right or
//! wrong label) different from method B's on the same queries?
//!
//! Both methods are scored on the same queries, so the resampling draws query indices with
//! replacement and takes the mean of the per-query differences a_i − b_i on each draw: the pairing
//! removes the query-to-query spread both methods share. The interval is the percentile one
//! (2.5 % and 97.5 % quantiles of the resampled means, linearly interpolated), seeded so a table
//! repeats.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::EvalError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInterval {
    /// Mean of a − b over the queries.
    pub mean_difference: f64,
    /// 95 % percentile interval of that mean.
    pub low: f64,
    pub high: f64,
    pub resamples: usize,
    pub queries: usize,
}

impl BootstrapInterval {
    /// Whether the interval leaves out 0.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Linearly interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    let t = position - lo as f64;
    sorted[lo] * (1.0 - t) + sorted[hi] * t
}

/// The paired bootstrap interval of mean(a − b), `resamples` draws, seeded with `seed`.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Result<BootstrapInterval, EvalError> {
    if a.len() != b.len() {
        return Err(EvalError::LabelCountMismatch {
            what: "paired bootstrap (the two methods' queries)",
            codes: a.len(),
            labels: b.len(),
        });
    }
    if a.is_empty() {
        return Err(EvalError::EmptyQueries);
    }
    if resamples == 0 {
        return Err(EvalError::InvalidOption {
            what: "bootstrap resamples",
            value: "0".into(),
            why: "an interval needs at least one resample",
        });
    }
    let difference: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = difference.len();
    let mean_difference = difference.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let sum: f64 = (0..n)
                .map(|_| difference[(rng.next_u64() % n as u64) as usize])
                .sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    Ok(BootstrapInterval {
        mean_difference,
        low: quantile(&means, 0.025),
        high: quantile(&means, 0.975),
        resamples,
        queries: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_difference_has_a_zero_width_interval() {
        let b: Vec<f64> = (0..50).map(|i| (i as f64 * 0.13).sin().abs()).collect();
        let a: Vec<f64> = b.iter().map(|v| v + 0.1).collect();
        let interval = paired_bootstrap(&a, &b, 1000, 1).expect("interval");
        assert!((interval.mean_difference - 0.1).abs() < 1e-12);
        assert!((interval.low - 0.1).abs() < 1e-12 && (interval.high - 0.1).abs() < 1e-12);
        assert!(interval.excludes_zero());
    }

    #[test]
    fn a_symmetric_difference_matches_the_normal_interval() {
        // Differences ±1 in equal numbers: mean 0, standard deviation 1, so the mean of 400 has
        // standard error 0.05 and the 95 % interval is about ±1.96 × 0.05 = ±0.098.
        let a: Vec<f64> = (0..400).map(|i| f64::from(i % 2 == 0)).collect();
        let b: Vec<f64> = (0..400).map(|i| f64::from(i % 2 == 1)).collect();
        let interval = paired_bootstrap(&a, &b, 4000, 7).expect("interval");
        assert_eq!(interval.mean_difference, 0.0);
        assert!((interval.low + 0.098).abs() < 0.012, "{interval:?}");
        assert!((interval.high - 0.098).abs() < 0.012, "{interval:?}");
        assert!(!interval.excludes_zero());
        // Seeded: the same draws again.
        assert_eq!(
            interval,
            paired_bootstrap(&a, &b, 4000, 7).expect("interval")
        );
    }

    #[test]
    fn mismatched_queries_are_an_error() {
        assert!(paired_bootstrap(&[1.0], &[1.0, 2.0], 10, 0).is_err());
        assert!(paired_bootstrap(&[], &[], 10, 0).is_err());
    }
}
