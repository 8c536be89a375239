//! Evaluation of hash codes and scene labels: DHCNN's protocol from docs/dhcnn.md, and the two
//! verbs built on it, `orbhash eval` and `orbhash bench retrieval` ([`cli`]).
//!
//! The metrics are plain Rust on flat `f32` storage and `usize` labels, so they can be checked
//! without a network:
//! - [`codes`]: [`CodeSet`], packed K-bit codes in the wire bit order, and Hamming distances.
//! - [`retrieval`]: mAP by Hamming ranking, P@k / R@k, precision/recall within a radius.
//! - [`classification`]: OA, AA, Cohen's kappa, confusion matrix.
//! - [`baselines`]: LSH and ITQ on backbone features.
//! - [`folds`], [`logistic`], [`simple`], [`bootstrap`]: spatial-block folds, logistic regression,
//!   the simple baselines and the paired bootstrap of the cross-validated bench.
//! - [`report`], [`plot`]: the JSON report and its terminal table, PNG plots.
//! - [`synthetic`]: seeded clusters for unit tests only, never reported as results.
//!
//! Driving the network (libtorch):
//! - [`checkpoint`]: hash a data set with a checkpoint, then [`evaluate`] it and write the report.
//! - [`mod@bench`]: LSH, ITQ, DPSH, classification-only and DHCNN on one set of frozen backbone
//!   features, and the comparison table.

pub mod baselines;
pub mod bench;
pub mod bootstrap;
pub mod checkpoint;
pub mod classification;
pub mod cli;
pub mod codes;
mod error;
pub mod folds;
pub mod logistic;
pub mod plot;
pub mod report;
pub mod retrieval;
pub mod simple;
pub mod synthetic;

pub use baselines::{itq, itq_with_pca, lsh, FeatureMatrix, Itq, ItqOptions, LinearHash, Pca};
pub use bench::BenchTable;
pub use classification::{
    argmax, classification_metrics, predictions, predictions_flat, ClassificationMetrics,
    ConfusionMatrix,
};
pub use codes::CodeSet;
pub use error::EvalError;
pub use report::{evaluate, EvalOptions, EvalReport};
pub use retrieval::{
    evaluate_float_ranking, evaluate_retrieval, EmptyRadius, RadiusPoint, RetrievalMetrics,
    RetrievalOptions, TieRule,
};
