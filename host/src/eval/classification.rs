//! Scene classification metrics from the classifier head: overall accuracy (OA), average accuracy
//! (AA), Cohen's kappa and the confusion matrix.
//!
//! Conventions:
//! - The predicted label is the argmax of the class scores (probabilities or logits give the same
//!   answer); on an exact tie the lowest class index wins, as `torch.argmax` does on CPU.
//! - AA is the mean of per-class recall over the classes that occur in the truth. A class with no
//!   true sample has no recall; averaging a 0 for it would punish the model for the split, so it
//!   is left out (its per-class accuracy is `None`) and [`ClassificationMetrics::classes_present`]
//!   says how many classes the mean is over.
//! - Kappa = (p_o − p_e) / (1 − p_e). When p_e = 1 (truth and predictions all one same class) the
//!   ratio is 0/0; the agreement is then perfect and kappa is reported as 1.

use serde::{Deserialize, Serialize};

use super::EvalError;

/// Counts of (true class, predicted class) pairs: `counts[truth][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub classes: usize,
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// Builds the matrix; every label must be below `classes`.
    pub fn new(predicted: &[usize], truth: &[usize], classes: usize) -> Result<Self, EvalError> {
        if predicted.len() != truth.len() {
            return Err(EvalError::LabelCountMismatch {
                what: "classification (predictions vs truth)",
                codes: predicted.len(),
                labels: truth.len(),
            });
        }
        let mut counts = vec![vec![0u64; classes]; classes];
        for (row, (&p, &t)) in predicted.iter().zip(truth).enumerate() {
            for (what, label) in [("true labels", t), ("predicted labels", p)] {
                if label >= classes {
                    return Err(EvalError::LabelOutOfRange {
                        what,
                        row,
                        label,
                        classes,
                    });
                }
            }
            counts[t][p] += 1;
        }
        Ok(Self { classes, counts })
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Samples whose true class is `class`.
    pub fn row_total(&self, class: usize) -> u64 {
        self.counts.get(class).map_or(0, |row| row.iter().sum())
    }

    /// Samples predicted as `class`.
    pub fn column_total(&self, class: usize) -> u64 {
        self.counts
            .iter()
            .map(|row| row.get(class).copied().unwrap_or(0))
            .sum()
    }

    pub fn diagonal(&self) -> u64 {
        (0..self.classes).map(|c| self.counts[c][c]).sum()
    }

    /// F1 of each class, 2·TP / (2·TP + FP + FN); `None` for a class that is neither true nor
    /// predicted anywhere (0/0: nothing to be right or wrong about).
    pub fn per_class_f1(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let tp = self.counts[c][c];
                let wrong = self.row_total(c) + self.column_total(c) - 2 * tp;
                let denominator = 2 * tp + wrong;
                (denominator > 0).then(|| 2.0 * tp as f64 / denominator as f64)
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub samples: usize,
    pub classes: usize,
    /// Classes with at least one true sample: the ones AA averages over.
    pub classes_present: usize,
    pub overall_accuracy: f64,
    pub average_accuracy: f64,
    pub kappa: f64,
    /// Recall of each class; `None` for a class absent from the truth.
    pub per_class_accuracy: Vec<Option<f64>>,
    pub confusion: ConfusionMatrix,
}

/// Index of the largest score; the lowest index on a tie. Fails on an empty row or a NaN.
pub fn argmax(scores: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            return None;
        }
        match best {
            Some((_, b)) if s <= b => {}
            _ => best = Some((i, s)),
        }
    }
    best.map(|(i, _)| i)
}

/// Predicted labels of rows of class scores (probabilities or logits), all rows of equal length.
pub fn predictions(scores: &[Vec<f32>]) -> Result<Vec<usize>, EvalError> {
    let classes = scores.first().map_or(0, Vec::len);
    scores
        .iter()
        .enumerate()
        .map(|(row, s)| {
            if s.len() != classes {
                return Err(EvalError::RaggedRow {
                    what: "class probabilities",
                    row,
                    expected: classes,
                    got: s.len(),
                });
            }
            argmax(s).ok_or(EvalError::NonFinite {
                what: "class probabilities",
                row,
            })
        })
        .collect()
}

/// Predicted labels of a flat row-major N × C matrix of class scores (a tensor's storage).
pub fn predictions_flat(scores: &[f32], classes: usize) -> Result<Vec<usize>, EvalError> {
    if classes == 0 || scores.len() % classes != 0 {
        return Err(EvalError::RaggedFlat {
            what: "class probabilities",
            len: scores.len(),
            row_len: classes,
        });
    }
    scores
        .chunks_exact(classes)
        .enumerate()
        .map(|(row, s)| {
            argmax(s).ok_or(EvalError::NonFinite {
                what: "class probabilities",
                row,
            })
        })
        .collect()
}

/// OA, AA, kappa and the confusion matrix of `predicted` against `truth`, over `classes` classes.
pub fn classification_metrics(
    predicted: &[usize],
    truth: &[usize],
    classes: usize,
) -> Result<ClassificationMetrics, EvalError> {
    if truth.is_empty() {
        return Err(EvalError::EmptyQueries);
    }
    let confusion = ConfusionMatrix::new(predicted, truth, classes)?;
    let n = confusion.total() as f64;
    let observed = confusion.diagonal() as f64 / n;
    let expected: f64 = (0..classes)
        .map(|c| confusion.row_total(c) as f64 * confusion.column_total(c) as f64)
        .sum::<f64>()
        / (n * n);
    // p_e = 1 only when every true and every predicted label is one same class: perfect agreement.
    let kappa = if (1.0 - expected).abs() < f64::EPSILON {
        1.0
    } else {
        (observed - expected) / (1.0 - expected)
    };
    let per_class_accuracy: Vec<Option<f64>> = (0..classes)
        .map(|c| match confusion.row_total(c) {
            0 => None,
            total => Some(confusion.counts[c][c] as f64 / total as f64),
        })
        .collect();
    let present: Vec<f64> = per_class_accuracy.iter().flatten().copied().collect();
    Ok(ClassificationMetrics {
        samples: truth.len(),
        classes,
        classes_present: present.len(),
        overall_accuracy: observed,
        average_accuracy: present.iter().sum::<f64>() / present.len() as f64,
        kappa,
        per_class_accuracy,
        confusion,
    })
}
