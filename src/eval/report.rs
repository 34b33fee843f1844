//! The evaluation report: `report.json`, a summary on stderr and `report.html`.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tracing::info;

use super::diagnostic::{self, Diagnostic};
use super::fidelity::{self, Quality};
use super::privacy::{self, DcrBackend, Privacy};
use super::utility::{self, Utility};
use super::{EvalOptions, Prepared};
use crate::data::io::DType;
use crate::data::schema::ColumnKind;
use crate::device::{DeviceChoice, Selected};
use crate::error::{Error, Result};

pub const JSON: &str = "report.json";
pub const HTML: &str = "report.html";

#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub path: String,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub real: TableInfo,
    pub synthetic: TableInfo,
    pub holdout: Option<TableInfo>,
}

/// How a column was read and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub kind: ColumnKind,
    pub dtype: DType,
    pub shape_metric: &'static str,
    pub validity_metric: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Seconds {
    pub read: f64,
    pub quality: f64,
    pub diagnostic: f64,
    pub privacy: f64,
    pub utility: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub synthgen_version: &'static str,
    /// The SDMetrics release whose definitions the measures follow.
    pub sdmetrics_definitions: &'static str,
    pub device: String,
    pub seed: u64,
    pub inputs: Inputs,
    pub columns: Vec<ColumnInfo>,
    pub quality: Quality,
    pub diagnostic: Diagnostic,
    pub privacy: Privacy,
    pub utility: Option<Utility>,
    pub seconds: Seconds,
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64())
}

pub fn build(p: &Prepared, opts: &EvalOptions, selected: &Selected, read: f64) -> Result<Report> {
    let t0 = Instant::now();
    let (quality, tq) = timed(|| fidelity::quality(p));
    let (diagnostic, td) = timed(|| diagnostic::diagnostic(p));
    let backend = match selected.kind {
        DeviceChoice::Cpu | DeviceChoice::Auto => DcrBackend::Host,
        _ => DcrBackend::Tensor(selected.device.clone(), selected.description.clone()),
    };
    let (privacy, tp) = timed(|| privacy::privacy(p, &backend, opts.seed));
    let (utility, tu) = timed(|| {
        opts.target
            .as_deref()
            .map(|t| utility::utility(p, t, opts.seed))
            .transpose()
    });
    let utility = utility?;
    let columns = p
        .columns
        .iter()
        .map(|c| ColumnInfo {
            name: c.name.clone(),
            kind: c.kind,
            dtype: c.dtype,
            shape_metric: match c.kind {
                ColumnKind::Continuous => "KSComplement",
                ColumnKind::Discrete => "TVComplement",
            },
            validity_metric: match c.kind {
                ColumnKind::Continuous => "BoundaryAdherence",
                ColumnKind::Discrete => "CategoryAdherence",
            },
        })
        .collect();
    let info = |path: &Path, rows: usize| TableInfo {
        path: path.display().to_string(),
        rows,
    };
    Ok(Report {
        synthgen_version: env!("CARGO_PKG_VERSION"),
        sdmetrics_definitions: "0.32",
        device: selected.description.clone(),
        seed: opts.seed,
        inputs: Inputs {
            real: info(&opts.real, p.real.rows),
            synthetic: info(&opts.synthetic, p.synthetic.rows),
            holdout: opts
                .holdout
                .as_deref()
                .zip(p.holdout.as_ref())
                .map(|(path, h)| info(path, h.rows)),
        },
        columns,
        quality,
        diagnostic,
        privacy,
        utility,
        seconds: Seconds {
            read,
            quality: tq,
            diagnostic: td,
            privacy: tp,
            utility: tu,
            total: read + t0.elapsed().as_secs_f64(),
        },
    })
}

/// A score to 4 decimals, or "n/a".
pub fn fmt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{x:.4}"))
}

/// The summary table printed on stderr.
pub fn summary(r: &Report) -> String {
    let q = &r.quality;
    let d = &r.diagnostic;
    let pv = &r.privacy;
    let mut s = String::new();
    let mut line = |a: &str, b: String, c: String| s.push_str(&format!("{a:<28} {b:>8}   {c}\n"));
    line(
        "quality",
        fmt(q.score),
        format!(
            "column shapes {}, pair trends {} ({} of {} pairs meet the real-data threshold; all pairs {})",
            fmt(q.column_shapes),
            fmt(q.column_pair_trends),
            q.pairs_meeting_threshold,
            q.pairs.len(),
            fmt(q.column_pair_trends_unthresholded)
        ),
    );
    line(
        "diagnostic",
        fmt(d.score),
        format!(
            "data validity {}, data structure {:.4}",
            fmt(d.data_validity),
            d.data_structure
        ),
    );
    let b = &pv.dcr_baseline_protection;
    line(
        "DCR baseline protection",
        fmt(b.score),
        format!(
            "median distance to the closest real row: synthetic {:.4}, uniform random {:.4}",
            b.median_dcr_synthetic, b.median_dcr_random
        ),
    );
    match &pv.dcr_overfitting_protection {
        Some(o) => line(
            "DCR overfitting protection",
            fmt(Some(o.score)),
            format!(
                "{:.1} % of synthetic rows are closer to the training rows than to the holdout",
                100.0 * o.closer_to_training
            ),
        ),
        None => line(
            "DCR overfitting protection",
            "n/a".into(),
            "needs --holdout".into(),
        ),
    }
    line(
        "new row synthesis",
        fmt(Some(pv.new_row_synthesis.score)),
        format!(
            "{} of {} synthetic rows match a real row (numbers within 1 %); {} are exact copies",
            pv.new_row_synthesis.matched_rows, r.inputs.synthetic.rows, pv.exact_copies
        ),
    );
    match &r.utility {
        Some(u) => line(
            "utility",
            fmt(u.score),
            format!(
                "{} of '{}'{}: trained on synthetic {:.4}, on real {:.4}",
                if u.metric == "f1" { "F1" } else { "macro F1" },
                u.target,
                u.positive_class
                    .as_ref()
                    .map(|c| format!(" = '{c}'"))
                    .unwrap_or_default(),
                u.synthetic_score,
                u.real_score
            ),
        ),
        None => line(
            "utility",
            "n/a".into(),
            "needs --target and --holdout".into(),
        ),
    }
    s
}

/// Write report.json and report.html into `dir` (each file atomically).
pub fn write(r: &Report, p: &Prepared, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(r)
        .expect("a report serializes (non-finite numbers become null)");
    crate::run::atomic_write(&dir.join(JSON), json.as_bytes())?;
    let html = super::html::render(r, p);
    crate::run::atomic_write(&dir.join(HTML), html.as_bytes())?;
    info!(report = %dir.display(), "report written");
    Ok(())
}
