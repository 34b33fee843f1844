//! Integration tests: the real binaries on the bundled real data.

mod bad_input;
mod ctgan;
mod ddpm;
mod evaluate;
mod tables;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root: configs name data relative to it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a binary from the repository root with a models directory.
pub fn run(bin: &str, models: &Path, args: &[&str]) -> Output {
    let exe = match bin {
        "train" => env!("CARGO_BIN_EXE_train"),
        "sample" => env!("CARGO_BIN_EXE_sample"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        other => panic!("no binary {other}"),
    };
    Command::new(exe)
        .current_dir(root())
        .env("SYNTHGEN_MODELS_DIR", models)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert success and return the last line of stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}",
        o.status.code(),
        stderr(o)
    );
    stdout(o).lines().last().unwrap_or_default().to_string()
}

/// Assert a user error: exit code 1, an `error:` line and no panic.
pub fn user_error(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr:\n{err}");
    assert!(err.contains("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    err
}

/// Write a config into `dir` and return its path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Entries of a directory (to check that failures leave nothing behind).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
