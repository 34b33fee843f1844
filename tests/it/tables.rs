//! TVAE end to end on Adult: train, sample, resume, wgpu.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use synthgen::data::{DType, Table, Values};

use crate::{ok, root, run};

/// One smoke run shared by the tests that only read it.
struct Fixture {
    _models: tempfile::TempDir,
    models: PathBuf,
    run: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let models = tempfile::tempdir().unwrap();
        let o = run(
            "train",
            models.path(),
            &[
                "--config",
                "configs/smoke/tvae.toml",
                "--run-id",
                "smoke",
                "-q",
            ],
        );
        let last = ok(&o);
        Fixture {
            models: models.path().to_path_buf(),
            run: PathBuf::from(last),
            _models: models,
        }
    })
}

fn adult() -> Table {
    Table::read(&root().join("data/adult.csv"), None).unwrap()
}

fn sample(models: &Path, run_id: &str, n: usize, out: &Path, seed: &str) {
    sample_with(models, run_id, n, out, seed, &[]);
}

/// [`sample`] with more flags.
fn sample_with(models: &Path, run_id: &str, n: usize, out: &Path, seed: &str, more: &[&str]) {
    let n = n.to_string();
    let mut args = vec![
        "--checkpoint",
        run_id,
        "-n",
        &n,
        "-o",
        out.to_str().unwrap(),
        "--seed",
        seed,
        "-q",
    ];
    args.extend_from_slice(more);
    ok(&run("sample", models, &args));
}

#[test]
fn train_prints_the_run_dir_and_writes_a_complete_run() {
    let f = fixture();
    assert_eq!(f.run, f.models.join("smoke"));
    for file in [
        "manifest.json",
        "config.toml",
        "transformer.json",
        "metrics.csv",
    ] {
        assert!(f.run.join(file).is_file(), "{file}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.run.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["model"], "tvae");
    assert_eq!(manifest["seed"], 17);
    assert_eq!(manifest["checkpoint"]["epoch"], 2);
    assert_eq!(manifest["data"]["rows"], 32_561);
    let weights = manifest["checkpoint"]["weights"].as_str().unwrap();
    assert!(f.run.join(weights).is_file());
    // Only the last checkpoint's files are kept.
    let bpk = std::fs::read_dir(&f.run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bpk")
        })
        .count();
    assert_eq!(bpk, 2);
    let metrics = std::fs::read_to_string(f.run.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines[0], "epoch,loss,reconstruction,kl,seconds");
    assert_eq!(lines.len(), 3);
    let loss = |l: &str| l.split(',').nth(1).unwrap().parse::<f64>().unwrap();
    assert!(loss(lines[2]) < loss(lines[1]), "the loss falls: {metrics}");
    let config = std::fs::read_to_string(f.run.join("config.toml")).unwrap();
    assert!(
        config.contains("seed = 17") && config.contains("learning_rate"),
        "{config}"
    );
}

#[test]
fn the_run_holds_no_training_row() {
    let f = fixture();
    // fnlwgt values are 5- and 6-digit identifiers of census rows: none may appear in the run.
    let Values::Int(fnlwgt) = &adult().column("fnlwgt").unwrap().values.clone() else {
        panic!()
    };
    let text: String = ["manifest.json", "config.toml", "transformer.json"]
        .iter()
        .map(|name| std::fs::read_to_string(f.run.join(name)).unwrap())
        .collect();
    // Digit runs inside SHA-256 digests (64 hex characters) and the epochs' wall-clock seconds
    // are not data, and would match an identifier by chance now and then.
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !(w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit())))
        .collect();
    let metrics = std::fs::read_to_string(f.run.join("metrics.csv")).unwrap();
    let losses: Vec<&str> = metrics
        .lines()
        .flat_map(|l| {
            l.rsplit_once(',')
                .map_or(l, |(front, _seconds)| front)
                .split(',')
        })
        .collect();
    let tokens: HashSet<&str> = words
        .iter()
        .chain(&losses)
        .flat_map(|w| w.split(|c: char| !c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .collect();
    let leaked: Vec<i64> = fnlwgt
        .iter()
        .flatten()
        .take(2000)
        .filter(|v| tokens.contains(v.to_string().as_str()))
        .copied()
        .collect();
    assert!(leaked.is_empty(), "training values in the run: {leaked:?}");
}

#[test]
fn samples_keep_columns_order_types_and_vocabulary() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    sample(&f.models, "smoke", 3000, &out, "1");
    let real = adult();
    let syn = Table::read(&out, None).unwrap();
    assert_eq!(syn.n_rows(), 3000);
    assert_eq!(syn.names(), real.names());
    for (r, s) in real.columns.iter().zip(&syn.columns) {
        assert_eq!(s.values.dtype(), r.values.dtype(), "{}", r.name);
        let vocab: HashSet<Option<String>> = r.values.as_keys().into_iter().collect();
        match &r.values {
            Values::Str(_) => {
                for k in s.values.as_keys() {
                    assert!(
                        vocab.contains(&k),
                        "{}: {k:?} is not a training category",
                        r.name
                    );
                }
            }
            Values::Int(v) => {
                let (lo, hi) = (
                    v.iter().flatten().min().unwrap(),
                    v.iter().flatten().max().unwrap(),
                );
                let Values::Int(sv) = &s.values else {
                    unreachable!()
                };
                assert!(
                    sv.iter().flatten().all(|x| x >= lo && x <= hi),
                    "{} out of range",
                    r.name
                );
            }
            _ => {}
        }
    }
    // The column with the most frequent category keeps it most frequent.
    let count = |t: &Table, c: &str, k: &str| {
        t.column(c)
            .unwrap()
            .values
            .as_keys()
            .iter()
            .filter(|v| v.as_deref() == Some(k))
            .count()
    };
    assert!(count(&syn, "income", "<=50K") > count(&syn, "income", ">50K"));
}

