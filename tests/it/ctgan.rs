//! CTGAN end to end, and conditional sampling (CTGAN and TVAE) on real data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use synthgen::data::Table;

use crate::{ok, root, run, user_error, write_config};

struct Fixture {
    _dir: tempfile::TempDir,
    models: PathBuf,
}

/// Two epochs of CTGAN on Adult, shared by the tests that only read the run.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().to_path_buf();
        ok(&run(
            "train",
            &models,
            &[
                "--config",
                "configs/smoke/ctgan.toml",
                "--run-id",
                "c",
                "-q",
            ],
        ));
        Fixture { _dir: dir, models }
    })
}

fn sample(models: &Path, run_id: &str, args: &[&str], out: &Path) -> Table {
    let mut all = vec!["--checkpoint", run_id, "-o", out.to_str().unwrap(), "-q"];
    all.extend_from_slice(args);
    ok(&run("sample", models, &all));
    Table::read(out, None).unwrap()
}

fn counts(t: &Table, column: &str) -> HashMap<Option<String>, usize> {
    t.column(column)
        .unwrap()
        .values
        .as_keys()
        .into_iter()
        .fold(HashMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        })
}

#[test]
fn ctgan_run_records_generator_and_critic_losses() {
    let f = fixture();
    let metrics = std::fs::read_to_string(f.models.join("c/metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines[0], "epoch,generator,critic,penalty,seconds");
    assert_eq!(lines.len(), 3, "{metrics}");
    for l in &lines[1..] {
        assert!(
            l.split(',')
                .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)),
            "{l}"
        );
    }
    let m = std::fs::read_to_string(f.models.join("c/manifest.json")).unwrap();
    assert!(m.contains("\"model\": \"ctgan\""), "{m}");
}

#[test]
fn conditions_on_non_first_columns_give_only_matching_rows() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let t = sample(
        &f.models,
        "c",
        &[
            "-n",
            "5000",
            "--seed",
            "3",
            "--condition",
            "relationship=Wife",
            "--condition",
            "sex=Female",
        ],
        &dir.path().join("s.csv"),
    );
    assert_eq!(t.n_rows(), 5000);
    assert_eq!(
        counts(&t, "relationship"),
        HashMap::from([(Some("Wife".to_string()), 5000)])
    );
    assert_eq!(
        counts(&t, "sex"),
        HashMap::from([(Some("Female".to_string()), 5000)])
    );
    let real = Table::read(&root().join("data/adult.csv"), None).unwrap();
    assert_eq!(t.names(), real.names());
}

#[test]
fn balance_gives_equal_counts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let t = sample(
        &f.models,
        "c",
        &["-n", "20000", "--seed", "4", "--balance", "income"],
        &dir.path().join("b.csv"),
    );
    assert_eq!(
        counts(&t, "income"),
        HashMap::from([
            (Some("<=50K".to_string()), 10_000),
            (Some(">50K".to_string()), 10_000)
        ])
    );
    // An odd count: the first category gets the extra row.
    let t = sample(
        &f.models,
        "c",
        &["-n", "7", "--seed", "4", "--balance", "sex"],
        &dir.path().join("o.csv"),
    );
    assert_eq!(
        counts(&t, "sex"),
        HashMap::from([
            (Some("Female".to_string()), 4),
            (Some("Male".to_string()), 3)
        ])
    );
}

#[test]
fn ctgan_resume_continues_exactly() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    ok(&run(
        "train",
        models,
        &[
            "--config",
            "configs/smoke/ctgan.toml",
            "--run-id",
            "r",
            "--epochs",
            "1",
            "-q",
        ],
    ));
    ok(&run(
        "train",
        models,
        &["--resume", "r", "--epochs", "2", "-q"],
    ));
    let a = sample(
        &f.models,
        "c",
        &["-n", "300", "--seed", "8"],
        &dir.path().join("a.csv"),
    );
    let b = sample(
        models,
        "r",
        &["-n", "300", "--seed", "8"],
        &dir.path().join("b.csv"),
    );
    assert!(a == b, "two epochs in two sittings must equal two in one");
}

