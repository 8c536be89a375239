//! The `orbhash-ground` command line, built inside the test package so end-to-end tests can run
//! (and kill) it as a process, beside `orbhash-edge-under-test`.
fn main() -> std::process::ExitCode {
    orbhash_ground::cli::main()
}
