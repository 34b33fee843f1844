//! Host-side noise for training and sampling, drawn in parallel chunks. Each chunk has its own
//! generator seeded from the caller's, so a result depends on the seed only, not on the number
//! of threads. The chunks' generators are xoshiro (`SmallRng`, and [`Normals`]' eight lanes):
//! noise needs no cryptographic strength, and ChaCha cost about as much as the normal draws
//! built on it.

use rand::rngs::{SmallRng, StdRng};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1};

use crate::data::transformer::mix_seed;
use rayon::prelude::*;

/// Values per chunk: large enough that handing a chunk to a thread pays back. (Changing it
/// changes what a seed draws.)
const CHUNK: usize = 1 << 15;

/// Fills `out` in parallel chunks of `chunk` values, chunk i by `fill(chunk, seeds[i])`: each
/// chunk draws from a generator of its own, seeded by its seed.
pub fn seeded_chunks(
    out: &mut [f32],
    chunk: usize,
    seeds: &[u64],
    fill: impl Fn(&mut [f32], u64) + Sync,
) {
    assert_eq!(seeds.len(), out.len().div_ceil(chunk), "one seed per chunk");
    out.par_chunks_mut(chunk)
        .zip(seeds)
        .for_each(|(c, &seed)| fill(c, seed));
}

/// `n` values in chunks of [`CHUNK`], each chunk filled by `fill` from its own seed (drawn
/// from `rng` in order).
fn chunked(n: usize, rng: &mut StdRng, fill: impl Fn(&mut [f32], u64) + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    let seeds = seeds(n.div_ceil(CHUNK), rng);
    seeded_chunks(&mut out, CHUNK, &seeds, fill);
    out
}

/// `n` values, each drawn by `draw` from its chunk's `SmallRng`.
fn drawn(n: usize, rng: &mut StdRng, draw: impl Fn(&mut SmallRng) -> f32 + Sync) -> Vec<f32> {
    chunked(n, rng, |chunk, seed| {
        let r = &mut SmallRng::seed_from_u64(seed);
        for v in chunk {
            *v = draw(r);
        }
    })
}

/// `n` standard normal values ([`Normals`], one generator per chunk).
pub fn standard_normals(n: usize, rng: &mut StdRng) -> Vec<f32> {
    chunked(n, rng, |chunk, seed| Normals::new(seed).fill(chunk))
}

/// Lanes of [`Normals`]: eight 32-bit generators fill one AVX2 register.
const LANES: usize = 8;

/// Standard normal draws, eight at a time: eight xoshiro128++ generators side by side, one per
/// lane, and each 32-bit draw turned into a normal by the normal quantile function
/// ([`probit_of_bits`]). No calls, and one branch, rarely taken, for the tail: the loop
/// vectorizes. A draw's top 24 bits make the uniform, so values lie within about +-5.42 (the
/// mass beyond is 6e-8).
#[derive(Debug, Clone)]
pub struct Normals {
    /// xoshiro128++ state words s0..s3, each across the lanes.
    s: [[u32; LANES]; 4],
}

impl Normals {
    /// Lanes seeded from `seed` by SplitMix64 ([`mix_seed`]).
    pub fn new(seed: u64) -> Self {
        let mut s = [[0u32; LANES]; 4];
        for lane in 0..LANES {
            let (a, b) = (
                mix_seed(seed, 2 * lane as u64),
                mix_seed(seed, 2 * lane as u64 + 1),
            );
            let mut words = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
            // xoshiro's one forbidden state (2^-128 likely).
            if words == [0; 4] {
                words[0] = 1;
            }
            for (state, word) in s.iter_mut().zip(words) {
                state[lane] = word;
            }
        }
        Normals { s }
    }

