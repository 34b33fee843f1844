fn main() -> std::process::ExitCode {
    synthgen::cli::evaluate_main()
}
