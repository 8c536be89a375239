use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orbhash_edge::OnnxModel;

/// orbhash on board: hash image tiles with the exported DHCNN model and downlink their codes.
#[derive(Debug, Parser)]
#[command(name = "orbhash-edge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load an ONNX model as the board would and print its input, outputs and metadata, so a
    /// model can be checked before it is uplinked.
    Inspect {
        /// The ONNX file to inspect.
        model: PathBuf,
        /// Batch size to prepare the model for (tract optimises for a fixed batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orbhash-edge: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model, batch } => {
            let loaded = OnnxModel::open(&model, batch)?;
            println!("model: {}", model.display());
            println!("input shape: {:?}", loaded.input_shape());
            println!("outputs: {}", loaded.output_names().join(", "));
            for (key, value) in loaded.metadata() {
                println!("metadata {key}: {value}");
            }
            Ok(())
        }
    }
}
