fn main() -> std::process::ExitCode {
    synthgen::cli::train_main()
}
