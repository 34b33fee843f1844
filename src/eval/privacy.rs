//! Privacy: distance to closest record (DCR) and new row synthesis, as SDMetrics 0.32 defines
//! them.
//!
//! The distance between two rows is the mean over columns of a per-column distance:
//! `min(|a - b| / range, 1)` for a continuous column (range of the reference table; 0/1 when the
//! range is 0; 1 when exactly one side is null, 0 when both are), and 0/1 for a mismatch of a
//! discrete column (two nulls match). A row's DCR is its distance to the closest reference row.
//!
//! Both kinds of column are encoded into one f32 per cell so that a single expression,
//! `min(|a - b|, 1)`, gives every per-column distance: continuous values are scaled by the
//! reference range (and clamped to +-1e5, which leaves `min(.., 1)` unchanged), a null becomes
//! a sentinel at least 1 away from every value, and categories become their integer codes, so
//! two different codes are at least 1 apart. The rows x rows x columns work then runs either as
//! a fused, cache-blocked loop on the host CPU (SIMD, all cores) or as batched tensor
//! operations on the selected Burn device.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use super::{Cells, NULL, Prepared, span};
use crate::data::io::DType;

/// Sentinel for a null continuous value: scaled values are clamped to +-CLAMP.
const NUM_NULL: f32 = 1.0e7;
const CLAMP: f32 = 1.0e5;
/// Sentinel for a null category: codes are >= 0.
const CAT_NULL: f32 = -1.0;
/// Reference rows per cache block of the host kernel.
const BLOCK: usize = 256;
/// Padding of the last block: every column at distance 1, the largest a row can be.
const PAD: f32 = 1.0e9;
/// Relative tolerance of a numeric match in new row synthesis (SDMetrics' default).
pub const MATCH_TOLERANCE: f64 = 0.01;

/// Where the DCR work runs.
#[derive(Debug, Clone)]
pub enum DcrBackend {
    /// Fused loop on the host CPU.
    Host,
    /// Batched tensor operations on a Burn device (and its description).
    Tensor(Device, String),
}

impl DcrBackend {
    pub fn describe(&self) -> String {
        match self {
            DcrBackend::Host => format!(
                "host CPU loop ({}, {} threads)",
                simd_name(),
                rayon::current_num_threads()
            ),
            DcrBackend::Tensor(_, name) => format!("batched tensor operations on {name}"),
        }
    }
}

fn simd_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return "AVX2";
    }
    "baseline SIMD"
}

/// `dataset` and `reference` encoded for DCR, row-major `[rows, columns]`.
pub struct Encoded {
    pub dataset: Vec<f32>,
    pub reference: Vec<f32>,
    pub columns: usize,
}

/// Encode two tables for a DCR of `dataset` against `reference` (ranges from `reference`).
pub fn encode(dataset: &[Cells], reference: &[Cells]) -> Encoded {
    let columns = dataset.len();
    let (n, m) = (dataset[0].len(), reference[0].len());
    let mut d = vec![0f32; n * columns];
    let mut r = vec![0f32; m * columns];
    for (c, (dc, rc)) in dataset.iter().zip(reference).enumerate() {
        match (dc, rc) {
            (Cells::Num(dv), Cells::Num(rv)) => {
                let range = span(rv.iter().copied());
                let f = |x: f64| -> f32 {
                    match range {
                        _ if x.is_nan() => NUM_NULL,
                        // Reference all null: any value is 1 away from its sentinel.
                        None => 0.0,
                        Some((lo, hi)) if hi == lo => {
                            if x == lo {
                                0.0
                            } else {
                                1.0
                            }
                        }
                        Some((lo, hi)) => (((x - lo) / (hi - lo)) as f32).clamp(-CLAMP, CLAMP),
                    }
                };
                for (i, &x) in dv.iter().enumerate() {
                    d[i * columns + c] = f(x);
                }
                for (i, &x) in rv.iter().enumerate() {
                    r[i * columns + c] = f(x);
                }
            }
            (Cells::Cat(dv), Cells::Cat(rv)) => {
                let f = |x: u32| if x == NULL { CAT_NULL } else { x as f32 };
                for (i, &x) in dv.iter().enumerate() {
                    d[i * columns + c] = f(x);
                }
                for (i, &x) in rv.iter().enumerate() {
                    r[i * columns + c] = f(x);
                }
            }
            _ => unreachable!("tables are encoded with the same kinds"),
        }
    }
    Encoded {
        dataset: d,
        reference: r,
        columns,
    }
}