#[test]
fn ctgan_on_a_slice_of_bank_marketing_with_a_rare_class_rebalanced() {
    let dir = tempfile::tempdir().unwrap();
    // Every 20th row of the ';'-separated, quoted file: 2,060 rows, about 11 % y = "yes".
    let src = std::fs::read_to_string(root().join("data/bank-marketing.csv")).unwrap();
    let mut lines = src.lines();
    let mut slice = format!("{}\n", lines.next().unwrap());
    for l in lines.step_by(20) {
        slice.push_str(l);
        slice.push('\n');
    }
    let data = dir.path().join("bank-slice.csv");
    std::fs::write(&data, slice).unwrap();
    let cfg = write_config(
        dir.path(),
        "b.toml",
        &format!(
            "[data]\npath = {data:?}\n[model]\nkind = \"ctgan\"\n[train]\nepochs = 2\nbatch_size = 500\nseed = 5\ndevice = \"cpu\"\n"
        ),
    );
    let models = dir.path().join("models");
    ok(&run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "b", "-q"],
    ));
    ok(&run(
        "train",
        &models,
        &["--resume", "b", "--epochs", "3", "-q"],
    ));
    let metrics = std::fs::read_to_string(models.join("b/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 4, "{metrics}");
    let t = sample(
        &models,
        "b",
        &["-n", "400", "--seed", "1", "--balance", "y"],
        &dir.path().join("s.csv"),
    );
    assert_eq!(
        counts(&t, "y"),
        HashMap::from([
            (Some("no".to_string()), 200),
            (Some("yes".to_string()), 200)
        ])
    );
    let real = Table::read(&data, None).unwrap();
    assert_eq!(t.names(), real.names());
    for (r, s) in real.columns.iter().zip(&t.columns) {
        assert_eq!(r.values.dtype(), s.values.dtype(), "{}", r.name);
    }
}

#[test]
fn tvae_takes_the_same_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "t.toml",
        "[data]\npath = \"data/credit-g.csv\"\n[model]\nkind = \"tvae\"\n[train]\nepochs = 30\nbatch_size = 200\ncheckpoint_every = 30\nseed = 2\ndevice = \"cpu\"\n",
    );
    let models = dir.path().join("models");
    ok(&run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "t", "-q"],
    ));
    let t = sample(
        &models,
        "t",
        &[
            "-n",
            "300",
            "--seed",
            "1",
            "--condition",
            "purpose=radio/tv",
            "--balance",
            "own_telephone",
        ],
        &dir.path().join("s.csv"),
    );
    assert_eq!(
        counts(&t, "purpose"),
        HashMap::from([(Some("radio/tv".to_string()), 300)])
    );
    assert_eq!(
        counts(&t, "own_telephone"),
        HashMap::from([
            (Some("none".to_string()), 150),
            (Some("yes".to_string()), 150)
        ])
    );
}

#[test]
fn bad_conditions_are_named_with_what_is_valid() {
    let f = fixture();
    let go = |args: &[&str]| {
        let mut all = vec!["--checkpoint", "c", "-n", "10", "-o", "-"];
        all.extend_from_slice(args);
        user_error(&run("sample", &f.models, &all))
    };
    let err = go(&["--condition", "relationship=Wif"]);
    assert!(
        err.contains("no category 'Wif'") && err.contains("hint: its categories: Husband"),
        "{err}"
    );
    let err = go(&["--condition", "relation=Wife"]);
    assert!(
        err.contains("no column 'relation'") && err.contains("discrete columns: workclass"),
        "{err}"
    );
    let err = go(&["--condition", "age=30"]);
    assert!(err.contains("'age' is continuous"), "{err}");
    let err = go(&["--condition", "Wife"]);
    assert!(err.contains("not of the form column=value"), "{err}");
    let err = go(&["--balance", "hours-per-week"]);
    assert!(err.contains("continuous"), "{err}");
    // Contradictory conditions: no row can satisfy both; the bound stops the search.
    let err = go(&["--condition", "sex=Male", "--condition", "sex=Female"]);
    assert!(
        err.contains("only 0 of 10 rows") && err.contains("acceptance rate"),
        "{err}"
    );
    assert!(err.contains("fewer conditions"), "{err}");
}
