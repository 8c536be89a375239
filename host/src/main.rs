use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orbhash_host::cli::Cli::parse();
    match orbhash_host::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` appends every source: each error names its own cause once, never its source's.
            eprintln!("orbhash: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
