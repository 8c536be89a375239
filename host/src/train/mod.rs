//! DHCNN training: the network, its loss, the schedule, checkpoints, the training loop, and the
//! training-step benchmark (`orbhash bench train-step`).

pub mod checkpoint;
pub mod cli;
pub mod loss;
pub mod network;
pub mod schedule;
pub mod step_bench;
pub mod trainer;

pub use trainer::{train, TrainConfig, TrainOutcome};

/// Where hashing a data set with a checkpoint used to live. It is evaluation's now
/// ([`crate::eval::checkpoint`]); this path is kept only until `export::verify` imports from there.
pub mod evaluate {
    pub use crate::eval::checkpoint::{hash_dataset, HashedDataset};
}
