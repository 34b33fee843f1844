//! TVAE's training step on the host, for the CPU: the forward pass, the loss of
//! [`super::loss`] and its gradients, written out by hand.
//!
//! Through Burn every op of a step is its own pass over memory with its own graph node, and
//! flex splits each product of a few hundred rows inside `gemm`, which does not pay on a few
//! cores. Here each product runs as row blocks in parallel ([`crate::models::host::matmul`]),
//! the loss and its gradient are one pass over each row, and the parameters and Adam live in
//! host memory ([`HostParams`]); weights and optimizer state are read from and written to the
//! same records Burn's path uses.

use rayon::prelude::*;

use crate::config::TvaeConfig;
use crate::data::layout::Layout;
use crate::models::host::{ROW_CHUNK, column_sums};
use crate::train::host::{HostLinear, HostParams};

use super::{SIGMA_MAX, SIGMA_MIN};

/// Rows per parallel chunk of the loss.
const LOSS_ROWS: usize = 64;

/// The nonzero entries of a batch's rows, by row (and, for the weight gradient, by column).
struct SparseRows {
    rows: usize,
    /// Row r's entries are `starts[r]..starts[r + 1]` of `columns` and `values`.
    starts: Vec<usize>,
    columns: Vec<usize>,
    values: Vec<f32>,
    width: usize,
}

impl SparseRows {
    fn new(x: &[f32], width: usize) -> SparseRows {
        let rows = x.len() / width;
        let mut starts = Vec::with_capacity(rows + 1);
        let (mut columns, mut values) = (Vec::new(), Vec::new());
        starts.push(0);
        for row in x.chunks_exact(width) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    columns.push(j);
                    values.push(v);
                }
            }
            starts.push(values.len());
        }
        SparseRows {
            rows,
            starts,
            columns,
            values,
            width,
        }
    }

    /// `x W + b`: each output row is the bias plus its nonzero entries times their weight rows.
    fn forward(&self, layer: &HostLinear, params: &HostParams) -> Vec<f32> {
        let o = layer.outputs;
        let w = layer.w(params);
        let mut y = layer.start(params, self.rows, None);
        y.par_chunks_mut(ROW_CHUNK * o)
            .enumerate()
            .for_each(|(c, y)| {
                for (i, yr) in y.chunks_exact_mut(o).enumerate() {
                    let r = c * ROW_CHUNK + i;
                    for k in self.starts[r]..self.starts[r + 1] {
                        let (j, v) = (self.columns[k], self.values[k]);
                        for (a, b) in yr.iter_mut().zip(&w[j * o..(j + 1) * o]) {
                            *a += v * b;
                        }
                    }
                }
            });
        y
    }

    /// Weight and bias gradients: weight row j is the sum over rows of x[r, j] dy[r].
    fn gradients(&self, layer: &HostLinear, params: &mut HostParams, dy: &[f32]) {
        let o = layer.outputs;
        // The entries by column, rows ascending.
        let mut by_column: Vec<Vec<(usize, f32)>> = vec![Vec::new(); self.width];
        for r in 0..self.rows {
            for k in self.starts[r]..self.starts[r + 1] {
                by_column[self.columns[k]].push((r, self.values[k]));
            }
        }
        params.params[layer.weight]
            .grad
            .par_chunks_mut(o)
            .zip(&by_column)
            .for_each(|(g, entries)| {
                g.fill(0.0);
                for &(r, v) in entries {
                    for (a, b) in g.iter_mut().zip(&dy[r * o..(r + 1) * o]) {
                        *a += v * b;
                    }
                }
            });
        column_sums(&mut params.params[layer.bias].grad, dy);
    }
}

fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Zero the gradient where the ReLU's output was 0.
fn relu_backward(dy: &mut [f32], y: &[f32]) {
    for (d, &v) in dy.iter_mut().zip(y) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// The three parts of one batch's loss (as [`super::TvaeLoss`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Losses {
    pub total: f64,
    pub reconstruction: f64,
    pub kl: f64,
}

