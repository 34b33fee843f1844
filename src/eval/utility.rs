//! Utility: is the synthetic table as good as the real one for learning a task?
//!
//! A decision tree (smartcore; depth at most 15, as SDMetrics' BinaryDecisionTreeClassifier)
//! is trained once on the synthetic rows and once on the real rows, and both are tested on the
//! holdout: F1 of the positive class for a binary target (the real data's rarer class is the
//! positive one), macro F1 (the mean over the classes present) otherwise. Like SDMetrics'
//! `class_weight='balanced'`, classes are balanced in training (by repeating the rows of rarer
//! classes). Continuous features are used as numbers (a null becomes the training mean) and
//! categories as their codes.

use std::collections::HashMap;

use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use super::{Cells, Dataset, EvalOptions, NULL, Prepared};
use crate::data::schema::ColumnKind;
use crate::error::{Error, Result};

/// Depth limit of the tree (SDMetrics' BinaryDecisionTreeClassifier uses 15).
pub const MAX_DEPTH: u16 = 15;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Utility {
    pub target: String,
    /// "f1" (binary) or "macro_f1".
    pub metric: &'static str,
    /// The class F1 is computed for (binary targets).
    pub positive_class: Option<String>,
    pub classifier: String,
    /// Trained on synthetic rows, tested on the holdout.
    pub synthetic_score: f64,
    /// Trained on real rows, tested on the holdout.
    pub real_score: f64,
    /// synthetic_score / real_score, at most 1.
    pub score: Option<f64>,
}

