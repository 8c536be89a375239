//! orbhash on board: open the exported hashing model with tract and run it on image tiles.

pub mod model;

pub use model::{ModelError, OnnxModel};