/// A TVAE's layers, located in its [`HostParams`].
#[derive(Debug, Clone)]
pub struct HostTvae {
    encoder: Vec<HostLinear>,
    mu: HostLinear,
    logvar: HostLinear,
    decoder: Vec<HostLinear>,
    out: HostLinear,
    sigma: usize,
    width: usize,
    embedding: usize,
    scalars: Vec<usize>,
    softmaxes: Vec<(usize, usize)>,
    loss_factor: f64,
}

impl HostTvae {
    /// Locate the layers of a TVAE built by [`super::init`] with `config` for `layout`.
    pub fn new(params: &HostParams, config: &TvaeConfig, layout: &Layout) -> HostTvae {
        let stack = |prefix: &str, n: usize| -> Vec<HostLinear> {
            (0..n)
                .map(|i| HostLinear::new(params, &format!("{prefix}.hidden.{i}")))
                .collect()
        };
        let out = HostLinear::new(params, "decoder.out");
        assert_eq!(out.outputs, layout.width(), "the decoder's output is a row");
        HostTvae {
            encoder: stack("encoder", config.compress_dims.len()),
            mu: HostLinear::new(params, "encoder.mu"),
            logvar: HostLinear::new(params, "encoder.logvar"),
            decoder: stack("decoder", config.decompress_dims.len()),
            out,
            sigma: params.index("decoder.sigma"),
            width: layout.width(),
            embedding: config.embedding_dim,
            scalars: layout.scalar_positions(),
            softmaxes: layout.softmax_spans(),
            loss_factor: config.loss_factor,
        }
    }

    /// The loss of one batch and its gradients, left in `params`' `grad` fields.
    /// `x`: [rows, width] encoded rows; `eps`: [rows, embedding_dim] standard normals.
    pub fn gradients(&self, params: &mut HostParams, x: &[f32], eps: &[f32]) -> Losses {
        let batch = x.len() / self.width;
        let (reconstruction, kl) = self.part(params, x, eps, batch);
        self.losses(reconstruction, kl, batch)
    }

    /// [`HostTvae::gradients`] with the batch in two halves, each on its own thread with its
    /// own copy of the parameters (`twin`, whose values must equal `params`'); the halves'
    /// gradients are added into `params`. The loss is a sum over rows, so this equals the
    /// whole batch up to rounding, and the halves do not depend on the number of threads.
    /// Each half's products run on one thread instead of being split between threads at every
    /// product.
    pub fn gradients_in_halves(
        &self,
        params: &mut HostParams,
        twin: &mut HostParams,
        x: &[f32],
        eps: &[f32],
    ) -> Losses {
        let batch = x.len() / self.width;
        let half = batch / 2;
        if half == 0 {
            return self.gradients(params, x, eps);
        }
        let (x0, x1) = x.split_at(half * self.width);
        let (e0, e1) = eps.split_at(half * self.embedding);
        let ((r0, k0), (r1, k1)) = rayon::join(
            || self.part(params, x0, e0, batch),
            || self.part(twin, x1, e1, batch),
        );
        for (p, q) in params.params.iter_mut().zip(&twin.params) {
            for (a, b) in p.grad.iter_mut().zip(&q.grad) {
                *a += b;
            }
        }
        self.losses(r0 + r1, k0 + k1, batch)
    }

    fn losses(&self, reconstruction: f64, kl: f64, batch: usize) -> Losses {
        Losses {
            total: self.loss_factor * reconstruction / batch as f64 + kl / batch as f64,
            reconstruction,
            kl,
        }
    }

