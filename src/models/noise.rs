//! Host-side noise for training and sampling, drawn in parallel chunks. Each chunk has its own
//! generator seeded from the caller's, so a result depends on the seed only, not on the number
//! of threads.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Values per chunk: large enough that handing a chunk to a thread pays back. (Changing it
/// changes what a seed draws.)
const CHUNK: usize = 1 << 15;

/// `n` values, each chunk filled by `draw` from its own generator.
fn chunked(n: usize, rng: &mut StdRng, draw: impl Fn(&mut StdRng) -> f32 + Sync) -> Vec<f32> {
    let seeds: Vec<u64> = (0..n.div_ceil(CHUNK)).map(|_| rng.random()).collect();
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(CHUNK)
        .zip(seeds)
        .for_each(|(chunk, seed)| {
            let mut r = StdRng::seed_from_u64(seed);
            for v in chunk {
                *v = draw(&mut r);
            }
        });
    out
}

/// `n` standard normal values.
pub fn standard_normals(n: usize, rng: &mut StdRng) -> Vec<f32> {
    chunked(n, rng, |r| StandardNormal.sample(r))
}

/// `n` Gumbel(0, 1) values, -ln(-ln u) with u uniform in (0, 1).
pub fn gumbels(n: usize, rng: &mut StdRng) -> Vec<f32> {
    chunked(n, rng, |r| {
        let u: f32 = r.random::<f32>().clamp(1e-7, 1.0 - 1e-7);
        -(-u.ln()).ln()
    })
}

/// `n` inverted-dropout mask values: 0 with probability `p`, else 1 / (1 - p).
pub fn dropout_mask(n: usize, p: f64, rng: &mut StdRng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    chunked(n, rng, |r| if r.random::<f64>() < p { 0.0 } else { keep })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((mean(&draw(gumbels)) - 0.5772).abs() < 0.02);
        let mask = dropout_mask(100_000, 0.5, &mut StdRng::seed_from_u64(3));
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
        assert!(
            (mean(&mask) - 1.0).abs() < 0.02,
            "inverted dropout keeps the mean"
        );
    }
}
