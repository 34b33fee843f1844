//! Fidelity: column shapes and column pair trends, as SDMetrics 0.32 defines them.
//!
//! - Column shapes: `1 - KS statistic` for a continuous column (two-sample Kolmogorov-Smirnov on
//!   the non-null values, rounded to 14 decimals first), `1 - total variation distance` for a
//!   discrete one (nulls left out).
//! - Column pair trends: `1 - |r_real - r_syn| / 2` with Pearson's r for two continuous columns
//!   (rows where both are present); `1 - 1/2 sum |P_real - P_syn|` over contingency cells for two
//!   discrete columns (a null is a category) and for a mixed pair, whose continuous column is cut
//!   into 10 equal-width bins. As SDMetrics does, each table's column is binned between its own
//!   minimum and maximum, and a null or the maximum lands in bin 11.
//! - SDMetrics (0.27+) counts a pair in the quality score only when the real data's |r| exceeds
//!   0.5 or its Cramer's V exceeds 0.3; both that score and the plain mean are reported.

use std::collections::HashMap;

use rayon::prelude::*;

use super::{Cells, NULL, Prepared, span};
use crate::data::schema::ColumnKind;

/// SDMetrics' default thresholds (`sdmetrics.reports.utils`).
pub const REAL_CORRELATION_THRESHOLD: f64 = 0.5;
pub const REAL_ASSOCIATION_THRESHOLD: f64 = 0.3;
/// Decimals KSComplement rounds to (`sys.float_info.dig - 1`).
const KS_DECIMALS: i32 = 14;
/// Bins of a continuous column in a mixed pair.
pub const BINS: usize = 10;

/// Shape score of one column.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnShape {
    pub column: String,
    pub metric: &'static str,
    /// None when it cannot be computed (a column without values).
    pub score: Option<f64>,
}

/// Trend score of one pair of columns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairTrend {
    pub column_1: String,
    pub column_2: String,
    pub metric: &'static str,
    pub score: Option<f64>,
    pub real_correlation: Option<f64>,
    pub synthetic_correlation: Option<f64>,
    /// Cramer's V of the real contingency table (discrete and mixed pairs).
    pub real_association: Option<f64>,
    /// Counted in the thresholded score.
    pub meets_threshold: bool,
    /// Why the score is missing (a constant column, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn column_shapes(p: &Prepared) -> Vec<ColumnShape> {
    p.columns
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let (r, s) = (&p.real.cells[i], &p.synthetic.cells[i]);
            match c.kind {
                ColumnKind::Continuous => ColumnShape {
                    column: c.name.clone(),
                    metric: "KSComplement",
                    score: ks_statistic(r.num(), s.num()).map(|d| 1.0 - d),
                },
                ColumnKind::Discrete => ColumnShape {
                    column: c.name.clone(),
                    metric: "TVComplement",
                    score: tv_complement(r.cat(), s.cat()),
                },
            }
        })
        .collect()
}

fn round_to(x: f64, decimals: i32) -> f64 {
    // As numpy's round: scale, round half to even, unscale.
    let scale = 10f64.powi(decimals);
    let y = x * scale;
    let r = y.round();
    let r = if (y - y.trunc()).abs() == 0.5 {
        2.0 * (y / 2.0).round()
    } else {
        r
    };
    r / scale
}

/// Two-sample KS statistic on the non-null values; None if either side has none.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> Option<f64> {
    let prep = |v: &[f64]| -> Vec<f64> {
        let mut v: Vec<f64> = v
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| round_to(x, KS_DECIMALS))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (prep(a), prep(b));
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!(),
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    Some(d)
}

fn frequencies(codes: &[u32]) -> (HashMap<u32, f64>, f64) {
    let mut counts: HashMap<u32, f64> = HashMap::new();
    let mut n = 0.0;
    for &c in codes.iter().filter(|&&c| c != NULL) {
        *counts.entry(c).or_default() += 1.0;
        n += 1.0;
    }
    (counts, n)
}

/// `1 - TVD` of the non-null categories; None if either side has none.
pub fn tv_complement(real: &[u32], synthetic: &[u32]) -> Option<f64> {
    let (r, nr) = frequencies(real);
    let (s, ns) = frequencies(synthetic);
    if nr == 0.0 || ns == 0.0 {
        return None;
    }
    Some(tvd_complement(&r, nr, &s, ns))
}

/// Pearson's r over rows where both values are present; None when undefined.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(&a, &b)| (a, b))
        .collect();
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (a, b)| (sx + a, sy + b));
    let (mx, my) = (mx / n, my / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    r.is_finite().then(|| r.clamp(-1.0, 1.0))
}