    /// The reconstruction and KL sums over the rows of `x`, and their gradients as parts of a
    /// batch of `batch` rows (the loss divides by the batch size), left in `params`.
    fn part(&self, params: &mut HostParams, x: &[f32], eps: &[f32], batch: usize) -> (f64, f64) {
        let w = self.width;
        let e = self.embedding;
        let n = x.len() / w;
        assert_eq!(x.len(), n * w, "x is [rows, width]");
        assert_eq!(eps.len(), n * e, "eps is [rows, embedding_dim]");

        // Encoder. Encoded rows are mostly zeros (one 1 per one-hot span): when under half
        // their entries are nonzero, the first layer reads only those.
        let sparse = SparseRows::new(x, w);
        let sparse = (sparse.values.len() * 2 < x.len()).then_some(sparse);
        let mut hs: Vec<Vec<f32>> = Vec::with_capacity(self.encoder.len());
        for (l, layer) in self.encoder.iter().enumerate() {
            let mut h = match (&sparse, l) {
                (Some(s), 0) => s.forward(layer, params),
                _ => layer.forward(params, hs.last().map_or(x, Vec::as_slice), n),
            };
            relu(&mut h);
            hs.push(h);
        }
        let h_last = hs.last().map_or(x, Vec::as_slice);
        let mu = self.mu.forward(params, h_last, n);
        let logvar = self.logvar.forward(params, h_last, n);
        let std: Vec<f32> = logvar.par_iter().map(|v| (v * 0.5).exp()).collect();
        let z: Vec<f32> = mu
            .par_iter()
            .zip(&std)
            .zip(eps)
            .map(|((m, s), e)| m + e * s)
            .collect();

        // Decoder.
        let mut gs: Vec<Vec<f32>> = Vec::with_capacity(self.decoder.len());
        for layer in &self.decoder {
            let input = gs.last().map_or(&z[..], Vec::as_slice);
            let mut g = layer.forward(params, input, n);
            relu(&mut g);
            gs.push(g);
        }
        let g_last = gs.last().map_or(&z[..], Vec::as_slice);
        let recon = self.out.forward(params, g_last, n);

        // Loss and its gradient with respect to the decoder's output and sigma.
        let (reconstruction, d_recon) = self.reconstruction(params, x, &recon, batch);
        let kl: f64 = -0.5
            * mu.iter()
                .zip(&logvar)
                .zip(&std)
                .map(|((&m, &lv), &s)| f64::from(1.0 + lv - m * m - s * s))
                .sum::<f64>();

        // Decoder backward.
        self.out.gradients(params, g_last, &d_recon, n);
        let mut dg = vec![0.0; n * self.out.rows];
        self.out.input_gradient(params, &d_recon, n, &mut dg, false);
        for (l, layer) in self.decoder.iter().enumerate().rev() {
            relu_backward(&mut dg, &gs[l]);
            let input = if l == 0 { &z[..] } else { &gs[l - 1][..] };
            layer.gradients(params, input, &dg, n);
            let mut d_in = vec![0.0; n * layer.rows];
            layer.input_gradient(params, &dg, n, &mut d_in, false);
            dg = d_in;
        }
        let dz = dg;

        // Through the reparameterization and the KL term (kl / batch).
        let inv_n = 1.0 / batch as f32;
        let d_mu: Vec<f32> = dz.iter().zip(&mu).map(|(d, m)| d + m * inv_n).collect();
        let d_logvar: Vec<f32> = dz
            .iter()
            .zip(eps)
            .zip(&std)
            .map(|((d, e), s)| 0.5 * s * d * e + 0.5 * (s * s - 1.0) * inv_n)
            .collect();

        // Encoder backward.
        self.mu.gradients(params, h_last, &d_mu, n);
        self.logvar.gradients(params, h_last, &d_logvar, n);
        if let Some(last) = self.encoder.len().checked_sub(1) {
            let mut dh = vec![0.0; n * self.mu.rows];
            self.mu.input_gradient(params, &d_mu, n, &mut dh, false);
            self.logvar
                .input_gradient(params, &d_logvar, n, &mut dh, true);
            for l in (0..=last).rev() {
                let layer = &self.encoder[l];
                relu_backward(&mut dh, &hs[l]);
                match (&sparse, l) {
                    (Some(s), 0) => s.gradients(layer, params, &dh),
                    _ => {
                        let input = if l == 0 { x } else { &hs[l - 1][..] };
                        layer.gradients(params, input, &dh, n);
                    }
                }
                if l > 0 {
                    let mut d_in = vec![0.0; n * layer.rows];
                    layer.input_gradient(params, &dh, n, &mut d_in, false);
                    dh = d_in;
                }
            }
        }

        (reconstruction, kl)
    }

