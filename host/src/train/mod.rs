//! DHCNN training: the network, its loss, the schedule, checkpoints and the training loop.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod evaluate;
pub mod loss;
pub mod network;
pub mod schedule;
pub mod step_bench;
pub mod trainer;

pub use trainer::{train, TrainConfig, TrainOutcome};
