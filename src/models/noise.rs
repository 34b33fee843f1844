//! Host-side noise for training and sampling, drawn in parallel chunks. Each chunk has its own
//! generator seeded from the caller's, so a result depends on the seed only, not on the number
//! of threads. The chunks' generators are xoshiro256++ (`SmallRng`): noise needs no
//! cryptographic strength, and ChaCha cost about as much as the normal draws built on it.

use rand::rngs::{SmallRng, StdRng};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1, StandardNormal};
use rayon::prelude::*;

/// Values per chunk: large enough that handing a chunk to a thread pays back. (Changing it
/// changes what a seed draws.)
const CHUNK: usize = 1 << 15;

/// Fills `out` in parallel chunks of `chunk` values, each by `fill` with its own generator,
/// seeded from `rng` (one seed per chunk, drawn in order).
fn seeded_chunks(
    out: &mut [f32],
    chunk: usize,
    rng: &mut StdRng,
    fill: impl Fn(&mut [f32], &mut SmallRng) + Sync,
) {
    let seeds: Vec<u64> = (0..out.len().div_ceil(chunk))
        .map(|_| rng.random())
        .collect();
    out.par_chunks_mut(chunk)
        .zip(seeds)
        .for_each(|(c, seed)| fill(c, &mut SmallRng::seed_from_u64(seed)));
}

/// `n` values, each drawn by `draw`.
fn chunked(n: usize, rng: &mut StdRng, draw: impl Fn(&mut SmallRng) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    seeded_chunks(&mut out, CHUNK, rng, |chunk, r| {
        for v in chunk {
            *v = draw(r);
        }
    });
    out
}

/// `n` standard normal values.
pub fn standard_normals(n: usize, rng: &mut StdRng) -> Vec<f32> {
    chunked(n, rng, |r| StandardNormal.sample(r))
}

/// `n` Gumbel(0, 1) values, -ln E with E standard exponential (drawn by ziggurat): one
/// logarithm per value instead of the two of -ln(-ln u).
pub fn gumbels(n: usize, rng: &mut StdRng) -> Vec<f32> {
    chunked(n, rng, |r| {
        let e: f32 = Exp1.sample(r);
        -e.max(f32::MIN_POSITIVE).ln()
    })
}

/// `n` inverted-dropout mask values: 0 with probability `p`, else 1 / (1 - p).
pub fn dropout_mask(n: usize, p: f64, rng: &mut StdRng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    chunked(n, rng, |r| if r.random::<f64>() < p { 0.0 } else { keep })
}

/// Rows per chunk of [`one_hot_draws`].
const ROWS_PER_CHUNK: usize = 1024;

/// For each row of `block` (rows `width` wide) and each span `(start, width)` of logits,
/// draws a category from the span's softmax and writes it as a one-hot vector over the span.
/// This is the distribution of the argmax of Gumbel-perturbed logits (the Gumbel-max trick),
/// drawn with one uniform and one exponential per position instead of two logarithms.
pub fn one_hot_draws(block: &mut [f32], width: usize, spans: &[(usize, usize)], rng: &mut StdRng) {
    seeded_chunks(block, ROWS_PER_CHUNK * width, rng, |chunk, r| {
        for row in chunk.chunks_exact_mut(width) {
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
    });
}

/// For each row of `block` (rows `width` wide) and each position `c` of `scalars`, replaces the
/// value x with a draw from N(tanh x, sigma[c]): TVAE decoder's likelihood, as the reference
/// samples it.
pub fn tanh_gaussians(
    block: &mut [f32],
    width: usize,
    scalars: &[usize],
    sigma: &[f32],
    rng: &mut StdRng,
) {
    seeded_chunks(block, ROWS_PER_CHUNK * width, rng, |chunk, r| {
        for row in chunk.chunks_exact_mut(width) {
            for &c in scalars {
                let e: f32 = StandardNormal.sample(r);
                row[c] = row[c].tanh() + sigma[c] * e;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &mut StdRng::seed_from_u64(5),
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
        tanh_gaussians(
            &mut block,
            width,
            &[1, 3],
            &sigma,
            &mut StdRng::seed_from_u64(5),
        );
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