    /// The next 32-bit draw of every lane (xoshiro128++).
    #[inline(always)]
    fn next(&mut self) -> [u32; LANES] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0u32; LANES];
        for l in 0..LANES {
            out[l] = s0[l].wrapping_add(s3[l]).rotate_left(7).wrapping_add(s0[l]);
            let t = s1[l] << 9;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(11);
        }
        out
    }

    /// Fills `out` with standard normal values. A length that is not a multiple of
    /// [`BATCH`] leaves the last batch's other draws unused: what follows depends on the
    /// lengths filled.
    pub fn fill(&mut self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { self.fill_avx2(out) };
            return;
        }
        self.fill_batches(out);
    }

    /// [`Normals::fill`] compiled for AVX2: the same operations (no FMA contraction), so the
    /// same values, eight lanes per instruction.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fill_avx2(&mut self, out: &mut [f32]) {
        self.fill_batches(out);
    }

    #[inline(always)]
    fn fill_batches(&mut self, out: &mut [f32]) {
        let mut chunks = out.chunks_exact_mut(BATCH);
        for chunk in &mut chunks {
            self.batch(chunk.try_into().expect("a whole batch"));
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut last = [0.0f32; BATCH];
            self.batch(&mut last);
            rest.copy_from_slice(&last[..rest.len()]);
        }
    }

    /// [`BATCH`] normals: four draws of every lane, each step done over all of them, so that
    /// four vectors' long chains of dependent operations (the logarithm, the polynomial)
    /// overlap. [`probit_of_bits`] of each draw, value for value.
    #[inline(always)]
    fn batch(&mut self, out: &mut [f32; BATCH]) {
        let mut x = [0.0f32; BATCH];
        for k in 0..BATCH / LANES {
            let bits = self.next();
            for (x, &b) in x[k * LANES..].iter_mut().zip(&bits) {
                *x = centered_uniform(b);
            }
        }
        let mut w = [0.0f32; BATCH];
        for (w, &x) in w.iter_mut().zip(&x) {
            *w = probit_w(x);
        }
        for ((o, &x), &w) in out.iter_mut().zip(&x).zip(&w) {
            *o = x * central_q(w);
        }
        // The tail (|z| above 2.93, 0.34 % of draws) in about one batch in ten.
        if w.iter().any(|&w| w >= TAIL_FROM) {
            for ((o, &x), &w) in out.iter_mut().zip(&x).zip(&w) {
                if w >= TAIL_FROM {
                    *o = x * tail_q(w);
                }
            }
        }
    }
}

/// Values per [`Normals`] batch.
const BATCH: usize = 4 * LANES;

/// The standard normal quantile of u = (j + 1/2) / 2^24, j the top 24 bits of `bits`.
#[cfg(test)]
fn probit_of_bits(bits: u32) -> f32 {
    probit_centered(centered_uniform(bits))
}

/// x = 2u - 1 = (2j + 1 - 2^24) / 2^24 for u = (j + 1/2) / 2^24, j the top 24 bits of `bits`:
/// exact in f32, in (-1, 1), symmetric around 0.
#[inline(always)]
fn centered_uniform(bits: u32) -> f32 {
    let j = (bits >> 8) as i32;
    (2 * j + 1 - (1 << 24)) as f32 * (1.0 / 16_777_216.0)
}

/// Polynomial coefficients (lowest degree first) of q(w) = sqrt(2) erfinv(x) / x in
/// w = -ln(1 - x^2): `CENTRAL` in (w - 2.5) / 2.5 for w in [0, 5], `TAIL` in
/// (sqrt w - m) / h for sqrt w in [sqrt 5, 4] (m, h: that interval's middle and half width).
/// Degree-9 Chebyshev fits (scripts/normal-quantile-fit.py); largest relative error of the
/// quantile 2.6e-7 in f32, checked there on every x the draws can give.
const CENTRAL: [f32; 10] = [
    2.123_313_4,
    0.872_005_1,
    -0.036_923_26,
    -0.027_682_09,
    0.012_062_077,
    -0.000_684_974_25,
    -0.001_195_782_6,
    0.000_401_742_93,
    5.024_895_7e-5,
    -4.714_961e-5,
];
const TAIL: [f32; 10] = [
    4.173_809,
    1.251_803,
    0.007_877_553,
    -0.005_246_163_3,
    0.003_311_686,
    -0.001_945_782_6,
    0.000_883_099_3,
    -0.000_181_710_16,
    -9.432_517e-5,
    5.802_086_5e-5,
];
/// Where `TAIL` takes over, in w.
const TAIL_FROM: f32 = 5.0;
const TAIL_MID: f64 = (2.236_067_977_499_79 + 4.0) / 2.0;
const TAIL_HALF: f64 = (4.0 - 2.236_067_977_499_79) / 2.0;

/// Phi^-1((1 + x) / 2) = sqrt(2) erfinv(x) = x q(w) for x in (-1, 1), |x| <= 1 - 2^-24.
#[cfg(test)]
fn probit_centered(x: f32) -> f32 {
    let w = probit_w(x);
    x * if w < TAIL_FROM {
        central_q(w)
    } else {
        tail_q(w)
    }
}

