//! A variational Bayesian Gaussian mixture in one dimension with a Dirichlet-process
//! (stick-breaking) prior on the weights: the mode finder of CTGAN's mode-specific
//! normalization (Xu et al. 2019, section 4.2).
//!
//! The updates are the standard mean-field ones for a Gauss-Wishart model (Bishop, PRML,
//! section 10.2, eqs. 10.51-10.66, here with one dimension, where the Wishart is a Gamma)
//! with the truncated stick-breaking weights of Blei & Jordan (2006, section 3). Priors:
//! mean = data mean with precision factor 1, degrees of freedom 1, scale = data variance,
//! stick-breaking Beta(1, `weight_prior`). Initial responsibilities come from 1-D k-means
//! seeded at quantiles, so fitting is deterministic.
//!
//! The data are compressed to distinct values with counts first: responsibilities depend only
//! on the value, so this is exact and makes long-tailed columns (capital-gain: mostly zero)
//! cheap. The E and M steps run over fixed chunks of the distinct values in parallel (the
//! chunks' sums added in order, so a fit does not depend on the thread count): a column with
//! many distinct values (fnlwgt: about 21,000) no longer keeps one core busy while the other
//! waits.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings of a fit.
#[derive(Debug, Clone, Copy)]
pub struct GmmOptions {
    pub components: usize,
    pub weight_prior: f64,
    pub max_iter: usize,
}

/// One mixture component with the variational quantities needed to compute responsibilities
/// of new values (eq. 10.67 of PRML with the stick-breaking expectation of log weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Expected mixture weight.
    pub weight: f64,
    /// Posterior mean of the component mean (m_k).
    pub mean: f64,
    /// Standard deviation of the component, sqrt(W_k^-1 / nu_k).
    pub std: f64,
    /// E[ln pi_k] under the stick-breaking posterior.
    pub log_weight: f64,
    /// beta_k: precision factor of the mean.
    pub beta: f64,
    /// nu_k: degrees of freedom.
    pub dof: f64,
    /// W_k^-1: inverse scale of the precision.
    pub inv_scale: f64,
}

impl Component {
    /// E[ln pi_k] + E[ln N(x | mu_k, Lambda_k^-1)] without the constant -ln(2 pi)/2, as
    /// `offset - precision / 2 * (x - mean)^2` (PRML eqs. 10.64-10.65).
    pub fn log_terms(&self) -> (f64, f64) {
        let offset = self.log_weight
            + 0.5 * (digamma(0.5 * self.dof) + std::f64::consts::LN_2 - self.inv_scale.ln())
            - 0.5 / self.beta;
        (offset, self.dof / self.inv_scale)
    }
}

/// A fitted mixture: all components, in their original order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    pub components: Vec<Component>,
    pub iterations: usize,
}

