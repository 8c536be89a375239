//! The `orbhash-edge` command line, built inside the test package so end-to-end tests can run
//! (and kill) it as a process: Cargo gives a package's tests the paths of its own binaries only.
fn main() -> std::process::ExitCode {
    orbhash_edge::cli::main()
}
