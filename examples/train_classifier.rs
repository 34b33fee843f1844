//! Train the classifier that `evaluate --images` ships (see scripts/train-classifiers.sh):
//!
//! ```text
//! cargo run --release --example train_classifier -- DATA_DIR OUT.bpk [EPOCHS]
//! ```
//!
//! DATA_DIR holds the IDX files `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
//! `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (MNIST or Fashion-MNIST). It
//! trains on the 60,000 training images and prints the accuracy on the 10,000 test images.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use synthgen::data::images::{ImageSet, ImageSpec};
use synthgen::eval::images::train_classifier;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: train_classifier DATA_DIR OUT.bpk [EPOCHS]");
        return ExitCode::from(1);
    }
    let dir = PathBuf::from(&args[0]);
    let out = PathBuf::from(&args[1]);
    let epochs: usize = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(3);
    let load = |name: &str| ImageSet::load(&ImageSpec::new(dir.join(name)));
    let (train, test) = match (
        load("train-images-idx3-ubyte.gz"),
        load("t10k-images-idx3-ubyte.gz"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let t0 = Instant::now();
    let (model, accuracy) = train_classifier(&train, &test, epochs, 42, &Device::flex());
    eprintln!(
        "trained on {} images for {epochs} epochs in {:.1} s; test accuracy {accuracy:.4} on {} images",
        train.len(),
        t0.elapsed().as_secs_f64(),
        test.len()
    );
    let bytes = model
        .into_record()
        .into_bytes()
        .expect("a record serializes");
    if let Err(e) = std::fs::write(&out, &bytes[..]) {
        eprintln!("error: cannot write '{}': {e}", out.display());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
