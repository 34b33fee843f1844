//! The CTGAN loop (Xu et al. 2019, algorithm 1): `discriminator_steps` critic updates with
//! WGAN-GP, then one generator update with the conditioning loss; rows / batch steps per epoch.

use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::config::{CtganConfig, TrainConfig};
use crate::data::sampler::{CondSampler, Pick};
use crate::data::transformer::mix_seed;
use crate::error::Result;
use crate::models::ctgan::host::{Entries, HostCtgan};
use crate::models::ctgan::{self, Critic, Ctgan, SparseCond};
use crate::models::noise;
use crate::models::spans::Segments;
use crate::train::host::{self, Adam};
use crate::train::{Prepared, ResumeState, Session};

/// Columns of metrics.csv besides epoch and seconds.
pub const LOSSES: &[&str] = &["generator", "critic", "penalty"];

const INIT_STREAM: u64 = 0xc7a1;
const EPOCH_STREAM: u64 = 0x9a7e;

/// Adam(betas, epsilon, weight decay) shared by generator and critic: each step passes only
/// one network's gradients, and Adam's state is kept per parameter.
pub fn optimizer(m: &CtganConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(m.beta_1 as f32)
        .with_beta_2(m.beta_2 as f32)
        .with_epsilon(m.epsilon as f32)
        .with_weight_decay(Some(WeightDecayConfig::new(m.weight_decay as f32)))
        .init()
}

/// Load a CTGAN's weights from burnpack bytes onto `device`.
pub fn load(
    m: &CtganConfig,
    width: usize,
    cond_dim: usize,
    bytes: Vec<u8>,
    device: &Device,
    run: &std::path::Path,
) -> Result<Ctgan> {
    super::load_weights(ctgan::uninitialized(m, width, cond_dim, device), bytes, run)
}

/// A critic step's real rows and, with discrete columns, the conditional positions of the
/// fake rows and of the real rows (the fake rows' conditions, shuffled; each real row is drawn
/// to match its condition).
#[allow(clippy::type_complexity)]
fn critic_draws(
    sampler: &CondSampler,
    batch: usize,
    rng: &mut StdRng,
) -> (Vec<i32>, Option<(Vec<i32>, Vec<i32>)>) {
    if sampler.cond_dim() == 0 {
        return (sampler.uniform_rows(batch, rng), None);
    }
    let picks = sampler.sample_train(batch, rng);
    let mut perm: Vec<usize> = (0..batch).collect();
    perm.shuffle(rng);
    let real_picks: Vec<Pick> = perm.iter().map(|&i| picks[i]).collect();
    let real_idx = sampler.real_rows(&real_picks, rng);
    (
        real_idx,
        Some((sampler.indices(&picks), sampler.indices(&real_picks))),
    )
}

/// The conditional entries of the real, fake and interpolated rows of a critic pass, two per
/// row ([batch * 3, 2] index and weight): a real or fake row has its own with weight 1 (and
/// again with weight 0); an interpolated row has the real row's with weight alpha and the fake
/// row's with 1 - alpha.
fn stacked_entries(real_at: &[i32], fake_at: &[i32], alpha: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let n = real_at.len();
    let mut index = Vec::with_capacity(3 * n * 2);
    let mut weight = Vec::with_capacity(3 * n * 2);
    for &r in real_at {
        index.extend([r, r]);
        weight.extend([1.0, 0.0]);
    }
    for &f in fake_at {
        index.extend([f, f]);
        weight.extend([1.0, 0.0]);
    }
    for ((&r, &f), &a) in real_at.iter().zip(fake_at).zip(alpha) {
        index.extend([r, f]);
        weight.extend([a, 1.0 - a]);
    }
    (index, weight)
}

/// Host-side randomness for one batch, turned into tensors.
struct Batch<'a> {
    device: &'a Device,
    rng: &'a mut StdRng,
}

impl Batch<'_> {
    fn tensor(&self, data: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }

    fn index(&self, data: Vec<i32>) -> Tensor<1, Int> {
        let n = data.len();
        Tensor::from_data(TensorData::new(data, [n]), self.device)
    }

    fn gumbel(&mut self, rows: usize, cols: usize) -> Tensor<2> {
        let v = noise::gumbels(rows * cols, self.rng);
        self.tensor(v, [rows, cols])
    }

    /// One dropout mask per hidden layer, [groups, width] (see [`noise::dropout_mask`]).
    fn dropout(&mut self, critic: &Critic, groups: usize, p: f64) -> Vec<Tensor<2>> {
        critic
            .hidden_dims()
            .into_iter()
            .map(|h| {
                let v = noise::dropout_mask(groups * h, p, self.rng);
                self.tensor(v, [groups, h])
            })
            .collect()
    }
}