/// The target must be a discrete column, and utility needs a holdout.
pub fn check_target(p: &Prepared, target: &str, opts: &EvalOptions) -> Result<()> {
    let Some(c) = p.columns.iter().find(|c| c.name == target) else {
        return Err(Error::Evaluate {
            message: format!(
                "--target names column '{target}', which the real data does not have (or which is ignored)"
            ),
            hint: format!(
                "discrete columns: {}",
                p.columns
                    .iter()
                    .filter(|c| c.kind == ColumnKind::Discrete)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    if c.kind != ColumnKind::Discrete {
        return Err(Error::Evaluate {
            message: format!("--target '{target}' is continuous; utility trains a classifier"),
            hint: format!(
                "pass --discrete {target} if its values are classes, or pick a discrete target"
            ),
        });
    }
    if opts.holdout.is_none() {
        return Err(Error::Evaluate {
            message: "--target needs --holdout: utility is measured on real rows the generator never saw".into(),
            hint: "split the real data before training (e.g. scripts/quality.py split) and pass the held-out part as --holdout".into(),
        });
    }
    if p.columns.len() < 2 {
        return Err(Error::Evaluate {
            message: "utility needs at least one column besides the target".into(),
            hint: "evaluate without --target".into(),
        });
    }
    Ok(())
}

/// Features (row-major) and labels of a table.
fn features(d: &Dataset, target: usize, fill: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let cols: Vec<usize> = (0..d.cells.len()).filter(|&c| c != target).collect();
    let mut x = Vec::with_capacity(d.rows * cols.len());
    for i in 0..d.rows {
        for (k, &c) in cols.iter().enumerate() {
            x.push(match &d.cells[c] {
                Cells::Num(v) if v[i].is_nan() => fill[k],
                Cells::Num(v) => v[i],
                Cells::Cat(v) if v[i] == NULL => -1.0,
                Cells::Cat(v) => v[i] as f64,
            });
        }
    }
    (x, d.cells[target].cat().to_vec())
}

fn column_means(d: &Dataset, target: usize) -> Vec<f64> {
    (0..d.cells.len())
        .filter(|&c| c != target)
        .map(|c| match &d.cells[c] {
            Cells::Num(v) => {
                let (s, n) = v
                    .iter()
                    .filter(|x| !x.is_nan())
                    .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
                if n == 0 { 0.0 } else { s / n as f64 }
            }
            Cells::Cat(_) => 0.0,
        })
        .collect()
}

/// Train on `train` with balanced classes and predict `test`. smartcore's tree takes no
/// weights, so each row of class c is repeated round(n_max / n_c) times: integer class weights
/// close to scikit-learn's `class_weight='balanced'`.
fn fit_predict(train: &Dataset, test: &Dataset, target: usize, seed: u64) -> Result<Vec<u32>> {
    let fill = column_means(train, target);
    let (x, y) = features(train, target, &fill);
    let (tx, _) = features(test, target, &fill);
    let ncols = train.cells.len() - 1;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &c in &y {
        *counts.entry(c).or_default() += 1;
    }
    if counts.len() < 2 {
        // A single class: the tree would predict it everywhere.
        return Ok(vec![y.first().copied().unwrap_or(NULL); test.rows]);
    }
    let largest = counts.values().copied().max().expect("two classes");
    let (mut bx, mut by) = (Vec::new(), Vec::new());
    for (i, &c) in y.iter().enumerate() {
        let repeat = ((largest as f64 / counts[&c] as f64).round() as usize).max(1);
        for _ in 0..repeat {
            bx.extend_from_slice(&x[i * ncols..(i + 1) * ncols]);
            by.push(c);
        }
    }
    let failed = |e: smartcore::error::Failed| Error::Evaluate {
        message: format!("the utility classifier failed: {e}"),
        hint: "evaluate without --target".into(),
    };
    let xm = DenseMatrix::new(by.len(), ncols, bx, false).map_err(failed)?;
    let tm = DenseMatrix::new(test.rows, ncols, tx, false).map_err(failed)?;
    let mut params = DecisionTreeClassifierParameters::default().with_max_depth(MAX_DEPTH);
    params.seed = Some(seed);
    let tree = DecisionTreeClassifier::fit(&xm, &by, params).map_err(failed)?;
    tree.predict(&tm).map_err(failed)
}

/// F1 of one class.
pub fn f1(truth: &[u32], pred: &[u32], class: u32) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (&t, &p) in truth.iter().zip(pred) {
        match (t == class, p == class) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fneg += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

/// Mean F1 over the classes in the truth or the predictions (scikit-learn's macro F1).
pub fn macro_f1(truth: &[u32], pred: &[u32]) -> f64 {
    let mut labels: Vec<u32> = truth.iter().chain(pred).copied().collect();
    labels.sort_unstable();
    labels.dedup();
    labels.iter().map(|&c| f1(truth, pred, c)).sum::<f64>() / labels.len() as f64
}

pub fn utility(p: &Prepared, target_name: &str, seed: u64) -> Result<Utility> {
    let target = p
        .columns
        .iter()
        .position(|c| c.name == target_name)
        .expect("checked target");
    let holdout = p.holdout.as_ref().expect("checked holdout");
    let truth = holdout.cells[target].cat();
    let real_labels = p.real.cells[target].cat();
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for &c in real_labels {
        match counts.iter_mut().find(|(k, _)| *k == c) {
            Some((_, n)) => *n += 1,
            None => counts.push((c, 1)),
        }
    }
    let binary = counts.len() == 2;
    // The rarer class (ties: the later code) is the positive one.
    let positive = counts
        .iter()
        .min_by_key(|(k, n)| (*n, std::cmp::Reverse(*k)))
        .map(|(k, _)| *k);
    let score = |pred: &[u32]| {
        if binary {
            f1(truth, pred, positive.expect("two classes"))
        } else {
            macro_f1(truth, pred)
        }
    };
    let synthetic_score = score(&fit_predict(&p.synthetic, holdout, target, seed)?);
    let real_score = score(&fit_predict(&p.real, holdout, target, seed)?);
    let vocab = &p.columns[target].vocab;
    Ok(Utility {
        target: target_name.to_string(),
        metric: if binary { "f1" } else { "macro_f1" },
        positive_class: if binary {
            positive.map(|k| {
                vocab
                    .get(k as usize)
                    .cloned()
                    .unwrap_or_else(|| "(null)".into())
            })
        } else {
            None
        },
        classifier: format!(
            "decision tree (smartcore 0.4, max depth {MAX_DEPTH}, balanced leaves)"
        ),
        synthetic_score,
        real_score,
        score: (real_score > 0.0).then(|| (synthetic_score / real_score).min(1.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_scores_as_scikit_learn() {
        // sklearn.metrics.f1_score([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == 2/3
        let (t, p) = ([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]);
        assert!((f1(&t, &p, 1) - 2.0 / 3.0).abs() < 1e-12);
        // f1_score([0, 1, 2, 0], [0, 2, 2, 0], average='macro') == (1 + 0 + 2/3) / 3
        let m = macro_f1(&[0, 1, 2, 0], &[0, 2, 2, 0]);
        assert!((m - (1.0 + 0.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }
}