#[test]
fn the_same_seed_gives_the_same_rows_and_another_seed_does_not() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.csv"),
        dir.path().join("b.csv"),
        dir.path().join("c.csv"),
    );
    sample(&f.models, "smoke", 500, &a, "9");
    sample(&f.models, "smoke", 500, &b, "9");
    sample(&f.models, "smoke", 500, &c, "10");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn batches_with_a_partial_last_one_give_every_row_once() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    sample_with(&f.models, "smoke", 250, &out, "2", &["--batch-size", "100"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 250);
    // The last, partial batch is its own rows, not what the buffer held from the one before.
    assert_ne!(rows[200..250], rows[100..150]);
}

#[test]
fn parquet_and_stdout_outputs_hold_the_same_table() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("s.parquet");
    sample(&f.models, "smoke", 300, &pq, "4");
    let o = run(
        "sample",
        &f.models,
        &[
            "--checkpoint",
            "smoke",
            "-n",
            "300",
            "-o",
            "-",
            "--seed",
            "4",
            "-q",
        ],
    );
    ok(&o);
    let csv = dir.path().join("s.csv");
    std::fs::write(&csv, &o.stdout).unwrap();
    let (p, c) = (
        Table::read(&pq, None).unwrap(),
        Table::read(&csv, None).unwrap(),
    );
    assert_eq!(p, c);
    assert_eq!(p.column("age").unwrap().values.dtype(), DType::Int);
}

#[test]
fn nulls_come_back_at_the_real_rate_and_constant_columns_stay_constant() {
    // German credit with nulls punched into a numeric and a text column, plus a constant one.
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(root().join("data/credit-g.csv")).unwrap();
    let mut lines = src.lines();
    let header = lines.next().unwrap();
    let mut csv = format!("{header},source\n");
    for (i, line) in lines.enumerate() {
        let mut cells: Vec<String> = line.split(',').map(String::from).collect();
        if i % 5 == 0 {
            cells[4].clear(); // credit_amount: 20 % null
        }
        if i % 10 == 0 {
            cells[3].clear(); // purpose: 10 % null
        }
        csv.push_str(&cells.join(","));
        csv.push_str(",bank\n");
    }
    // Quoted fields with commas would break the naive split above; credit-g has none.
    assert!(!src.contains('"'));
    let data = dir.path().join("credit-nulls.csv");
    std::fs::write(&data, csv).unwrap();
    let cfg = crate::write_config(
        dir.path(),
        "c.toml",
        &format!(
            "[data]\npath = {:?}\n[model]\nkind = \"tvae\"\n[train]\nepochs = 150\nbatch_size = 100\ncheckpoint_every = 150\nseed = 3\ndevice = \"cpu\"\n",
            data
        ),
    );
    let models = dir.path().join("models");
    ok(&run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "n", "-q"],
    ));
    let out = dir.path().join("s.csv");
    sample(&models, "n", 4000, &out, "2");
    let syn = Table::read(&out, None).unwrap();
    let null_rate = |name: &str| {
        let keys = syn.column(name).unwrap().values.as_keys();
        keys.iter().filter(|k| k.is_none()).count() as f64 / keys.len() as f64
    };
    let (amount, purpose) = (null_rate("credit_amount"), null_rate("purpose"));
    assert!(
        (amount - 0.2).abs() < 0.07,
        "credit_amount null rate {amount}"
    );
    assert!((purpose - 0.1).abs() < 0.05, "purpose null rate {purpose}");
    let source: HashSet<Option<String>> = syn
        .column("source")
        .unwrap()
        .values
        .as_keys()
        .into_iter()
        .collect();
    assert_eq!(source, HashSet::from([Some("bank".to_string())]));
    let (Values::Float(_) | Values::Int(_)) = &syn.column("credit_amount").unwrap().values else {
        panic!("credit_amount stays numeric")
    };
}

