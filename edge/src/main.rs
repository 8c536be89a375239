fn main() -> std::process::ExitCode {
    orbhash_edge::cli::main()
}
