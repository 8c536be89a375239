//! orbhash's training side: the data sets, DHCNN training and evaluation on libtorch, and the
//! ONNX export the board runs. The ground station is its own crate (`orbhash-ground`).

pub mod assets;
pub mod cli;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod torch;
pub mod train;
