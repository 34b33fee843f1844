//! Sampling: load a run, generate rows in batches, decode them, write them.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};
use tracing::info;

use crate::config::{Config, ModelConfig};
use crate::data::Table;
use crate::data::layout::Layout;
use crate::device::{self, DeviceChoice};
use crate::error::{Error, Result};
use crate::models::tvae::Tvae;
use crate::run::manifest::read_verified;
use crate::run::{self, Manifest};
use crate::train::load_transformer;

/// Rows generated per batch unless `--batch-size` says otherwise. Sampling runs in eval mode,
/// so the batch size changes speed and memory, never the distribution.
pub const DEFAULT_BATCH: usize = 10_000;

/// What `sample` was asked to do.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub checkpoint: String,
    pub rows: usize,
    pub output: PathBuf,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
    pub device: Option<DeviceChoice>,
    pub models_dir: Option<PathBuf>,
    pub quiet: bool,
}

/// Generate `rows` rows from a run and write them.
pub fn sample(opts: &SampleOptions) -> Result<()> {
    let table = generate(opts)?;
    let t0 = Instant::now();
    table.write(&opts.output)?;
    info!(rows = opts.rows, output = %opts.output.display(), seconds = t0.elapsed().as_secs_f64(), "written");
    Ok(())
}

/// Generate `rows` rows from a run as a table.
pub fn generate(opts: &SampleOptions) -> Result<Table> {
    if opts.rows == 0 {
        return Err(Error::Invalid {
            what: "-n".into(),
            message: "the number of rows must be at least 1".into(),
        });
    }
    if opts.batch_size == Some(0) {
        return Err(Error::Invalid {
            what: "--batch-size".into(),
            message: "must be at least 1".into(),
        });
    }
    let models_dir = run::models_dir(opts.models_dir.as_deref());
    let path = run::resolve(&opts.checkpoint, &models_dir)?;
    let manifest = Manifest::load(&path)?;
    let config_file = path.join(run::CONFIG);
    let text = std::fs::read_to_string(&config_file).map_err(|source| Error::Io {
        path: config_file.clone(),
        source,
    })?;
    let config = Config::parse(&text, &config_file)?;
    let transformer = load_transformer(&path)?;
    let checkpoint = manifest.checkpoint(&path)?;
    let weights = read_verified(&path, &checkpoint.weights, &checkpoint.weights_sha256)?;
    let seed = opts.seed.unwrap_or_else(|| {
        let s = rand::rng().random::<u64>() >> 11;
        info!(seed = s, "no --seed given: drew one");
        s
    });
    let selected = device::select(opts.device.unwrap_or(config.train.device))?;
    let batch = opts.batch_size.unwrap_or(DEFAULT_BATCH);
    let layout = transformer.layout();
    let width = layout.width();
    let t0 = Instant::now();
    let pb = ProgressBar::with_draw_target(Some(opts.rows as u64), ProgressDrawTarget::stderr());
    if opts.quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} rows")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let out: Vec<f32>;
    match &config.model {
        ModelConfig::Tvae(m) => {
            // Sampling runs without autodiff, so the model is in eval mode.
            let model =
                crate::train::tvae::load(m, width, weights, &selected.device, &path)?.valid();
            out = tvae_rows(
                &model,
                &layout,
                m.embedding_dim,
                opts.rows,
                batch,
                &mut rng,
                &selected.device,
                |b| pb.inc(b as u64),
            );
        }
    }
    pb.finish_and_clear();
    info!(rows = opts.rows, seconds = t0.elapsed().as_secs_f64(), run = %path.display(), "sampled");
    Ok(transformer.inverse(&out, opts.rows))
}

/// Generate `rows` encoded rows `[rows, layout.width()]` from a TVAE in batches of `batch`:
/// z ~ N(0, I), decode, tanh, then each tanh value drawn from N(tanh x^, sigma) as in the
/// reference TVAE. `on_batch` is told each batch's size (for progress).
#[allow(clippy::too_many_arguments)]
pub fn tvae_rows(
    model: &Tvae,
    layout: &Layout,
    embedding_dim: usize,
    rows: usize,
    batch: usize,
    rng: &mut StdRng,
    device: &Device,
    mut on_batch: impl FnMut(usize),
) -> Vec<f32> {
    let width = layout.width();
    let sigma: Vec<f32> = model
        .decoder
        .sigma
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 sigma");
    let scalars: Vec<usize> = layout.scalars().map(|s| s.start).collect();
    let mut out = Vec::with_capacity(rows * width);
    let mut left = rows;
    while left > 0 {
        let b = left.min(batch);
        let z: Vec<f32> = (0..b * embedding_dim)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        let z = Tensor::<2>::from_data(TensorData::new(z, [b, embedding_dim]), device);
        // Softmax spans are decoded by argmax, which tanh would not change: tanh is applied
        // on the host to the scalar positions only.
        let mut block: Vec<f32> = model
            .decoder
            .forward(z)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 output");
        for r in 0..b {
            for &c in &scalars {
                let mean = block[r * width + c].tanh();
                let noise = Normal::new(mean, sigma[c]).expect("sigma is clamped positive");
                block[r * width + c] = noise.sample(rng);
            }
        }
        out.extend_from_slice(&block);
        left -= b;
        on_batch(b);
    }
    out
}
