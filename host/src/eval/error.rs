//! What can go wrong while evaluating: every variant names the input that is at fault, so a caller
//! can report it without reading the code. A variant with a source never repeats the source's text
//! (the printer's `{:#}` appends it).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the retrieval database is empty: nothing to rank")]
    EmptyDatabase,
    #[error("there are no queries to evaluate")]
    EmptyQueries,
    #[error("a code must have at least one bit")]
    ZeroBits,
    #[error("{what}: {codes} codes but {labels} labels")]
    LabelCountMismatch {
        what: &'static str,
        codes: usize,
        labels: usize,
    },
    #[error("query codes have {queries} bits but database codes have {database}")]
    BitsMismatch { database: usize, queries: usize },
    #[error("{what}: {len} values do not divide into rows of {row_len}")]
    RaggedFlat {
        what: &'static str,
        len: usize,
        row_len: usize,
    },
    #[error("{what}: row {row} has {got} values, expected {expected}")]
    RaggedRow {
        what: &'static str,
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("{what}: row {row} holds a NaN or infinite value")]
    NonFinite { what: &'static str, row: usize },
    #[error("{what}: label {label} at row {row} is not below the class count {classes}")]
    LabelOutOfRange {
        what: &'static str,
        row: usize,
        label: usize,
        classes: usize,
    },
    #[error("class probabilities: {probs} rows for {queries} queries")]
    ProbabilityCountMismatch { queries: usize, probs: usize },
    #[error("class probabilities: rows have {got} classes, expected {expected}")]
    ClassCountMismatch { expected: usize, got: usize },
    #[error("code {index} is out of range for a set of {len} codes")]
    CodeIndex { index: usize, len: usize },
    #[error("not a wire code")]
    Wire(#[from] orbhash_wire::code::CodeError),
    #[error("{what}: {value} is not allowed ({why})")]
    InvalidOption {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{what}: {rows} rows × {cols} columns is too small ({why})")]
    TooFewFeatures {
        what: &'static str,
        rows: usize,
        cols: usize,
        why: &'static str,
    },
    #[error("linear algebra failed: {0}")]
    Linalg(&'static str),
    #[error("nothing to plot: {0}")]
    NothingToPlot(&'static str),
    #[error(
        "no TTF font for plot text: set ORBHASH_FONT to a .ttf file or install the Debian package \
         fonts-dejavu-core (looked at {looked:?})"
    )]
    FontNotFound { looked: Vec<PathBuf> },
    #[error("font {path}: {why}")]
    BadFont { path: PathBuf, why: String },
    #[error("drawing {path}: {why}")]
    Plot { path: PathBuf, why: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a metrics record")]
    MetricsLog {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: cannot write or read the report as JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
