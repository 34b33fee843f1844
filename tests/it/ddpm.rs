//! DDPM end to end on the shipped MNIST subset: the smoke config trains, samples PNGs (DDPM and
//! DDIM, per class, reproducibly), resumes, refuses bad input; `evaluate --images` measures.

use std::path::Path;

use crate::{entries, ok, root, run, stderr, user_error, write_config};

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = entries(dir)
        .into_iter()
        .filter(|n| n.ends_with(".png") && n != "grid.png")
        .collect();
    v.sort();
    v
}

#[test]
fn smoke_trains_samples_and_resumes() {
    let models = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let m = models.path();
    let dir = ok(&run(
        "train",
        m,
        &[
            "--config",
            "configs/smoke/ddpm.toml",
            "--run-id",
            "d1",
            "--epochs",
            "1",
            "-q",
        ],
    ));
    let run_dir = Path::new(&dir);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["model"], "ddpm");
    assert_eq!(manifest["data"]["rows"], 256);
    let info = std::fs::read_to_string(run_dir.join("images.json")).unwrap();
    assert!(
        info.contains("\"height\": 28") && info.contains("\"9\""),
        "{info}"
    );
    // No training images in the run: weights, optimizer, json, toml and csv only.
    for f in entries(run_dir) {
        assert!(
            [".bpk", ".json", ".toml", ".csv"]
                .iter()
                .any(|e| f.ends_with(e)),
            "unexpected file {f}"
        );
    }

    // Resume to 2 epochs.
    ok(&run("train", m, &["--resume", "d1", "--epochs", "2", "-q"]));
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    assert!(metrics.starts_with("epoch,loss,seconds"), "{metrics}");
    let losses: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0 && *l < 2.0),
        "{losses:?}"
    );

    // DDIM, 10 steps, class 3: 6 PNGs of 28x28, a grid, labels.
    let a = out.path().join("a");
    let a_str = a.to_str().unwrap();
    ok(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            "d1",
            "-n",
            "6",
            "--steps",
            "10",
            "--class",
            "3",
            "--seed",
            "5",
            "-o",
            a_str,
            "-q",
        ],
    ));
    assert_eq!(pngs(&a).len(), 6);
    for p in pngs(&a) {
        assert_eq!(png_size(&a.join(&p)), (28, 28));
    }
    assert_eq!(png_size(&a.join("grid.png")), (3 * 30 + 2, 2 * 30 + 2));
    let labels = std::fs::read_to_string(a.join("labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 7);
    assert!(
        labels.lines().skip(1).all(|l| l.ends_with(",3")),
        "{labels}"
    );

    // The same seed gives the same images; another seed others.
    let b = out.path().join("b");
    ok(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            "d1",
            "-n",
            "6",
            "--steps",
            "10",
            "--class",
            "3",
            "--seed",
            "5",
            "-o",
            b.to_str().unwrap(),
            "-q",
        ],
    ));
    for p in pngs(&a) {
        assert_eq!(
            std::fs::read(a.join(&p)).unwrap(),
            std::fs::read(b.join(&p)).unwrap()
        );
    }
    let c = out.path().join("c");
    ok(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            "d1",
            "-n",
            "6",
            "--steps",
            "10",
            "--class",
            "3",
            "--seed",
            "6",
            "-o",
            c.to_str().unwrap(),
            "-q",
        ],
    ));
    assert_ne!(
        std::fs::read(a.join("00000.png")).unwrap(),
        std::fs::read(c.join("00000.png")).unwrap()
    );

    // Ancestral DDPM over all 100 steps with guidance, classes drawn.
    let d = out.path().join("d");
    ok(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            "d1",
            "-n",
            "3",
            "--guidance",
            "2",
            "--seed",
            "1",
            "-o",
            d.to_str().unwrap(),
            "-q",
        ],
    ));
    assert_eq!(pngs(&d).len(), 3);

    // Bad sampling requests: exit 1, nothing written.
    for (args, needle) in [
        (vec!["--class", "cat"], "not a class"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--steps", "500"], "100 diffusion steps"),
        (vec!["--eta", "0.5"], "give --steps"),
        (vec!["--condition", "a=b"], "--class"),
    ] {
        let e = out.path().join("e");
        let mut full = vec!["--checkpoint", "d1", "-n", "2", "-o", e.to_str().unwrap()];
        full.extend(args);
        let err = user_error(&run("sample", m, &full));
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!e.exists());
    }
    // An existing non-empty output directory is never overwritten.
    let err = user_error(&run(
        "sample",
        m,
        &["--checkpoint", "d1", "-n", "2", "-o", a_str],
    ));
    assert!(err.contains("not an empty directory"), "{err}");
    assert_eq!(pngs(&a).len(), 6);
    // Stdout cannot take images.
    let err = user_error(&run("sample", m, &["--checkpoint", "d1", "-n", "2"]));
    assert!(err.contains("-o DIR"), "{err}");
}

