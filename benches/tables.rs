//! Micro-benchmarks of the table path on Adult (median of repeated runs, std timing):
//! encoder fit, encoder transform, one TVAE training step (batch 500) on the host (as `train`
//! runs it on the CPU) and through Burn's autodiff on flex, sampling 50,000 rows;
//! then CTGAN through the library's `train` and `sample`: seconds per training step (an epoch
//! of Adult, 65 steps of 500 rows, divided by its steps) and sampling 50,000 rows to CSV.
//!
//!     cargo bench --bench tables
//!
//! Run on an otherwise idle machine. `scripts/bench-tables.sh` measures the whole commands.

mod common;

use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use synthgen::config::{DataConfig, TransformerConfig, TvaeConfig};
use synthgen::data::{DataTransformer, Schema, Table};
use synthgen::models::tvae;
use synthgen::models::tvae::host::HostTvae;
use synthgen::train::host::{Adam, HostParams};

use common::median;

fn main() {
    synthgen::cli::tune_allocator();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/adult.csv");
    let table = Table::read(&path, None).expect("bundled adult.csv");
    let data = DataConfig::new(&path);
    let schema = Schema::infer(&table, &data, Path::new("bench")).expect("schema");
    let options = TransformerConfig::default();
    let read = median(|| drop(Table::read(&path, None).unwrap()), 5);
    println!("read adult.csv            {:>10.4} s", read.as_secs_f64());
    let fit = median(
        || drop(DataTransformer::fit(&table, &schema, &options).unwrap()),
        5,
    );
    println!("encoder fit               {:>10.4} s", fit.as_secs_f64());
    let transformer = DataTransformer::fit(&table, &schema, &options).unwrap();
    let transform = median(|| drop(transformer.transform(&table, 1)), 5);
    println!(
        "encoder transform         {:>10.4} s",
        transform.as_secs_f64()
    );

    let layout = transformer.layout();
    let width = layout.width();
    let encoded = transformer.transform(&table, 1);
    let n = table.n_rows();
    let cfg = TvaeConfig::default();
    let device = Device::flex().autodiff();
    let data = Tensor::<2>::from_data(TensorData::new(encoded, [n, width]), &device);
    let mut model = tvae::init(&cfg, width, &device);

    // The host step, from the same initial weights.
    let rows: Vec<f32> = data
        .clone()
        .narrow(0, 0, 500)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let eps = vec![0.0f32; 500 * cfg.embedding_dim];
    let record = model.clone().into_record().into_bytes().unwrap().to_vec();
    let mut params = HostParams::from_record(record).unwrap();
    let host = HostTvae::new(&params, &cfg, &layout);
    let adam = Adam {
        learning_rate: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 1e-5,
    };
    let all = params.all();
    let mut twin = params.clone();
    let host_step = median(
        || {
            std::hint::black_box(host.gradients_in_halves(&mut params, &mut twin, &rows, &eps));
            params.adam_step(&adam, &all);
            host.clamp_sigma(&mut params);
            twin.copy_values_from(&params);
        },
        20,
    );
    println!(
        "TVAE train step, host     {:>10.4} s  ({:.3} s per 66-step epoch)",
        host_step.as_secs_f64(),
        host_step.as_secs_f64() * 66.0
    );

    let mut optim = synthgen::train::tvae::optimizer(&cfg);
    let parts = tvae::LossLayout::new(&layout, &device);
    let idx: Vec<i32> = (0..500).collect();
    let step = median(
        || {
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [500]), &device);
            let x = data.clone().select(0, idx);
            let eps = Tensor::<2>::zeros([500, cfg.embedding_dim], &device);
            let posterior = model.encoder.forward(x.clone());
            let recon = model.decoder.forward(posterior.sample(eps));
            let l = tvae::loss(x, recon, model.decoder.sigma.val(), &posterior, &parts, 2.0);
            let grads = GradientsParams::from_grads(l.total.backward(), &model);
            model = optim.step(1e-3, model.clone(), grads);
            let _: f32 = l.reconstruction.into_scalar();
        },
        20,
    );
    println!(
        "TVAE train step, Burn     {:>10.4} s  ({:.3} s per 66-step epoch)",
        step.as_secs_f64(),
        step.as_secs_f64() * 66.0
    );

    let plain = Device::flex();
    let model = model.valid();
    let sigma = model
        .decoder
        .sigma
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let sampler = synthgen::sample::Sampler::Tvae {
        host: Some(model.decoder.to_host(cfg.embedding_dim)),
        model,
        embedding_dim: cfg.embedding_dim,
        sigma,
    };
    let sample = median(
        || {
            let mut rng = StdRng::seed_from_u64(1);
            let rows = synthgen::sample::draw(
                &sampler,
                &layout,
                50_000,
                synthgen::sample::DEFAULT_BATCH,
                &[],
                &mut rng,
                &plain,
                |_| {},
            )
            .unwrap();
            drop(transformer.inverse(&rows, 50_000));
        },
        5,
    );
    println!("TVAE sample 50,000 rows   {:>10.4} s", sample.as_secs_f64());

    ctgan(&path);
}

/// CTGAN on Adult through the library's entry points: one epoch's seconds per step (the
/// second of two epochs, so that start-up is left out) and `sample -n 50000`.
fn ctgan(adult: &Path) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("ctgan.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\npath = {:?}\n[model]\nkind = \"ctgan\"\n[train]\nepochs = 2\nseed = 1\ndevice = \"cpu\"\n",
            adult.display().to_string()
        ),
    )
    .unwrap();
    let models = dir.path().join("models");
    synthgen::train::train(&synthgen::train::TrainOptions {
        config: Some(config),
        epochs: None,
        run_id: Some("bench".into()),
        models_dir: Some(models.clone()),
        device: None,
        seed: None,
        resume: None,
        force: false,
        quiet: true,
    })
    .expect("CTGAN trains on Adult");
    let metrics = std::fs::read_to_string(models.join("bench/metrics.csv")).unwrap();
    let last = metrics.lines().last().unwrap();
    let seconds: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
    let steps = 32_561 / 500;
    println!(
        "CTGAN train step (500 rows){:>9.4} s  ({:.3} s per {steps}-step epoch)",
        seconds / steps as f64,
        seconds
    );
    let opts = synthgen::sample::SampleOptions {
        checkpoint: "bench".into(),
        rows: 50_000,
        output: dir.path().join("synthetic.csv"),
        seed: Some(1),
        batch_size: None,
        device: None,
        models_dir: Some(models),
        conditions: Vec::new(),
        balance: None,
        quiet: true,
        steps: None,
        eta: None,
        class: None,
        guidance: None,
    };
    let sample = median(|| synthgen::sample::sample(&opts).unwrap(), 3);
    println!(
        "CTGAN sample 50,000 rows  {:>10.4} s  (to CSV)",
        sample.as_secs_f64()
    );
}
