//! Sampling: load a run, generate rows in batches, keep those that satisfy the conditions,
//! decode them, write them.
//!
//! Conditions (`--condition col=value`, repeatable, AND) apply to discrete columns. CTGAN feeds
//! the first one through its conditional vector; every condition is then checked on every row
//! and rows that miss one are dropped and redrawn, so the output holds exactly what was asked.
//! `--balance col` draws equal counts of each category of `col`.

pub mod condition;
pub mod images;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::{SmallRng, StdRng};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use tracing::info;

use crate::config::{Config, CtganConfig, ModelConfig};
use crate::data::layout::Layout;
use crate::data::sampler::{CondSampler, Pick};
use crate::data::transformer::DecodedRows;
use crate::data::{DataTransformer, Table};
use crate::device::{self, DeviceChoice};
use crate::error::{Error, Result};
use crate::models::ctgan::Ctgan;
use crate::models::host::{HostNet, values};
use crate::models::noise;
use crate::models::tvae::Tvae;
use crate::run::manifest::read_verified;
use crate::run::{self, Manifest};
use crate::train::{load_transformer, progress_bar};

pub use condition::{Condition, Resolved};

/// Rows per block of a batch: a block draws its noise from generators of its own and, on the
/// host, runs from its latent rows to decoded values on one thread. (Changing it changes what
/// a seed draws.)
pub const BLOCK_ROWS: usize = 256;

/// Rows generated per batch unless `--batch-size` says otherwise. Sampling runs in eval mode,
/// so the batch size changes speed and memory, never the distribution.
pub const DEFAULT_BATCH: usize = 10_000;

/// Draws at most this many rows per requested row before giving up on conditions.
pub const MAX_DRAWS_PER_ROW: usize = 200;

/// What `sample` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    pub checkpoint: String,
    pub rows: usize,
    pub output: PathBuf,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
    pub device: Option<DeviceChoice>,
    pub models_dir: Option<PathBuf>,
    /// `col=value` pairs, all of which every row must satisfy.
    pub conditions: Vec<String>,
    /// A discrete column whose categories come in equal counts.
    pub balance: Option<String>,
    pub quiet: bool,
    /// Images: DDIM with this many steps (default: all T steps of ancestral DDPM).
    pub steps: Option<usize>,
    /// Images: DDIM's eta (default 0: deterministic).
    pub eta: Option<f64>,
    /// Images: the class to generate (name or index) of a class-conditional model.
    pub class: Option<String>,
    /// Images: classifier-free guidance weight (default 1: plain conditional sampling).
    pub guidance: Option<f64>,
}

/// Generate `rows` rows (or images) from a run and write them.
pub fn sample(opts: &SampleOptions) -> Result<()> {
    let (path, manifest) = open_run(opts)?;
    if manifest.model == "ddpm" {
        return images::sample(opts, &path, &manifest);
    }
    let image_only = [
        ("--steps", opts.steps.is_some()),
        ("--eta", opts.eta.is_some()),
        ("--class", opts.class.is_some()),
        ("--guidance", opts.guidance.is_some()),
    ];
    if let Some((flag, _)) = image_only.iter().find(|(_, given)| *given) {
        return Err(Error::Invalid {
            what: (*flag).into(),
            message: "applies to image (DDPM) runs; for tables use --condition or --balance".into(),
        });
    }
    // On a pool's thread, as training (see `train::in_pool`).
    let table = crate::train::in_pool(None, "sample", |_| generate_from(opts, &path, &manifest))?;
    let t0 = Instant::now();
    table.write(&opts.output)?;
    info!(rows = opts.rows, output = %opts.output.display(), seconds = t0.elapsed().as_secs_f64(), "written");
    Ok(())
}

/// A trained model ready to generate encoded rows. `host`: the network's forward pass on the
/// host ([`HostNet`]), used instead of `model`'s when sampling on the CPU.
pub enum Sampler {
    Tvae {
        model: Tvae,
        embedding_dim: usize,
        sigma: Vec<f32>,
        host: Option<HostNet>,
    },
    Ctgan {
        model: Ctgan,
        config: CtganConfig,
        cond: CondSampler,
        host: Option<HostNet>,
    },
}