#[test]
fn bad_image_data_is_refused_without_a_run() {
    let models = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let m = models.path();
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let broken = work.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("x.png"), b"no png").unwrap();
    let mixed = work.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    image::GrayImage::new(10, 10)
        .save(mixed.join("a.png"))
        .unwrap();
    image::GrayImage::new(12, 12)
        .save(mixed.join("b.png"))
        .unwrap();
    let body = "[model]\nkind = \"ddpm\"\nbase_channels = 8\nchannel_mults = [1]\nres_blocks = 1\nattention_resolutions = []\ngroups = 4\nheads = 1\n[train]\nepochs = 1\ndevice = \"cpu\"\nseed = 1\n";
    for (name, data, extra, needle) in [
        ("empty", empty.to_str().unwrap(), "", "holds no images"),
        ("broken", broken.to_str().unwrap(), "", "cannot be decoded"),
        (
            "mixed",
            mixed.to_str().unwrap(),
            "[images]\nresize = \"none\"\n",
            "not 10x10",
        ),
        (
            "missing",
            "data/mnist/nothing-idx3-ubyte.gz",
            "",
            "not found",
        ),
        (
            "attention",
            "data/mnist/t10k-images-idx3-ubyte.gz",
            "[images]\nlimit = 4\n",
            "attention_resolutions",
        ),
        (
            "groups",
            "data/mnist/t10k-images-idx3-ubyte.gz",
            "",
            "groups (3)",
        ),
    ] {
        let mut text = format!("[data]\npath = \"{data}\"\n{extra}{body}");
        if name == "attention" {
            text = text.replace("attention_resolutions = []", "attention_resolutions = [5]");
        }
        if name == "groups" {
            text = text.replace("groups = 4", "groups = 3");
        }
        let cfg = write_config(work.path(), &format!("{name}.toml"), &text);
        let err = user_error(&run("train", m, &["--config", cfg.to_str().unwrap()]));
        assert!(err.contains(needle), "{name}: {err}");
        assert!(entries(m).is_empty(), "{name} left {:?}", entries(m));
    }
    // The mixed folder trains once a size is given (resize = fill is the default).
    let text = format!(
        "[data]\npath = \"{}\"\n[images]\nsize = 8\n{body}",
        mixed.to_str().unwrap()
    );
    let cfg = write_config(work.path(), "mixed-ok.toml", &text);
    let dir = ok(&run("train", m, &["--config", cfg.to_str().unwrap(), "-q"]));
    let info = std::fs::read_to_string(Path::new(&dir).join("images.json")).unwrap();
    assert!(
        info.contains("\"height\": 8") && info.contains("\"classes\": []"),
        "{info}"
    );
    // An unconditional model refuses --class and --guidance.
    let o = work.path().join("o");
    let err = user_error(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            &dir,
            "-n",
            "1",
            "--class",
            "1",
            "-o",
            o.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("unconditional"), "{err}");
    let err = user_error(&run(
        "sample",
        m,
        &[
            "--checkpoint",
            &dir,
            "-n",
            "1",
            "--guidance",
            "3",
            "-o",
            o.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("class-conditional"), "{err}");
}

/// Write the images `range` of an IDX file as PNGs into `dir`; returns their labels.
fn write_pngs(idx: &str, range: std::ops::Range<usize>, dir: &Path) -> Vec<u32> {
    let set = synthgen::data::images::ImageSet::load(&synthgen::data::images::ImageSpec::new(
        root().join(idx),
    ))
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for i in range.clone() {
        let img = synthgen::data::images::to_dynamic(set.image(i), 1, 28, 28);
        img.save(dir.join(format!("{i:05}.png"))).unwrap();
    }
    set.labels.unwrap()[range].to_vec()
}

/// A labels.csv as `sample` writes it: image i asked for class `class(label of i)`.
fn write_labels(dir: &Path, labels: &[u32], class: impl Fn(u32) -> u32) {
    let mut csv = String::from("file,class\n");
    for (i, &l) in labels.iter().enumerate() {
        csv.push_str(&format!("{i:05}.png,{}\n", class(l)));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

#[test]
fn evaluate_images_tells_real_digits_from_noise() {
    let work = tempfile::tempdir().unwrap();
    let m = work.path();
    let real = "data/mnist/t10k-images-idx3-ubyte.gz";
    // Held-out real digits (the classifier was trained on MNIST's training split).
    let digits = m.join("digits");
    let digit_labels = write_pngs(real, 0..1000, &digits);
    // As in a folder that `sample` wrote: its grid.png is not one of the images.
    image::GrayImage::from_pixel(92, 62, image::Luma([255]))
        .save(digits.join("grid.png"))
        .unwrap();
    let noise = m.join("noise");
    std::fs::create_dir(&noise).unwrap();
    let mut state = 12345u64;
    for i in 0..200 {
        let img = image::GrayImage::from_fn(28, 28, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            image::Luma([(state >> 56) as u8])
        });
        img.save(noise.join(format!("{i}.png"))).unwrap();
    }
    let report = |synthetic: &Path, classifier: &str, real: &str| {
        let out = m.join(format!(
            "r-{}",
            synthetic.file_name().unwrap().to_string_lossy()
        ));
        let o = run(
            "evaluate",
            m,
            &[
                "--images",
                "--real",
                real,
                "--synthetic",
                synthetic.to_str().unwrap(),
                "--classifier",
                classifier,
                "-o",
                out.to_str().unwrap(),
                "-q",
            ],
        );
        ok(&o);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("images-report.json")).unwrap())
                .unwrap();
        (r, stderr(&o))
    };
    let (good, _) = report(&digits, "mnist", real);
    let (bad, _) = report(&noise, "mnist", real);
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    // The shipped classifier on the 10,000 MNIST test images.
    assert!(f(&good, "real_accuracy") >= 0.97, "{good}");
    assert_eq!(good["real_images"], 10000);
    assert_eq!(good["synthetic_images"], 1000);
    assert!(
        f(&good, "frechet_distance") < 3.0 * f(&good, "frechet_distance_real_halves").max(0.05),
        "{good}"
    );
    assert!(
        f(&bad, "frechet_distance") > 20.0 * f(&good, "frechet_distance"),
        "{bad}\n{good}"
    );
    assert!(f(&good, "mean_confidence") > 0.9, "{good}");
    // Real digits spread over all ten classes; the histogram sums to 1.
    let hist = good["class_histogram"].as_array().unwrap();
    assert_eq!(hist.len(), 10);
    let total: f64 = hist.iter().map(|c| c["synthetic"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(
        hist.iter().all(|c| c["synthetic"].as_f64().unwrap() > 0.05),
        "{good}"
    );

    // Without labels.csv there is nothing to agree with; with it, the share of images that the
    // classifier puts in the class they were asked for.
    assert!(good.get("class_agreement").is_none(), "{good}");
    write_labels(&digits, &digit_labels, |l| l);
    let (right, text) = report(&digits, "mnist", real);
    assert!(f(&right, "class_agreement") >= 0.97, "{right}");
    assert!(text.contains("class asked for"), "{text}");
    write_labels(&digits, &digit_labels, |l| (l + 1) % 10);
    let (wrong, _) = report(&digits, "mnist", real);
    assert!(f(&wrong, "class_agreement") < 0.05, "{wrong}");
    // `evaluate --images --real <real> --synthetic <synthetic> <extra>` refused: its message.
    let refused = |synthetic: &str, extra: &[&str]| {
        let mut args = vec!["--images", "--real", real, "--synthetic", synthetic];
        args.extend_from_slice(extra);
        user_error(&run("evaluate", m, &args))
    };
    write_labels(&digits, &digit_labels[..999], |l| l);
    let err = refused(digits.to_str().unwrap(), &["-q"]);
    assert!(err.contains("has no class for 00999.png"), "{err}");

    // Fashion-MNIST's classifier on its own test images.
    let clothes = m.join("clothes");
    let fashion = "data/fashion-mnist/t10k-images-idx3-ubyte.gz";
    write_pngs(fashion, 0..500, &clothes);
    let (fash, _) = report(&clothes, "fashion-mnist", fashion);
    assert!(f(&fash, "real_accuracy") >= 0.85, "{fash}");
    assert_eq!(fash["class_histogram"][9]["class"], "Ankle boot");

    // Table flags are refused with --images; a missing folder is a clear error.
    let err = refused("nowhere", &["-q"]);
    assert!(err.contains("nowhere"), "{err}");
    let err = refused(digits.to_str().unwrap(), &["--target", "x"]);
    assert!(err.contains("--target"), "{err}");
}
