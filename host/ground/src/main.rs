//! The orbhash ground station: ingest downlinked hash codes into the archive and search it by
//! Hamming distance. `orbhash ground ...` is the same command line.
fn main() -> std::process::ExitCode {
    orbhash_ground::cli::main()
}