#[inline(always)]
fn probit_w(x: f32) -> f32 {
    -ln_positive((1.0 - x) * (1.0 + x))
}

#[inline(always)]
fn central_q(w: f32) -> f32 {
    horner(&CENTRAL, w * (1.0 / 2.5) - 1.0)
}

#[inline(always)]
fn tail_q(w: f32) -> f32 {
    horner(
        &TAIL,
        w.sqrt() * (1.0 / TAIL_HALF) as f32 - (TAIL_MID / TAIL_HALF) as f32,
    )
}

#[inline(always)]
fn horner(coefficients: &[f32], t: f32) -> f32 {
    coefficients.iter().rev().fold(0.0, |acc, &c| acc * t + c)
}

/// ln a for a normal, positive f32: a = 2^e m, m in [sqrt(1/2), sqrt 2), and
/// ln m = 2 atanh s = 2 (s + s^3/3 + ... + s^9/9) with s = (m - 1) / (m + 1), |s| <= 0.172
/// (the next term is below 4e-10). Bit operations and arithmetic only.
#[inline(always)]
fn ln_positive(a: f32) -> f32 {
    let bits = a.to_bits();
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = ((bits >> 23) as i32 - 127 + i32::from(big)) as f32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = (((s2 * (1.0 / 9.0) + 1.0 / 7.0) * s2 + 1.0 / 5.0) * s2 + 1.0 / 3.0) * s2 + 1.0;
    e * std::f32::consts::LN_2 + 2.0 * s * p
}

/// `n` Gumbel(0, 1) values, -ln E with E standard exponential (drawn by ziggurat): one
/// logarithm per value instead of the two of -ln(-ln u).
pub fn gumbels(n: usize, rng: &mut StdRng) -> Vec<f32> {
    drawn(n, rng, |r| {
        let e: f32 = Exp1.sample(r);
        -e.max(f32::MIN_POSITIVE).ln()
    })
}

/// `n` inverted-dropout mask values: 0 with probability `p`, else 1 / (1 - p).
pub fn dropout_mask(n: usize, p: f64, rng: &mut StdRng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    drawn(n, rng, |r| if r.random::<f64>() < p { 0.0 } else { keep })
}

/// `n` seeds for per-block generators, drawn in order from `rng`.
pub fn seeds(n: usize, rng: &mut StdRng) -> Vec<u64> {
    (0..n).map(|_| rng.random()).collect()
}

/// For each row of `block` (rows `width` wide) and each span `(start, width)` of logits,
/// draws a category from the span's softmax and writes it as a one-hot vector over the span.
/// This is the distribution of the argmax of Gumbel-perturbed logits (the Gumbel-max trick),
/// drawn with one uniform and one exponential per position instead of two logarithms.
pub fn one_hot_draws(block: &mut [f32], width: usize, spans: &[(usize, usize)], r: &mut SmallRng) {
    for row in block.chunks_exact_mut(width) {
        for &(start, w) in spans {
            let logits = &mut row[start..start + w];
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0f32;
            for l in logits.iter_mut() {
                *l = (*l - max).exp();
                total += *l;
            }
            let mut left = r.random::<f32>() * total;
            // The last category also takes what rounding leaves over.
            let mut pick = w - 1;
            for (k, &p) in logits.iter().enumerate() {
                if left < p {
                    pick = k;
                    break;
                }
                left -= p;
            }
            logits.fill(0.0);
            logits[pick] = 1.0;
        }
    }
}

