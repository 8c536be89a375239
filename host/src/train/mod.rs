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
