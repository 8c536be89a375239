//! One error type for the data module: every variant that concerns a file names it, so a user
//! with a broken data set knows which file to look at. A variant with a source names the file and
//! what was being done, never the source's own text: the `{:#}` of whoever prints the error
//! appends that once.

use std::path::PathBuf;

/// Why building or loading data failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: cannot read or write TIFF")]
    Tiff {
        path: PathBuf,
        #[source]
        source: tiff::TiffError,
    },

    #[error("{path}: cannot decode JPEG 2000")]
    Jpeg2000 {
        path: PathBuf,
        #[source]
        source: jpeg2k::error::Error,
    },

    #[error("{path}: cannot decode image")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("{path}: cannot read GeoPackage")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("{path}: bad JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A file was read but its content is not what the data set needs (a missing tag, a wrong
    /// band count, a geometry that is not a polygon ...).
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// An input asset of a builder is missing: usually `scripts/fetch-assets.sh` has not run.
    #[error("{path}: missing asset ({hint})")]
    MissingAsset { path: PathBuf, hint: String },

    /// Two rasters that must share one grid (bands of a scene, labels and image) do not.
    #[error("{a} and {b} are not on the same grid: {reason}")]
    GridMismatch {
        a: PathBuf,
        b: PathBuf,
        reason: String,
    },

    /// An option out of range (patch size 0, a ratio outside (0, 1) ...).
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// A `manifest.json` written by another format of `orbhash data build`: its fields may read
    /// but mean something else, so it is refused, not guessed at.
    #[error(
        "{path}: manifest format {found}, this orbhash reads {expected}: rebuild the data set with \
         `orbhash data build` (scripts/datasets.sh rebuilds the default sets)"
    )]
    ManifestFormat {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },

    /// Nothing usable was found: no class folders, no images, no patch passing the threshold.
    #[error("{path}: {reason}")]
    Empty { path: PathBuf, reason: String },
}

impl From<orbhash_contract::input::InputError> for DataError {
    fn from(error: orbhash_contract::input::InputError) -> Self {
        Self::InvalidOption(error.0)
    }
}

impl From<orbhash_contract::raster::RasterError> for DataError {
    fn from(error: orbhash_contract::raster::RasterError) -> Self {
        use orbhash_contract::raster::RasterError;
        match error {
            RasterError::Io { path, source } => Self::Io { path, source },
            RasterError::Tiff { path, source } => Self::Tiff { path, source },
            RasterError::Image { path, source } => Self::Image { path, source },
            RasterError::Format { path, reason } => Self::Format { path, reason },
        }
    }
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
