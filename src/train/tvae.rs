//! The TVAE loop: shuffled minibatches (the last one partial), Adam, sigma clamped after
//! every step, one device read per epoch.

use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::{TrainConfig, TvaeConfig};
use crate::data::transformer::mix_seed;
use crate::error::Result;
use crate::models::noise;
use crate::models::tvae::host::HostTvae;
use crate::models::tvae::{self, Tvae};
use crate::train::host::{self, Adam};
use crate::train::{Prepared, ResumeState, Session};

/// Columns of metrics.csv besides epoch and seconds.
pub const LOSSES: &[&str] = &["loss", "reconstruction", "kl"];

/// Stream numbers for [`mix_seed`]: weights init and each epoch's shuffling and noise.
const INIT_STREAM: u64 = 0x1417;
const EPOCH_STREAM: u64 = 0xe90c;

/// The optimizer of the reference TVAE: Adam(lr, betas (0.9, 0.999), eps, weight decay).
pub fn optimizer(m: &TvaeConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(m.epsilon as f32)
        .with_weight_decay(Some(WeightDecayConfig::new(m.weight_decay as f32)))
        .init()
}

/// Load a TVAE's weights from burnpack bytes onto `device`.
pub fn load(
    m: &TvaeConfig,
    width: usize,
    bytes: Vec<u8>,
    device: &Device,
    run: &std::path::Path,
) -> Result<Tvae> {
    super::load_weights(tvae::init(m, width, device), bytes, run)
}

/// Train on `device`: on the CPU (flex) through [`tvae::host`], elsewhere through Burn's
/// autodiff. Both draw the same shuffles and noise and write the same checkpoints.
pub fn fit(
    m: &TvaeConfig,
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

    let (mut model, mut optim, start) = match resume {
        Some(state) => {
            let run = session.run.path.clone();
            let model = load(m, width, state.weights, &device, &run)?;
            let optim = super::load_optimizer(optimizer(m), state.optimizer, &run)?;
            (model, optim, state.epoch)
        }
        None => (tvae::init(m, width, &device), optimizer(m), 0),
    };

    let batch = train.batch_size.min(n);
    let emb = m.embedding_dim;
    let parts = tvae::LossLayout::new(&layout, &device);
    let mut order: Vec<usize> = (0..n).collect();

    for epoch in start + 1..=train.epochs {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, EPOCH_STREAM + epoch as u64));
        order.sort_unstable();
        order.shuffle(&mut rng);
        let mut sums: Option<Tensor<1>> = None;
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            let rows = prepared.gather(chunk.iter().copied());
            let x = Tensor::<2>::from_data(TensorData::new(rows, [b, width]), &device);
            let eps = noise::standard_normals(b * emb, &mut rng);
            let eps = Tensor::<2>::from_data(TensorData::new(eps, [b, emb]), &device);
            let posterior = model.encoder.forward(x.clone());
            let recon = model.decoder.forward(posterior.sample(eps));
            let l = tvae::loss(
                x,
                recon,
                model.decoder.sigma.val(),
                &posterior,
                &parts,
                m.loss_factor,
            );
            // Per-row figures, weighted by the batch size, summed on the device.
            let step = Tensor::cat(
                vec![
                    l.total.clone().detach().mul_scalar(b as f64),
                    l.reconstruction.detach(),
                    l.kl.detach(),
                ],
                0,
            );
            sums = Some(match sums {
                Some(s) => s + step,
                None => step,
            });
            let grads = GradientsParams::from_grads(l.total.backward(), &model);
            model = optim.step(m.learning_rate, model, grads);
            model.decoder = model.decoder.clamp_sigma();
        }
        let sums: Vec<f32> = sums
            .expect("an epoch has at least one batch")
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 losses");
        let losses: Vec<f64> = sums.iter().map(|&v| f64::from(v) / n as f64).collect();
        session.check_finite(epoch, LOSSES, &losses)?;
        session.epoch_done(epoch, &losses, t0.elapsed().as_secs_f64())?;
        session.checkpoint_if_due(epoch, train, || {
            super::burn_records(model.clone().into_record().into_bytes(), &optim)
        })?;
    }
    Ok(())
}

/// The host optimizer of the reference TVAE (as [`optimizer`]).
fn host_adam(m: &TvaeConfig) -> Adam {
    Adam {
        learning_rate: m.learning_rate as f32,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: m.epsilon as f32,
        weight_decay: m.weight_decay as f32,
    }
}

/// [`fit`] on the host: the same batches, noise, losses and checkpoints, with the step of
/// [`tvae::host`] and Adam on host memory.
fn fit_host(
    m: &TvaeConfig,
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
    let run = session.run.path.clone();
    // Weights start as Burn initializes them (the same draws as Burn's path).
    let ad = device.clone().autodiff();
    ad.seed(mix_seed(seed, INIT_STREAM));
    let (mut params, start) = host::start(
        &run,
        resume,
        |weights| load(m, width, weights, device, &run).map(drop),
        || tvae::init(m, width, &ad).into_record().into_bytes(),
    )?;
    let net = HostTvae::new(&params, m, &layout);
    let adam = host_adam(m);
    let all = params.all();
    // The second half of each batch is differentiated on this copy (see gradients_in_halves).
    let mut twin = params.clone();

    let batch = train.batch_size.min(n);
    let emb = m.embedding_dim;
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in start + 1..=train.epochs {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, EPOCH_STREAM + epoch as u64));
        order.sort_unstable();
        order.shuffle(&mut rng);
        let mut sums = [0.0f64; 3];
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            let rows = prepared.gather(chunk.iter().copied());
            let eps = noise::standard_normals(b * emb, &mut rng);
            let l = net.gradients_in_halves(&mut params, &mut twin, &rows, &eps);
            sums[0] += l.total * b as f64;
            sums[1] += l.reconstruction;
            sums[2] += l.kl;
            params.adam_step(&adam, &all);
            net.clamp_sigma(&mut params);
            twin.copy_values_from(&params);
        }
        let losses: Vec<f64> = sums.iter().map(|&v| v / n as f64).collect();
        session.check_finite(epoch, LOSSES, &losses)?;
        session.epoch_done(epoch, &losses, t0.elapsed().as_secs_f64())?;
        session.checkpoint_if_due(epoch, train, || params.records())?;
    }
    Ok(())
}