/// DCR of every dataset row (mean over columns of the per-column distance).
pub fn dcr(e: &Encoded, backend: &DcrBackend) -> Vec<f64> {
    match backend {
        DcrBackend::Host => dcr_host(&e.dataset, &e.reference, e.columns),
        DcrBackend::Tensor(device, _) => dcr_tensor(&e.dataset, &e.reference, e.columns, device),
    }
}

#[inline(always)]
fn block_min(row: &[f32], block: &[f32], acc: &mut [f32; BLOCK]) -> f32 {
    acc.fill(0.0);
    for (c, &a) in row.iter().enumerate() {
        let col = &block[c * BLOCK..(c + 1) * BLOCK];
        for (s, &b) in acc.iter_mut().zip(col) {
            let d = (a - b).abs();
            *s += if d < 1.0 { d } else { 1.0 };
        }
    }
    let mut lanes = [f32::INFINITY; 8];
    for chunk in acc.chunks_exact(8) {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l = if x < *l { x } else { *l };
        }
    }
    lanes.iter().fold(f32::INFINITY, |m, &x| m.min(x))
}

#[inline(always)]
fn rows_against_blocks(rows: &[f32], blocks: &[f32], columns: usize, out: &mut [f64]) {
    let mut acc = [0f32; BLOCK];
    let mut best = vec![f32::INFINITY; out.len()];
    for block in blocks.chunks_exact(columns * BLOCK) {
        for (row, b) in rows.chunks_exact(columns).zip(best.iter_mut()) {
            let m = block_min(row, block, &mut acc);
            if m < *b {
                *b = m;
            }
        }
    }
    for (o, b) in out.iter_mut().zip(best) {
        *o = b as f64 / columns as f64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_against_blocks_avx2(rows: &[f32], blocks: &[f32], columns: usize, out: &mut [f64]) {
    rows_against_blocks(rows, blocks, columns, out)
}

/// The host kernel: the reference is cut into blocks of [`BLOCK`] rows stored column by
/// column (one block fits in L1), and each thread takes a strip of dataset rows through every
/// block, so the whole distance matrix is never stored.
pub fn dcr_host(dataset: &[f32], reference: &[f32], columns: usize) -> Vec<f64> {
    let m = reference.len() / columns;
    let n_blocks = m.div_ceil(BLOCK);
    let mut blocks = vec![PAD; n_blocks * columns * BLOCK];
    for (j, row) in reference.chunks_exact(columns).enumerate() {
        let (b, k) = (j / BLOCK, j % BLOCK);
        for (c, &x) in row.iter().enumerate() {
            blocks[b * columns * BLOCK + c * BLOCK + k] = x;
        }
    }
    let n = dataset.len() / columns;
    let mut out = vec![0f64; n];
    const STRIP: usize = 32;
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    out.par_chunks_mut(STRIP).enumerate().for_each(|(s, o)| {
        let rows = &dataset[s * STRIP * columns..(s * STRIP + o.len()) * columns];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { rows_against_blocks_avx2(rows, &blocks, columns, o) };
            return;
        }
        rows_against_blocks(rows, &blocks, columns, o);
    });
    out
}

/// The tensor kernel: `min_j sum_c min(|x_ic - r_jc|, 1)` over batches of dataset rows, each
/// batch one `[batch, rows, columns]` expression, read back once per batch.
pub fn dcr_tensor(dataset: &[f32], reference: &[f32], columns: usize, device: &Device) -> Vec<f64> {
    let m = reference.len() / columns;
    let r = Tensor::<2>::from_data(TensorData::new(reference.to_vec(), [m, columns]), device)
        .reshape([1, m, columns]);
    // About 2^25 elements (128 MiB of f32) per batch.
    let batch = ((1usize << 25) / (m * columns)).max(1);
    let mut out = Vec::with_capacity(dataset.len() / columns);
    for chunk in dataset.chunks(batch * columns) {
        let b = chunk.len() / columns;
        let x = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [b, columns]), device)
            .reshape([b, 1, columns]);
        let d = (x - r.clone()).abs().clamp_max(1.0).sum_dim(2).min_dim(1);
        let v = d.into_data().try_into_vec::<f32>().expect("f32 distances");
        out.extend(v.iter().map(|&x| x as f64 / columns as f64));
    }
    out
}

