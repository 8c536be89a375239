use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orbhash_host::cli::Cli::parse();
    match orbhash_host::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "orbhash: error: {}",
                format!("{error:#}")
            );
            ExitCode::FAILURE
        }
    }
}