/// Train on `device`: on the CPU (flex) through [`ctgan::host`], elsewhere through Burn's
/// autodiff. Both draw the same noise and write the same checkpoints.
pub fn fit(
    m: &CtganConfig,
    train: &TrainConfig,
    prepared: &Prepared,
    device: &Device,
    session: &mut Session,
    resume: Option<ResumeState>,
) -> Result<()> {
    if *device == Device::flex() {
        return fit_host(m, train, prepared, device, session, resume);
    }
    let seed = train.seed.expect("resolved seed");
    let layout = prepared.transformer.layout();
    let width = layout.width();
    let n = prepared.rows;
    let device = device.clone().autodiff();
    device.seed(mix_seed(seed, INIT_STREAM));
    let sampler = CondSampler::new(&prepared.transformer).with_rows(&prepared.encoded, n, width);
    let cond_dim = sampler.cond_dim();
    let spans = sampler.spans();
    // The activations' and the conditioning loss's spans, as tensors built once.
    let softmax = Segments::softmaxes(&layout, &device);
    let conditioning = ctgan::Conditioning::new(width, cond_dim, &spans, &device);

    let (mut model, mut optim, start) = match resume {
        Some(state) => {
            let run = session.run.path.clone();
            let model = load(m, width, cond_dim, state.weights, &device, &run)?;
            let optim = super::load_optimizer(optimizer(m), state.optimizer, &run)?;
            (model, optim, state.epoch)
        }
        None => (ctgan::init(m, width, cond_dim, &device), optimizer(m), 0),
    };

    let batch = train.batch_size;
    let pac = m.pac;
    let groups = batch / pac;
    let steps = (n / batch).max(1);
    let emb = m.embedding_dim;

    for epoch in start + 1..=train.epochs {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, EPOCH_STREAM + epoch as u64));
        let mut host = Batch {
            device: &device,
            rng: &mut rng,
        };
        let mut sums: Option<Tensor<1>> = None;
        for _ in 0..steps {
            let mut critic_losses: Option<Tensor<1>> = None;
            for _ in 0..m.discriminator_steps {
                let z = noise::standard_normals(batch * emb, host.rng);
                let z = host.tensor(z, [batch, emb]);
                // Conditional vectors go to the generator and the critic as the positions of
                // their 1s (real rows get the fake rows' conditions, shuffled).
                let (real_idx, cond) = critic_draws(&sampler, batch, host.rng);
                let real = host.tensor(
                    prepared.gather(real_idx.iter().map(|&i| i as usize)),
                    [batch, width],
                );
                let gumbel = host.gumbel(batch, width);
                // The generator is a constant here: a copy without gradients records no graph
                // (its batch norm still trains and updates the shared running statistics).
                let generator = model.generator.clone().no_grad();
                let fake_cond = cond.as_ref().map(|(fake, _)| host.index(fake.clone()));
                let raw = generator.forward(z, fake_cond.as_ref());
                let fake = ctgan::activate(raw, &softmax, gumbel, m.gumbel_tau);
                // One interpolation weight per pac group.
                let alpha: Vec<f32> = (0..groups)
                    .flat_map(|_| std::iter::repeat_n(host.rng.random::<f32>(), pac))
                    .collect();
                // Real, fake and interpolated rows in one critic pass (one matrix product per
                // layer instead of three), each part with its own dropout masks. Two conditional
                // entries per row: a real or fake row has its own with weight 1 (and again with
                // weight 0); an interpolated row has the real row's with weight alpha and the
                // fake row's with 1 - alpha.
                let stacked_cond = cond.map(|(fake_at, real_at)| {
                    let (index, weight) = stacked_entries(&real_at, &fake_at, &alpha);
                    SparseCond {
                        index: Tensor::from_data(TensorData::new(index, [3 * batch, 2]), &device),
                        weight: Some(host.tensor(weight, [3 * batch, 2])),
                    }
                });
                let alpha = host.tensor(alpha, [batch, 1]);
                let mixed =
                    real.clone() * alpha.clone() + fake.clone() * alpha.neg().add_scalar(1.0);
                let masks = host.dropout(&model.critic, 3 * groups, m.dropout);
                let pass = model.critic.forward(
                    Tensor::cat(vec![real, fake, mixed], 0),
                    stacked_cond.as_ref(),
                    &masks,
                );
                let y_real = pass.score.clone().narrow(0, 0, groups).mean();
                let y_fake = pass.score.clone().narrow(0, groups, groups).mean();
                let mixed_pass = pass.rows(2 * groups, groups);
                let masks_mix: Vec<Tensor<2>> = masks
                    .into_iter()
                    .map(|mask| mask.narrow(0, 2 * groups, groups))
                    .collect();
                let penalty =
                    model
                        .critic
                        .gradient_penalty(&mixed_pass, &masks_mix, m.gradient_penalty);
                let loss_d = y_fake - y_real + penalty.clone();
                let figures = Tensor::cat(vec![loss_d.clone().detach(), penalty.detach()], 0);
                critic_losses = Some(match critic_losses {
                    Some(s) => s + figures,
                    None => figures,
                });
                let grads = GradientsParams::from_grads(loss_d.backward(), &model.critic);
                model = optim.step(m.discriminator_lr, model, grads);
            }

            let z = noise::standard_normals(batch * emb, host.rng);
            let z = host.tensor(z, [batch, emb]);
            let (raw, cond_parts) = if cond_dim > 0 {
                let picks = sampler.sample_train(batch, host.rng);
                let (c1, mask) = sampler.encode(&picks);
                let idx = host.index(sampler.indices(&picks));
                let raw = model.generator.forward(z, Some(&idx));
                let c1 = host.tensor(c1, [batch, cond_dim]);
                let mask = host.tensor(mask, [batch, spans.len()]);
                (raw, Some((c1, mask, idx)))
            } else {
                (model.generator.forward(z, None), None)
            };
            let gumbel = host.gumbel(batch, width);
            let fake = ctgan::activate(raw.clone(), &softmax, gumbel, m.gumbel_tau);
            let masks = host.dropout(&model.critic, groups, m.dropout);
            // Only the generator's gradients are wanted: the critic's weights are constants
            // here, which spares the products of their gradients.
            let critic = model.critic.clone().no_grad();
            let (y_fake, cond_loss) = match cond_parts {
                Some((c1, mask, idx)) => {
                    let cond = SparseCond {
                        index: idx.reshape([batch, 1]),
                        weight: None,
                    };
                    (
                        critic.forward(fake, Some(&cond), &masks).score.mean(),
                        Some(ctgan::condition_loss(raw, c1, mask, &conditioning)),
                    )
                }
                None => (critic.forward(fake, None, &masks).score.mean(), None),
            };
            let loss_g = match cond_loss {
                Some(c) => y_fake.neg() + c,
                None => y_fake.neg(),
            };
            let critic_mean = critic_losses
                .expect("at least one critic step")
                .div_scalar(m.discriminator_steps as f64);
            let figures = Tensor::cat(vec![loss_g.clone().detach(), critic_mean], 0);
            sums = Some(match sums {
                Some(s) => s + figures,
                None => figures,
            });
            let grads = GradientsParams::from_grads(loss_g.backward(), &model.generator);
            model = optim.step(m.generator_lr, model, grads);
        }
        let sums: Vec<f32> = sums
            .expect("an epoch has at least one step")
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 losses");
        let losses: Vec<f64> = sums.iter().map(|&v| f64::from(v) / steps as f64).collect();
        session.check_finite(epoch, LOSSES, &losses)?;
        session.epoch_done(epoch, &losses, t0.elapsed().as_secs_f64())?;
        session.checkpoint_if_due(epoch, train, || {
            super::burn_records(model.to_bytes(), &optim)
        })?;
    }
    Ok(())
}

