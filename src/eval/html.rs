//! `report.html`: one self-contained page (inline CSS, SVG charts drawn with plotters, no
//! scripts, no network) that explains the scores in plain words.

use std::fmt::Write as _;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::report::{Report, fmt};
use super::{Cells, NULL, Prepared, span};

const REAL: RGBColor = RGBColor(31, 119, 180);
const SYNTH: RGBColor = RGBColor(255, 127, 14);
const RANDOM: RGBColor = RGBColor(120, 120, 120);

type Chart = std::result::Result<String, Box<dyn std::error::Error>>;
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The series legend, in the same place on every chart.
fn legend<'a, 'b: 'a>(
    chart: &mut Plot<'a, 'b>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A chart, or a note saying why it is missing.
fn svg(chart: Chart) -> String {
    chart.unwrap_or_else(|e| format!("<p class=note>chart not drawn: {}</p>", esc(&e.to_string())))
}

/// Shares of `values` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
fn histogram(values: impl Iterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0f64; bins];
    let mut n = 0.0;
    for x in values.filter(|x| x.is_finite()) {
        let k = if hi > lo {
            (((x - lo) / (hi - lo)) * bins as f64).floor()
        } else {
            0.0
        };
        h[(k.max(0.0) as usize).min(bins - 1)] += 1.0;
        n += 1.0;
    }
    if n > 0.0 {
        h.iter_mut().for_each(|v| *v /= n);
    }
    h
}

/// Overlaid histograms of several samples sharing the x range.
fn overlay(
    title: &str,
    series: &[(&str, RGBColor, &[f64])],
    lo: f64,
    hi: f64,
    x_desc: &str,
) -> Chart {
    const BINS: usize = 40;
    let hists: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, _, v)| histogram(v.iter().copied(), lo, hi, BINS))
        .collect();
    let ymax = hists
        .iter()
        .flatten()
        .fold(0f64, |m, &x| m.max(x))
        .max(1e-9)
        * 1.1;
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let width = (hi - lo) / BINS as f64;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (460, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0f64..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc("share of rows")
            .x_labels(6)
            .y_labels(5)
            .draw()?;
        for ((name, color, _), h) in series.iter().zip(&hists) {
            let color = *color;
            chart
                .draw_series(h.iter().enumerate().map(move |(k, &y)| {
                    let x0 = lo + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, y)], color.mix(0.45).filled())
                }))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.mix(0.6).filled())
                });
        }
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(buf)
}

/// Side-by-side bars of category shares (the most frequent real categories, the rest as one).
fn bars(title: &str, labels: &[String], real: &[f64], synth: &[f64]) -> Chart {
    let n = labels.len();
    let ymax = real
        .iter()
        .chain(synth)
        .fold(0f64, |m, &x| m.max(x))
        .max(1e-9)
        * 1.15;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (460, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(90)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("share of rows")
            .y_labels(5)
            .draw()?;
        // Category names under their bars, written downwards from the axis.
        let font = ("sans-serif", 11)
            .into_font()
            .transform(FontTransform::Rotate90);
        for (k, label) in labels.iter().enumerate() {
            let short = if label.chars().count() > 14 {
                format!("{}…", label.chars().take(13).collect::<String>())
            } else {
                label.clone()
            };
            let (x, y) = chart.backend_coord(&(k as f64 + 0.5, 0.0));
            root.draw(&Text::new(short, (x + 5, y + 4), font.clone()))?;
        }
        for (offset, color, name, values) in
            [(0.1, REAL, "real", real), (0.5, SYNTH, "synthetic", synth)]
        {
            chart
                .draw_series(values.iter().enumerate().map(move |(k, &y)| {
                    let x0 = k as f64 + offset;
                    Rectangle::new([(x0, 0.0), (x0 + 0.4, y)], color.mix(0.8).filled())
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.mix(0.8).filled())
                });
        }
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(buf)
}

fn category_shares(p: &Prepared, i: usize) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    const TOP: usize = 12;
    let (real, synth) = (p.real.cells[i].cat(), p.synthetic.cells[i].cat());
    let vocab = &p.columns[i].vocab;
    let count = |codes: &[u32]| {
        let mut m = std::collections::HashMap::<u32, f64>::new();
        for &c in codes {
            *m.entry(c).or_default() += 1.0;
        }
        m
    };
    let (rc, sc) = (count(real), count(synth));
    let mut order: Vec<u32> = rc.keys().chain(sc.keys()).copied().collect();
    order.sort_unstable();
    order.dedup();
    order.sort_by(|a, b| {
        let (x, y) = (
            rc.get(a).copied().unwrap_or(0.0),
            rc.get(b).copied().unwrap_or(0.0),
        );
        y.total_cmp(&x).then(a.cmp(b))
    });
    let (nr, ns) = (real.len() as f64, synth.len() as f64);
    let name = |c: u32| {
        if c == NULL {
            "(null)".to_string()
        } else {
            vocab.get(c as usize).cloned().unwrap_or_default()
        }
    };
    let mut labels = Vec::new();
    let (mut rv, mut sv) = (Vec::new(), Vec::new());
    for &c in order.iter().take(TOP) {
        labels.push(name(c));
        rv.push(rc.get(&c).copied().unwrap_or(0.0) / nr);
        sv.push(sc.get(&c).copied().unwrap_or(0.0) / ns);
    }
    if order.len() > TOP {
        let rest = &order[TOP..];
        labels.push(format!("{} others", rest.len()));
        rv.push(
            rest.iter()
                .map(|c| rc.get(c).copied().unwrap_or(0.0))
                .sum::<f64>()
                / nr,
        );
        sv.push(
            rest.iter()
                .map(|c| sc.get(c).copied().unwrap_or(0.0))
                .sum::<f64>()
                / ns,
        );
    }
    (labels, rv, sv)
}

