//! orbhash inference: an exported model run by tract, exactly as the board runs it. The board
//! program, the exporter's `--verify` and the ground station's query by image all hash through
//! this crate, so a code means the same everywhere.
//!
//! - [`model`]: an ONNX file prepared by tract for a fixed batch size, and its per-node profile;
//! - [`hasher`]: a model checked against its card; tiles in, codes and labels out;
//! - [`threads`]: how many threads tract's matrix products use.

pub mod hasher;
pub mod model;
pub mod threads;

pub use hasher::{Hashed, Hasher, HasherError};
pub use model::{ModelError, OnnxModel};
