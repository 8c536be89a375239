//! orbhash on the ground: DHCNN training, ONNX export and evaluation (feature `train`, which needs
//! libtorch), and the ground station, which never touches libtorch.

pub mod assets;
pub mod cli;
pub mod data;
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
pub mod ground;
pub mod model;
#[cfg(feature = "train")]
pub mod torch;
#[cfg(feature = "train")]
pub mod train;