/// Score to colour: red at 0.5 or below, yellow at 0.75, green at 1.
fn score_color(s: f64) -> RGBColor {
    let t = ((s - 0.5) / 0.5).clamp(0.0, 1.0);
    let (r, g) = if t < 0.5 {
        (230.0, 80.0 + 300.0 * t)
    } else {
        (230.0 - 360.0 * (t - 0.5), 230.0)
    };
    RGBColor(r as u8, g as u8, 90)
}

/// The lower triangle of pair scores; pairs counted in the thresholded score are outlined.
fn heatmap(r: &Report) -> Chart {
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    let n = names.len();
    let cell = (560 / n.max(1)).clamp(14, 40) as i32;
    let left = 150;
    let top = 20;
    let size = (left + cell * n as i32 + 20, top + cell * n as i32 + 60);
    let mut buf = String::new();
    {
        let root =
            SVGBackend::with_string(&mut buf, (size.0 as u32, size.1 as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let index = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .expect("a pair of known columns") as i32
        };
        for t in &r.quality.pairs {
            let (a, b) = (index(&t.column_1), index(&t.column_2));
            let (row, col) = (a.max(b), a.min(b));
            let (x, y) = (left + col * cell, top + row * cell);
            let fill = t.score.map_or(RGBColor(220, 220, 220), score_color);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 1, y + cell - 1)],
                fill.filled(),
            ))?;
            if t.meets_threshold {
                root.draw(&Rectangle::new(
                    [(x + 1, y + 1), (x + cell - 2, y + cell - 2)],
                    BLACK.stroke_width(2),
                ))?;
            }
        }
        let font = ("sans-serif", (cell - 2).clamp(9, 13)).into_font();
        for (k, name) in names.iter().enumerate() {
            let y = top + k as i32 * cell + cell / 2 - 6;
            root.draw(&Text::new(
                format!("{:>2} {}", k + 1, name),
                (4, y),
                font.clone(),
            ))?;
            root.draw(&Text::new(
                format!("{}", k + 1),
                (left + k as i32 * cell + cell / 4, top + n as i32 * cell + 4),
                font.clone(),
            ))?;
        }
        // Colour scale.
        let y = top + n as i32 * cell + 28;
        for k in 0..=20 {
            let s = 0.5 + 0.5 * k as f64 / 20.0;
            let x = left + k * 12;
            root.draw(&Rectangle::new(
                [(x, y), (x + 12, y + 10)],
                score_color(s).filled(),
            ))?;
        }
        root.draw(&Text::new("0.5", (left - 24, y), font.clone()))?;
        root.draw(&Text::new("1.0", (left + 21 * 12 + 4, y), font.clone()))?;
        root.present()?;
    }
    Ok(buf)
}

fn card(title: &str, value: Option<f64>, words: &str) -> String {
    let color = value.map_or("#888".to_string(), |v| {
        let c = score_color(v);
        format!("rgb({},{},{})", c.0, c.1, c.2)
    });
    format!(
        "<div class=card><div class=title>{}</div><div class=value style=\"border-color:{color}\">{}</div><div class=words>{}</div></div>",
        esc(title),
        fmt(value),
        words
    )
}

