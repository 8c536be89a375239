use std::process::ExitCode;

use clap::Parser;

/// The orbhash ground station: ingest downlinked hash codes into the archive and search it by
/// Hamming distance. `orbhash ground ...` is the same command line.
#[derive(Debug, Parser)]
#[command(name = "orbhash-ground", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: orbhash_ground::cli::GroundCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match orbhash_ground::cli::run(orbhash_ground::cli::GroundArgs {
        command: cli.command,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orbhash-ground: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
