//! orbhash on board: hash image tiles with the exported model (tract) and downlink their codes
//! through a store-and-forward queue.
//!
//! - [`model`]: an ONNX file prepared by tract for a fixed batch size;
//! - [`hasher`]: a model checked against its card; tiles in, codes and labels out;
//! - [`source`]: tiles from a directory or cut from a whole scene;
//! - [`queue`]: the durable store-and-forward queue of downlink frames;
//! - [`link`]: file, TCP, serial or stdout, optionally through a simulated intermittent channel;
//! - [`run`]: the tokio pipeline tying them together; [`bench`]: the speed table.

pub mod bench;
pub mod cli;
pub mod hasher;
pub mod link;
pub mod model;
pub mod queue;
pub mod run;
pub mod source;
pub mod threads;

pub use hasher::{Hashed, Hasher, HasherError};
pub use model::{ModelError, OnnxModel};