impl Sampler {
    /// Load the model of a run onto `device`, in eval mode (no autodiff: dropout off,
    /// BatchNorm on its running statistics). On the CPU (flex) the network also gets its host
    /// forward pass.
    pub fn load(
        config: &Config,
        transformer: &DataTransformer,
        weights: Vec<u8>,
        device: &Device,
        run: &std::path::Path,
    ) -> Result<Sampler> {
        let width = transformer.layout().width();
        let on_host = *device == Device::flex();
        Ok(match &config.model {
            ModelConfig::Tvae(m) => {
                let model = crate::train::tvae::load(m, width, weights, device, run)?.valid();
                let sigma = values(model.decoder.sigma.val());
                Sampler::Tvae {
                    host: on_host.then(|| model.decoder.to_host(m.embedding_dim)),
                    model,
                    embedding_dim: m.embedding_dim,
                    sigma,
                }
            }
            ModelConfig::Ctgan(m) => {
                let cond = CondSampler::new(transformer);
                let model =
                    crate::train::ctgan::load(m, width, cond.cond_dim(), weights, device, run)?
                        .valid();
                Sampler::Ctgan {
                    host: on_host.then(|| model.generator.to_host(m.embedding_dim)),
                    model,
                    config: m.clone(),
                    cond,
                }
            }
            ModelConfig::Ddpm(_) => unreachable!("image runs are refused before loading"),
        })
    }

    /// The conditional-vector columns (CTGAN only).
    pub fn cond(&self) -> Option<&CondSampler> {
        match self {
            Sampler::Ctgan { cond, .. } => Some(cond),
            Sampler::Tvae { .. } => None,
        }
    }

    /// `b` encoded rows `[b, layout.width()]`. `fixed`: a category for CTGAN's conditional
    /// vector (otherwise drawn by the data's frequencies).
    pub fn rows(
        &self,
        layout: &Layout,
        b: usize,
        fixed: Option<Pick>,
        rng: &mut StdRng,
        device: &Device,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; b * layout.width()];
        self.blocks_into(layout, &mut out, fixed, rng, device, |_| ());
        out
    }

    /// Encoded rows as [`Sampler::rows`] draws them, into `out` (as many as it holds), and
    /// `finish` on each block of [`BLOCK_ROWS`] rows of them (the last may be shorter) while it
    /// is in cache, in parallel; its results in the blocks' order.
    pub fn blocks_into<T: Send>(
        &self,
        layout: &Layout,
        out: &mut [f32],
        fixed: Option<Pick>,
        rng: &mut StdRng,
        device: &Device,
        finish: impl Fn(&[f32]) -> T + Sync,
    ) -> Vec<T> {
        let width = layout.width();
        let b = out.len() / width;
        assert_eq!(out.len(), b * width, "out holds whole rows");
        let (emb, host) = match self {
            Sampler::Tvae {
                embedding_dim,
                host,
                ..
            } => (*embedding_dim, host),
            Sampler::Ctgan { config, host, .. } => (config.embedding_dim, host),
        };
        let blocks = b.div_ceil(BLOCK_ROWS);
        // Each block draws its latent rows, then its output noise, from generators of its
        // own: the rows depend on the seed only, not on threads or on where the network runs.
        let z_seeds = noise::seeds(blocks, rng);
        let cond = match self {
            Sampler::Ctgan { cond, .. } if cond.cond_dim() > 0 => {
                let picks: Vec<Pick> = match fixed {
                    Some(p) => vec![p; b],
                    None => cond.sample_original(b, rng),
                };
                Some(cond.indices(&picks))
            }
            _ => None,
        };
        let out_seeds = noise::seeds(blocks, rng);
        let scalars = layout.scalar_positions();
        let spans = layout.softmax_spans();
        // The output's activations and noise, on one block.
        let activate = |block: &mut [f32], seed: u64| {
            match self {
                // The decoder's likelihood: each tanh value is N(tanh x^, sigma) (reference
                // TVAE). Softmax spans are decoded by argmax, which tanh would not change:
                // tanh is applied to the scalar positions only.
                Sampler::Tvae { sigma, .. } => {
                    let normals = &mut noise::Normals::new(seed);
                    noise::tanh_gaussians(block, width, &scalars, sigma, normals);
                }
                // tanh on scalars, at their positions only. Each softmax span becomes the
                // one-hot vector of a category drawn from its softmax: that is the
                // distribution of the argmax of the reference's Gumbel-softmax (Gumbel-max).
                Sampler::Ctgan { .. } => {
                    for row in block.chunks_exact_mut(width) {
                        for &c in &scalars {
                            row[c] = row[c].tanh();
                        }
                    }
                    noise::one_hot_draws(block, width, &spans, &mut SmallRng::seed_from_u64(seed));
                }
            }
        };
        match host {
            // Each block from its latent rows to `finish` on one thread, in cache.
            Some(net) => out
                .par_chunks_mut(BLOCK_ROWS * width)
                .enumerate()
                .map(|(i, block)| {
                    let r0 = i * BLOCK_ROWS;
                    let n = block.len() / width;
                    let normals = &mut noise::Normals::new(z_seeds[i]);
                    let cond = cond.as_deref().map(|c| &c[r0..r0 + n]);
                    net.forward_block(block, cond, |z| normals.fill(z));
                    activate(block, out_seeds[i]);
                    finish(block)
                })
                .collect(),
            None => {
                let mut z = vec![0.0f32; b * emb];
                // Row by row, as on the host: a row's length decides which draws it takes.
                noise::seeded_chunks(&mut z, BLOCK_ROWS * emb, &z_seeds, |z, seed| {
                    let normals = &mut noise::Normals::new(seed);
                    z.chunks_exact_mut(emb).for_each(|row| normals.fill(row));
                });
                let z = Tensor::<2>::from_data(TensorData::new(z, [b, emb]), device);
                let y = match self {
                    Sampler::Tvae { model, .. } => model.decoder.forward(z),
                    Sampler::Ctgan { model, .. } => {
                        let cond = cond
                            .map(|c| Tensor::<1, Int>::from_data(TensorData::new(c, [b]), device));
                        model.generator.forward(z, cond.as_ref())
                    }
                };
                out.copy_from_slice(&values(y));
                out.par_chunks_mut(BLOCK_ROWS * width)
                    .zip(&out_seeds)
                    .map(|(block, &seed)| {
                        activate(block, seed);
                        finish(block)
                    })
                    .collect()
            }
        }
    }
}