/// The lines of a metrics.csv without their last field (the epoch's seconds).
fn losses(metrics: &Path) -> Vec<String> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn resume_continues_exactly_where_the_run_stopped() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    ok(&run(
        "train",
        models,
        &[
            "--config",
            "configs/smoke/tvae.toml",
            "--run-id",
            "r",
            "--epochs",
            "1",
            "-q",
        ],
    ));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("r/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["checkpoint"]["epoch"], 1);
    let o = run("train", models, &["--resume", "r", "--epochs", "2", "-q"]);
    assert_eq!(ok(&o), models.join("r").display().to_string());
    let metrics = std::fs::read_to_string(models.join("r/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    // Two epochs in two sittings equal two epochs in one: same weights, same samples.
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    sample(&f.models, "smoke", 400, &a, "5");
    sample(models, "r", 400, &b, "5");
    assert_eq!(
        std::fs::read_to_string(a).unwrap(),
        std::fs::read_to_string(b).unwrap()
    );
    assert_eq!(
        losses(&f.run.join("metrics.csv")),
        losses(&models.join("r/metrics.csv"))
    );
}

#[test]
fn trains_and_samples_on_wgpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::write_config(
        dir.path(),
        "w.toml",
        "[data]\npath = \"data/credit-g.csv\"\n[model]\nkind = \"tvae\"\n[train]\nepochs = 2\nbatch_size = 250\nseed = 1\ndevice = \"wgpu\"\n",
    );
    let models = dir.path().join("models");
    let o = run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "w"],
    );
    ok(&o);
    assert!(crate::stderr(&o).contains("wgpu"), "{}", crate::stderr(&o));
    let m = std::fs::read_to_string(models.join("w/manifest.json")).unwrap();
    assert!(m.contains("\"device\": \"wgpu"), "{m}");
    let out = dir.path().join("s.csv");
    sample(&models, "w", 200, &out, "1");
    let syn = Table::read(&out, None).unwrap();
    let real = Table::read(&root().join("data/credit-g.csv"), None).unwrap();
    assert_eq!(syn.names(), real.names());
    assert_eq!(syn.n_rows(), 200);
    let counts: HashMap<Option<String>, usize> = syn
        .column("class")
        .unwrap()
        .values
        .as_keys()
        .into_iter()
        .fold(HashMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    assert!(
        counts
            .keys()
            .all(|k| matches!(k.as_deref(), Some("good") | Some("bad"))),
        "{counts:?}"
    );
}

#[test]
fn the_number_of_loop_threads_changes_no_loss() {
    // The fixture's run trains TVAE on all cores (its default); this one on one thread.
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(root().join("configs/smoke/tvae.toml")).unwrap();
    let cfg = crate::write_config(
        dir.path(),
        "t.toml",
        &smoke.replace("device = \"cpu\"", "device = \"cpu\"\nthreads = 1"),
    );
    let models = dir.path().join("models");
    let o = run(
        "train",
        &models,
        &["--config", cfg.to_str().unwrap(), "--run-id", "t"],
    );
    ok(&o);
    assert!(
        crate::stderr(&o).contains("threads=1"),
        "{}",
        crate::stderr(&o)
    );
    let one = losses(&models.join("t/metrics.csv"));
    assert_eq!(one.len(), 3, "{one:?}");
    assert_eq!(losses(&f.run.join("metrics.csv")), one);
}
