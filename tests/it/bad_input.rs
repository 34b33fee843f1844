//! Every bad input named by the issue: a clear error, exit code 1, no panic, no run left.

use std::path::Path;

use crate::{entries, ok, run, user_error, write_config};

const MODEL: &str = "[model]\nkind = \"tvae\"\n";
const FAST: &str = "[train]\nepochs = 1\nseed = 1\ndevice = \"cpu\"\n";

/// Train with a config text in a fresh directory; return stderr after checking that the
/// failure is a user error and that the models directory holds nothing.
fn train_fails(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "c.toml", config);
    let models = dir.path().join("models");
    let o = run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "x"],
    );
    let err = user_error(&o);
    assert!(
        entries(&models).is_empty(),
        "left behind: {:?}",
        entries(&models)
    );
    err
}

fn data_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    format!("{p:?}")
}

#[test]
fn missing_data_file() {
    let err = train_fails(&format!("[data]\npath = \"data/nope.csv\"\n{MODEL}{FAST}"));
    assert!(
        err.contains("data/nope.csv") && err.contains("not found"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn ragged_csv_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = data_file(dir.path(), "r.csv", "a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n");
    let err = train_fails(&format!("[data]\npath = {p}\n{MODEL}{FAST}"));
    assert!(
        err.contains("line 4 has 2 fields but the header has 3"),
        "{err}"
    );
}

#[test]
fn unreadable_csv() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.csv");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x41, 0x0a, 0xc3]).unwrap();
    let err = train_fails(&format!("[data]\npath = {p:?}\n{MODEL}{FAST}"));
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let header_only = data_file(dir.path(), "h.csv", "a,b\n");
    let err = train_fails(&format!("[data]\npath = {header_only}\n{MODEL}{FAST}"));
    assert!(err.contains("has no rows"), "{err}");
    let nothing = data_file(dir.path(), "e.csv", "");
    let err = train_fails(&format!("[data]\npath = {nothing}\n{MODEL}{FAST}"));
    assert!(err.contains("has no rows"), "{err}");
}

#[test]
fn single_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = data_file(dir.path(), "one.csv", "a,b\n1,x\n");
    let err = train_fails(&format!("[data]\npath = {p}\n{MODEL}{FAST}"));
    assert!(err.contains("single row"), "{err}");
}

#[test]
fn config_column_that_does_not_exist() {
    let err = train_fails(&format!(
        "[data]\npath = \"data/adult.csv\"\ndiscrete = [\"incme\"]\n{MODEL}{FAST}"
    ));
    assert!(err.contains("'incme'") && err.contains("discrete"), "{err}");
    assert!(
        err.contains("hint: columns in the data: age, workclass"),
        "{err}"
    );
}

#[test]
fn unknown_config_key() {
    let err = train_fails(&format!(
        "[data]\npath = \"data/adult.csv\"\n{MODEL}learnig_rate = 0.1\n{FAST}"
    ));
    assert!(
        err.contains("c.toml") && err.contains("learnig_rate"),
        "{err}"
    );
}

#[test]
fn zero_epochs_and_zero_batch() {
    let err = train_fails(&format!(
        "[data]\npath = \"data/adult.csv\"\n{MODEL}[train]\nepochs = 0\n"
    ));
    assert!(err.contains("epochs must be at least 1"), "{err}");
    let err = train_fails(&format!(
        "[data]\npath = \"data/adult.csv\"\n{MODEL}[train]\nbatch_size = 0\n"
    ));
    assert!(err.contains("batch_size must be at least 1"), "{err}");
}

#[test]
fn unknown_checkpoint_lists_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    let o = run("sample", models, &["--checkpoint", "run42", "-n", "10"]);
    let err = user_error(&o);
    assert!(
        err.contains("no run 'run42'") && err.contains("there are no runs yet"),
        "{err}"
    );

    ok(&run(
        "train",
        models,
        &[
            "--config",
            "configs/smoke/tvae.toml",
            "--epochs",
            "1",
            "--run-id",
            "real-run",
            "-q",
        ],
    ));
    let err = user_error(&run(
        "sample",
        models,
        &["--checkpoint", "run42", "-n", "10"],
    ));
    assert!(err.contains("hint: runs that exist: real-run"), "{err}");

    // An existing run is not overwritten without --force.
    let err = user_error(&run(
        "train",
        models,
        &[
            "--config",
            "configs/smoke/tvae.toml",
            "--epochs",
            "1",
            "--run-id",
            "real-run",
        ],
    ));
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    ok(&run(
        "train",
        models,
        &[
            "--config",
            "configs/smoke/tvae.toml",
            "--epochs",
            "1",
            "--run-id",
            "real-run",
            "--force",
            "-q",
        ],
    ));

    // A truncated weights file is refused by name, and so is a corrupted one.
    let run_dir = models.join("real-run");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap())
            .unwrap();
    let weights = run_dir.join(manifest["checkpoint"]["weights"].as_str().unwrap());
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = user_error(&run(
        "sample",
        models,
        &["--checkpoint", "real-run", "-n", "10"],
    ));
    assert!(
        err.contains("damaged") && err.contains("truncated or corrupted"),
        "{err}"
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    std::fs::write(&weights, &flipped).unwrap();
    let err = user_error(&run(
        "sample",
        models,
        &["--checkpoint", "real-run", "-n", "10"],
    ));
    assert!(err.contains("damaged"), "{err}");
    let err = user_error(&run(
        "train",
        models,
        &["--resume", "real-run", "--epochs", "3"],
    ));
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn diverging_training_stops_with_no_half_written_run() {
    let err = train_fails(
        "[data]\npath = \"data/credit-g.csv\"\n[model]\nkind = \"tvae\"\nlearning_rate = 1e30\n[train]\nepochs = 3\ncheckpoint_every = 1\nseed = 1\ndevice = \"cpu\"\n",
    );
    assert!(err.contains("diverged at epoch 1"), "{err}");
    assert!(err.contains("no checkpoint was written"), "{err}");
}

#[test]
fn bad_sample_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let o = run("sample", dir.path(), &["--checkpoint", "x", "-n", "0"]);
    let err = user_error(&o);
    assert!(err.contains("at least 1"), "{err}");
}
