//! Diagnostics, as SDMetrics 0.32's DiagnosticReport: data validity (boundary adherence of
//! continuous columns, category adherence of discrete ones) and data structure (table
//! structure); the score is the mean of the two.

use std::collections::HashSet;

use super::fidelity::mean;
use super::{Cells, NULL, Prepared, span};

/// Validity of one column.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnValidity {
    pub column: String,
    pub metric: &'static str,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    pub score: Option<f64>,
    pub data_validity: Option<f64>,
    pub data_structure: f64,
    pub columns: Vec<ColumnValidity>,
}

/// Share of synthetic values within the real [min, max]. A null is left out when the real
/// column has nulls, and counts as out of bounds when it has none.
pub fn boundary_adherence(real: &[f64], synthetic: &[f64]) -> Option<f64> {
    let nullable = real.iter().any(|x| x.is_nan());
    // A real column without values bounds nothing: every synthetic value is outside.
    let (lo, hi) = span(real.iter().copied()).unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
    let kept: Vec<f64> = synthetic
        .iter()
        .copied()
        .filter(|x| !(nullable && x.is_nan()))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let inside = kept.iter().filter(|&&x| x >= lo && x <= hi).count();
    Some(inside as f64 / kept.len() as f64)
}

/// Share of synthetic categories seen in the real column (a null is valid when the real
/// column has nulls).
pub fn category_adherence(real: &[u32], synthetic: &[u32]) -> Option<f64> {
    if synthetic.is_empty() {
        return None;
    }
    let seen: HashSet<u32> = real.iter().copied().collect();
    let valid = synthetic.iter().filter(|c| seen.contains(c)).count();
    // A NULL code is in `seen` exactly when the real column has nulls.
    debug_assert!(!seen.contains(&NULL) || real.contains(&NULL));
    Some(valid as f64 / synthetic.len() as f64)
}

/// |shared (name, dtype) pairs| / |all (name, dtype) pairs| of the two tables.
pub fn table_structure(real: &[(String, String)], synthetic: &[(String, String)]) -> f64 {
    let r: HashSet<&(String, String)> = real.iter().collect();
    let s: HashSet<&(String, String)> = synthetic.iter().collect();
    let union = r.union(&s).count();
    if union == 0 {
        return 1.0;
    }
    r.intersection(&s).count() as f64 / union as f64
}

pub fn diagnostic(p: &Prepared) -> Diagnostic {
    let columns: Vec<ColumnValidity> = p
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match (&p.real.cells[i], &p.synthetic.cells[i]) {
            (Cells::Num(r), Cells::Num(s)) => ColumnValidity {
                column: c.name.clone(),
                metric: "BoundaryAdherence",
                score: boundary_adherence(r, s),
            },
            (Cells::Cat(r), Cells::Cat(s)) => ColumnValidity {
                column: c.name.clone(),
                metric: "CategoryAdherence",
                score: category_adherence(r, s),
            },
            _ => unreachable!("both tables are encoded with the same kinds"),
        })
        .collect();
    let validity = mean(columns.iter().map(|c| c.score));
    let structure = table_structure(&p.real.structure, &p.synthetic.structure);
    Diagnostic {
        score: mean([validity, Some(structure)]),
        data_validity: validity,
        data_structure: structure,
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_counts_nulls_only_when_real_has_none() {
        let real = [0.0, 10.0];
        assert_eq!(
            boundary_adherence(&real, &[5.0, 11.0, f64::NAN, 0.0]),
            Some(0.5)
        );
        let real_with_null = [0.0, 10.0, f64::NAN];
        assert_eq!(
            boundary_adherence(&real_with_null, &[5.0, 11.0, f64::NAN, 0.0]),
            Some(2.0 / 3.0)
        );
    }

    #[test]
    fn category_adherence_and_structure() {
        assert_eq!(category_adherence(&[0, 1], &[0, 1, 2, NULL]), Some(0.5));
        assert_eq!(category_adherence(&[0, NULL], &[0, 1, 2, NULL]), Some(0.5));
        let a = vec![
            ("x".to_string(), "int64".to_string()),
            ("y".to_string(), "object".to_string()),
        ];
        let b = vec![
            ("x".to_string(), "float64".to_string()),
            ("y".to_string(), "object".to_string()),
        ];
        assert!((table_structure(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(table_structure(&a, &a), 1.0);
    }
}