/// For each row of `block` (rows `width` wide) and each position `c` of `scalars`, replaces the
/// value x with a draw from N(tanh x, sigma[c]): TVAE decoder's likelihood, as the reference
/// samples it.
pub fn tanh_gaussians(
    block: &mut [f32],
    width: usize,
    scalars: &[usize],
    sigma: &[f32],
    normals: &mut Normals,
) {
    if scalars.is_empty() {
        return;
    }
    let mut e = vec![0.0f32; block.len() / width * scalars.len()];
    normals.fill(&mut e);
    for (row, e) in block
        .chunks_exact_mut(width)
        .zip(e.chunks_exact(scalars.len()))
    {
        for (&c, &e) in scalars.iter().zip(e) {
            row[c] = row[c].tanh() + sigma[c] * e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_is_odd_strictly_increasing_and_bounded_over_every_draw() {
        // Every 24-bit uniform the draws can give: j >= 2^23 are the positive half, and
        // 2^24 - 1 - j mirrors j.
        let z = |j: u32| probit_of_bits(j << 8);
        let mut last = 0.0f32;
        for j in 1 << 23..1 << 24 {
            let v = z(j);
            assert!(v > last, "strictly increasing at {j}: {v} after {last}");
            assert_eq!(z((1 << 24) - 1 - j), -v, "odd at {j}");
            last = v;
        }
        assert!((5.41..5.43).contains(&last), "largest draw {last}");
    }

    #[test]
    fn probit_gives_the_normal_quantiles() {
        // Phi(z) for z = 0.5, 1, 2, 3, 4; x = 2 Phi(z) - 1 rounded to f32 moves z by up to
        // 3e-8 / (2 phi(z)), hence the looser tolerances in the tail.
        for (z, phi, tol) in [
            (0.5, 0.691_462_461_274_013_1, 1e-6),
            (1.0, 0.841_344_746_068_542_9, 1e-6),
            (2.0, 0.977_249_868_051_820_8, 2e-6),
            (3.0, 0.998_650_101_968_369_9, 1e-5),
            (4.0, 0.999_968_328_758_166_9, 2e-4),
        ] {
            let x = (2.0 * phi - 1.0) as f32;
            for (x, z) in [(x, z), (-x, -z)] {
                let got = f64::from(probit_centered(x));
                assert!((got - z).abs() < tol, "probit at x = {x}: {got}, want {z}");
            }
        }
        // The smallest positive draw, x = 2^-24: z = x sqrt(pi / 2) to first order.
        let smallest = f64::from(probit_of_bits(1 << 31)) * 16_777_216.0;
        assert!(
            (smallest - std::f64::consts::FRAC_PI_2.sqrt()).abs() < 1e-6,
            "{smallest}"
        );
    }

    #[test]
    fn ln_positive_matches_ln() {
        let mut a = 1.0f32 / 16_777_216.0;
        while a <= 1.0 {
            for k in 0..64 {
                let v = a * (1.0 + k as f32 / 64.0);
                let (got, want) = (ln_positive(v), f64::from(v).ln());
                assert!(
                    (f64::from(got) - want).abs() <= 2e-7 * want.abs().max(1.0),
                    "ln {v}: {got} vs {want}"
                );
            }
            a *= 2.0;
        }
    }

    #[test]
    fn normals_follow_the_standard_normal() {
        let n = 1 << 20;
        let mut v = vec![0.0f32; n];
        Normals::new(11).fill(&mut v);
        // The fraction below z against Phi(z), within 5 standard errors.
        for (z, phi) in [
            (-3.0, 0.001_349_898_031_630_094_5),
            (-2.0, 0.022_750_131_948_179_2),
            (-1.0, 0.158_655_253_931_457_05),
            (-0.5, 0.308_537_538_725_986_9),
            (0.0, 0.5),
            (0.25, 0.598_706_325_682_923_6),
            (1.0, 0.841_344_746_068_542_9),
            (2.0, 0.977_249_868_051_820_8),
            (3.0, 0.998_650_101_968_369_9),
        ] {
            let below = v.iter().filter(|&&x| x < z).count() as f64 / n as f64;
            let se = (phi * (1.0 - phi) / n as f64).sqrt();
            assert!(
                (below - phi).abs() < 5.0 * se,
                "P(Z < {z}) = {below}, want {phi}"
            );
        }
        let moment = |k: i32| v.iter().map(|&x| f64::from(x).powi(k)).sum::<f64>() / n as f64;
        assert!(moment(1).abs() < 0.005, "mean {}", moment(1));
        assert!((moment(2) - 1.0).abs() < 0.01, "variance {}", moment(2));
        assert!(
            (moment(4) - 3.0).abs() < 0.05,
            "fourth moment {}",
            moment(4)
        );
        // Neighbours come from different lanes, every eighth from the same lane.
        for lag in [1, 8] {
            let c = v
                .iter()
                .zip(&v[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
                / (n - lag) as f64;
            assert!(c.abs() < 0.005, "lag-{lag} correlation {c}");
        }
        let mut again = vec![0.0f32; n];
        Normals::new(11).fill(&mut again);
        assert_eq!(v, again, "same seed, same draws");
        Normals::new(12).fill(&mut again);
        assert_ne!(v, again, "another seed, other draws");
    }

    #[test]
    fn fills_are_the_quantiles_of_each_lanes_draws_in_order() {
        // A length with a remainder: the last batch is partly used.
        let mut got = vec![0.0f32; 1003];
        Normals::new(4).fill_batches(&mut got);
        let mut lanes = Normals::new(4);
        let want: Vec<f32> = (0..got.len().div_ceil(LANES))
            .flat_map(|_| lanes.next())
            .map(probit_of_bits)
            .take(got.len())
            .collect();
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            let mut avx2 = vec![0.0f32; got.len()];
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { Normals::new(4).fill_avx2(&mut avx2) };
            assert_eq!(avx2, got, "the AVX2 build draws the same values");
        }
    }

    #[test]
    fn one_hot_draws_follow_each_spans_softmax() {
        // Two spans per row: logits (0, ln 2, ln 5) -> probabilities 1/8, 2/8, 5/8; and a span
        // of two with logits 200 apart (one category only, no overflow).
        let width = 6;
        let row = [0.3, 0.0, 2f32.ln(), 5f32.ln(), 100.0, -100.0];
        let rows = 40_000;
        let mut block: Vec<f32> = row.iter().copied().cycle().take(rows * width).collect();
        one_hot_draws(
            &mut block,
            width,
            &[(1, 3), (4, 2)],
            &mut SmallRng::seed_from_u64(5),
        );
        let mut counts = [0usize; 3];
        for r in block.chunks_exact(width) {
            assert_eq!(r[0], 0.3, "positions outside the spans are left alone");
            assert_eq!(r[1..4].iter().sum::<f32>(), 1.0);
            assert_eq!(&r[4..6], &[1.0, 0.0]);
            counts[r[1..4].iter().position(|&v| v == 1.0).unwrap()] += 1;
        }
        for (c, p) in counts.iter().zip([1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0]) {
            let freq = *c as f64 / rows as f64;
            // About 5 standard errors at 40,000 draws.
            assert!((freq - p).abs() < 0.012, "{counts:?}");
        }
    }

    #[test]
    fn tanh_gaussians_draw_around_tanh_with_each_positions_sigma() {
        // Rows of width 4: positions 1 and 3 are scalars (sigma 0.1 and 0.5), 0 and 2 are
        // left alone.
        let (width, rows) = (4, 40_000);
        let row = [7.0f32, 0.5, -3.0, -1.0];
        let mut block: Vec<f32> = row.iter().copied().cycle().take(rows * width).collect();
        let sigma = [0.0, 0.1, 0.0, 0.5];
        tanh_gaussians(&mut block, width, &[1, 3], &sigma, &mut Normals::new(5));
        for r in block.chunks_exact(width) {
            assert_eq!((r[0], r[2]), (7.0, -3.0), "other positions are untouched");
        }
        for c in [1, 3] {
            let xs: Vec<f64> = block
                .iter()
                .skip(c)
                .step_by(width)
                .map(|&x| x.into())
                .collect();
            let mean = xs.iter().sum::<f64>() / rows as f64;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / rows as f64).sqrt();
            let want = f64::from(row[c]).tanh();
            // Standard errors: sigma / 200 for the mean, about sigma / 283 for the sd.
            assert!(
                (mean - want).abs() < 0.02 * f64::from(sigma[c]),
                "{c}: mean {mean}"
            );
            assert!(
                (sd / f64::from(sigma[c]) - 1.0).abs() < 0.02,
                "{c}: sd {sd}"
            );
        }
    }

    #[test]
    fn same_seed_same_values_and_plausible_moments() {
        let draw =
            |f: fn(usize, &mut StdRng) -> Vec<f32>| f(100_000, &mut StdRng::seed_from_u64(7));
        for f in [standard_normals, gumbels] {
            assert_eq!(draw(f), draw(f));
        }
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let normals = draw(standard_normals);
        assert!(mean(&normals).abs() < 0.02);
        // Gumbel(0, 1) has mean equal to the Euler-Mascheroni constant.
        let gumbel = draw(gumbels);
        let m = mean(&gumbel);
        assert!((m - 0.5772).abs() < 0.02, "Gumbel mean: Euler's constant");
        let var = gumbel
            .iter()
            .map(|&g| (f64::from(g) - m).powi(2))
            .sum::<f64>()
            / 1e5;
        assert!(
            (var - 1.6449).abs() < 0.05,
            "Gumbel variance pi^2 / 6: {var}"
        );
        let mask = dropout_mask(100_000, 0.5, &mut StdRng::seed_from_u64(3));
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
        assert!(
            (mean(&mask) - 1.0).abs() < 0.02,
            "inverted dropout keeps the mean"
        );
    }
}
