//! CTGAN's training steps on the host, for the CPU: the generator in train mode (BatchNorm on
//! batch statistics), the activations, the PacGAN critic, the gradient penalty and the
//! conditioning loss, forward and backward, written out by hand.
//!
//! The same computations as the Burn modules of [`super`], tested against them. What differs
//! is how they run: every product is [`matmul`] (row blocks in parallel, one single-threaded
//! `gemm` each); the residual blocks' outputs live in one buffer, newest left of the older ones,
//! so no concatenation is copied; the conditional vector's part of a product is the weight row
//! at its position; the element-wise work of a layer is one pass; the critic's first-layer data
//! rows are kept packed as one matrix, refreshed after each critic update; and the critic's
//! weight gradients skip the interpolated rows, whose scores are not in the loss.
//!
//! The penalty is differentiated as in [`super::Critic::input_gradient`]: the critic's input
//! gradient is a product of its weights with the LeakyReLU slopes and dropout masks of the
//! forward pass (constants almost everywhere), so its gradient with respect to the weights is
//! one more backward pass through that product.

use crate::config::CtganConfig;
use crate::data::layout::Layout;
use rayon::prelude::*;

use crate::models::host::{Mat, ROW_CHUNK, column_sums, column_sums_with, matmul};
use crate::train::host::{HostLinear, HostParams};

/// BatchNorm's defaults in Burn (`BatchNormConfig`), which the generator's blocks use.
const BN_EPSILON: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;
/// The critic's LeakyReLU slope.
const SLOPE: f32 = 0.2;

/// A residual block: Linear (with the conditional rows) -> BatchNorm -> ReLU.
#[derive(Debug, Clone, Copy)]
struct Block {
    fc: HostLinear,
    gamma: usize,
    beta: usize,
    running_mean: usize,
    running_var: usize,
}

/// What the generator's backward pass needs of its forward pass.
#[derive(Debug, Clone)]
pub struct GeneratorPass {
    /// [n, buffer width]: each block's output (after ReLU), newest left, then z.
    buf: Vec<f32>,
    /// Per block: the normalized pre-activations [n, outputs] and 1 / sqrt(var + eps).
    normalized: Vec<Vec<f32>>,
    inv_std: Vec<Vec<f32>>,
    /// [n, width] raw output.
    pub raw: Vec<f32>,
}

/// A critic pass over groups of `pac` rows.
#[derive(Debug, Clone)]
pub struct CriticPass {
    groups: usize,
    /// Per hidden layer [groups, width]: pre-activations, and outputs (LeakyReLU times mask).
    pre: Vec<Vec<f32>>,
    out: Vec<Vec<f32>>,
    /// [groups]
    pub score: Vec<f32>,
}

/// Conditional vectors by their nonzero entries: row r has `k` entries,
/// `index[r * k + j]` with weight `weight[r * k + j]` (all 1 when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Entries<'a> {
    pub index: &'a [i32],
    pub weight: Option<&'a [f32]>,
    pub k: usize,
}

/// The figures of one critic step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriticLosses {
    /// mean fake score - mean real score + penalty
    pub loss: f64,
    pub penalty: f64,
}

/// A CTGAN's layers, located in its [`HostParams`], and its layout.
#[derive(Debug, Clone)]
pub struct HostCtgan {
    blocks: Vec<Block>,
    out: HostLinear,
    hidden: Vec<HostLinear>,
    critic_out: HostLinear,
    embedding: usize,
    width: usize,
    cond_dim: usize,
    pac: usize,
    tau: f32,
    lambda: f32,
    scalars: Vec<usize>,
    softmaxes: Vec<(usize, usize)>,
    /// Per discrete column: (data start, conditional-vector start, width).
    cond_spans: Vec<(usize, usize, usize)>,
    /// The critic's first-layer data rows, packed: [pac * width, hidden].
    packed: Vec<f32>,
    generator_params: Vec<usize>,
    critic_params: Vec<usize>,
}

impl HostCtgan {
    /// Locate the layers of a CTGAN built by [`super::init`] for `layout` and conditional
    /// vectors laid out as `cond_spans` (`CondSampler::spans`).
    pub fn new(
        params: &HostParams,
        config: &CtganConfig,
        layout: &Layout,
        cond_spans: Vec<(usize, usize, usize)>,
    ) -> HostCtgan {
        let cond_dim: usize = cond_spans.iter().map(|s| s.2).sum();
        let blocks: Vec<Block> = (0..config.generator_dims.len())
            .map(|i| {
                let p = format!("generator.blocks.{i}");
                Block {
                    fc: HostLinear::new(params, &format!("{p}.fc")),
                    gamma: params.index(&format!("{p}.bn.gamma")),
                    beta: params.index(&format!("{p}.bn.beta")),
                    running_mean: params.index(&format!("{p}.bn.running_mean")),
                    running_var: params.index(&format!("{p}.bn.running_var")),
                }
            })
            .collect();
        let out = HostLinear::new(params, "generator.out");
        let hidden: Vec<HostLinear> = (0..config.discriminator_dims.len())
            .map(|i| HostLinear::new(params, &format!("critic.hidden.{i}")))
            .collect();
        let critic_out = HostLinear::new(params, "critic.out");
        assert!(!hidden.is_empty(), "the critic has a hidden layer");
        assert_eq!(
            out.outputs,
            layout.width(),
            "the generator's output is a row"
        );
        assert_eq!(
            hidden[0].rows,
            config.pac * (layout.width() + cond_dim),
            "the critic reads pac rows and their conditional vectors"
        );
        let mut generator_params = Vec::new();
        for b in &blocks {
            generator_params.extend([b.fc.weight, b.fc.bias, b.gamma, b.beta]);
        }
        generator_params.extend([out.weight, out.bias]);
        let mut critic_params = Vec::new();
        for l in hidden.iter().chain([&critic_out]) {
            critic_params.extend([l.weight, l.bias]);
        }
        let mut host = HostCtgan {
            blocks,
            out,
            hidden,
            critic_out,
            embedding: config.embedding_dim,
            width: layout.width(),
            cond_dim,
            pac: config.pac,
            tau: config.gumbel_tau as f32,
            lambda: config.gradient_penalty as f32,
            scalars: layout.scalar_positions(),
            softmaxes: layout.softmax_spans(),
            cond_spans,
            packed: Vec::new(),
            generator_params,
            critic_params,
        };
        host.repack(params);
        host
    }

