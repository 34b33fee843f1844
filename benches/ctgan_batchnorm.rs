//! CTGAN sampled with BatchNorm in eval mode (running statistics, synthgen's way) against
//! train mode (statistics of each sampling batch, as the Python reference samples), with the
//! seconds each takes. Writes `eval.csv` and `train.csv` for `scripts/quality.py score`.
//!
//!     cargo bench --bench ctgan_batchnorm -- RUN_DIR OUT_DIR [ROWS]

use std::path::PathBuf;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use synthgen::config::{Config, ModelConfig};
use synthgen::data::sampler::CondSampler;
use synthgen::run::Manifest;
use synthgen::run::manifest::read_verified;
use synthgen::sample::{Sampler, draw};

fn main() {
    synthgen::cli::tune_allocator();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(run), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cargo bench --bench ctgan_batchnorm -- RUN_DIR OUT_DIR [ROWS]");
        return;
    };
    let rows: usize = args
        .get(2)
        .map_or(20_000, |n| n.parse().expect("ROWS is a number"));
    let run = PathBuf::from(run);
    let manifest = Manifest::load(&run).expect("a run directory");
    let config = Config::parse(
        &std::fs::read_to_string(run.join("config.toml")).unwrap(),
        &run,
    )
    .unwrap();
    let ModelConfig::Ctgan(m) = &config.model else {
        panic!("a CTGAN run")
    };
    let transformer = synthgen::train::load_transformer(&run).unwrap();
    let ckpt = manifest.checkpoint.as_ref().expect("a checkpoint");
    let weights = read_verified(&run, &ckpt.weights, &ckpt.weights_sha256).unwrap();
    let layout = transformer.layout();
    let device = burn::tensor::Device::flex();

    let eval = Sampler::load(&config, &transformer, weights.clone(), &device, &run).unwrap();
    // Train mode: weights on an autodiff device and its training flags on, as after `init`.
    let cond = CondSampler::new(&transformer);
    let ad = device.clone().autodiff();
    let model =
        synthgen::train::ctgan::load(m, layout.width(), cond.cond_dim(), weights, &ad, &run)
            .unwrap();
    let train = Sampler::Ctgan {
        model,
        config: m.clone(),
        cond,
        host: None,
    };

    for (name, sampler, dev, batch) in [
        ("eval", &eval, &device, 10_000),
        ("train", &train, &ad, 500),
    ] {
        let mut rng = StdRng::seed_from_u64(1);
        let t = Instant::now();
        let encoded = draw(sampler, &layout, rows, batch, &[], &mut rng, dev, |_| {}).unwrap();
        let table = transformer.inverse(&encoded, rows);
        let secs = t.elapsed().as_secs_f64();
        let path = PathBuf::from(out).join(format!("{name}.csv"));
        table.write(&path).unwrap();
        println!(
            "{name:5} mode, batch {batch:5}: {rows} rows in {secs:.3} s ({:.0} rows/s) -> {}",
            rows as f64 / secs,
            path.display()
        );
    }
}
