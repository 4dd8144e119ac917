fn main() -> std::process::ExitCode {
    pwless::cli::main()
}
