//! Evaluation of hash codes and scene labels, in plain Rust (no libtorch), so the ground station
//! and CI can use it: DHCNN's protocol from docs/dhcnn.md.
//!
//! - [`codes`]: [`CodeSet`], packed K-bit codes in the wire bit order, and Hamming distances.
//! - [`retrieval`]: mAP by Hamming ranking, P@k / R@k, precision/recall within a radius.
//! - [`classification`]: OA, AA, Cohen's kappa, confusion matrix.
//! - [`baselines`]: LSH and ITQ on backbone features.
//! - [`report`], [`plot`], [`mod@bench`]: the JSON report, terminal and markdown tables, PNG plots.
//! - [`synthetic`]: seeded clusters for unit tests only, never reported as results.
//!
//! Training converts its tensors to these types (flat `f32` storage, `usize` labels) and calls
//! [`evaluate`].

pub mod baselines;
pub mod bench;
pub mod classification;
pub mod codes;
mod error;
pub mod plot;
pub mod report;
pub mod retrieval;
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
    evaluate_retrieval, EmptyRadius, RadiusPoint, RetrievalMetrics, RetrievalOptions, TieRule,
};