impl Mixture {
    /// Fit to `values` (finite numbers, not empty).
    pub fn fit(values: &[f64], options: GmmOptions) -> Mixture {
        assert!(!values.is_empty(), "a mixture needs data");
        let (xs, counts) = distinct_with_counts(values);
        let n: f64 = counts.iter().sum();
        let k = options.components;
        let mean = xs.iter().zip(&counts).map(|(x, c)| x * c).sum::<f64>() / n;
        let var = if n > 1.0 {
            xs.iter()
                .zip(&counts)
                .map(|(x, c)| c * (x - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0)
        } else {
            0.0
        };
        // The scale prior must be positive for a constant column too.
        let prior = Prior {
            mean,
            beta: 1.0,
            dof: 1.0,
            inv_scale: var.max(1e-12 * (1.0 + mean * mean)),
            concentration: options.weight_prior,
        };
        // Regularization added to every component's variance, relative to the data's scale.
        let reg = 1e-6 * prior.inv_scale;

        let mut resp = kmeans_responsibilities(&xs, &counts, k);
        let mut comps = m_step(&xs, &counts, &resp, k, &prior, reg);
        let mut iterations = 0;
        let scale = prior.inv_scale.sqrt();
        for it in 0..options.max_iter {
            iterations = it + 1;
            e_step(&xs, &comps, &mut resp);
            let next = m_step(&xs, &counts, &resp, k, &prior, reg);
            let change = comps
                .iter()
                .zip(&next)
                .map(|(a, b)| (a.mean - b.mean).abs() / scale + (a.weight - b.weight).abs())
                .fold(0.0, f64::max);
            comps = next;
            if change < 1e-7 {
                break;
            }
        }
        Mixture {
            components: comps,
            iterations,
        }
    }

    /// Responsibilities of `components` for value `x`, normalized over them.
    pub fn responsibilities(components: &[Component], x: f64, out: &mut [f64]) {
        let terms: Vec<(f64, f64)> = components.iter().map(Component::log_terms).collect();
        responsibilities_with(&terms, components, x, out);
    }
}

/// Responsibilities from precomputed [`Component::log_terms`].
pub fn responsibilities_with(
    terms: &[(f64, f64)],
    components: &[Component],
    x: f64,
    out: &mut [f64],
) {
    shifted_log_terms(terms, components, x, out);
    for o in out.iter_mut() {
        *o = o.exp();
    }
    normalize(out);
}

/// Responsibilities of many values against fixed components (constants computed once): each
/// row's shifted log-terms, then e^ of them all in one pass (vectorized where the CPU
/// allows), then each row normalized.
pub fn responsibilities_many(components: &[Component], xs: &[f64], out: &mut [f64]) {
    let k = components.len();
    let terms: Vec<(f64, f64)> = components.iter().map(Component::log_terms).collect();
    for (&x, row) in xs.iter().zip(out.chunks_exact_mut(k)) {
        shifted_log_terms(&terms, components, x, row);
    }
    exp_nonpositive_in_place(&mut out[..xs.len() * k]);
    for row in out.chunks_exact_mut(k) {
        normalize(row);
    }
}

/// Each component's log-term at `x` less the largest of them, into `out` (all <= 0).
fn shifted_log_terms(terms: &[(f64, f64)], components: &[Component], x: f64, out: &mut [f64]) {
    let mut max = f64::NEG_INFINITY;
    for ((o, &(offset, precision)), c) in out.iter_mut().zip(terms).zip(components) {
        let d = x - c.mean;
        *o = offset - 0.5 * precision * d * d;
        max = max.max(*o);
    }
    for o in out.iter_mut() {
        *o -= max;
    }
}

/// Scale `row` to sum to 1.
fn normalize(row: &mut [f64]) {
    let inv = 1.0 / row.iter().sum::<f64>();
    for o in row {
        *o *= inv;
    }
}

/// e^x for every x <= 0 of `xs`, in place. With AVX2 and FMA, a vectorized polynomial
/// ([`exp_nonpositive`]); otherwise `f64::exp`.
fn exp_nonpositive_in_place(xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { exp_nonpositive_avx2(xs) };
        return;
    }
    for x in xs {
        *x = x.exp();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_nonpositive_avx2(xs: &mut [f64]) {
    for x in xs {
        *x = exp_nonpositive(*x);
    }
}

/// e^x for x <= 0, within 2 ulp of `f64::exp`; below -708, e^-708 (about 3e-308), which
/// next to a row's largest term, 1, counts for nothing. No calls or branches, so that a loop
/// over it vectorizes; `mul_add` is one instruction where FMA is enabled.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // x = n ln 2 + r, |r| <= ln 2 / 2; e^x = 2^n e^r.
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 to 32 bits: n * LN2_HI is exact.
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // ln 2 - LN2_HI.
    let x = x.max(-708.0);
    let t = x.mul_add(std::f64::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // Taylor series to r^12 / 12!: the next term is below 2^-53 for |r| <= 0.347.
    let mut p: f64 = 1.0 / 479_001_600.0;
    for d in [
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p.mul_add(r, 1.0 / d);
    }
    // t's low bits hold n (two's complement, above ROUND's); 2^n has exponent field n + 1023.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f64::from_bits(n_bits.wrapping_add(1023) << 52)
}

struct Prior {
    mean: f64,
    beta: f64,
    dof: f64,
    inv_scale: f64,
    concentration: f64,
}

/// Sorted distinct values and how often each occurs.
fn distinct_with_counts(values: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut xs: Vec<f64> = Vec::new();
    let mut counts: Vec<f64> = Vec::new();
    for x in sorted {
        match xs.last() {
            Some(&last) if last == x => *counts.last_mut().expect("paired") += 1.0,
            _ => {
                xs.push(x);
                counts.push(1.0);
            }
        }
    }
    (xs, counts)
}

/// Hard k-means assignments in one dimension, centers seeded by k-means++ (Arthur &
/// Vassilvitskii 2007) over the distinct values weighted by their counts, with a fixed-seed RNG
/// so that fitting is deterministic. Returns responsibilities `[xs.len() * k]`.
fn kmeans_responsibilities(xs: &[f64], counts: &[f64], k: usize) -> Vec<f64> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d6d);
    let pick = |weights: &[f64], rng: &mut rand::rngs::StdRng| {
        let total: f64 = weights.iter().sum();
        let mut u = rng.random::<f64>() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.len() - 1
    };
    let mut centers = vec![xs[pick(counts, &mut rng)]];
    let mut d2: Vec<f64> = xs.iter().map(|x| (x - centers[0]).powi(2)).collect();
    while centers.len() < k {
        let weights: Vec<f64> = d2.iter().zip(counts).map(|(d, c)| d * c).collect();
        if weights.iter().sum::<f64>() <= 0.0 {
            // Fewer distinct values than components: the rest start empty.
            break;
        }
        let c = xs[pick(&weights, &mut rng)];
        for (d, x) in d2.iter_mut().zip(xs) {
            *d = d.min((x - c).powi(2));
        }
        centers.push(c);
    }
    let k_used = centers.len();
    let mut assign = vec![0usize; xs.len()];
    for _ in 0..100 {
        let mut changed = false;
        for (a, &x) in assign.iter_mut().zip(xs) {
            let best = (0..k_used)
                .min_by(|&p, &q| (x - centers[p]).abs().total_cmp(&(x - centers[q]).abs()))
                .expect("k >= 1");
            if *a != best {
                *a = best;
                changed = true;
            }
        }
        let mut sums = vec![0.0; k_used];
        let mut weights = vec![0.0; k_used];
        for ((&a, &x), &c) in assign.iter().zip(xs).zip(counts) {
            sums[a] += c * x;
            weights[a] += c;
        }
        for j in 0..k_used {
            if weights[j] > 0.0 {
                centers[j] = sums[j] / weights[j];
            }
        }
        if !changed {
            break;
        }
    }
    let mut resp = vec![0.0; xs.len() * k];
    for (i, &a) in assign.iter().enumerate() {
        resp[i * k + a] = 1.0;
    }
    resp
}

