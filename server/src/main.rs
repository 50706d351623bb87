fn main() -> std::process::ExitCode {
    stackgate::cli::main()
}