/// Draw `n` encoded rows satisfying every condition (at least one), in batches of `batch`.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    sampler: &Sampler,
    layout: &Layout,
    n: usize,
    batch: usize,
    conditions: &[Resolved],
    rng: &mut StdRng,
    device: &Device,
    mut on_rows: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let width = layout.width();
    let fixed = conditions.iter().find_map(|c| c.pick);
    let mut out = Vec::with_capacity(n * width);
    let mut kept = 0;
    let mut drawn = 0usize;
    let limit = n.saturating_mul(MAX_DRAWS_PER_ROW).max(100_000);
    while kept < n {
        if drawn >= limit {
            return Err(Error::Condition {
                message: format!(
                    "only {kept} of {n} rows satisfied the conditions after {drawn} draws (acceptance rate {:.4} %)",
                    100.0 * kept as f64 / drawn as f64
                ),
                hint: "ask for fewer rows or fewer conditions, or train longer so that the model produces the combination".into(),
            });
        }
        let block = sampler.rows(layout, batch, fixed, rng, device);
        let before = kept;
        for row in block.chunks_exact(width) {
            if kept == n {
                break;
            }
            drawn += 1;
            if conditions.iter().all(|c| c.holds(row)) {
                out.extend_from_slice(row);
                kept += 1;
            }
        }
        on_rows(kept - before);
    }
    info!(
        kept,
        drawn,
        acceptance = kept as f64 / drawn as f64,
        "conditions applied"
    );
    Ok(out)
}

/// `--seed`, or one drawn and logged (below 2^53, exact in JSON numbers).
fn seed_or_draw(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        let s = rand::rng().random::<u64>() >> 11;
        info!(seed = s, "no --seed given: drew one");
        s
    })
}

