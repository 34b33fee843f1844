//! The DDPM loop: shuffled minibatches of images, noised on the host (one buffer and one
//! upload per batch), epsilon-prediction MSE, AdamW with gradient-norm clipping and a linear
//! learning-rate warm-up, an exponential moving average of the weights after every step, one
//! device read per epoch.

use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::{Config, DdpmConfig, TrainConfig};
use crate::data::images::ImageSet;
use crate::data::transformer::mix_seed;
use crate::error::{Error, Result};
use crate::models::ddpm::{self, ImageShape, Schedule, UNet};
use crate::run::manifest::{DataInfo, sha256_hex};
use crate::train::{ResumeState, Session};

/// Columns of metrics.csv besides epoch and seconds.
pub const LOSSES: &[&str] = &["loss"];

/// File of a run that describes its images (shape, classes).
pub const IMAGES: &str = "images.json";

const INIT_STREAM: u64 = 0xdd9a;
const EPOCH_STREAM: u64 = 0x1a9e;

/// The shape and classes a DDPM run was trained on (`images.json`); never the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class names; empty for an unconditional model.
    pub classes: Vec<String>,
}

impl ImageInfo {
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            channels: self.channels,
            size: self.height,
            classes: self.classes.len(),
        }
    }

    pub fn load(run: &Path) -> Result<ImageInfo> {
        crate::run::read_json(run, IMAGES)
    }
}

/// The training images and what describes them.
pub struct PreparedImages {
    pub set: ImageSet,
    pub info: DataInfo,
    pub images: ImageInfo,
}

/// Read the images of `[data] path` and check that the model can take them.
pub fn prepare(config: &Config, config_path: &Path) -> Result<PreparedImages> {
    let crate::config::ModelConfig::Ddpm(m) = &config.model else {
        unreachable!("prepare images for a DDPM only")
    };
    let t0 = Instant::now();
    let spec = config
        .images
        .clone()
        .unwrap_or_default()
        .spec(&config.data.path);
    let set = ImageSet::load(&spec)?;
    if set.height != set.width {
        return Err(Error::Images {
            path: config.data.path.clone(),
            message: format!(
                "the images are {}x{}; the UNet takes square images",
                set.width, set.height
            ),
        });
    }
    let sizes = ddpm::level_sizes(set.height, m.channel_mults.len());
    if let Some(r) = m.attention_resolutions.iter().find(|r| !sizes.contains(r)) {
        return Err(Error::Config {
            path: config_path.to_path_buf(),
            message: format!(
                "[model] attention_resolutions has {r}, but the levels of {}x{} images are {sizes:?}",
                set.height, set.width
            ),
        });
    }
    if set.len() < 2 {
        return Err(Error::SingleRow {
            path: config.data.path.clone(),
        });
    }
    let conditional = m.class_conditional && set.labels.is_some();
    if m.class_conditional && set.labels.is_none() {
        info!("the images have no labels: training an unconditional model");
    }
    let classes = if conditional {
        set.classes.clone()
    } else {
        Vec::new()
    };
    let images = ImageInfo {
        channels: set.channels,
        height: set.height,
        width: set.width,
        classes: classes.clone(),
    };
    info!(
        images = set.len(),
        channels = set.channels,
        size = set.height,
        classes = classes.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "images read"
    );
    Ok(PreparedImages {
        info: DataInfo {
            path: config.data.path.clone(),
            rows: set.len(),
            columns: classes,
            schema_digest: sha256_hex(set.signature().as_bytes()),
        },
        images,
        set,
    })
}

/// The trained network and its moving average, saved together.
#[derive(Module, Debug)]
pub struct Weights {
    pub model: UNet,
    pub ema: UNet,
}

/// AdamW as configured (gradients are clipped beforehand by [`clip_global_norm`]).
pub fn optimizer(m: &DdpmConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(m.weight_decay as f32)
        .init()
}