/// Bin a continuous column into `1..=BINS + 1` between its own min and max, as numpy's
/// `digitize(x, histogram_bin_edges(x))`: a null lands in the last bin, as the maximum does.
pub fn bin(values: &[f64]) -> Vec<u32> {
    // numpy: no values span [0, 1]; a constant x spans [x - 0.5, x + 0.5].
    let (lo, hi) = match span(values.iter().copied()) {
        None => (0.0, 1.0),
        Some((lo, hi)) if lo == hi => (lo - 0.5, hi + 0.5),
        Some(s) => s,
    };
    // numpy.linspace: start + i * step, the last edge set to stop.
    let step = (hi - lo) / BINS as f64;
    let mut edges: Vec<f64> = (0..=BINS).map(|i| lo + i as f64 * step).collect();
    edges[BINS] = hi;
    values
        .iter()
        .map(|&x| {
            if x.is_nan() {
                (BINS + 1) as u32
            } else {
                edges.partition_point(|&e| e <= x) as u32
            }
        })
        .collect()
}

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Counts of each (a, b) cell.
fn contingency(a: &[u32], b: &[u32]) -> HashMap<u64, f64> {
    let mut m: HashMap<u64, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *m.entry(pair_key(x, y)).or_default() += 1.0;
    }
    m
}

/// Cramer's V of a contingency table (scipy's `association`, no continuity correction);
/// None if it has fewer than 2 rows or columns.
pub fn cramers_v(cells: &HashMap<u64, f64>) -> Option<f64> {
    let mut rows: HashMap<u32, f64> = HashMap::new();
    let mut cols: HashMap<u32, f64> = HashMap::new();
    let mut n = 0.0;
    for (&k, &c) in cells {
        *rows.entry((k >> 32) as u32).or_default() += c;
        *cols.entry(k as u32).or_default() += c;
        n += c;
    }
    let k = rows.len().min(cols.len());
    if k < 2 || n == 0.0 {
        return None;
    }
    // chi2 = sum O^2 / E - n, with E = row * col / n; empty cells add nothing to the sum.
    let mut s = 0.0;
    for (&key, &o) in cells {
        let e = rows[&((key >> 32) as u32)] * cols[&(key as u32)] / n;
        s += o * o / e;
    }
    let chi2 = (s - n).max(0.0);
    Some((chi2 / n / (k - 1) as f64).sqrt())
}

/// `1 - TVD` of two tables of counts (categories, or contingency cells) with totals `nr` and
/// `ns`; a key on one side only counts in full.
pub fn tvd_complement<K: Eq + std::hash::Hash>(
    real: &HashMap<K, f64>,
    nr: f64,
    synthetic: &HashMap<K, f64>,
    ns: f64,
) -> f64 {
    let mut tv = 0.0;
    for (k, &cr) in real {
        tv += (synthetic.get(k).copied().unwrap_or(0.0) / ns - cr / nr).abs();
    }
    for (k, &cs) in synthetic {
        if !real.contains_key(k) {
            tv += cs / ns;
        }
    }
    1.0 - tv / 2.0
}

fn is_constant(v: &[f64]) -> bool {
    let mut it = v.iter().filter(|x| !x.is_nan());
    match it.next() {
        None => false,
        Some(&first) => it.all(|&x| x == first),
    }
}

/// Trend scores of every pair of columns, in SDMetrics' order (itertools.combinations).
pub fn pair_trends(p: &Prepared) -> Vec<PairTrend> {
    let n = p.columns.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    // Binned versions of the continuous columns, each table between its own min and max.
    let binned = |cells: &[Cells]| -> Vec<Option<Vec<u32>>> {
        cells
            .par_iter()
            .map(|c| match c {
                Cells::Num(v) => Some(bin(v)),
                Cells::Cat(_) => None,
            })
            .collect()
    };
    let (real_bins, synth_bins) = (binned(&p.real.cells), binned(&p.synthetic.cells));
    pairs
        .par_iter()
        .map(|&(i, j)| {
            let (ci, cj) = (&p.columns[i], &p.columns[j]);
            let mut t = PairTrend {
                column_1: ci.name.clone(),
                column_2: cj.name.clone(),
                metric: "ContingencySimilarity",
                score: None,
                real_correlation: None,
                synthetic_correlation: None,
                real_association: None,
                meets_threshold: false,
                note: None,
            };
            let both_continuous =
                ci.kind == ColumnKind::Continuous && cj.kind == ColumnKind::Continuous;
            if both_continuous {
                t.metric = "CorrelationSimilarity";
                let (ri, rj) = (p.real.cells[i].num(), p.real.cells[j].num());
                let (si, sj) = (p.synthetic.cells[i].num(), p.synthetic.cells[j].num());
                if is_constant(ri) || is_constant(rj) || is_constant(si) || is_constant(sj) {
                    t.note = Some("a constant column has no correlation".into());
                    return t;
                }
                t.real_correlation = pearson(ri, rj);
                t.synthetic_correlation = pearson(si, sj);
                if let (Some(r), Some(s)) = (t.real_correlation, t.synthetic_correlation) {
                    t.score = Some(1.0 - (r - s).abs() / 2.0);
                    t.meets_threshold = r.abs() > REAL_CORRELATION_THRESHOLD;
                }
                return t;
            }
            fn codes<'a>(cells: &'a [Cells], bins: &'a [Option<Vec<u32>>], k: usize) -> &'a [u32] {
                match &cells[k] {
                    Cells::Cat(v) => v,
                    Cells::Num(_) => bins[k].as_deref().expect("continuous columns are binned"),
                }
            }
            let (ra, rb) = (
                codes(&p.real.cells, &real_bins, i),
                codes(&p.real.cells, &real_bins, j),
            );
            let (sa, sb) = (
                codes(&p.synthetic.cells, &synth_bins, i),
                codes(&p.synthetic.cells, &synth_bins, j),
            );
            let real = contingency(ra, rb);
            let synth = contingency(sa, sb);
            t.real_association = cramers_v(&real);
            t.score = Some(tvd_complement(
                &real,
                ra.len() as f64,
                &synth,
                sa.len() as f64,
            ));
            t.meets_threshold = t
                .real_association
                .is_some_and(|v| v > REAL_ASSOCIATION_THRESHOLD);
            t
        })
        .collect()
}