/// Check the counts of a [`SampleOptions`] (before the run is looked up), then find its run.
fn open_run(opts: &SampleOptions) -> Result<(PathBuf, Manifest)> {
    if opts.rows == 0 {
        return Err(Error::Invalid {
            what: "-n".into(),
            message: "the number to sample must be at least 1".into(),
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
    Ok((path, manifest))
}

/// Generate the rows a [`SampleOptions`] asks for, as a table.
pub fn generate(opts: &SampleOptions) -> Result<Table> {
    let (path, manifest) = open_run(opts)?;
    generate_from(opts, &path, &manifest)
}

/// [`generate`] from a run already found.
fn generate_from(opts: &SampleOptions, path: &Path, manifest: &Manifest) -> Result<Table> {
    if manifest.model == "ddpm" {
        return Err(Error::Invalid {
            what: "--checkpoint".into(),
            message: format!(
                "'{}' is an image model; it samples images, not rows",
                path.display()
            ),
        });
    }
    let config = run::read_config(path)?;
    let transformer = load_transformer(path)?;
    let conditions: Vec<Condition> = opts
        .conditions
        .iter()
        .map(|c| Condition::parse(c))
        .collect::<Result<_>>()?;
    let cond_sampler = match &config.model {
        ModelConfig::Ctgan(_) => Some(CondSampler::new(&transformer)),
        ModelConfig::Tvae(_) | ModelConfig::Ddpm(_) => None,
    };
    let resolved: Vec<Resolved> = conditions
        .iter()
        .map(|c| c.resolve(&transformer, cond_sampler.as_ref()))
        .collect::<Result<_>>()?;
    let balance = opts
        .balance
        .as_ref()
        .map(|col| condition::balance_conditions(col, &transformer, cond_sampler.as_ref()))
        .transpose()?;
    let checkpoint = manifest.checkpoint(path)?;
    let weights = read_verified(path, &checkpoint.weights, &checkpoint.weights_sha256)?;
    let seed = seed_or_draw(opts.seed);
    let selected = device::select(opts.device.unwrap_or(config.train.device))?;
    let batch = opts.batch_size.unwrap_or(DEFAULT_BATCH);
    let layout = transformer.layout();
    let t0 = Instant::now();
    let sampler = Sampler::load(&config, &transformer, weights, &selected.device, path)?;
    let pb = progress_bar(opts.rows as u64, "{pos}/{len} rows", opts.quiet);
    let mut rng = StdRng::seed_from_u64(seed);
    let width = layout.width();
    let table = match balance {
        None if resolved.is_empty() => {
            // Every row is kept: each batch is drawn into one buffer and decoded while it is
            // in cache.
            let mut block = vec![0.0f32; batch.min(opts.rows) * width];
            let mut decoded = DecodedRows::default();
            for start in (0..opts.rows).step_by(batch) {
                let rows = &mut block[..batch.min(opts.rows - start) * width];
                decoded.extend(sampler.blocks_into(
                    &layout,
                    rows,
                    None,
                    &mut rng,
                    &selected.device,
                    |block| transformer.decode_part(block),
                ));
                pb.inc((rows.len() / width) as u64);
            }
            transformer.table(&decoded)
        }
        None => {
            let out = draw(
                &sampler,
                &layout,
                opts.rows,
                batch,
                &resolved,
                &mut rng,
                &selected.device,
                |k| pb.inc(k as u64),
            )?;
            transformer.inverse(&out, opts.rows)
        }
        Some(groups) => {
            // Equal counts per category; the first rows % k categories get one more.
            let k = groups.len();
            let mut all = Vec::with_capacity(opts.rows * width);
            for (i, group) in groups.into_iter().enumerate() {
                let n = opts.rows / k + usize::from(i < opts.rows % k);
                if n == 0 {
                    continue;
                }
                let mut conds = resolved.clone();
                conds.insert(0, group);
                all.extend(draw(
                    &sampler,
                    &layout,
                    n,
                    batch,
                    &conds,
                    &mut rng,
                    &selected.device,
                    |k| pb.inc(k as u64),
                )?);
            }
            // Interleave the groups.
            let mut order: Vec<usize> = (0..opts.rows).collect();
            order.shuffle(&mut rng);
            let out: Vec<f32> = order
                .iter()
                .flat_map(|&r| all[r * width..(r + 1) * width].iter().copied())
                .collect();
            transformer.inverse(&out, opts.rows)
        }
    };
    pb.finish_and_clear();
    // The time to a table, as the reference's `sample` (writing it out is not counted).
    info!(rows = opts.rows, seconds = t0.elapsed().as_secs_f64(), run = %path.display(), "sampled");
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TvaeConfig;
    use crate::data::layout::Activation;

    /// A sampler of `kind` with fresh weights for credit-g, loaded on flex, and its transformer.
    fn fresh_sampler(kind: &str) -> (Sampler, DataTransformer) {
        let path = crate::data::io::bundled("credit-g.csv");
        let table = Table::read(&path, None).unwrap();
        let d = Device::flex();
        let text = format!("[data]\npath = {path:?}\n[model]\nkind = \"{kind}\"\n");
        let config = Config::parse(&text, Path::new("c.toml")).unwrap();
        let schema =
            crate::data::schema::Schema::infer(&table, &config.data, Path::new("c.toml")).unwrap();
        let transformer = DataTransformer::fit(&table, &schema, &config.transformer).unwrap();
        let width = transformer.layout().width();
        let weights = match &config.model {
            ModelConfig::Tvae(m) => crate::models::tvae::init(m, width, &d)
                .into_record()
                .into_bytes(),
            ModelConfig::Ctgan(m) => {
                let cond_dim = CondSampler::new(&transformer).cond_dim();
                crate::models::ctgan::init(m, width, cond_dim, &d).to_bytes()
            }
            ModelConfig::Ddpm(_) => unreachable!("a table model"),
        }
        .unwrap()
        .to_vec();
        let sampler = Sampler::load(&config, &transformer, weights, &d, Path::new("r")).unwrap();
        (sampler, transformer)
    }

    #[test]
    fn load_gives_both_models_their_host_pass_on_the_cpu() {
        for kind in ["tvae", "ctgan"] {
            let host = match fresh_sampler(kind).0 {
                Sampler::Tvae { host, .. } | Sampler::Ctgan { host, .. } => host.is_some(),
            };
            assert!(host, "{kind} samples through the host pass on flex");
        }
    }

    #[test]
    fn blocks_decoded_as_drawn_equal_rows_decoded_afterwards() {
        let d = Device::flex();
        // Three blocks, the last one short.
        let rows = 2 * BLOCK_ROWS + 77;
        for kind in ["tvae", "ctgan"] {
            let (sampler, transformer) = fresh_sampler(kind);
            let layout = transformer.layout();
            let width = layout.width();
            let drawn = sampler.rows(&layout, rows, None, &mut StdRng::seed_from_u64(9), &d);
            let mut again = vec![0.0f32; rows * width];
            let mut decoded = DecodedRows::default();
            decoded.extend(sampler.blocks_into(
                &layout,
                &mut again,
                None,
                &mut StdRng::seed_from_u64(9),
                &d,
                |block| transformer.decode_part(block),
            ));
            assert_eq!(again, drawn, "{kind}: the same rows");
            let table = transformer.table(&decoded);
            assert_eq!(table.n_rows(), rows);
            assert_eq!(table, transformer.inverse(&drawn, rows), "{kind}");
        }
    }

    #[test]
    fn ctgan_rows_on_the_host_equal_rows_through_burn() {
        let d = Device::flex();
        let (sampler, transformer) = fresh_sampler("ctgan");
        let Sampler::Ctgan {
            model,
            config,
            cond,
            host,
        } = sampler
        else {
            unreachable!("a CTGAN sampler")
        };
        assert!(host.is_some());
        let burn = Sampler::Ctgan {
            model: model.clone(),
            config: config.clone(),
            cond: cond.clone(),
            host: None,
        };
        let on_host = Sampler::Ctgan {
            model,
            config,
            cond,
            host,
        };
        let layout = transformer.layout();
        let rows = |s: &Sampler| s.rows(&layout, 300, None, &mut StdRng::seed_from_u64(4), &d);
        let (h, b) = (rows(&on_host), rows(&burn));
        assert_eq!(h.len(), 300 * layout.width());
        // The same one-hot draws and the same tanh values.
        for (x, y) in h.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // Both kinds of output are there: one-hot cells and tanh values.
        assert!(h.contains(&1.0) && h.iter().any(|&x| x != 0.0 && x != 1.0));
    }

    #[test]
    fn tvae_rows_on_the_host_equal_rows_through_burn() {
        let d = Device::flex();
        // One tanh column with two modes, one discrete column of three categories.
        let layout = Layout::new([
            (Activation::Tanh, 1, 0),
            (Activation::Softmax, 2, 0),
            (Activation::Softmax, 3, 1),
        ]);
        let config = TvaeConfig::default();
        let model = crate::models::tvae::init(&config, layout.width(), &d);
        let sampler = |host: bool| Sampler::Tvae {
            host: host.then(|| model.decoder.to_host(config.embedding_dim)),
            model: model.clone(),
            embedding_dim: config.embedding_dim,
            sigma: vec![0.1; layout.width()],
        };
        let rows = |s: &Sampler| s.rows(&layout, 300, None, &mut StdRng::seed_from_u64(3), &d);
        let (host, burn) = (rows(&sampler(true)), rows(&sampler(false)));
        assert_eq!(host.len(), 300 * layout.width());
        for (h, b) in host.iter().zip(&burn) {
            assert!((h - b).abs() < 1e-5 * (1.0 + b.abs()), "{h} vs {b}");
        }
    }
}