/// Sum of the squared gradients of a module's parameters, on the device.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(acc) => acc + sq,
                None => sq,
            });
        }
    }
}

/// Multiplies every gradient of a module by one device scalar.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let f = self.factor.clone().reshape([1usize; D]);
            self.grads.register(param.id, g * f);
        }
    }
}

/// Clip the gradients so that their global L2 norm (over all parameters together, like
/// PyTorch's `clip_grad_norm_`) is at most `max_norm`. The factor `max_norm / max(norm,
/// max_norm)` stays on the device: no read, no synchronization.
pub fn clip_global_norm<M: Module>(
    mut grads: GradientsParams,
    module: &M,
    max_norm: f64,
) -> GradientsParams {
    let mut norm = SquaredNorm {
        grads: &grads,
        total: None,
    };
    module.visit(&mut norm);
    let Some(total) = norm.total else {
        return grads;
    };
    let factor = total
        .sqrt()
        .clamp_min(max_norm)
        .recip()
        .mul_scalar(max_norm);
    module.visit(&mut Scale {
        grads: &mut grads,
        factor,
    });
    grads
}

/// Load a run's weights (model and EMA) onto `device`.
pub fn load(
    m: &DdpmConfig,
    shape: ImageShape,
    bytes: Vec<u8>,
    device: &Device,
    run: &Path,
) -> Result<Weights> {
    let fresh = Weights {
        model: ddpm::init(m, shape, device),
        ema: ddpm::init(m, shape, device),
    };
    super::load_weights(fresh, bytes, run)
}