    /// The generator's trainable parameters (not BatchNorm's running statistics).
    pub fn generator_params(&self) -> &[usize] {
        &self.generator_params
    }

    pub fn critic_params(&self) -> &[usize] {
        &self.critic_params
    }

    /// Refresh the packed copy of the critic's first-layer data rows (after its weights
    /// change).
    pub fn repack(&mut self, params: &HostParams) {
        let first = self.hidden[0];
        let (w, h) = (self.width, first.outputs);
        let per_row = w + self.cond_dim;
        let weight = first.w(params);
        self.packed.clear();
        self.packed.reserve(self.pac * w * h);
        for q in 0..self.pac {
            self.packed
                .extend_from_slice(&weight[q * per_row * h..(q * per_row + w) * h]);
        }
    }

    /// The generator in train mode on z [n, embedding_dim] with conditional positions `cond`;
    /// BatchNorm normalizes with the batch's statistics and moves its running statistics.
    pub fn generator_forward(
        &self,
        params: &mut HostParams,
        z: &[f32],
        cond: Option<&[i32]>,
    ) -> GeneratorPass {
        let e = self.embedding;
        let n = z.len() / e;
        let bw: usize = self.blocks.iter().map(|b| b.fc.outputs).sum::<usize>() + e;
        let mut buf = vec![0.0f32; n * bw];
        for (row, zr) in buf.chunks_exact_mut(bw).zip(z.chunks_exact(e)) {
            row[bw - e..].copy_from_slice(zr);
        }
        let mut normalized = Vec::with_capacity(self.blocks.len());
        let mut inv_stds = Vec::with_capacity(self.blocks.len());
        let mut start = bw - e;
        for block in &self.blocks {
            let o = block.fc.outputs;
            let k = bw - start;
            let mut a = block.fc.start(params, n, cond.map(|c| (c, k)));
            let w = &block.fc.w(params)[..k * o];
            matmul(
                &mut a,
                Mat::strided(&buf[start..], n, k, bw),
                Mat::new(w, k, o),
                true,
            );
            // Batch statistics per column (biased variance, as Burn's batch_norm_train).
            let mut mean = vec![0.0f32; o];
            column_sums(&mut mean, &a);
            for m in &mut mean {
                *m /= n as f32;
            }
            let mut var = vec![0.0f32; o];
            column_sums_with(&mut var, n, |r, acc| {
                for ((v, x), m) in acc.iter_mut().zip(&a[r * o..(r + 1) * o]).zip(&mean) {
                    *v += (x - m) * (x - m);
                }
            });
            for v in &mut var {
                *v /= n as f32;
            }
            let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + BN_EPSILON).sqrt()).collect();
            let gamma = &params.params[block.gamma].value;
            let beta = &params.params[block.beta].value;
            let out = start - o;
            a.par_chunks_mut(ROW_CHUNK * o)
                .zip(buf.par_chunks_mut(ROW_CHUNK * bw))
                .for_each(|(a, buf)| {
                    for (row, brow) in a.chunks_exact_mut(o).zip(buf.chunks_exact_mut(bw)) {
                        let dst = &mut brow[out..out + o];
                        for j in 0..o {
                            let x_hat = (row[j] - mean[j]) * inv_std[j];
                            row[j] = x_hat;
                            dst[j] = (gamma[j] * x_hat + beta[j]).max(0.0);
                        }
                    }
                });
            for (idx, stat) in [(block.running_mean, &mean), (block.running_var, &var)] {
                for (r, s) in params.params[idx].value.iter_mut().zip(stat) {
                    *r = *r * (1.0 - BN_MOMENTUM) + s * BN_MOMENTUM;
                }
            }
            normalized.push(a);
            inv_stds.push(inv_std);
            start = out;
        }
        let mut raw = self.out.start(params, n, cond.map(|c| (c, bw)));
        let d = self.out.outputs;
        matmul(
            &mut raw,
            Mat::new(&buf, n, bw),
            Mat::new(&self.out.w(params)[..bw * d], bw, d),
            true,
        );
        GeneratorPass {
            buf,
            normalized,
            inv_std: inv_stds,
            raw,
        }
    }

    /// The generator's parameter gradients from the raw output's gradient `d_raw`.
    pub fn generator_backward(
        &self,
        params: &mut HostParams,
        pass: &GeneratorPass,
        cond: Option<&[i32]>,
        d_raw: &[f32],
    ) {
        let e = self.embedding;
        let d = self.out.outputs;
        let n = d_raw.len() / d;
        let bw = pass.buf.len() / n;
        // Output layer.
        matmul(
            &mut params.params[self.out.weight].grad[..bw * d],
            Mat::new(&pass.buf, n, bw).t(),
            Mat::new(d_raw, n, d),
            false,
        );
        self.out
            .bias_and_cond_gradients(params, d_raw, cond.map(|c| (c, bw)));
        // The gradient of every hidden output (z's columns are not needed).
        let hw = bw - e;
        let mut dbuf = vec![0.0f32; n * hw];
        matmul(
            &mut dbuf,
            Mat::new(d_raw, n, d),
            Mat::new(&self.out.w(params)[..hw * d], hw, d).t(),
            false,
        );
        let mut out = 0;
        for (l, block) in self.blocks.iter().enumerate().rev() {
            let o = block.fc.outputs;
            let start = out + o;
            let k = bw - start;
            let x_hat = &pass.normalized[l];
            let inv_std = &pass.inv_std[l];
            // dy: through the ReLU (its output is in the buffer).
            let mut dy = vec![0.0f32; n * o];
            dy.par_chunks_mut(ROW_CHUNK * o)
                .enumerate()
                .for_each(|(c, dy)| {
                    for (i, d) in dy.chunks_exact_mut(o).enumerate() {
                        let r = c * ROW_CHUNK + i;
                        let h = &pass.buf[r * bw + out..r * bw + out + o];
                        let g = &dbuf[r * hw + out..r * hw + out + o];
                        for ((dv, &hv), &gv) in d.iter_mut().zip(h).zip(g) {
                            *dv = if hv > 0.0 { gv } else { 0.0 };
                        }
                    }
                });
            // BatchNorm: d gamma = sum dy x^, d beta = sum dy,
            // da = gamma inv_std (dy - mean(dy) - x^ mean(dy x^)).
            let mut d_gamma = vec![0.0f32; o];
            let mut d_beta = vec![0.0f32; o];
            column_sums_with(&mut d_gamma, n, |r, acc| {
                let (dr, xr) = (&dy[r * o..(r + 1) * o], &x_hat[r * o..(r + 1) * o]);
                for ((a, d), x) in acc.iter_mut().zip(dr).zip(xr) {
                    *a += d * x;
                }
            });
            column_sums(&mut d_beta, &dy);
            let gamma = &params.params[block.gamma].value;
            let inv_n = 1.0 / n as f32;
            dy.par_chunks_mut(ROW_CHUNK * o)
                .zip(x_hat.par_chunks(ROW_CHUNK * o))
                .for_each(|(dy, x_hat)| {
                    for (dr, xr) in dy.chunks_exact_mut(o).zip(x_hat.chunks_exact(o)) {
                        for j in 0..o {
                            dr[j] = gamma[j]
                                * inv_std[j]
                                * (dr[j] - d_beta[j] * inv_n - xr[j] * d_gamma[j] * inv_n);
                        }
                    }
                });
            params.params[block.gamma].grad.copy_from_slice(&d_gamma);
            params.params[block.beta].grad.copy_from_slice(&d_beta);
            let da = dy;
            matmul(
                &mut params.params[block.fc.weight].grad[..k * o],
                Mat::strided(&pass.buf[start..], n, k, bw).t(),
                Mat::new(&da, n, o),
                false,
            );
            block
                .fc
                .bias_and_cond_gradients(params, &da, cond.map(|c| (c, k)));
            // Into the earlier blocks' outputs (the input's columns left of z).
            let hidden_in = k - e;
            if hidden_in > 0 {
                let mut dx = vec![0.0f32; n * hidden_in];
                matmul(
                    &mut dx,
                    Mat::new(&da, n, o),
                    Mat::new(&block.fc.w(params)[..hidden_in * o], hidden_in, o).t(),
                    false,
                );
                for (r, row) in dx.chunks_exact(hidden_in).enumerate() {
                    for (g, v) in dbuf[r * hw + start..r * hw + start + hidden_in]
                        .iter_mut()
                        .zip(row)
                    {
                        *g += v;
                    }
                }
            }
            out = start;
        }
    }

    /// tanh on the scalar positions, softmax((raw + gumbel) / tau) on each softmax span.
    pub fn activate(&self, raw: &[f32], gumbel: &[f32]) -> Vec<f32> {
        let w = self.width;
        let mut fake = vec![0.0f32; raw.len()];
        let rows = ROW_CHUNK * w;
        fake.par_chunks_mut(rows)
            .zip(raw.par_chunks(rows))
            .zip(gumbel.par_chunks(rows))
            .for_each(|((f, r), g)| self.activate_rows(f, r, g));
        fake
    }

    fn activate_rows(&self, fake: &mut [f32], raw: &[f32], gumbel: &[f32]) {
        let w = self.width;
        for ((f, r), g) in fake
            .chunks_exact_mut(w)
            .zip(raw.chunks_exact(w))
            .zip(gumbel.chunks_exact(w))
        {
            for &c in &self.scalars {
                f[c] = r[c].tanh();
            }
            for &(s, len) in &self.softmaxes {
                let span = s..s + len;
                let mut max = f32::NEG_INFINITY;
                for j in span.clone() {
                    f[j] = (r[j] + g[j]) / self.tau;
                    max = max.max(f[j]);
                }
                let mut total = 0.0;
                for v in &mut f[span.clone()] {
                    *v = (*v - max).exp();
                    total += *v;
                }
                for v in &mut f[span] {
                    *v /= total;
                }
            }
        }
    }

    /// The raw output's gradient from the activations' (`fake`: their output).
    fn activate_backward(&self, fake: &[f32], d_fake: &[f32]) -> Vec<f32> {
        let w = self.width;
        let mut d_raw = vec![0.0f32; fake.len()];
        let rows = ROW_CHUNK * w;
        d_raw
            .par_chunks_mut(rows)
            .zip(fake.par_chunks(rows))
            .zip(d_fake.par_chunks(rows))
            .for_each(|((d_raw, fake), d_fake)| {
                for ((dr, f), df) in d_raw
                    .chunks_exact_mut(w)
                    .zip(fake.chunks_exact(w))
                    .zip(d_fake.chunks_exact(w))
                {
                    for &c in &self.scalars {
                        dr[c] = df[c] * (1.0 - f[c] * f[c]);
                    }
                    for &(s, len) in &self.softmaxes {
                        let dot: f32 = (s..s + len).map(|j| f[j] * df[j]).sum();
                        for j in s..s + len {
                            dr[j] = f[j] * (df[j] - dot) / self.tau;
                        }
                    }
                }
            });
        d_raw
    }

    /// The conditioning loss (cross-entropy of the conditioned column's raw logits against
    /// its category, summed and divided by the batch size), its gradient added to `d_raw`.
    fn condition_loss(&self, raw: &[f32], cond: &[i32], d_raw: &mut [f32]) -> f64 {
        let w = self.width;
        let n = raw.len() / w;
        let inv_n = 1.0 / n as f32;
        let mut total = 0.0f64;
        for (r, &c) in cond.iter().enumerate() {
            let c = c as usize;
            let &(data, start, len) = self
                .cond_spans
                .iter()
                .find(|&&(_, s, len)| (s..s + len).contains(&c))
                .expect("a conditional position lies in a column's span");
            let logits = &raw[r * w + data..r * w + data + len];
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
            let lse = max + sum.ln();
            let target = c - start;
            total += f64::from(lse - logits[target]);
            let d = &mut d_raw[r * w + data..r * w + data + len];
            for (j, (g, &l)) in d.iter_mut().zip(logits).enumerate() {
                let t = if j == target { 1.0 } else { 0.0 };
                *g += ((l - lse).exp() - t) * inv_n;
            }
        }
        total / n as f64
    }

    /// The critic on data rows `x` [n, width] (n a multiple of pac) with their conditional
    /// entries; `masks`: per hidden layer [n / pac, hidden], scaled dropout masks.
    pub fn critic_forward(
        &self,
        params: &HostParams,
        x: &[f32],
        cond: Option<Entries<'_>>,
        masks: &[Vec<f32>],
    ) -> CriticPass {
        let w = self.width;
        let groups = x.len() / w / self.pac;
        let first = self.hidden[0];
        let h1 = first.outputs;
        let mut p = first.start(params, groups, None);
        matmul(
            &mut p,
            Mat::new(x, groups, self.pac * w),
            Mat::new(&self.packed, self.pac * w, h1),
            true,
        );
        if let Some(c) = cond {
            let weight = first.w(params);
            let per_row = w + self.cond_dim;
            let pac = self.pac;
            p.par_chunks_mut(h1).enumerate().for_each(|(g, dst)| {
                for r in g * pac..(g + 1) * pac {
                    let q = r % pac;
                    for j in 0..c.k {
                        let a = c.weight.map_or(1.0, |wt| wt[r * c.k + j]);
                        if a == 0.0 {
                            continue;
                        }
                        let row = q * per_row + w + c.index[r * c.k + j] as usize;
                        for (v, wv) in dst.iter_mut().zip(&weight[row * h1..(row + 1) * h1]) {
                            *v += a * wv;
                        }
                    }
                }
            });
        }
        let mut pre = Vec::with_capacity(self.hidden.len());
        let mut out = Vec::with_capacity(self.hidden.len());
        for (l, mask) in masks.iter().enumerate() {
            let h: Vec<f32> = p
                .iter()
                .zip(mask)
                .map(|(&v, &m)| if v > 0.0 { v } else { v * SLOPE } * m)
                .collect();
            let next = self.hidden.get(l + 1).unwrap_or(&self.critic_out);
            let q = next.forward(params, &h, groups);
            pre.push(p);
            out.push(h);
            p = q;
        }
        CriticPass {
            groups,
            pre,
            out,
            score: p,
        }
    }

    /// The LeakyReLU slope times the mask at each pre-activation of layer `l`, groups
    /// `range`.
    fn slopes(pass: &CriticPass, masks: &[Vec<f32>], l: usize, range: (usize, usize)) -> Vec<f32> {
        let h = pass.pre[l].len() / pass.groups;
        let (a, b) = (range.0 * h, range.1 * h);
        pass.pre[l][a..b]
            .iter()
            .zip(&masks[l][a..b])
            .map(|(&p, &m)| if p > 0.0 { m } else { SLOPE * m })
            .collect()
    }

    /// Back from the scores' gradient `d_score` (groups `range` of the pass) to the first
    /// layer's pre-activations; with `weights`, the weight gradients of the layers above
    /// the first are set on the way.
    fn critic_back_to_first(
        &self,
        params: &mut HostParams,
        pass: &CriticPass,
        masks: &[Vec<f32>],
        range: (usize, usize),
        d_score: &[f32],
        weights: bool,
    ) -> Vec<f32> {
        let g = range.1 - range.0;
        let mut d = d_score.to_vec();
        for l in (0..self.hidden.len()).rev() {
            let next = *self.hidden.get(l + 1).unwrap_or(&self.critic_out);
            let h = next.rows;
            if weights {
                next.gradients(params, &pass.out[l][range.0 * h..range.1 * h], &d, g);
            }
            let mut dh = vec![0.0f32; g * h];
            next.input_gradient(params, &d, g, &mut dh, false);
            for (v, s) in dh.iter_mut().zip(Self::slopes(pass, masks, l, range)) {
                *v *= s;
            }
            d = dh;
        }
        d
    }

    /// One critic step's loss and the critic's gradients. `x`: [3 n, width], the real rows,
    /// the fake rows and their interpolations (n rows each); `cond`: their conditional
    /// entries; `masks`: per hidden layer [3 n / pac, hidden].
    pub fn critic_gradients(
        &self,
        params: &mut HostParams,
        x: &[f32],
        cond: Option<Entries<'_>>,
        masks: &[Vec<f32>],
    ) -> CriticLosses {
        let pass = self.critic_forward(params, x, cond, masks);
        let groups = pass.groups / 3;
        let inv = 1.0 / groups as f32;
        let mean = |s: &[f32]| s.iter().map(|&v| f64::from(v)).sum::<f64>() / groups as f64;
        let y_real = mean(&pass.score[..groups]);
        let y_fake = mean(&pass.score[groups..2 * groups]);

        // The scores' part: -mean(real) + mean(fake), over the real and fake groups only.
        let d_score: Vec<f32> = (0..2 * groups)
            .map(|g| if g < groups { -inv } else { inv })
            .collect();
        let range = (0, 2 * groups);
        let dp = self.critic_back_to_first(params, &pass, masks, range, &d_score, true);
        let first = self.hidden[0];
        let (w, h1) = (self.width, first.outputs);
        let per_row = w + self.cond_dim;
        let rows = 2 * groups * self.pac;
        let mut packed_grad = vec![0.0f32; self.pac * w * h1];
        matmul(
            &mut packed_grad,
            Mat::new(&x[..rows * w], 2 * groups, self.pac * w).t(),
            Mat::new(&dp, 2 * groups, h1),
            false,
        );
        let grad = &mut params.params[first.weight].grad;
        grad.fill(0.0);
        for q in 0..self.pac {
            grad[q * per_row * h1..(q * per_row + w) * h1]
                .copy_from_slice(&packed_grad[q * w * h1..(q + 1) * w * h1]);
        }
        if let Some(c) = cond {
            for r in 0..rows {
                let (g, q) = (r / self.pac, r % self.pac);
                let d = &dp[g * h1..(g + 1) * h1];
                for j in 0..c.k {
                    let a = c.weight.map_or(1.0, |wt| wt[r * c.k + j]);
                    if a == 0.0 {
                        continue;
                    }
                    let row = q * per_row + w + c.index[r * c.k + j] as usize;
                    for (gv, dv) in grad[row * h1..(row + 1) * h1].iter_mut().zip(d) {
                        *gv += a * dv;
                    }
                }
            }
        }
        column_sums(&mut params.params[first.bias].grad, &dp);

        let penalty = self.penalty(params, &pass, masks, (2 * groups, 3 * groups));
        CriticLosses {
            loss: y_fake - y_real + penalty,
            penalty,
        }
    }

    /// The gradient penalty lambda * mean over groups `range` of (||dD/dx|| - 1)^2, its
    /// gradient added to the critic's weight gradients.
    fn penalty(
        &self,
        params: &mut HostParams,
        pass: &CriticPass,
        masks: &[Vec<f32>],
        range: (usize, usize),
    ) -> f64 {
        let g = range.1 - range.0;
        let n = self.hidden.len();
        // delta_L = w_out^T * s_L; delta_l = (delta_{l+1} W_{l+1}^T) * s_l; grad = delta_1 W_1^T.
        let mut slopes: Vec<Vec<f32>> = (0..n)
            .map(|l| Self::slopes(pass, masks, l, range))
            .collect();
        let w_out = self.critic_out.w(params);
        let h_last = self.critic_out.rows;
        let mut deltas: Vec<Vec<f32>> = vec![Vec::new(); n];
        deltas[n - 1] = slopes[n - 1]
            .chunks_exact(h_last)
            .flat_map(|s| s.iter().zip(w_out).map(|(s, w)| s * w))
            .collect();
        for l in (0..n - 1).rev() {
            let next = self.hidden[l + 1];
            let mut e = vec![0.0f32; g * next.rows];
            next.input_gradient(params, &deltas[l + 1], g, &mut e, false);
            for (v, s) in e.iter_mut().zip(&slopes[l]) {
                *v *= s;
            }
            deltas[l] = e;
        }
        let first = self.hidden[0];
        let (k, h1) = (first.rows, first.outputs);
        let mut grad = vec![0.0f32; g * k];
        first.input_gradient(params, &deltas[0], g, &mut grad, false);
        // d/dgrad of lambda / g * sum (norm - 1)^2, norm = sqrt(sum grad^2 + 1e-12).
        let mut total = 0.0f64;
        for row in grad.chunks_exact_mut(k) {
            let sq: f32 = row.iter().map(|v| v * v).sum();
            let norm = (sq + 1e-12).sqrt();
            total += f64::from((norm - 1.0) * (norm - 1.0));
            let scale = self.lambda / g as f32 * 2.0 * (norm - 1.0) / norm;
            for v in row.iter_mut() {
                *v *= scale;
            }
        }
        let d_grad = grad;
        // grad = delta_1 W_1^T: dW_1 += d_grad^T delta_1, d delta_1 = d_grad W_1.
        matmul(
            &mut params.params[first.weight].grad,
            Mat::new(&d_grad, g, k).t(),
            Mat::new(&deltas[0], g, h1),
            true,
        );
        let mut d_delta = vec![0.0f32; g * h1];
        matmul(
            &mut d_delta,
            Mat::new(&d_grad, g, k),
            Mat::new(first.w(params), k, h1),
            false,
        );
        // delta_l = (delta_{l+1} W_{l+1}^T) * s_l: dW_{l+1} += (d delta_l * s_l)^T delta_{l+1},
        // d delta_{l+1} = (d delta_l * s_l) W_{l+1}.
        for l in 0..n - 1 {
            let next = self.hidden[l + 1];
            for (v, s) in d_delta.iter_mut().zip(&slopes[l]) {
                *v *= s;
            }
            matmul(
                &mut params.params[next.weight].grad,
                Mat::new(&d_delta, g, next.rows).t(),
                Mat::new(&deltas[l + 1], g, next.outputs),
                true,
            );
            let mut d_next = vec![0.0f32; g * next.outputs];
            matmul(
                &mut d_next,
                Mat::new(&d_delta, g, next.rows),
                Mat::new(next.w(params), next.rows, next.outputs),
                false,
            );
            d_delta = d_next;
        }
        // delta_L = w_out^T * s_L: d w_out += sum over groups of d delta_L * s_L.
        let s_last = std::mem::take(&mut slopes[n - 1]);
        let d_w_out = &mut params.params[self.critic_out.weight].grad;
        for (dr, sr) in d_delta
            .chunks_exact(h_last)
            .zip(s_last.chunks_exact(h_last))
        {
            for ((gv, d), s) in d_w_out.iter_mut().zip(dr).zip(sr) {
                *gv += d * s;
            }
        }
        f64::from(self.lambda) * total / g as f64
    }

    /// One generator step's loss and the generator's gradients: z [n, embedding_dim],
    /// conditional positions `cond`, Gumbel noise [n, width], critic masks per hidden layer
    /// [n / pac, hidden]. Moves BatchNorm's running statistics, as a train-mode pass does.
    pub fn generator_gradients(
        &self,
        params: &mut HostParams,
        z: &[f32],
        cond: Option<&[i32]>,
        gumbel: &[f32],
        masks: &[Vec<f32>],
    ) -> f64 {
        let pass = self.generator_forward(params, z, cond);
        let fake = self.activate(&pass.raw, gumbel);
        let entries = cond.map(|index| Entries {
            index,
            weight: None,
            k: 1,
        });
        let critic = self.critic_forward(params, &fake, entries, masks);
        let groups = critic.groups;
        let y_fake = critic.score.iter().map(|&v| f64::from(v)).sum::<f64>() / groups as f64;
        let d_score = vec![-1.0 / groups as f32; groups];
        let dp = self.critic_back_to_first(params, &critic, masks, (0, groups), &d_score, false);
        let w = self.width;
        let h1 = self.hidden[0].outputs;
        let mut d_fake = vec![0.0f32; fake.len()];
        matmul(
            &mut d_fake,
            Mat::new(&dp, groups, h1),
            Mat::new(&self.packed, self.pac * w, h1).t(),
            false,
        );
        let mut d_raw = self.activate_backward(&fake, &d_fake);
        let cond_loss = cond.map_or(0.0, |c| self.condition_loss(&pass.raw, c, &mut d_raw));
        self.generator_backward(params, &pass, cond, &d_raw);
        -y_fake + cond_loss
    }

    /// The generator in train mode and the activations, without gradients (the critic
    /// step's fake rows). Moves BatchNorm's running statistics.
    pub fn fake_rows(
        &self,
        params: &mut HostParams,
        z: &[f32],
        cond: Option<&[i32]>,
        gumbel: &[f32],
    ) -> Vec<f32> {
        let pass = self.generator_forward(params, z, cond);
        self.activate(&pass.raw, gumbel)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Fixed, values};
    use super::*;
    use crate::data::layout::Activation;
    use crate::models::ctgan::{self, Conditioning, Ctgan, SparseCond};
    use crate::models::spans::Segments;
    use burn::module::{Module, ParamId};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    const N: usize = 200;

    /// Two continuous columns (a tanh scalar and mode spans) and two discrete ones, 14 wide;
    /// the discrete columns' conditional spans.
    fn layout() -> (Layout, Vec<(usize, usize, usize)>) {
        let layout = Layout::new([
            (Activation::Tanh, 1, 0),
            (Activation::Softmax, 3, 0),
            (Activation::Softmax, 4, 1),
            (Activation::Tanh, 1, 2),
            (Activation::Softmax, 2, 2),
            (Activation::Softmax, 3, 3),
        ]);
        (layout, vec![(4, 0, 4), (11, 4, 3)])
    }

    fn config() -> CtganConfig {
        CtganConfig {
            embedding_dim: 8,
            generator_dims: vec![12, 10],
            discriminator_dims: vec![16, 12],
            pac: 4,
            ..CtganConfig::default()
        }
    }

    /// A model with fixed irregular weights (BatchNorm's gamma and beta included) and its
    /// host copy.
    fn models(d: &Device) -> (Ctgan, HostParams, HostCtgan) {
        let (layout, spans) = layout();
        let cfg = config();
        let model = ctgan::init(&cfg, layout.width(), 7, d).map(&mut Fixed(0));
        let params = HostParams::from_record(model.to_bytes().unwrap().to_vec()).unwrap();
        let host = HostCtgan::new(&params, &cfg, &layout, spans);
        (model, params, host)
    }

    fn t2(v: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    fn conds(seed: usize) -> Vec<i32> {
        (0..N).map(|r| ((r * 7 + seed * 3) % 7) as i32).collect()
    }

    /// Scaled dropout masks (0 or 2) for `groups` groups, one per hidden layer.
    fn masks(groups: usize, seed: usize) -> Vec<Vec<f32>> {
        [16, 12]
            .iter()
            .map(|&h| {
                (0..groups * h)
                    .map(|i| {
                        if (i * 13 + seed).is_multiple_of(5) {
                            0.0
                        } else {
                            2.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Host gradients of `which` equal Burn's within `tol` of each tensor's largest, or of a
    /// tenth of the largest of all (the biases before BatchNorm have gradients of 0 up to
    /// rounding).
    fn assert_gradients(params: &HostParams, which: &[usize], grads: &GradientsParams, tol: f32) {
        let burn: Vec<Vec<f32>> = which
            .iter()
            .map(|&i| {
                let p = &params.params[i];
                let id = ParamId::from(p.id);
                match p.shape.len() {
                    1 => grads.get::<1>(id).unwrap().into_data().try_to_vec::<f32>(),
                    _ => grads.get::<2>(id).unwrap().into_data().try_to_vec::<f32>(),
                }
                .unwrap()
            })
            .collect();
        let largest = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let all = burn.iter().map(|v| largest(v)).fold(0.0f32, f32::max);
        assert!(all > 0.0, "there are gradients");
        for (&i, burn) in which.iter().zip(&burn) {
            let p = &params.params[i];
            let scale = largest(burn).max(0.1 * all);
            for (j, (h, b)) in p.grad.iter().zip(burn).enumerate() {
                assert!(
                    (h - b).abs() <= tol * scale,
                    "{}[{j}]: host {h}, autodiff {b}",
                    p.name
                );
            }
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-4 * b.abs().max(1.0)
    }

    #[test]
    fn generator_pass_equals_the_train_mode_generator() {
        let d = Device::flex().autodiff();
        let (model, mut params, host) = models(&d);
        let z = values(3, N * 8);
        let cond = conds(1);
        let d_raw = values(4, N * 14);
        let pass = host.generator_forward(&mut params, &z, Some(&cond));
        host.generator_backward(&mut params, &pass, Some(&cond), &d_raw);

        let idx = Tensor::<1, Int>::from_data(TensorData::new(cond, [N]), &d);
        let raw = model.generator.forward(t2(z, [N, 8], &d), Some(&idx));
        let burn_raw: Vec<f32> = raw.clone().into_data().try_to_vec::<f32>().unwrap();
        for (h, b) in pass.raw.iter().zip(&burn_raw) {
            assert!((h - b).abs() <= 1e-4 * (1.0 + b.abs()), "raw {h} vs {b}");
        }
        let loss = (raw * t2(d_raw, [N, 14], &d)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model.generator);
        assert_gradients(&params, host.generator_params(), &grads, 1e-4);
        // The running statistics moved the same way.
        let after = HostParams::from_record(model.to_bytes().unwrap().to_vec()).unwrap();
        let mut stats = 0;
        for (h, b) in params.params.iter().zip(&after.params) {
            if h.name.contains("running") {
                stats += 1;
                for (x, y) in h.value.iter().zip(&b.value) {
                    assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{}", h.name);
                }
            }
        }
        assert_eq!(stats, 4, "two blocks' running means and variances");
    }

    #[test]
    fn critic_step_equals_the_penalized_critic_loss() {
        let d = Device::flex().autodiff();
        let (model, mut params, host) = models(&d);
        let (layout, _) = layout();
        let w = layout.width();
        let (real, fake) = (values(5, N * w), values(6, N * w));
        let (real_at, fake_at) = (conds(2), conds(5));
        let groups = N / 4;
        let alpha: Vec<f32> = (0..groups)
            .flat_map(|g| std::iter::repeat_n((g as f32 * 0.37).fract(), 4))
            .collect();
        let mixed: Vec<f32> = (0..N * w)
            .map(|i| real[i] * alpha[i / w] + fake[i] * (1.0 - alpha[i / w]))
            .collect();
        let (mut index, mut weight) = (Vec::new(), Vec::new());
        for &r in &real_at {
            index.extend([r, r]);
            weight.extend([1.0, 0.0]);
        }
        for &f in &fake_at {
            index.extend([f, f]);
            weight.extend([1.0, 0.0]);
        }
        for ((&r, &f), &a) in real_at.iter().zip(&fake_at).zip(&alpha) {
            index.extend([r, f]);
            weight.extend([a, 1.0 - a]);
        }
        let x: Vec<f32> = [real, fake, mixed].concat();
        let m = masks(3 * groups, 1);
        let entries = Entries {
            index: &index,
            weight: Some(&weight),
            k: 2,
        };
        let got = host.critic_gradients(&mut params, &x, Some(entries), &m);

        let cond = SparseCond {
            index: Tensor::from_data(TensorData::new(index, [3 * N, 2]), &d),
            weight: Some(t2(weight, [3 * N, 2], &d)),
        };
        let masks: Vec<Tensor<2>> = m
            .into_iter()
            .zip([16, 12])
            .map(|(v, h)| t2(v, [3 * groups, h], &d))
            .collect();
        let critic = &model.critic;
        let pass = critic.forward(t2(x, [3 * N, w], &d), Some(&cond), &masks);
        let y_real = pass.score.clone().narrow(0, 0, groups).mean();
        let y_fake = pass.score.clone().narrow(0, groups, groups).mean();
        let mix_masks: Vec<Tensor<2>> = masks
            .iter()
            .map(|t| t.clone().narrow(0, 2 * groups, groups))
            .collect();
        let penalty = critic.gradient_penalty(&pass.rows(2 * groups, groups), &mix_masks, 10.0);
        let loss = y_fake - y_real + penalty.clone();
        let scalar = |t: Tensor<1>| f64::from(t.into_scalar::<f32>());
        assert!(
            close(got.penalty, scalar(penalty.clone())),
            "penalty {got:?}"
        );
        assert!(close(got.loss, scalar(loss.clone())), "loss {got:?}");
        assert!(got.penalty > 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model.critic);
        assert_gradients(&params, host.critic_params(), &grads, 1e-4);
    }

    #[test]
    fn generator_step_equals_the_critic_and_conditioning_loss() {
        let d = Device::flex().autodiff();
        let (model, mut params, host) = models(&d);
        let (layout, spans) = layout();
        let w = layout.width();
        let z = values(7, N * 8);
        let cond = conds(3);
        let gumbel: Vec<f32> = values(8, N * w).iter().map(|v| v * 2.0).collect();
        let groups = N / 4;
        let m = masks(groups, 2);
        let got = host.generator_gradients(&mut params, &z, Some(&cond), &gumbel, &m);

        let idx = Tensor::<1, Int>::from_data(TensorData::new(cond.clone(), [N]), &d);
        let raw = model.generator.forward(t2(z, [N, 8], &d), Some(&idx));
        let softmax = Segments::softmaxes(&layout, &d);
        let fake = ctgan::activate(raw.clone(), &softmax, t2(gumbel, [N, w], &d), 0.2);
        let masks: Vec<Tensor<2>> = m
            .into_iter()
            .zip([16, 12])
            .map(|(v, h)| t2(v, [groups, h], &d))
            .collect();
        let sparse = SparseCond {
            index: idx.reshape([N, 1]),
            weight: None,
        };
        let critic = model.critic.clone().no_grad();
        let y_fake = critic.forward(fake, Some(&sparse), &masks).score.mean();
        // The one-hot conditional vectors and which column each conditions.
        let mut one_hot = vec![0.0f32; N * 7];
        let mut column = vec![0.0f32; N * 2];
        for (r, &c) in cond.iter().enumerate() {
            one_hot[r * 7 + c as usize] = 1.0;
            column[r * 2 + usize::from(c >= 4)] = 1.0;
        }
        let conditioning = Conditioning::new(w, 7, &spans, &d);
        let cond_loss = ctgan::condition_loss(
            raw,
            t2(one_hot, [N, 7], &d),
            t2(column, [N, 2], &d),
            &conditioning,
        );
        let loss = y_fake.neg() + cond_loss;
        let want = f64::from(loss.clone().into_scalar::<f32>());
        assert!(close(got, want), "{got} vs {want}");
        let grads = GradientsParams::from_grads(loss.backward(), &model.generator);
        assert_gradients(&params, host.generator_params(), &grads, 1e-4);
    }
}