/// The median as pandas computes it (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Uniform random rows shaped like the real table (SDMetrics' DCR baseline): integers
/// uniform in the real [min, max], floats uniform in it, other columns a uniform choice among
/// the real categories, and nulls at the real rate.
pub fn random_baseline(p: &Prepared, rows: usize, seed: u64) -> Vec<Cells> {
    let mut rng = StdRng::seed_from_u64(seed);
    p.columns
        .iter()
        .zip(&p.real.cells)
        .map(|(c, real)| {
            let nulls = match real {
                Cells::Num(v) => v.iter().filter(|x| x.is_nan()).count(),
                Cells::Cat(v) => v.iter().filter(|&&x| x == NULL).count(),
            } as f64
                / real.len() as f64;
            let index: HashMap<&str, u32> = c
                .vocab
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i as u32))
                .collect();
            // A value the real column never holds matches no real row: one code for all of them.
            let unseen = c.vocab.len() as u32;
            let code = |key: String| index.get(key.as_str()).copied().unwrap_or(unseen);
            let mut distinct: Vec<u32> = match real {
                Cells::Cat(v) => v.iter().copied().filter(|&x| x != NULL).collect(),
                Cells::Num(_) => Vec::new(),
            };
            distinct.sort_unstable();
            distinct.dedup();
            // pandas reads an integer column with nulls as floats, and SDMetrics then draws floats.
            let dtype = match (c.dtype, nulls > 0.0) {
                (DType::Int, true) => DType::Float,
                (d, _) => d,
            };
            let draw = |rng: &mut StdRng| -> (f64, u32) {
                match (dtype, c.range) {
                    (DType::Int, Some((lo, hi))) => {
                        let x = rng.random_range(lo as i64..=hi as i64);
                        (x as f64, code(x.to_string()))
                    }
                    (DType::Float, Some((lo, hi))) => {
                        let x = if hi > lo {
                            rng.random_range(lo..hi)
                        } else {
                            lo
                        };
                        (x, code(x.to_string()))
                    }
                    _ if distinct.is_empty() => (f64::NAN, NULL),
                    _ => (f64::NAN, distinct[rng.random_range(0..distinct.len())]),
                }
            };
            let mut num = Vec::new();
            let mut cat = Vec::new();
            for _ in 0..rows {
                let (x, k) = draw(&mut rng);
                let null = rng.random::<f64>() < nulls;
                num.push(if null { f64::NAN } else { x });
                cat.push(if null { NULL } else { k });
            }
            match real {
                Cells::Num(_) => Cells::Num(num),
                Cells::Cat(_) => Cells::Cat(cat),
            }
        })
        .collect()
}

/// Synthetic rows that match some real row: every discrete column equal, every continuous
/// one within 1 % of the synthetic value (SDMetrics' NewRowSynthesis), nulls matching nulls.
pub fn matched_rows(real: &[Cells], synthetic: &[Cells]) -> usize {
    let cat_cols: Vec<usize> = (0..real.len())
        .filter(|&c| matches!(real[c], Cells::Cat(_)))
        .collect();
    let num_cols: Vec<usize> = (0..real.len())
        .filter(|&c| matches!(real[c], Cells::Num(_)))
        .collect();
    let key = |cells: &[Cells], i: usize| -> Vec<u32> {
        cat_cols.iter().map(|&c| cells[c].cat()[i]).collect()
    };
    // Real rows grouped by their categories, sorted within a group by the first number.
    let mut groups: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
    for i in 0..real[0].len() {
        groups.entry(key(real, i)).or_default().push(i);
    }
    let first = num_cols.first().map(|&c| real[c].num());
    if let Some(f) = first {
        for g in groups.values_mut() {
            g.sort_by(|&a, &b| f[a].total_cmp(&f[b]));
        }
    }
    let near = |r: f64, s: f64| -> bool {
        if s.is_nan() || r.is_nan() {
            s.is_nan() && r.is_nan()
        } else {
            (r - s).abs() <= (MATCH_TOLERANCE * s).abs()
        }
    };
    (0..synthetic[0].len())
        .into_par_iter()
        .filter(|&i| {
            let Some(group) = groups.get(&key(synthetic, i)) else {
                return false;
            };
            let Some(f) = first else {
                return true;
            };
            let s0 = synthetic[num_cols[0]].num()[i];
            let candidates: &[usize] = if s0.is_nan() {
                let start = group.partition_point(|&r| !f[r].is_nan());
                &group[start..]
            } else {
                let tol = (MATCH_TOLERANCE * s0).abs();
                let start = group.partition_point(|&r| f[r] < s0 - tol);
                let end = group.partition_point(|&r| f[r] <= s0 + tol);
                &group[start..end.max(start)]
            };
            candidates.iter().any(|&r| {
                num_cols
                    .iter()
                    .all(|&c| near(real[c].num()[r], synthetic[c].num()[i]))
            })
        })
        .count()
}