/// Flattened float parameters, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// `ema = decay * ema + (1 - decay) * source`, parameter by parameter in visiting order.
struct Blend {
    source: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let src = self
            .source
            .next()
            .expect("the EMA has the model's parameters");
        let decay = self.decay;
        param.map(|t| {
            let shape = t.shape();
            t.mul_scalar(decay) + src.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

/// One EMA update of `ema` towards `model` (a non-autodiff copy of the trained weights).
pub fn ema_update(ema: UNet, model: &UNet, decay: f64) -> UNet {
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    let mut blend = Blend {
        source: collect.0.into_iter(),
        decay,
    };
    ema.map(&mut blend)
}

/// The EMA decay at optimizer step `step` (0-based): warmed up as min(decay, (1 + s) / (10 + s)).
pub fn ema_decay(target: f64, step: usize) -> f64 {
    target.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// The learning rate at optimizer step `step` (0-based): linear warm-up, then constant.
pub fn learning_rate(m: &DdpmConfig, step: usize) -> f64 {
    if m.warmup_steps == 0 {
        m.learning_rate
    } else {
        m.learning_rate * ((step + 1) as f64 / m.warmup_steps as f64).min(1.0)
    }
}

/// A noised batch assembled on the host: `x_t`, the noise, the steps and the classes.
pub struct NoisedBatch {
    pub xt: Vec<f32>,
    pub eps: Vec<f32>,
    pub t: Vec<usize>,
    pub classes: Option<Vec<u32>>,
}

/// Noise the images `idx` of `set` at random steps; labels dropped to "no class" with
/// probability `label_dropout` (conditional models only).
pub fn noised_batch(
    set: &ImageSet,
    idx: &[usize],
    schedule: &Schedule,
    conditional: bool,
    label_dropout: f64,
    rng: &mut StdRng,
) -> NoisedBatch {
    let len = set.image_len();
    let steps = schedule.steps();
    let null = set.classes.len() as u32;
    let mut xt = Vec::with_capacity(idx.len() * len);
    let mut eps = Vec::with_capacity(idx.len() * len);
    let mut t = Vec::with_capacity(idx.len());
    let mut classes = Vec::with_capacity(idx.len());
    for &i in idx {
        let step = rng.random_range(1..=steps);
        let ab = schedule.alpha_bar[step];
        let (a, b) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
        for &p in set.image(i) {
            let x0 = f32::from(p) / 127.5 - 1.0;
            let e: f32 = StandardNormal.sample(rng);
            xt.push(a * x0 + b * e);
            eps.push(e);
        }
        t.push(step);
        if conditional {
            let label = set.labels.as_ref().map_or(null, |l| l[i]);
            let drop = rng.random::<f64>() < label_dropout;
            classes.push(if drop { null } else { label });
        }
    }
    NoisedBatch {
        xt,
        eps,
        t,
        classes: conditional.then_some(classes),
    }
}

pub fn fit(
    m: &DdpmConfig,
    train: &TrainConfig,
    prepared: &PreparedImages,
    device: &Device,
    session: &mut Session,
    resume: Option<ResumeState>,
) -> Result<()> {
    let seed = train.seed.expect("resolved seed");
    let set = &prepared.set;
    let shape = prepared.images.shape();
    let conditional = shape.classes > 0;
    let schedule = Schedule::new(m.schedule, m.timesteps);
    let n = set.len();
    let (c, s) = (shape.channels, shape.size);
    let device = device.clone().autodiff();
    device.seed(mix_seed(seed, INIT_STREAM));
    let (mut model, mut ema, mut optim, start) = match resume {
        Some(state) => {
            let run = session.run.path.clone();
            let w = load(m, shape, state.weights, &device, &run)?;
            let optim = super::load_optimizer(optimizer(m), state.optimizer, &run)?;
            (w.model, w.ema.valid(), optim, state.epoch)
        }
        None => {
            let model = ddpm::init(m, shape, &device);
            let ema = model.valid();
            (model, ema, optimizer(m), 0)
        }
    };
    if start == 0 {
        info!(parameters = model.num_params(), "UNet initialized");
    }
    let batch = train.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(batch);
    let mut order: Vec<usize> = (0..n).collect();
    let mut images_per_second = Vec::new();
    for epoch in start + 1..=train.epochs {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, EPOCH_STREAM + epoch as u64));
        order.sort_unstable();
        order.shuffle(&mut rng);
        let mut sum: Option<Tensor<1>> = None;
        for (i, idx) in order.chunks(batch).enumerate() {
            let step = (epoch - 1) * steps_per_epoch + i;
            let b = idx.len();
            let nb = noised_batch(set, idx, &schedule, conditional, m.label_dropout, &mut rng);
            let xt = Tensor::<4>::from_data(TensorData::new(nb.xt, [b, c, s, s]), &device);
            let eps = Tensor::<4>::from_data(TensorData::new(nb.eps, [b, c, s, s]), &device);
            let pred = model.forward(xt, &nb.t, nb.classes.as_deref());
            let loss = (pred - eps).powi_scalar(2).mean();
            let weighted = loss.clone().detach().mul_scalar(b as f64);
            sum = Some(match sum {
                Some(acc) => acc + weighted,
                None => weighted,
            });
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if m.grad_clip > 0.0 {
                grads = clip_global_norm(grads, &model, m.grad_clip);
            }
            model = optim.step(learning_rate(m, step), model, grads);
            ema = ema_update(ema, &model.valid(), ema_decay(m.ema_decay, step));
        }
        let total: f32 = sum.expect("an epoch has at least one batch").into_scalar();
        let losses = [f64::from(total) / n as f64];
        let seconds = t0.elapsed().as_secs_f64();
        images_per_second.push(n as f64 / seconds);
        session.check_finite(epoch, LOSSES, &losses)?;
        session.epoch_done(epoch, &losses, seconds)?;
        session.checkpoint_if_due(epoch, train, || {
            let weights = Weights {
                model: model.valid(),
                ema: ema.clone(),
            };
            super::burn_records(weights.into_record().into_bytes(), &optim)
        })?;
    }
    if !images_per_second.is_empty() {
        let mean = images_per_second.iter().sum::<f64>() / images_per_second.len() as f64;
        info!(images_per_second = mean, "training speed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{ImageSpec, to_unit};

    #[test]
    fn warm_ups_of_learning_rate_and_ema() {
        let m = DdpmConfig {
            warmup_steps: 4,
            learning_rate: 1.0,
            ..DdpmConfig::default()
        };
        assert_eq!(learning_rate(&m, 0), 0.25);
        assert_eq!(learning_rate(&m, 3), 1.0);
        assert_eq!(learning_rate(&m, 100), 1.0);
        assert_eq!(ema_decay(0.999, 0), 0.1);
        assert_eq!(ema_decay(0.999, 1_000_000), 0.999);
    }

    #[test]
    fn ema_moves_towards_the_model() {
        let device = Device::flex();
        let m = DdpmConfig {
            base_channels: 8,
            channel_mults: vec![1],
            res_blocks: 1,
            attention_resolutions: vec![],
            heads: 1,
            groups: 4,
            ..DdpmConfig::default()
        };
        let shape = ImageShape {
            channels: 1,
            size: 4,
            classes: 0,
        };
        device.seed(1);
        let a = ddpm::init(&m, shape, &device);
        device.seed(2);
        let b = ddpm::init(&m, shape, &device);
        let first = |u: &UNet| {
            let mut c = Collect(Vec::new());
            u.visit(&mut c);
            c.0.into_iter()
                .map(|t| t.into_data().try_into_vec::<f32>().unwrap())
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (first(&a), first(&b));
        let blended = first(&ema_update(a, &b, 0.75));
        assert_eq!(blended.len(), pa.len());
        for ((x, y), z) in pa.iter().zip(&pb).zip(&blended) {
            for ((x, y), z) in x.iter().zip(y).zip(z) {
                assert!((0.75 * x + 0.25 * y - z).abs() < 1e-6);
            }
        }
    }

    /// Global L2 norm of a module's gradients, read to the host.
    fn grad_norm<M: Module>(grads: &GradientsParams, module: &M) -> f64 {
        let mut n = SquaredNorm { grads, total: None };
        module.visit(&mut n);
        f64::from(n.total.unwrap().into_scalar::<f32>()).sqrt()
    }

    #[test]
    fn gradients_are_clipped_by_their_global_norm() {
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        device.seed(4);
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data([[1.0f32, -2.0, 3.0], [0.5, 4.0, -1.0]], &device);
        let grads_of = |scale: f64| {
            let loss = layer.forward(x.clone()).sum().mul_scalar(scale);
            GradientsParams::from_grads(loss.backward(), &layer)
        };
        // Large gradients come down to the limit, in the same direction.
        let big = grads_of(100.0);
        let before = grad_norm(&big, &layer);
        assert!(before > 10.0, "{before}");
        let w_before: Vec<f32> = big
            .get::<2>(layer.weight.id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        let clipped = clip_global_norm(big, &layer, 1.0);
        assert!((grad_norm(&clipped, &layer) - 1.0).abs() < 1e-4);
        let w_after: Vec<f32> = clipped
            .get::<2>(layer.weight.id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        for (a, b) in w_before.iter().zip(&w_after) {
            assert!((f64::from(*a) / before - f64::from(*b)).abs() < 1e-5);
        }
        // Small gradients are left alone.
        let small = grads_of(0.01);
        let before = grad_norm(&small, &layer);
        assert!(before < 1.0);
        let kept = clip_global_norm(small, &layer, 1.0);
        assert!((grad_norm(&kept, &layer) - before).abs() < 1e-6);
    }

    fn tiny() -> DdpmConfig {
        DdpmConfig {
            base_channels: 8,
            channel_mults: vec![1, 2],
            res_blocks: 1,
            attention_resolutions: vec![7],
            heads: 2,
            groups: 4,
            dropout: 0.0,
            timesteps: 100,
            warmup_steps: 0,
            learning_rate: 2e-3,
            ..DdpmConfig::default()
        }
    }

    #[test]
    fn a_tiny_model_overfits_one_batch() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut spec = ImageSpec::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist/t10k-images-idx3-ubyte.gz"),
        );
        spec.limit = Some(8);
        spec.size = Some(14);
        let set = ImageSet::load(&spec).unwrap();
        let m = tiny();
        let shape = ImageShape {
            channels: 1,
            size: 14,
            classes: 10,
        };
        let schedule = Schedule::new(m.schedule, m.timesteps);
        let mut rng = StdRng::seed_from_u64(9);
        let idx: Vec<usize> = (0..8).collect();
        let nb = noised_batch(&set, &idx, &schedule, true, 0.0, &mut rng);
        let mut model = ddpm::init(&m, shape, &device);
        let mut optim = optimizer(&m);
        let xt = Tensor::<4>::from_data(TensorData::new(nb.xt, [8, 1, 14, 14]), &device);
        let eps = Tensor::<4>::from_data(TensorData::new(nb.eps, [8, 1, 14, 14]), &device);
        let mut losses = Vec::new();
        for step in 0..300 {
            let pred = model.forward(xt.clone(), &nb.t, nb.classes.as_deref());
            let loss = (pred - eps.clone()).powi_scalar(2).mean();
            if step == 0 || step == 299 {
                losses.push(loss.clone().into_scalar::<f32>());
            }
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if m.grad_clip > 0.0 {
                grads = clip_global_norm(grads, &model, m.grad_clip);
            }
            model = optim.step(learning_rate(&m, step), model, grads);
        }
        assert!(
            losses[1] * 10.0 <= losses[0],
            "loss fell from {} to {} only",
            losses[0],
            losses[1]
        );
    }

    #[test]
    fn weights_round_trip_through_bytes() {
        let device = Device::flex();
        let m = tiny();
        let shape = ImageShape {
            channels: 1,
            size: 14,
            classes: 0,
        };
        device.seed(3);
        let w = Weights {
            model: ddpm::init(&m, shape, &device),
            ema: ddpm::init(&m, shape, &device),
        };
        let x = Tensor::<4>::random(
            [2, 1, 14, 14],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before = w.ema.forward(x.clone(), &[5, 60], None).into_data();
        let bytes = w.into_record().into_bytes().unwrap();
        let back = load(&m, shape, bytes.to_vec(), &device, Path::new("run")).unwrap();
        let after = back.ema.forward(x, &[5, 60], None).into_data();
        assert_eq!(before, after);
    }

    #[test]
    fn noised_batch_follows_the_schedule() {
        let mut spec = ImageSpec::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist/t10k-images-idx3-ubyte.gz"),
        );
        spec.limit = Some(8);
        let set = ImageSet::load(&spec).unwrap();
        let schedule = Schedule::new(crate::models::ddpm::schedule::ScheduleKind::Linear, 1000);
        let mut rng = StdRng::seed_from_u64(3);
        let idx: Vec<usize> = (0..8).collect();
        let nb = noised_batch(&set, &idx, &schedule, true, 0.5, &mut rng);
        let len = set.image_len();
        for (k, &t) in nb.t.iter().enumerate() {
            assert!((1..=1000).contains(&t));
            let ab = schedule.alpha_bar[t];
            let x0 = to_unit(set.image(k));
            for (j, &x) in x0.iter().enumerate() {
                let want = ab.sqrt() as f32 * x + (1.0 - ab).sqrt() as f32 * nb.eps[k * len + j];
                assert!((nb.xt[k * len + j] - want).abs() < 1e-5);
            }
        }
        let classes = nb.classes.unwrap();
        let labels = set.labels.as_ref().unwrap();
        for (k, &c) in classes.iter().enumerate() {
            assert!(c == labels[k] || c == 10, "{c}");
        }
    }
}