/// Variational M-step: posterior parameters from responsibilities (PRML 10.51-10.63,
/// Blei & Jordan 2006 for the stick-breaking weights).
fn m_step(
    xs: &[f64],
    counts: &[f64],
    resp: &[f64],
    k: usize,
    prior: &Prior,
    reg: f64,
) -> Vec<Component> {
    let tiny = 10.0 * f64::EPSILON;
    // Per component: N_k and sum r x, then the scatter about the component means.
    let sums = ordered_sums(xs, counts, resp, 2 * k, |x, c, r, acc| {
        for (j, &rj) in r.iter().enumerate() {
            let w = c * rj;
            acc[j] += w;
            acc[k + j] += w * x;
        }
    });
    let nk: Vec<f64> = sums[..k].iter().map(|s| tiny + s).collect();
    let xbar: Vec<f64> = (0..k).map(|j| sums[k + j] / nk[j]).collect();
    let sk = ordered_sums(xs, counts, resp, k, |x, c, r, acc| {
        for ((a, &rj), m) in acc.iter_mut().zip(r).zip(&xbar) {
            *a += c * rj * (x - m).powi(2);
        }
    });
    // Stick-breaking posteriors Beta(a_j, b_j): a_j = 1 + N_j, b_j = gamma + sum_{l>j} N_l.
    let mut tail = 0.0;
    let mut b = vec![0.0; k];
    for j in (0..k).rev() {
        b[j] = prior.concentration + tail;
        tail += nk[j];
    }
    let a: Vec<f64> = nk.iter().map(|n| 1.0 + n).collect();
    let mut comps = Vec::with_capacity(k);
    let mut log_rest = 0.0; // sum_{l<j} E[ln(1 - v_l)]
    let mut rest = 1.0; // prod_{l<j} E[1 - v_l]
    for j in 0..k {
        let s = sk[j] / nk[j] + reg;
        let beta = prior.beta + nk[j];
        let mean = (prior.beta * prior.mean + nk[j] * xbar[j]) / beta;
        let dof = prior.dof + nk[j];
        let inv_scale = prior.inv_scale
            + nk[j] * s
            + prior.beta * nk[j] / beta * (xbar[j] - prior.mean).powi(2);
        let dg = digamma(a[j] + b[j]);
        let log_weight = digamma(a[j]) - dg + log_rest;
        log_rest += digamma(b[j]) - dg;
        let weight = rest * a[j] / (a[j] + b[j]);
        rest *= b[j] / (a[j] + b[j]);
        comps.push(Component {
            weight,
            mean,
            std: (inv_scale / dof).sqrt(),
            log_weight,
            beta,
            dof,
            inv_scale,
        });
    }
    let total: f64 = comps.iter().map(|c| c.weight).sum();
    for c in &mut comps {
        c.weight /= total;
    }
    comps
}