    /// The reconstruction term summed over the rows of `x`, and the gradient of
    /// `loss_factor * reconstruction / batch` with respect to the decoder's output (returned)
    /// and to sigma (left in `params`).
    fn reconstruction(
        &self,
        params: &mut HostParams,
        x: &[f32],
        recon: &[f32],
        batch: usize,
    ) -> (f64, Vec<f32>) {
        let w = self.width;
        let n = x.len() / w;
        let coef = (self.loss_factor / batch as f64) as f32;
        let sigma = &params.params[self.sigma].value;
        let k = self.scalars.len();
        let mut d_recon = vec![0.0f32; n * w];
        let (sum, d_sigma) = d_recon
            .par_chunks_mut(LOSS_ROWS * w)
            .zip(recon.par_chunks(LOSS_ROWS * w))
            .zip(x.par_chunks(LOSS_ROWS * w))
            .map(|((d, r), x)| {
                let mut sum = 0.0f64;
                let mut d_sigma = vec![0.0f32; k];
                for ((d, r), x) in d
                    .chunks_exact_mut(w)
                    .zip(r.chunks_exact(w))
                    .zip(x.chunks_exact(w))
                {
                    for (ds, &c) in d_sigma.iter_mut().zip(&self.scalars) {
                        let s = sigma[c];
                        let t = r[c].tanh();
                        let diff = x[c] - t;
                        let s2 = s * s;
                        sum += f64::from(diff * diff / (2.0 * s2));
                        d[c] = -coef * diff / s2 * (1.0 - t * t);
                        *ds -= coef * diff * diff / (s2 * s);
                    }
                    for &(start, len) in &self.softmaxes {
                        let logits = &r[start..start + len];
                        let target = &x[start..start + len];
                        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                        // exp(l - max) once, kept in the gradient's place.
                        let g = &mut d[start..start + len];
                        let mut total = 0.0f32;
                        for (g, &l) in g.iter_mut().zip(logits) {
                            *g = (l - max).exp();
                            total += *g;
                        }
                        let lse = max + total.ln();
                        let t_sum: f32 = target.iter().sum();
                        let dot: f32 = target.iter().zip(logits).map(|(t, l)| t * l).sum();
                        sum += f64::from(lse * t_sum - dot);
                        let scale = t_sum / total;
                        for (g, &t) in g.iter_mut().zip(target) {
                            *g = coef * (*g * scale - t);
                        }
                    }
                }
                (sum, d_sigma)
            })
            .collect::<Vec<_>>()
            .into_iter()
            // Summed in chunk order: the same result on every run, whatever thread ran which.
            .fold((0.0, vec![0.0; k]), |(a, mut da), (b, db)| {
                for (x, y) in da.iter_mut().zip(&db) {
                    *x += y;
                }
                (a + b, da)
            });
        // The n ln sigma term (n rows here), and its gradient loss_factor n / (batch sigma).
        let lf = (self.loss_factor * n as f64 / batch as f64) as f32;
        let log_sigma: f64 = self.scalars.iter().map(|&c| f64::from(sigma[c].ln())).sum();
        let p = &mut params.params[self.sigma];
        p.grad.fill(0.0);
        for (&c, ds) in self.scalars.iter().zip(&d_sigma) {
            p.grad[c] = ds + lf / p.value[c];
        }
        (sum + n as f64 * log_sigma, d_recon)
    }

