fn main() -> std::process::ExitCode {
    synthgen::cli::sample_main()
}