/// Distinct values per chunk of the E-step and of [`ordered_sums`]: fixed, so that a fit does
/// not depend on the number of threads.
const CHUNK: usize = 1024;

/// Sums over the distinct values `xs` (with `counts` and responsibility rows of `resp`, `k`
/// wide) of `add(x, count, row, acc)` into `m` accumulators: in parallel chunks, the chunks'
/// sums added in order.
fn ordered_sums(
    xs: &[f64],
    counts: &[f64],
    resp: &[f64],
    m: usize,
    add: impl Fn(f64, f64, &[f64], &mut [f64]) + Sync,
) -> Vec<f64> {
    let k = resp.len() / xs.len();
    let parts: Vec<Vec<f64>> = xs
        .par_chunks(CHUNK)
        .zip(counts.par_chunks(CHUNK))
        .zip(resp.par_chunks(CHUNK * k))
        .map(|((xs, counts), resp)| {
            let mut acc = vec![0.0; m];
            for ((&x, &c), r) in xs.iter().zip(counts).zip(resp.chunks_exact(k)) {
                add(x, c, r, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0.0; m];
    for part in parts {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

/// Variational E-step: responsibilities from the current posteriors (PRML 10.67), in
/// parallel chunks.
fn e_step(xs: &[f64], comps: &[Component], resp: &mut [f64]) {
    let k = comps.len();
    xs.par_chunks(CHUNK)
        .zip(resp.par_chunks_mut(CHUNK * k))
        .for_each(|(xs, resp)| responsibilities_many(comps, xs, resp));
}

/// The digamma function psi(x) for x > 0: recurrence up to x >= 6, then the asymptotic
/// series (Abramowitz & Stegun 6.3.18).
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    acc + x.ln()
        - 0.5 * inv
        - inv2
            * (1.0 / 12.0
                - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn exp_of_many_matches_exp() {
        let edges = [0.0, -1e-300, -0.5 * std::f64::consts::LN_2, -1.0, -745.0];
        let mut xs: Vec<f64> = (0..=200_000)
            .map(|i| -708.0 * f64::from(i) / 200_000.0)
            .chain(edges)
            .chain([f64::NEG_INFINITY])
            .collect();
        let want: Vec<f64> = xs.iter().map(|x| x.exp().max((-708f64).exp())).collect();
        exp_nonpositive_in_place(&mut xs);
        for (g, w) in xs.iter().zip(&want) {
            assert!(((g - w) / w).abs() < 5e-16, "{g} against {w}");
        }
    }

    #[test]
    fn digamma_matches_known_values() {
        // psi(1) = -Euler-Mascheroni; psi(1/2) = -gamma - 2 ln 2; psi(10) from tables.
        let gamma = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + gamma).abs() < 1e-12);
        assert!((digamma(0.5) + gamma + 2.0 * std::f64::consts::LN_2).abs() < 1e-12);
        assert!((digamma(10.0) - 2.251_752_589_066_721).abs() < 1e-12);
    }

    #[test]
    fn a_fit_does_not_depend_on_the_thread_count() {
        // 4,000 distinct values: several chunks of the E and M steps.
        let mut rng = StdRng::seed_from_u64(3);
        let a = Normal::new(0.0, 1.0).unwrap();
        let values: Vec<f64> = (0..4000).map(|_| a.sample(&mut rng)).collect();
        let fit = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                Mixture::fit(
                    &values,
                    GmmOptions {
                        components: 10,
                        weight_prior: 0.001,
                        max_iter: 20,
                    },
                )
            })
        };
        assert_eq!(fit(1), fit(3));
    }

    #[test]
    fn finds_the_two_modes_of_a_bimodal_sample() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = Normal::new(-5.0, 1.0).unwrap();
        let b = Normal::new(10.0, 2.0).unwrap();
        let mut values: Vec<f64> = (0..3000).map(|_| a.sample(&mut rng)).collect();
        values.extend((0..1000).map(|_| b.sample(&mut rng)));
        let m = Mixture::fit(
            &values,
            GmmOptions {
                components: 10,
                weight_prior: 0.001,
                max_iter: 100,
            },
        );
        let kept: Vec<&Component> = m.components.iter().filter(|c| c.weight > 0.005).collect();
        // Mean-field VB may split one mode over several components (as the reference's
        // BayesianGaussianMixture does): every kept component must sit on a true mode, and the
        // components of each mode together must give its weight, mean and spread.
        for (truth, weight, mean, std) in [(-5.0, 0.75, -5.0, 1.0), (10.0, 0.25, 10.0, 2.0)] {
            let near: Vec<&&Component> = kept
                .iter()
                .filter(|c| (c.mean - truth).abs() < 1.0)
                .collect();
            let w: f64 = near.iter().map(|c| c.weight).sum();
            let mu: f64 = near.iter().map(|c| c.weight * c.mean).sum::<f64>() / w;
            let var: f64 = near
                .iter()
                .map(|c| c.weight * (c.std.powi(2) + c.mean.powi(2)))
                .sum::<f64>()
                / w
                - mu * mu;
            assert!((w - weight).abs() < 0.02, "mode {truth}: weight {w}");
            assert!((mu - mean).abs() < 0.1 * std, "mode {truth}: mean {mu}");
            assert!(
                (var.sqrt() - std).abs() < 0.1 * std,
                "mode {truth}: std {}",
                var.sqrt()
            );
        }
        let total: f64 = kept.iter().map(|c| c.weight).sum();
        assert!(total > 0.99, "kept weight {total}: {:#?}", m.components);
    }

    #[test]
    fn a_constant_column_gets_one_tight_mode() {
        let m = Mixture::fit(
            &[3.0; 50],
            GmmOptions {
                components: 10,
                weight_prior: 0.001,
                max_iter: 100,
            },
        );
        let kept: Vec<&Component> = m.components.iter().filter(|c| c.weight > 0.005).collect();
        assert_eq!(kept.len(), 1);
        assert!((kept[0].mean - 3.0).abs() < 1e-9);
        assert!(kept[0].std.is_finite() && kept[0].std > 0.0);
    }
}