/// The host optimizer of the reference CTGAN at learning rate `lr` (as [`optimizer`]).
fn host_adam(m: &CtganConfig, lr: f64) -> Adam {
    Adam {
        learning_rate: lr as f32,
        beta_1: m.beta_1 as f32,
        beta_2: m.beta_2 as f32,
        epsilon: m.epsilon as f32,
        weight_decay: m.weight_decay as f32,
    }
}

/// [`fit`] on the host: the same draws in the same order, losses and checkpoints, with the
/// steps of [`ctgan::host`] and Adam on host memory.
fn fit_host(
    m: &CtganConfig,
    train: &TrainConfig,
    prepared: &Prepared,
    device: &Device,
    session: &mut Session,
    resume: Option<ResumeState>,
) -> Result<()> {
    let seed = train.seed.expect("resolved seed");
    let layout = prepared.transformer.layout();
    let width = layout.width();
    let n = prepared.rows;
    let sampler = CondSampler::new(&prepared.transformer).with_rows(&prepared.encoded, n, width);
    let cond_dim = sampler.cond_dim();
    let run = session.run.path.clone();
    // Weights start as Burn initializes them (the same draws as Burn's path).
    let ad = device.clone().autodiff();
    ad.seed(mix_seed(seed, INIT_STREAM));
    let (mut params, start) = host::start(
        &run,
        resume,
        |weights| load(m, width, cond_dim, weights, device, &run).map(drop),
        || ctgan::init(m, width, cond_dim, &ad).to_bytes(),
    )?;
    let mut net = HostCtgan::new(&params, m, &layout, sampler.spans());
    let critic_adam = host_adam(m, m.discriminator_lr);
    let generator_adam = host_adam(m, m.generator_lr);
    let critic_params = net.critic_params().to_vec();
    let generator_params = net.generator_params().to_vec();
    let hidden = m.discriminator_dims.clone();
    let dropout = |groups: usize, rng: &mut StdRng| -> Vec<Vec<f32>> {
        hidden
            .iter()
            .map(|&h| noise::dropout_mask(groups * h, m.dropout, rng))
            .collect()
    };

    let batch = train.batch_size;
    let pac = m.pac;
    let groups = batch / pac;
    let steps = (n / batch).max(1);
    let emb = m.embedding_dim;
    for epoch in start + 1..=train.epochs {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, EPOCH_STREAM + epoch as u64));
        let rng = &mut rng;
        let mut sums = [0.0f64; 3];
        for _ in 0..steps {
            let mut critic_sums = [0.0f64; 2];
            for _ in 0..m.discriminator_steps {
                let z = noise::standard_normals(batch * emb, rng);
                let (real_idx, cond) = critic_draws(&sampler, batch, rng);
                let real = prepared.gather(real_idx.iter().map(|&i| i as usize));
                let gumbel = noise::gumbels(batch * width, rng);
                let fake_at = cond.as_ref().map(|(fake, _)| fake.as_slice());
                let fake = net.fake_rows(&mut params, &z, fake_at, &gumbel);
                let alpha: Vec<f32> = (0..groups)
                    .flat_map(|_| std::iter::repeat_n(rng.random::<f32>(), pac))
                    .collect();
                // Real, fake and interpolated rows in one pass, with two conditional entries
                // per row as on Burn's path (weight 0 entries are skipped).
                let mut x = Vec::with_capacity(3 * batch * width);
                x.extend_from_slice(&real);
                x.extend_from_slice(&fake);
                for (r, (a, b)) in real
                    .chunks_exact(width)
                    .zip(fake.chunks_exact(width))
                    .enumerate()
                {
                    let t = alpha[r];
                    x.extend(a.iter().zip(b).map(|(u, v)| u * t + v * (1.0 - t)));
                }
                let entries =
                    cond.map(|(fake_at, real_at)| stacked_entries(&real_at, &fake_at, &alpha));
                let masks = dropout(3 * groups, rng);
                let l = net.critic_gradients(
                    &mut params,
                    &x,
                    entries.as_ref().map(|(index, weight)| Entries {
                        index,
                        weight: Some(weight),
                        k: 2,
                    }),
                    &masks,
                );
                critic_sums[0] += l.loss;
                critic_sums[1] += l.penalty;
                params.adam_step(&critic_adam, &critic_params);
                net.repack(&params);
            }

            let z = noise::standard_normals(batch * emb, rng);
            let cond = (cond_dim > 0).then(|| sampler.indices(&sampler.sample_train(batch, rng)));
            let gumbel = noise::gumbels(batch * width, rng);
            let masks = dropout(groups, rng);
            let loss_g = net.generator_gradients(&mut params, &z, cond.as_deref(), &gumbel, &masks);
            params.adam_step(&generator_adam, &generator_params);
            let d = m.discriminator_steps as f64;
            sums[0] += loss_g;
            sums[1] += critic_sums[0] / d;
            sums[2] += critic_sums[1] / d;
        }
        let losses: Vec<f64> = sums.iter().map(|&v| v / steps as f64).collect();
        session.check_finite(epoch, LOSSES, &losses)?;
        session.epoch_done(epoch, &losses, t0.elapsed().as_secs_f64())?;
        session.checkpoint_if_due(epoch, train, || params.records())?;
    }
    Ok(())
}
