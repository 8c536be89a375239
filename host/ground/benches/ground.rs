//! `cargo bench -p orbhash-host --no-default-features --bench ground -- [ARGS]`: the same benchmark
//! as `orbhash ground bench [ARGS]` (see `orbhash_ground::bench`), runnable before the
//! subcommand is wired into the binary, and from CI-less checkouts.

use clap::Parser;
use orbhash_ground::bench::{run, BenchArgs};

#[derive(Debug, Parser)]
#[command(name = "ground-bench")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` appends `--bench`; it means nothing here.
    let argv = std::env::args().filter(|arg| arg != "--bench");
    run(&Cli::parse_from(argv).args)
}
