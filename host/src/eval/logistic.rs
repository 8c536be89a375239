//! Multinomial logistic regression with an L2 penalty: the simple supervised baseline of the
//! cross-validated benchmark (issue 16 §4).
//!
//! Written here rather than taken from linfa-logistic: the problems are tiny (a few hundred
//! samples, at most a few thousand features), nalgebra is already a dependency, and a full-batch
//! gradient method with a fixed iteration budget is deterministic to the last bit, which the
//! benchmark's repeatability needs. The objective is convex, so gradient descent with an Armijo
//! backtracking line search reaches its unique optimum.
//!
//! The model standardises each feature with the training set's mean and standard deviation, then
//! minimises the mean cross-entropy + λ/2 ‖W‖² (the biases are not penalised).

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::{EvalError, FeatureMatrix};

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticOptions {
    /// λ: weight of the L2 penalty on the weights.
    pub l2: f64,
    pub max_iterations: usize,
    /// Stop when the gradient's largest entry falls below this.
    pub tolerance: f64,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            l2: 1e-2,
            max_iterations: 500,
            tolerance: 1e-5,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct Logistic {
    mean: DVector<f64>,
    std: DVector<f64>,
    /// `[features, classes]`.
    weights: DMatrix<f64>,
    bias: DVector<f64>,
    pub iterations: usize,
}

fn to_matrix(features: &FeatureMatrix) -> DMatrix<f64> {
    DMatrix::from_row_iterator(
        features.rows(),
        features.cols(),
        features.as_slice().iter().map(|&v| f64::from(v)),
    )
}

/// Row-wise softmax of `logits` in place.
fn softmax_rows(logits: &mut DMatrix<f64>) {
    for mut row in logits.row_iter_mut() {
        let max = row.max();
        row.apply(|v| *v = (*v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
}

impl Logistic {
    /// Fits on `features` (one row per sample) and `labels` (below `classes`).
    pub fn fit(
        features: &FeatureMatrix,
        labels: &[usize],
        classes: usize,
        options: &LogisticOptions,
    ) -> Result<Self, EvalError> {
        let (n, d) = (features.rows(), features.cols());
        if labels.len() != n {
            return Err(EvalError::LabelCountMismatch {
                what: "logistic regression",
                codes: n,
                labels: labels.len(),
            });
        }
        if n == 0 {
            return Err(EvalError::TooFewFeatures {
                what: "logistic regression",
                rows: n,
                cols: d,
                why: "nothing to fit",
            });
        }
        if let Some(row) = labels.iter().position(|&l| l >= classes) {
            return Err(EvalError::LabelOutOfRange {
                what: "logistic regression",
                row,
                label: labels[row],
                classes,
            });
        }
        if !(options.l2 >= 0.0 && options.l2.is_finite()) {
            return Err(EvalError::InvalidOption {
                what: "L2 penalty",
                value: options.l2.to_string(),
                why: "it must be finite and not negative",
            });
        }
        let raw = to_matrix(features);
        let mean = DVector::from_iterator(d, raw.column_iter().map(|c| c.mean()));
        // A constant feature has std 0: it is then left at 0 after centring, not divided by 0.
        let std = DVector::from_iterator(
            d,
            raw.column_iter().zip(mean.iter()).map(|(c, &m)| {
                let var = c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64;
                if var > 1e-24 {
                    var.sqrt()
                } else {
                    1.0
                }
            }),
        );
        let x = standardise(&raw, &mean, &std);
        let mut y = DMatrix::<f64>::zeros(n, classes);
        for (i, &l) in labels.iter().enumerate() {
            y[(i, l)] = 1.0;
        }
        let l2 = options.l2;
        let objective = |w: &DMatrix<f64>, b: &DVector<f64>| -> (f64, DMatrix<f64>) {
            let mut p = &x * w;
            for mut row in p.row_iter_mut() {
                row += b.transpose();
            }
            softmax_rows(&mut p);
            let mut loss = 0.0;
            for (i, &l) in labels.iter().enumerate() {
                loss -= p[(i, l)].max(1e-300).ln();
            }
            loss = loss / n as f64 + 0.5 * l2 * w.norm_squared();
            (loss, p)
        };
        let mut w = DMatrix::<f64>::zeros(d, classes);
        let mut b = DVector::<f64>::zeros(classes);
        let (mut loss, mut p) = objective(&w, &b);
        let mut step: f64 = 1.0;
        let mut iterations = 0;
        while iterations < options.max_iterations {
            iterations += 1;
            let residual = (&p - &y) / n as f64;
            let grad_w = x.transpose() * &residual + &w * l2;
            let grad_b = DVector::from_iterator(classes, residual.column_iter().map(|c| c.sum()));
            let largest = grad_w.amax().max(grad_b.amax());
            if largest < options.tolerance {
                break;
            }
            // Diagonal preconditioning by a bound on the curvature: ½ per standardised feature
            // for the softmax cross-entropy, plus λ for the penalised weights. Without it a large
            // λ makes the unpenalised biases crawl at the step size the weights allow.
            let direction_w = &grad_w / (0.5 + l2);
            let direction_b = &grad_b / 0.5;
            let squared = grad_w.dot(&direction_w) + grad_b.dot(&direction_b);
            // Armijo backtracking from a step a little longer than the last accepted one.
            step = (step * 2.0).min(1.0);
            loop {
                let w_next = &w - &direction_w * step;
                let b_next = &b - &direction_b * step;
                let (next_loss, next_p) = objective(&w_next, &b_next);
                if next_loss <= loss - 0.5 * step * squared || step < 1e-12 {
                    (w, b, loss, p) = (w_next, b_next, next_loss, next_p);
                    break;
                }
                step *= 0.5;
            }
        }
        Ok(Self {
            mean,
            std,
            weights: w,
            bias: b,
            iterations,
        })
    }

    /// Class probabilities, one row of `classes` values per sample.
    pub fn probabilities(&self, features: &FeatureMatrix) -> Result<Vec<Vec<f64>>, EvalError> {
        if features.cols() != self.mean.len() {
            return Err(EvalError::RaggedRow {
                what: "logistic regression features",
                row: 0,
                expected: self.mean.len(),
                got: features.cols(),
            });
        }
        let x = standardise(&to_matrix(features), &self.mean, &self.std);
        let mut p = x * &self.weights;
        for mut row in p.row_iter_mut() {
            row += self.bias.transpose();
        }
        softmax_rows(&mut p);
        Ok(p.row_iter().map(|r| r.iter().copied().collect()).collect())
    }
}

fn standardise(raw: &DMatrix<f64>, mean: &DVector<f64>, std: &DVector<f64>) -> DMatrix<f64> {
    let mut x = raw.clone();
    for (j, mut column) in x.column_iter_mut().enumerate() {
        column.apply(|v| *v = (*v - mean[j]) / std[j]);
    }
    x
}

/// Mean negative log-likelihood of `labels` under `probabilities`: the validation score that
/// picks λ (smoother than accuracy on a few dozen validation tiles).
pub fn log_loss(probabilities: &[Vec<f64>], labels: &[usize]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(p, &l)| -p.get(l).copied().unwrap_or(0.0).max(1e-300).ln())
        .sum();
    total / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[[f32; 2]]) -> FeatureMatrix {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        FeatureMatrix::from_flat(flat, 2).expect("matrix")
    }

    #[test]
    fn separates_a_separable_toy_set() {
        // Three classes in three corners of the plane, jittered deterministically.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..30 {
            let j = (i as f32 * 0.37).sin() * 0.3;
            let k = (i as f32 * 0.71).cos() * 0.3;
            let (centre, label) = match i % 3 {
                0 => ([0.0, 0.0], 0),
                1 => ([3.0, 0.0], 1),
                _ => ([0.0, 3.0], 2),
            };
            rows.push([centre[0] + j, centre[1] + k]);
            labels.push(label);
        }
        let options = LogisticOptions {
            l2: 1e-3,
            ..Default::default()
        };
        let model = Logistic::fit(&matrix(&rows), &labels, 3, &options).expect("fit");
        let p = model.probabilities(&matrix(&rows)).expect("predict");
        for (row, &label) in p.iter().zip(&labels) {
            let best = (0..3)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("classes");
            assert_eq!(best, label, "{row:?}");
            assert!(row[label] > 0.8, "{row:?}");
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        // Unseen points near each corner.
        let test = model
            .probabilities(&matrix(&[[0.2, 0.1], [2.8, -0.2], [-0.1, 3.3]]))
            .expect("predict");
        for (c, row) in test.iter().enumerate() {
            assert!(row[c] > 0.5, "corner {c}: {row:?}");
        }
    }

    #[test]
    fn a_strong_penalty_shrinks_to_the_class_prior() {
        let rows = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]];
        let labels = [0, 0, 0, 1];
        let options = LogisticOptions {
            l2: 1e6,
            ..Default::default()
        };
        let model = Logistic::fit(&matrix(&rows), &labels, 2, &options).expect("fit");
        let p = model.probabilities(&matrix(&rows)).expect("predict");
        for row in p {
            assert!((row[0] - 0.75).abs() < 1e-3, "{row:?}");
        }
        assert!((log_loss(&[vec![0.25, 0.75]], &[1]) + 0.75f64.ln()).abs() < 1e-12);
    }
}
