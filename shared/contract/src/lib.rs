//! The model contract: what the training side, the board and the ground station must read the
//! same way for a code to mean the same thing everywhere.
//!
//! - [`card`]: the model card inside every exported ONNX file (one typed schema);
//! - [`input`]: the input definition ([`InputSpec`]): bands, scaling, resize, normalisation;
//! - [`raster`]: reading images and multi-band GeoTIFF scenes, with their georeference.
//!
//! The wire format itself is `orbhash-wire`, which is `no_std` and knows none of this.

pub mod card;
pub mod input;
pub mod raster;

pub use card::{CardError, ModelCard};
pub use input::{InputError, InputSpec};
pub use raster::{RasterError, RawImage};