    /// Clamp sigma to [SIGMA_MIN, SIGMA_MAX], as after every step of Burn's path.
    pub fn clamp_sigma(&self, params: &mut HostParams) {
        for s in &mut params.params[self.sigma].value {
            *s = s.clamp(SIGMA_MIN, SIGMA_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::layout::Activation;
    use crate::models::tvae::{self, LossLayout, Posterior};
    use crate::train::host::Adam;
    use burn::module::{Module, Param, ParamId};
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Device, Tensor, TensorData};

    /// Two tanh scalars and four softmax spans, 15 wide.
    fn layout() -> Layout {
        Layout::new([
            (Activation::Tanh, 1, 0),
            (Activation::Softmax, 3, 0),
            (Activation::Softmax, 4, 1),
            (Activation::Tanh, 1, 2),
            (Activation::Softmax, 2, 2),
            (Activation::Softmax, 4, 3),
        ])
    }

    fn config() -> TvaeConfig {
        TvaeConfig {
            compress_dims: vec![24, 20],
            embedding_dim: 8,
            decompress_dims: vec![20, 24],
            ..TvaeConfig::default()
        }
    }

    /// Encoded-looking rows: tanh values in (-1, 1), one-hot spans.
    fn rows(layout: &Layout, n: usize) -> Vec<f32> {
        let w = layout.width();
        let mut x = vec![0.0f32; n * w];
        for r in 0..n {
            for (s, span) in layout.spans().iter().enumerate() {
                let h = ((r * 31 + s * 17) as f32 * 0.618).sin();
                if span.width == 1 {
                    x[r * w + span.start] = h * 0.9;
                } else {
                    let k = ((h.abs() * 1000.0) as usize) % span.width;
                    x[r * w + span.start + k] = 1.0;
                }
            }
        }
        x
    }

    fn wave(n: usize, phase: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.7548 + phase).sin()).collect()
    }

    #[test]
    fn host_gradients_equal_autodiff_gradients() {
        let layout = layout();
        let n = 301;
        // One-hot spans (6 of 15 entries nonzero: the first layer reads the nonzero ones)...
        gradients_equal_autodiff(rows(&layout, n));
        // ... and soft targets with every entry nonzero (the first layer is a product).
        let soft: Vec<f32> = wave(n * layout.width(), 0.9)
            .iter()
            .map(|v| 0.55 + 0.45 * v)
            .collect();
        gradients_equal_autodiff(soft);
    }

    fn gradients_equal_autodiff(x: Vec<f32>) {
        let d = Device::flex().autodiff();
        let layout = layout();
        let w = layout.width();
        let cfg = config();
        let mut model = tvae::init(&cfg, w, &d);
        // Distinct sigmas, so each position's gradient differs.
        let sigma: Vec<f32> = (0..w).map(|i| 0.05 + 0.03 * i as f32).collect();
        model.decoder.sigma = Param::initialized(
            model.decoder.sigma.id,
            Tensor::from_data(TensorData::new(sigma, [w]), &d).require_grad(),
        );
        // More rows than the parallel threshold of the products, in uneven blocks.
        let n = x.len() / w;
        let eps = wave(n * cfg.embedding_dim, 0.3);

        let mut params =
            HostParams::from_record(model.clone().into_record().into_bytes().unwrap().to_vec())
                .unwrap();
        let host = HostTvae::new(&params, &cfg, &layout);
        let fresh = params.clone();
        let got = host.gradients(&mut params, &x, &eps);
        // In two halves on two copies: the same losses and gradients.
        let (mut halves, mut twin) = (fresh.clone(), fresh);
        let by_halves = host.gradients_in_halves(&mut halves, &mut twin, &x, &eps);
        for (a, b) in [
            (by_halves.total, got.total),
            (by_halves.reconstruction, got.reconstruction),
            (by_halves.kl, got.kl),
        ] {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{by_halves:?} vs {got:?}"
            );
        }
        for (p, q) in halves.params.iter().zip(&params.params) {
            let scale = q.grad.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (a, b) in p.grad.iter().zip(&q.grad) {
                assert!((a - b).abs() <= 1e-5 * scale, "{}: {a} vs {b}", p.name);
            }
        }