/// Synthetic rows equal to some real row in every cell (nulls equal nulls), compared exactly
/// rather than through the f32 DCR.
pub fn exact_copies(real: &[Cells], synthetic: &[Cells]) -> usize {
    let key = |cells: &[Cells], i: usize| -> Vec<u64> {
        cells
            .iter()
            .map(|c| match c {
                Cells::Num(v) if v[i].is_nan() => u64::MAX,
                Cells::Num(v) => (v[i] + 0.0).to_bits(), // -0.0 and 0.0 are one value
                Cells::Cat(v) => v[i] as u64,
            })
            .collect()
    };
    let rows: std::collections::HashSet<Vec<u64>> =
        (0..real[0].len()).map(|i| key(real, i)).collect();
    (0..synthetic[0].len())
        .filter(|&i| rows.contains(&key(synthetic, i)))
        .count()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DcrBaseline {
    /// min(median DCR of synthetic rows / median DCR of random rows, 1).
    pub score: Option<f64>,
    pub median_dcr_synthetic: f64,
    pub median_dcr_random: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DcrOverfitting {
    /// min(2 x share of synthetic rows closer to the holdout, 1).
    pub score: f64,
    pub closer_to_training: f64,
    pub closer_to_holdout: f64,
    pub median_dcr_training: f64,
    pub median_dcr_holdout: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NewRows {
    /// Share of synthetic rows that match no real row.
    pub score: f64,
    pub new_rows: usize,
    pub matched_rows: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Privacy {
    pub dcr_baseline_protection: DcrBaseline,
    pub dcr_overfitting_protection: Option<DcrOverfitting>,
    pub new_row_synthesis: NewRows,
    /// Synthetic rows identical to a real row in every column (DCR 0).
    pub exact_copies: usize,
    pub dcr_backend: String,
    #[serde(skip)]
    pub dcr_synthetic: Vec<f64>,
    #[serde(skip)]
    pub dcr_random: Vec<f64>,
}

pub fn privacy(p: &Prepared, backend: &DcrBackend, seed: u64) -> Privacy {
    let rows = p.synthetic.rows;
    let dcr_synthetic = dcr(&encode(&p.synthetic.cells, &p.real.cells), backend);
    let random = random_baseline(p, rows, seed);
    let dcr_random = dcr(&encode(&random, &p.real.cells), backend);
    let (ms, mr) = (median(&dcr_synthetic), median(&dcr_random));
    let baseline = DcrBaseline {
        score: (mr != 0.0 && mr.is_finite()).then(|| (ms / mr).min(1.0)),
        median_dcr_synthetic: ms,
        median_dcr_random: mr,
    };
    let overfitting = p.holdout.as_ref().map(|h| {
        let to_holdout = dcr(&encode(&p.synthetic.cells, &h.cells), backend);
        let closer = dcr_synthetic
            .iter()
            .zip(&to_holdout)
            .filter(|(t, h)| t < h)
            .count() as f64
            / rows as f64;
        DcrOverfitting {
            score: ((1.0 - closer) * 2.0).min(1.0),
            closer_to_training: closer,
            closer_to_holdout: 1.0 - closer,
            median_dcr_training: ms,
            median_dcr_holdout: median(&to_holdout),
        }
    });
    let matched = matched_rows(&p.real.cells, &p.synthetic.cells);
    Privacy {
        dcr_baseline_protection: baseline,
        dcr_overfitting_protection: overfitting,
        new_row_synthesis: NewRows {
            score: (rows - matched) as f64 / rows as f64,
            new_rows: rows - matched,
            matched_rows: matched,
        },
        exact_copies: exact_copies(&p.real.cells, &p.synthetic.cells),
        dcr_backend: backend.describe(),
        dcr_synthetic,
        dcr_random,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(dataset: &[f32], reference: &[f32], columns: usize) -> Vec<f64> {
        dataset
            .chunks(columns)
            .map(|a| {
                reference
                    .chunks(columns)
                    .map(|b| {
                        a.iter()
                            .zip(b)
                            .map(|(x, y)| (x - y).abs().min(1.0) as f64)
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
                    / columns as f64
            })
            .collect()
    }

    #[test]
    fn per_column_distances_follow_sdmetrics() {
        // Reference range of x is [0, 10]; y is discrete with a null category.
        let reference = vec![
            Cells::Num(vec![0.0, 10.0, f64::NAN]),
            Cells::Cat(vec![0, 1, NULL]),
        ];
        let dataset = vec![
            Cells::Num(vec![2.5, f64::NAN, 40.0]),
            Cells::Cat(vec![0, NULL, 2]),
        ];
        let e = encode(&dataset, &reference);
        let d = dcr_host(&e.dataset, &e.reference, e.columns);
        // Row 0: |2.5 - 0| / 10 = 0.25 and a category match: (0.25 + 0) / 2.
        // Row 1: null vs null and NULL vs NULL match: 0.
        // Row 2: 40 is beyond the range (distance capped at 1) and category 2 is unseen: 1.
        assert_eq!(d, vec![0.125, 0.0, 1.0]);
    }

    #[test]
    fn host_and_tensor_kernels_agree_with_brute_force() {
        let mut rng = StdRng::seed_from_u64(7);
        let columns = 5;
        // More than one block of reference rows, and a ragged last block.
        let reference: Vec<f32> = (0..(BLOCK * 2 + 37) * columns)
            .map(|i| {
                if i % columns < 2 {
                    rng.random_range(0..4) as f32
                } else {
                    rng.random::<f32>()
                }
            })
            .collect();
        let dataset: Vec<f32> = (0..70 * columns)
            .map(|i| {
                if i % columns < 2 {
                    rng.random_range(0..5) as f32
                } else {
                    rng.random::<f32>() * 1.2
                }
            })
            .collect();
        let expect = brute(&dataset, &reference, columns);
        let host = dcr_host(&dataset, &reference, columns);
        let tensor = dcr_tensor(&dataset, &reference, columns, &Device::flex());
        for ((e, h), t) in expect.iter().zip(&host).zip(&tensor) {
            assert!((e - h).abs() < 1e-6, "host {h} vs {e}");
            assert!((e - t).abs() < 1e-6, "tensor {t} vs {e}");
        }
    }

    #[test]
    fn matches_within_one_percent() {
        let real = vec![
            Cells::Num(vec![100.0, 50.0, f64::NAN]),
            Cells::Cat(vec![0, 1, 1]),
        ];
        // 100.9 is within 1 % of itself from 100; 50 with category 0 has no real row; null matches null.
        let synthetic = vec![
            Cells::Num(vec![100.9, 50.0, f64::NAN, 98.0]),
            Cells::Cat(vec![0, 0, 1, 0]),
        ];
        assert_eq!(matched_rows(&real, &synthetic), 2);
    }

    #[test]
    fn exact_copies_are_counted_exactly_even_on_wide_ranges() {
        // Epoch seconds 100 s apart are one f32 apart at most after scaling; they are not copies.
        let real = vec![
            Cells::Num(vec![0.0, 1.7e9, f64::NAN]),
            Cells::Cat(vec![0, 1, NULL]),
        ];
        let synthetic = vec![
            Cells::Num(vec![1.7e9 + 100.0, 1.7e9, f64::NAN, -0.0]),
            Cells::Cat(vec![1, 1, NULL, 0]),
        ];
        assert_eq!(exact_copies(&real, &synthetic), 3);
    }

    #[test]
    fn medians_as_pandas() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
