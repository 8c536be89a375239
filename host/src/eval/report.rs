//! The evaluation report: what `orbhash eval` writes as JSON and prints as a table.

use std::path::Path;

use orbhash_cli::{Align, Table};
use serde::{Deserialize, Serialize};

use super::classification::{classification_metrics, predictions, ClassificationMetrics};
use super::retrieval::{evaluate_retrieval, RetrievalMetrics, RetrievalOptions};
use super::{CodeSet, EvalError};

/// What to call the run and how to compute its metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Method name as it should appear in tables ("DHCNN", "ITQ", …).
    pub method: String,
    /// Data set name ("ucmd", "s2-brandenburg", …).
    pub dataset: String,
    pub retrieval: RetrievalOptions,
    /// Number of scene classes. `None`: the class probabilities' row length, or one more than the
    /// largest label seen.
    pub classes: Option<usize>,
}

impl EvalOptions {
    pub fn new(method: impl Into<String>, dataset: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            dataset: dataset.into(),
            retrieval: RetrievalOptions::default(),
            classes: None,
        }
    }
}

/// Everything measured for one method on one split at one code length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub method: String,
    pub dataset: String,
    pub bits: usize,
    pub database: usize,
    pub queries: usize,
    pub classes: usize,
    /// Retrieval metrics; their tie rule and empty-radius convention are recorded inside.
    pub retrieval: RetrievalMetrics,
    /// Present when the queries' class scores were given.
    pub classification: Option<ClassificationMetrics>,
}

/// Evaluates codes (and, when given, class scores) of the queries against the database: the entry
/// point of `orbhash eval`. `query_scores` are probabilities or logits, one row per query.
pub fn evaluate(
    database: &CodeSet,
    database_labels: &[usize],
    queries: &CodeSet,
    query_labels: &[usize],
    query_scores: Option<&[Vec<f32>]>,
    options: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    let largest_label = database_labels
        .iter()
        .chain(query_labels)
        .max()
        .copied()
        .unwrap_or(0);
    let score_classes = query_scores.and_then(|s| s.first()).map(Vec::len);
    let classes = match (options.classes, score_classes) {
        (Some(expected), Some(got)) if expected != got => {
            return Err(EvalError::ClassCountMismatch { expected, got });
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => largest_label + 1,
    };
    let out_of_range = |what: &'static str, labels: &[usize]| {
        labels
            .iter()
            .position(|&l| l >= classes)
            .map(|row| EvalError::LabelOutOfRange {
                what,
                row,
                label: labels[row],
                classes,
            })
    };
    if let Some(error) = out_of_range("query labels", query_labels)
        .or_else(|| out_of_range("database labels", database_labels))
    {
        return Err(error);
    }
    // The cheap checks above come first: ranking is the expensive part.
    let retrieval = evaluate_retrieval(
        database,
        database_labels,
        queries,
        query_labels,
        &options.retrieval,
    )?;
    let classification = match query_scores {
        None => None,
        Some(scores) => {
            if scores.len() != queries.len() {
                return Err(EvalError::ProbabilityCountMismatch {
                    queries: queries.len(),
                    probs: scores.len(),
                });
            }
            let predicted = predictions(scores)?;
            Some(classification_metrics(&predicted, query_labels, classes)?)
        }
    };
    Ok(EvalReport {
        method: options.method.clone(),
        dataset: options.dataset.clone(),
        bits: database.bits(),
        database: database.len(),
        queries: queries.len(),
        classes,
        retrieval,
        classification,
    })
}

/// The k values shown in the terminal table (those within the computed range).
const TABLE_K: [usize; 6] = [1, 10, 50, 100, 500, 1000];

impl EvalReport {
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), EvalError> {
        let json = self.to_json().map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, json + "\n").map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The report for people: headline metrics, then the confusion matrix when there is one.
    pub fn to_table(&self) -> String {
        let r = &self.retrieval;
        let mut rows: Vec<(String, String)> = vec![
            ("mAP (whole database)".into(), format!("{:.4}", r.map)),
            ("tie rule".into(), r.ties.to_string()),
        ];
        if r.queries_without_relevant > 0 {
            rows.push((
                "queries with no relevant item (AP 0)".into(),
                r.queries_without_relevant.to_string(),
            ));
        }
        for k in TABLE_K {
            if let (Some(p), Some(rc)) = (r.precision_at(k), r.recall_at(k)) {
                rows.push((format!("P@{k} / R@{k}"), format!("{p:.4} / {rc:.4}")));
            }
        }
        for point in r.radius.iter().take(3) {
            rows.push((
                format!("precision / recall, radius ≤ {}", point.radius),
                format!(
                    "{:.4} / {:.4}  ({:.1} retrieved, {} queries empty)",
                    point.precision, point.recall, point.mean_retrieved, point.empty_queries
                ),
            ));
        }
        if let Some(c) = &self.classification {
            rows.push(("OA".into(), format!("{:.4}", c.overall_accuracy)));
            rows.push((
                "AA".into(),
                format!(
                    "{:.4}  (over {} of {} classes present)",
                    c.average_accuracy, c.classes_present, c.classes
                ),
            ));
            rows.push(("Cohen's kappa".into(), format!("{:.4}", c.kappa)));
        }

        let mut metrics = Table::new(["metric", "value"]).align(&[Align::Left, Align::Left]);
        for (metric, value) in rows {
            metrics.row([metric, value]);
        }
        let mut out = format!(
            "{} on {}: {} bits, {} database / {} queries, {} classes\n{metrics}",
            self.method, self.dataset, self.bits, self.database, self.queries, self.classes
        );
        if let Some(c) = &self.classification {
            out.push_str("\nconfusion matrix (rows: true class, columns: predicted)\n");
            out.push_str(&confusion_table(&c.confusion.counts).to_string());
        }
        out
    }
}

/// Class indices down and across, counts in the cells, every column right-aligned.
fn confusion_table(counts: &[Vec<u64>]) -> Table {
    let header = std::iter::once(String::new()).chain((0..counts.len()).map(|c| c.to_string()));
    let mut table = Table::new(header).align(&[Align::Right]);
    for (truth, row) in counts.iter().enumerate() {
        table.row(std::iter::once(truth.to_string()).chain(row.iter().map(u64::to_string)));
    }
    table
}