        let xt = Tensor::<2>::from_data(TensorData::new(x, [n, w]), &d);
        let et = Tensor::<2>::from_data(TensorData::new(eps, [n, cfg.embedding_dim]), &d);
        let posterior: Posterior = model.encoder.forward(xt.clone());
        let recon = model.decoder.forward(posterior.sample(et));
        let l = tvae::loss(
            xt,
            recon,
            model.decoder.sigma.val(),
            &posterior,
            &LossLayout::new(&layout, &d),
            cfg.loss_factor,
        );
        let scalar = |t: Tensor<1>| f64::from(t.into_scalar::<f32>());
        let (total, rec, kl) = (
            scalar(l.total.clone()),
            scalar(l.reconstruction.clone()),
            scalar(l.kl.clone()),
        );
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
        assert!(close(got.total, total), "{} vs {total}", got.total);
        assert!(
            close(got.reconstruction, rec),
            "{} vs {rec}",
            got.reconstruction
        );
        assert!(close(got.kl, kl), "{} vs {kl}", got.kl);

        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        for p in &params.params {
            let id = ParamId::from(p.id);
            let burn: Vec<f32> = match p.shape.len() {
                1 => grads
                    .get::<1>(id)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
                _ => grads
                    .get::<2>(id)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            };
            let scale = burn.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{} has a gradient", p.name);
            for (i, (h, b)) in p.grad.iter().zip(&burn).enumerate() {
                assert!(
                    (h - b).abs() <= 1e-4 * scale,
                    "{}[{i}]: host {h}, autodiff {b}",
                    p.name
                );
            }
        }
    }

    /// Host parameters as values, for comparing with a Burn model's record.
    fn values(params: &HostParams) -> Vec<(String, Vec<f32>)> {
        params
            .params
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect()
    }

    fn assert_same(a: &HostParams, b: &HostParams) {
        for ((name, x), (_, y)) in values(a).iter().zip(&values(b)) {
            for (u, v) in x.iter().zip(y) {
                assert!(
                    (u - v).abs() <= 1e-6 * (1.0 + v.abs()),
                    "{name}: {u} vs {v}"
                );
            }
        }
    }

    #[test]
    fn host_adam_equals_burn_adam_and_their_states_load_in_each_other() {
        // Burn's optimizer steps autodiff modules with gradients on the inner device.
        let ad = Device::flex().autodiff();
        let d = Device::flex();
        let layout = layout();
        let cfg = config();
        let burn_adam = || {
            AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(0.01)))
                .init()
        };
        let adam = Adam {
            learning_rate: 1e-2,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        };
        let record = |m: &tvae::Tvae| m.clone().into_record().into_bytes().unwrap().to_vec();
        let mut model = tvae::init(&cfg, layout.width(), &ad);
        let mut params = HostParams::from_record(record(&model)).unwrap();
        let start = values(&params);
        let mut optim = burn_adam();
        // The same gradients through both, step after step.
        let step = |model: tvae::Tvae,
                    optim: &mut burn::optim::ModuleOptimizer,
                    params: &mut HostParams,
                    t: usize| {
            let mut grads = GradientsParams::new();
            for (i, p) in params.params.iter_mut().enumerate() {
                p.grad = wave(p.value.len(), (t * 7 + i) as f32);
                let data = TensorData::new(p.grad.clone(), p.shape.clone());
                let id = ParamId::from(p.id);
                match p.shape.len() {
                    1 => grads.register(id, Tensor::<1>::from_data(data, &d)),
                    _ => grads.register(id, Tensor::<2>::from_data(data, &d)),
                }
            }
            let all = params.all();
            params.adam_step(&adam, &all);
            optim.step(f64::from(adam.learning_rate), model, grads)
        };
        for t in 0..3 {
            model = step(model, &mut optim, &mut params, t);
        }
        assert_same(&params, &HostParams::from_record(record(&model)).unwrap());
        assert_ne!(start, values(&params), "the steps moved the weights");

        // Each continues from the other's state: the host from Burn's, Burn from the host's.
        let mut from_burn = HostParams::from_record(record(&model)).unwrap();
        from_burn
            .load_optimizer(optim.into_bytes().unwrap().to_vec())
            .unwrap();
        let mut optim_from_host = burn_adam()
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                params.optimizer_record().unwrap(),
            ))
            .unwrap();
        let model = step(model, &mut optim_from_host, &mut from_burn, 3);
        assert_same(
            &from_burn,
            &HostParams::from_record(record(&model)).unwrap(),
        );
        // A fresh state (time 0) would take a different step: the loaded one was used.
        let mut reset = HostParams::from_record(params.to_record().unwrap()).unwrap();
        let _ = step(
            tvae::init(&cfg, layout.width(), &ad),
            &mut burn_adam(),
            &mut reset,
            3,
        );
        assert_ne!(values(&reset), values(&from_burn));
    }
}