pub fn render(r: &Report, p: &Prepared) -> String {
    let q = &r.quality;
    let pv = &r.privacy;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>synthgen evaluation</title><style>\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;line-height:1.45}\
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}\
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{flex:1 1 180px;border:1px solid #ddd;border-radius:8px;padding:10px}\
.card .title{font-weight:600}.card .value{font-size:26px;border-left:6px solid;padding-left:8px;margin:6px 0}.card .words{font-size:13px;color:#444}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f5f5f5}\
.grid{display:flex;flex-wrap:wrap;gap:8px}.note{color:#666;font-size:13px}code{background:#f3f3f3;padding:1px 4px}\
</style></head><body>");
    let _ = write!(
        h,
        "<h1>How good is this synthetic table?</h1><p>Real data <code>{}</code> ({} rows) against synthetic data <code>{}</code> ({} rows){}. \
Every measure follows the definitions of SDMetrics {} so the numbers compare with other tools; 1 is best for every score.</p>",
        esc(&r.inputs.real.path),
        r.inputs.real.rows,
        esc(&r.inputs.synthetic.path),
        r.inputs.synthetic.rows,
        r.inputs
            .holdout
            .as_ref()
            .map(|t| format!(
                ", with a holdout <code>{}</code> ({} rows)",
                esc(&t.path),
                t.rows
            ))
            .unwrap_or_default(),
        r.sdmetrics_definitions
    );
    h.push_str("<div class=cards>");
    h.push_str(&card(
        "Quality",
        q.score,
        &format!(
            "Mean of column shapes ({}) and column pair trends ({}).",
            fmt(q.column_shapes),
            fmt(q.column_pair_trends)
        ),
    ));
    h.push_str(&card(
        "Diagnostic",
        r.diagnostic.score,
        "Values inside the real ranges and categories, and the same columns and types.",
    ));
    h.push_str(&card(
        "DCR baseline protection",
        pv.dcr_baseline_protection.score,
        "How far synthetic rows stay from real rows, compared with random rows.",
    ));
    h.push_str(&card(
        "DCR overfitting protection",
        pv.dcr_overfitting_protection.as_ref().map(|o| o.score),
        if pv.dcr_overfitting_protection.is_some() {
            "Synthetic rows are no closer to the training rows than to unseen real rows."
        } else {
            "Needs a holdout (<code>--holdout</code>)."
        },
    ));
    h.push_str(&card(
        "New row synthesis",
        Some(pv.new_row_synthesis.score),
        "Share of synthetic rows that copy no real row.",
    ));
    if let Some(u) = &r.utility {
        h.push_str(&card(
            "Utility",
            u.score,
            &format!("A classifier of <code>{}</code> trained on synthetic rows, relative to one trained on real rows.", esc(&u.target)),
        ));
    }
    h.push_str("</div>");

    // Privacy in plain words.
    let b = &pv.dcr_baseline_protection;
    h.push_str("<h2 id=privacy>Privacy</h2>");
    let _ = write!(
        h,
        "<p>For each synthetic row we find the most similar real row and measure how different they are \
(0 = identical, 1 = different in every column; numbers count by how far apart they are relative to the column's range). \
The typical (median) synthetic row is <b>{:.3}</b> away from its closest real row; rows drawn uniformly at random are <b>{:.3}</b> away. \
The score is the ratio, capped at 1: {}.</p>",
        b.median_dcr_synthetic,
        b.median_dcr_random,
        match b.score {
            Some(s) if s >= 0.8 => format!(
                "<b>{s:.3}</b>, synthetic rows are about as far from real people as random ones"
            ),
            Some(s) => format!(
                "<b>{s:.3}</b>, synthetic rows sit closer to real rows than random ones do; check that this is expected"
            ),
            None => "not defined here".into(),
        }
    );
    let _ = write!(
        h,
        "<p><b>{}</b> of {} synthetic rows match a real row (every category equal, every number within 1 %), and <b>{}</b> are exact copies of a real row. {}</p>",
        pv.new_row_synthesis.matched_rows,
        r.inputs.synthetic.rows,
        pv.exact_copies,
        if pv.exact_copies == 0 {
            "No real row was copied."
        } else {
            "Copied rows can disclose the people they describe: review them before sharing."
        }
    );
    if let Some(o) = &pv.dcr_overfitting_protection {
        let _ = write!(
            h,
            "<p>{:.1} % of synthetic rows are closer to the training rows than to the holdout rows the model never saw. \
A model that did not memorise its training data gives about 50 %; the score, min(2 × the share closer to the holdout, 1), is <b>{:.3}</b>.</p>",
            100.0 * o.closer_to_training,
            o.score
        );
    }
    let max = pv
        .dcr_synthetic
        .iter()
        .chain(&pv.dcr_random)
        .fold(0f64, |m, &x| m.max(x));
    h.push_str(&svg(overlay(
        "Distance to the closest real row",
        &[
            ("synthetic", SYNTH, &pv.dcr_synthetic),
            ("uniform random", RANDOM, &pv.dcr_random),
        ],
        0.0,
        max.max(1e-6),
        "distance (0 = a copy)",
    )));
    let _ = write!(
        h,
        "<p class=note>Distances computed by the {}.</p>",
        esc(&pv.dcr_backend)
    );

    if let Some(u) = &r.utility {
        h.push_str("<h2>Utility</h2>");
        let _ = write!(
            h,
            "<p>A {} predicting <code>{}</code>, tested on the holdout: {} {:.4} when trained on the synthetic rows, {:.4} when trained on the real rows.</p>",
            esc(&u.classifier),
            esc(&u.target),
            if u.metric == "f1" {
                format!(
                    "F1 of class <code>{}</code>",
                    esc(u.positive_class.as_deref().unwrap_or(""))
                )
            } else {
                "macro F1".into()
            },
            u.synthetic_score,
            u.real_score
        );
    }

    h.push_str("<h2>Column pair trends</h2>");
    let _ = write!(
        h,
        "<p>Does each pair of columns move together in the synthetic data as in the real data? Correlation similarity for two numeric columns, \
contingency similarity otherwise. Outlined cells are the {} pairs whose real correlation exceeds 0.5 or association (Cramér's V) exceeds 0.3; \
SDMetrics 0.27 and later average only those: <b>{}</b>. The mean over all {} pairs is {}.</p>",
        q.pairs_meeting_threshold,
        fmt(q.column_pair_trends),
        q.pairs.len(),
        fmt(q.column_pair_trends_unthresholded)
    );
    h.push_str(&svg(heatmap(r)));

    h.push_str("<h2 id=shapes>Column shapes</h2>");
    let _ = write!(
        h,
        "<p>Does each column have the same distribution? 1 − Kolmogorov–Smirnov distance for numbers, 1 − total variation distance for categories. Mean: <b>{}</b>.</p><div class=grid>",
        fmt(q.column_shapes)
    );
    for (i, c) in q.columns.iter().enumerate() {
        let title = format!("{} ({})", c.column, fmt(c.score));
        let chart = match (&p.real.cells[i], &p.synthetic.cells[i]) {
            (Cells::Num(rv), Cells::Num(sv)) => {
                match span(rv.iter().chain(sv).copied().filter(|x| x.is_finite())) {
                    None => Err("no values".into()),
                    Some((lo, hi)) => overlay(
                        &title,
                        &[("real", REAL, rv), ("synthetic", SYNTH, sv)],
                        lo,
                        hi,
                        &c.column,
                    ),
                }
            }
            _ => {
                let (labels, rv, sv) = category_shares(p, i);
                bars(&title, &labels, &rv, &sv)
            }
        };
        h.push_str(&svg(chart));
    }
    h.push_str("</div>");

    h.push_str("<h2 id=columns>Columns</h2><table><tr><th>column</th><th>type</th><th>kind</th><th>shape</th><th>validity</th></tr>");
    for (k, c) in r.columns.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td>{:?}</td><td>{} {}</td><td>{} {}</td></tr>",
            esc(&c.name),
            c.dtype,
            c.kind,
            c.shape_metric,
            fmt(q.columns[k].score),
            c.validity_metric,
            fmt(r.diagnostic.columns[k].score)
        );
    }
    let _ = write!(
        h,
        "</table><p>Data validity {}; data structure (same column names and types) {:.4}.</p>",
        fmt(r.diagnostic.data_validity),
        r.diagnostic.data_structure
    );
    let _ = write!(
        h,
        "<p class=note>synthgen {} on {}; seed {}; {:.2} s in all.</p></body></html>",
        r.synthgen_version,
        esc(&r.device),
        r.seed,
        r.seconds.total
    );
    h
}
