fn main() -> std::process::ExitCode {
    tsohost::cli::main()
}