/// Mean of the present scores; None if there are none.
pub fn mean(scores: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (s, n) = scores
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// The quality scores: SDMetrics' (thresholded pairs) and the plain mean over all pairs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quality {
    /// Mean of column shapes and (thresholded) column pair trends, as SDMetrics' QualityReport.
    pub score: Option<f64>,
    pub column_shapes: Option<f64>,
    /// Mean over pairs whose real |r| > 0.5 or Cramer's V > 0.3 (SDMetrics 0.27+).
    pub column_pair_trends: Option<f64>,
    /// Mean over every pair with a score (SDMetrics before 0.27).
    pub column_pair_trends_unthresholded: Option<f64>,
    pub score_unthresholded: Option<f64>,
    pub pairs_meeting_threshold: usize,
    pub columns: Vec<ColumnShape>,
    pub pairs: Vec<PairTrend>,
}

pub fn quality(p: &Prepared) -> Quality {
    let columns = column_shapes(p);
    let pairs = pair_trends(p);
    let shapes = mean(columns.iter().map(|c| c.score));
    let trends = mean(pairs.iter().filter(|t| t.meets_threshold).map(|t| t.score));
    let trends_all = mean(pairs.iter().map(|t| t.score));
    Quality {
        score: mean([shapes, trends]),
        column_shapes: shapes,
        column_pair_trends: trends,
        column_pair_trends_unthresholded: trends_all,
        score_unthresholded: mean([shapes, trends_all]),
        pairs_meeting_threshold: pairs
            .iter()
            .filter(|t| t.meets_threshold && t.score.is_some())
            .count(),
        columns,
        pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_of_shifted_samples() {
        // scipy.stats.ks_2samp([1, 2, 3, 4], [3, 4, 5, 6]).statistic == 0.5
        let d = ks_statistic(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]).unwrap();
        assert!((d - 0.5).abs() < 1e-12);
        // Ties across samples: ks_2samp([1, 1, 2], [1, 2, 2]).statistic == 1/3
        let d = ks_statistic(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0, f64::NAN]).unwrap();
        assert!((d - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ks_statistic(&[f64::NAN], &[1.0]), None);
    }

    #[test]
    fn tv_complement_counts_categories_missing_on_either_side() {
        // real {a: 2/4, b: 2/4}, synthetic {a: 1/4, c: 3/4}: TVD = (1/4 + 2/4 + 3/4) / 2
        let s = tv_complement(&[0, 0, 1, 1, NULL], &[0, 2, 2, 2]).unwrap();
        assert!((s - (1.0 - 0.75)).abs() < 1e-12);
    }

    #[test]
    fn bins_follow_numpy_digitize() {
        // numpy.digitize([0, 0.5, 1, 9.99, 10, nan], numpy.histogram_bin_edges([0, 10]))
        //   == [1, 1, 2, 10, 11, 11]
        let v = [0.0, 0.5, 1.0, 9.99, 10.0, f64::NAN];
        assert_eq!(bin(&v), vec![1, 1, 2, 10, 11, 11]);
        // A constant column spans [x - 0.5, x + 0.5].
        assert_eq!(bin(&[3.0, 3.0]), vec![6, 6]);
    }

    #[test]
    fn cramers_v_matches_scipy() {
        // scipy.stats.contingency.association([[10, 20], [30, 5]], method='cramer'),
        // scipy 1.17.1 (the version SDMetrics 0.32 installed here)
        let mut m = HashMap::new();
        m.insert(pair_key(0, 0), 10.0);
        m.insert(pair_key(0, 1), 20.0);
        m.insert(pair_key(1, 0), 30.0);
        m.insert(pair_key(1, 1), 5.0);
        let v = cramers_v(&m).unwrap();
        assert!((v - 0.5367450401216932).abs() < 1e-12, "{v}");
        // One row only: undefined.
        let mut one = HashMap::new();
        one.insert(pair_key(0, 0), 3.0);
        one.insert(pair_key(0, 1), 4.0);
        assert_eq!(cramers_v(&one), None);
    }

    #[test]
    fn pearson_of_linear_data() {
        let x = [1.0, 2.0, 3.0, 4.0, f64::NAN];
        let y = [2.0, 4.0, 6.0, 8.0, 1.0];
        assert!((pearson(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let z = [8.0, 6.0, 4.0, 2.0, 0.0];
        assert!((pearson(&x, &z).unwrap() + 1.0).abs() < 1e-12);
    }
}
