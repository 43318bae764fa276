fn main() -> std::process::ExitCode {
    sloguard::cli::main()
}
