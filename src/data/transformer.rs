//! The reversible encoding between a table and the model's rows.
//!
//! Continuous columns: mode-specific normalization (Xu et al. 2019, section 4.2). A variational
//! Bayesian mixture finds the modes; a value becomes `(x - mu_k) / (4 sigma_k)` clipped to
//! +-0.99 (a tanh span) plus a one-hot of the mode k (a softmax span), k *sampled* from the
//! value's responsibilities. A column with nulls gets one more softmax span of width 2
//! (present, null); nulls are encoded at the column mean. Discrete columns are one-hot, a null
//! being one more category. Decoding inverts exactly (up to the clipping), rounds integer
//! columns, rounds floats to the decimals seen in training, and keeps values within the
//! training range.
//!
//! Fitted state is plain JSON (`transformer.json` in a run): mixture parameters, category
//! vocabularies and their counts, ranges. It holds no training row.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TransformerConfig;
use crate::data::gmm::{Component, GmmOptions, Mixture};
use crate::data::io::{Column, DType, Table, Text, Values};
use crate::data::layout::{Activation, Layout};
use crate::data::schema::{ColumnKind, Schema};
use crate::error::{Error, Result};

/// How one column is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Encoder {
    Continuous(ContinuousEncoder),
    Discrete(DiscreteEncoder),
}

/// Mode-specific normalization of one numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuousEncoder {
    /// The modes kept (mixture weight above the threshold), in mixture order.
    pub modes: Vec<Component>,
    pub min: f64,
    pub max: f64,
    /// Decimals to round floats to on decoding (the most seen in training); None: no rounding.
    pub decimals: Option<u32>,
    /// Share of nulls in training; a null span exists when it is above 0.
    pub null_fraction: f64,
    /// The value nulls are encoded at (the mean of the present values).
    pub fill: f64,
}

/// One-hot encoding of one discrete column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscreteEncoder {
    /// Categories in sorted order of their text; `None` is the null category.
    pub categories: Vec<Option<String>>,
    /// Training count of each category (aggregates only, for conditional sampling).
    pub counts: Vec<u64>,
}

/// A column's name, type and encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnTransform {
    pub name: String,
    pub dtype: DType,
    pub encoder: Encoder,
}

impl ColumnTransform {
    fn width_parts(&self, column: usize) -> Vec<(Activation, usize, usize)> {
        match &self.encoder {
            Encoder::Continuous(c) => {
                let mut parts = vec![
                    (Activation::Tanh, 1, column),
                    (Activation::Softmax, c.modes.len(), column),
                ];
                if c.null_fraction > 0.0 {
                    parts.push((Activation::Softmax, 2, column));
                }
                parts
            }
            Encoder::Discrete(d) => vec![(Activation::Softmax, d.categories.len(), column)],
        }
    }

    fn width(&self) -> usize {
        self.width_parts(0).iter().map(|p| p.1).sum()
    }
}

/// All columns' encoders, in schema order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataTransformer {
    pub columns: Vec<ColumnTransform>,
}

impl DataTransformer {
    /// Fit every modelled column of `table`, in parallel across columns. Deterministic.
    pub fn fit(table: &Table, schema: &Schema, options: &TransformerConfig) -> Result<Self> {
        let gmm = GmmOptions {
            components: options.max_modes,
            weight_prior: options.weight_prior,
            max_iter: options.max_iter,
        };
        let columns = schema
            .columns
            .par_iter()
            .map(|c| {
                let col = table
                    .column(&c.name)
                    .expect("the schema was inferred from this table");
                let encoder = match c.kind {
                    ColumnKind::Continuous => {
                        Encoder::Continuous(fit_continuous(col, gmm, options.weight_threshold)?)
                    }
                    ColumnKind::Discrete => Encoder::Discrete(fit_discrete(col)),
                };
                Ok(ColumnTransform {
                    name: c.name.clone(),
                    dtype: c.dtype,
                    encoder,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DataTransformer { columns })
    }

    /// The span layout of encoded rows.
    pub fn layout(&self) -> Layout {
        Layout::new(
            self.columns
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.width_parts(i)),
        )
    }

    /// Encode a table with this transformer's columns into row-major `[rows, layout.width()]`.
    /// Modes are sampled from each value's responsibilities with an RNG derived from `seed`
    /// and the column index, so the result does not depend on thread scheduling.
    pub fn transform(&self, table: &Table, seed: u64) -> Vec<f32> {
        let n = table.n_rows();
        let blocks: Vec<(usize, Vec<f32>)> = self
            .columns
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                let col = table
                    .column(&c.name)
                    .expect("the table has the schema's columns");
                let mut rng = StdRng::seed_from_u64(mix_seed(seed, i as u64));
                let block = match &c.encoder {
                    Encoder::Continuous(e) => e.encode(&col.values, &mut rng),
                    Encoder::Discrete(e) => e.encode(&col.values),
                };
                (c.width(), block)
            })
            .collect();
        let width: usize = blocks.iter().map(|b| b.0).sum();
        let mut out = vec![0.0f32; n * width];
        let mut offset = 0;
        for (w, block) in blocks {
            for r in 0..n {
                out[r * width + offset..r * width + offset + w]
                    .copy_from_slice(&block[r * w..(r + 1) * w]);
            }
            offset += w;
        }
        out
    }

    /// Decode row-major `[rows, layout.width()]` model output into a table: argmax on softmax
    /// spans, tanh spans clipped to [-1, 1].
    pub fn inverse(&self, data: &[f32], rows: usize) -> Table {
        assert_eq!(
            data.len(),
            rows * self.layout().width(),
            "data is [rows, width]"
        );
        let mut decoded = DecodedRows::default();
        self.decode_into(data, &mut decoded);
        self.table(&decoded)
    }

    /// Decode row-major model output (whole rows) and append it to `rows`; [`Self::table`]
    /// makes the table.
    pub fn decode_into(&self, data: &[f32], rows: &mut DecodedRows) {
        let width = self.layout().width();
        assert_eq!(data.len() % width, 0, "data holds whole rows");
        let parts = data
            .par_chunks(DECODE_CHUNK_ROWS * width)
            .map(|chunk| self.decode_part(chunk));
        rows.parts.par_extend(parts);
    }

    /// Decode a few whole rows of model output, for [`DecodedRows`]. A block of rows decoded
    /// as soon as it is drawn is still in cache.
    pub fn decode_part(&self, data: &[f32]) -> DecodedPart {
        let width = self.layout().width();
        assert_eq!(data.len() % width, 0, "data holds whole rows");
        let n = data.len() / width;
        let mut part: Vec<Decoded> = self
            .columns
            .iter()
            .map(|c| match c.encoder {
                Encoder::Continuous(_) => Decoded::Values(Vec::with_capacity(n)),
                Encoder::Discrete(_) => Decoded::Picks(Vec::with_capacity(n)),
            })
            .collect();
        // Row by row, every column: the rows are read in order, as the hardware prefetches
        // them (column by column, each cell would cost a read from memory).
        for row in data.chunks_exact(width) {
            let mut offset = 0;
            for (c, out) in self.columns.iter().zip(&mut part) {
                let cell = &row[offset..offset + c.width()];
                offset += c.width();
                match (&c.encoder, out) {
                    (Encoder::Continuous(e), Decoded::Values(v)) => v.push(e.decode(cell)),
                    (Encoder::Discrete(_), Decoded::Picks(v)) => v.push(argmax(cell)),
                    _ => unreachable!("a part's columns follow the columns' encoders"),
                }
            }
        }
        DecodedPart(part)
    }

    /// The table of the rows decoded so far.
    pub fn table(&self, rows: &DecodedRows) -> Table {
        let columns = self
            .columns
            .par_iter()
            .enumerate()
            .map(|(j, c)| {
                let values = match &c.encoder {
                    Encoder::Continuous(_) => {
                        let xs = rows.parts.iter().flat_map(|p| match &p.0[j] {
                            Decoded::Values(v) => v.iter().copied(),
                            Decoded::Picks(_) => unreachable!("a continuous column's values"),
                        });
                        match c.dtype {
                            DType::Int => {
                                Values::Int(xs.map(|x| x.map(|x| x.round() as i64)).collect())
                            }
                            _ => Values::Float(xs.collect()),
                        }
                    }
                    Encoder::Discrete(e) => {
                        let picks: Vec<usize> = rows
                            .parts
                            .iter()
                            .flat_map(|p| match &p.0[j] {
                                Decoded::Picks(v) => v.iter().copied(),
                                Decoded::Values(_) => unreachable!("a discrete column's picks"),
                            })
                            .collect();
                        // Each category is parsed to the column's type once.
                        let keys: Vec<Option<&str>> =
                            e.categories.iter().map(|k| k.as_deref()).collect();
                        typed_from_keys(&keys, c.dtype).pick(&picks)
                    }
                };
                Column {
                    name: c.name.clone(),
                    values,
                }
            })
            .collect();
        Table { columns }
    }
}

/// Rows per chunk of [`DataTransformer::decode_into`].
const DECODE_CHUNK_ROWS: usize = 256;

/// Rows decoded by [`DataTransformer::decode_into`] or [`DataTransformer::decode_part`], in
/// parts of a few rows, column by column.
#[derive(Debug, Default)]
pub struct DecodedRows {
    parts: Vec<DecodedPart>,
}

impl Extend<DecodedPart> for DecodedRows {
    fn extend<I: IntoIterator<Item = DecodedPart>>(&mut self, parts: I) {
        self.parts.extend(parts);
    }
}

/// A few rows decoded, one entry per column.
#[derive(Debug)]
pub struct DecodedPart(Vec<Decoded>);

/// One column's cells of a chunk of rows, decoded: values, or category positions.
#[derive(Debug)]
enum Decoded {
    Values(Vec<Option<f64>>),
    Picks(Vec<usize>),
}

/// SplitMix64 of a seed and a stream number: independent seeds for columns and epochs.
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Index of the first largest value.
pub fn argmax(xs: &[f32]) -> usize {
    // The best value kept beside its index: selects instead of branches that mispredict.
    let Some(&first) = xs.first() else {
        return 0;
    };
    let (mut best, mut value) = (0, first);
    for (i, &x) in xs.iter().enumerate().skip(1) {
        let better = x > value;
        best = if better { i } else { best };
        value = if better { x } else { value };
    }
    best
}

fn fit_continuous(col: &Column, gmm: GmmOptions, threshold: f64) -> Result<ContinuousEncoder> {
    let values = col.values.as_f64().ok_or_else(|| Error::Column {
        path: Default::default(),
        column: col.name.clone(),
        message: "a continuous column must hold numbers".into(),
    })?;
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let null_fraction = 1.0 - present.len() as f64 / values.len() as f64;
    if present.is_empty() {
        // All null: one degenerate mode at 0, every decoded value null.
        return Ok(ContinuousEncoder {
            modes: vec![Component {
                weight: 1.0,
                mean: 0.0,
                std: 1.0,
                log_weight: 0.0,
                beta: 1.0,
                dof: 1.0,
                inv_scale: 1.0,
            }],
            min: 0.0,
            max: 0.0,
            decimals: None,
            null_fraction: 1.0,
            fill: 0.0,
        });
    }
    let mixture = Mixture::fit(&present, gmm);
    let mut modes: Vec<Component> = mixture
        .components
        .iter()
        .filter(|c| c.weight > threshold)
        .cloned()
        .collect();
    if modes.is_empty() {
        let best = mixture
            .components
            .iter()
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
            .expect("at least one component");
        modes.push(best.clone());
    }
    let min = present.iter().copied().fold(f64::INFINITY, f64::min);
    let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let decimals = match col.values.dtype() {
        DType::Float => present
            .iter()
            .map(|x| decimals_of(*x))
            .try_fold(0u32, |acc, d| d.map(|d| acc.max(d))),
        _ => None,
    };
    Ok(ContinuousEncoder {
        modes,
        min,
        max,
        decimals,
        null_fraction,
        fill: present.iter().sum::<f64>() / present.len() as f64,
    })
}

/// Digits after the point in the shortest exact text of `x`; None in exponent notation or
/// past 12 digits (then decoded floats are not rounded).
fn decimals_of(x: f64) -> Option<u32> {
    let s = x.to_string();
    if s.contains(['e', 'E']) {
        return None;
    }
    let d = s.split_once('.').map_or(0, |(_, frac)| frac.len() as u32);
    (d <= 12).then_some(d)
}

impl ContinuousEncoder {
    fn width(&self) -> usize {
        1 + self.modes.len() + if self.null_fraction > 0.0 { 2 } else { 0 }
    }

    fn encode(&self, values: &Values, rng: &mut StdRng) -> Vec<f32> {
        let xs = values.as_f64().expect("checked numeric at fit");
        let w = self.width();
        let k = self.modes.len();
        let mut out = vec![0.0f32; xs.len() * w];
        let mut probs = vec![0.0f64; k];
        let terms: Vec<(f64, f64)> = self.modes.iter().map(Component::log_terms).collect();
        for (r, x) in xs.iter().enumerate() {
            let row = &mut out[r * w..(r + 1) * w];
            let v = x.unwrap_or(self.fill);
            crate::data::gmm::responsibilities_with(&terms, &self.modes, v, &mut probs);
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let mut mode = k - 1;
            for (j, p) in probs.iter().enumerate() {
                acc += p;
                if u < acc {
                    mode = j;
                    break;
                }
            }
            let c = &self.modes[mode];
            row[0] = ((v - c.mean) / (4.0 * c.std)).clamp(-0.99, 0.99) as f32;
            row[1 + mode] = 1.0;
            if self.null_fraction > 0.0 {
                row[1 + k + usize::from(x.is_none())] = 1.0;
            }
        }
        out
    }

    fn decode(&self, cell: &[f32]) -> Option<f64> {
        let k = self.modes.len();
        if self.null_fraction > 0.0 && cell[1 + k + 1] > cell[1 + k] {
            return None;
        }
        let alpha = f64::from(cell[0]).clamp(-1.0, 1.0);
        let c = &self.modes[argmax(&cell[1..1 + k])];
        let x = (alpha * 4.0 * c.std + c.mean).clamp(self.min, self.max);
        Some(match self.decimals {
            Some(d) => {
                // Exact powers of ten (decimals are at most 12, `decimals_of`).
                const POW10: [f64; 13] = [
                    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
                ];
                let p = POW10
                    .get(d as usize)
                    .copied()
                    .unwrap_or_else(|| 10f64.powi(d as i32));
                (x * p).round() / p
            }
            None => x,
        })
    }
}

fn fit_discrete(col: &Column) -> DiscreteEncoder {
    let mut counts: HashMap<Option<String>, u64> = HashMap::new();
    for key in col.values.as_keys() {
        *counts.entry(key).or_default() += 1;
    }
    let mut categories: Vec<Option<String>> = counts.keys().cloned().collect();
    categories.sort();
    let counts = categories.iter().map(|c| counts[c]).collect();
    DiscreteEncoder { categories, counts }
}

impl DiscreteEncoder {
    fn encode(&self, values: &Values) -> Vec<f32> {
        let index: HashMap<Option<&str>, usize> = self
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_deref(), i))
            .collect();
        let keys = values.as_keys();
        let w = self.categories.len();
        let mut out = vec![0.0f32; keys.len() * w];
        for (r, key) in keys.iter().enumerate() {
            let i = index[&key.as_deref()];
            out[r * w + i] = 1.0;
        }
        out
    }

    /// Index of a category given as text, if it is in the vocabulary.
    pub fn index_of(&self, key: Option<&str>) -> Option<usize> {
        self.categories.iter().position(|c| c.as_deref() == key)
    }
}

/// Parse category keys back to the column's type (they were written from it).
fn typed_from_keys(keys: &[Option<&str>], dtype: DType) -> Values {
    let parse = |k: &Option<&str>| k.map(Text::from);
    match dtype {
        DType::Int => Values::Int(
            keys.iter()
                .map(|k| k.map(|s| s.parse().expect("integer category")))
                .collect(),
        ),
        DType::Float => Values::Float(
            keys.iter()
                .map(|k| k.map(|s| s.parse().expect("float category")))
                .collect(),
        ),
        DType::Bool => Values::Bool(keys.iter().map(|k| k.map(|s| s == "true")).collect()),
        DType::Str => Values::Str(keys.iter().map(parse).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataConfig;
    use crate::data::io::bundled;
    use std::path::Path;

    fn adult() -> (Table, Schema, DataTransformer) {
        let path = bundled("adult.csv");
        let table = Table::read(&path, None).unwrap();
        let data = DataConfig::new(&path);
        let schema = Schema::infer(&table, &data, Path::new("c.toml")).unwrap();
        let t = DataTransformer::fit(&table, &schema, &TransformerConfig::default()).unwrap();
        (table, schema, t)
    }

    #[test]
    fn adult_layout_has_104_one_hot_columns_and_six_scalars() {
        let (_, _, t) = adult();
        let layout = t.layout();
        assert_eq!(layout.scalars().count(), 6);
        let discrete_width: usize = t
            .columns
            .iter()
            .filter_map(|c| match &c.encoder {
                Encoder::Discrete(d) => Some(d.categories.len()),
                _ => None,
            })
            .sum();
        // data/README.md: 9 categorical columns, 104 one-hot columns.
        assert_eq!(discrete_width, 104);
        let modes: usize = t
            .columns
            .iter()
            .filter_map(|c| match &c.encoder {
                Encoder::Continuous(e) => Some(e.modes.len()),
                _ => None,
            })
            .sum();
        assert_eq!(layout.width(), 104 + 6 + modes);
        for s in layout.softmaxes() {
            assert!(s.width >= 1);
        }
    }

    #[test]
    fn argmax_is_the_first_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2, 0.7]), 1);
        assert_eq!(argmax(&[3.0, -1.0]), 0);
        assert_eq!(argmax(&[-2.0, f32::NAN, -1.0]), 2);
        assert_eq!(argmax(&[5.0]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn rows_decoded_in_batches_make_the_table_of_all_rows() {
        let (table, _, t) = adult();
        let width = t.layout().width();
        let rows = 3_001;
        let encoded = &t.transform(&table, 5)[..rows * width];
        let mut decoded = DecodedRows::default();
        // Uneven batches, none a multiple of the decoding chunk.
        for batch in encoded.chunks(1_000 * width) {
            t.decode_into(batch, &mut decoded);
        }
        let whole = t.inverse(encoded, rows);
        assert_eq!(whole.n_rows(), rows);
        assert_eq!(t.table(&decoded), whole);
        // Parts of any size, as sampling decodes its blocks.
        let mut parts = DecodedRows::default();
        parts.extend(encoded.chunks(333 * width).map(|p| t.decode_part(p)));
        assert_eq!(t.table(&parts), whole);
        // And they are the rows' own values, not those of other rows.
        let first = t.inverse(&encoded[..width], 1);
        for (c, f) in whole.columns.iter().zip(&first.columns) {
            assert_eq!(c.values.pick(&[0]), f.values, "{}", c.name);
        }
    }

    #[test]
    fn adult_round_trips_exactly() {
        let (table, _, t) = adult();
        let encoded = t.transform(&table, 11);
        let width = t.layout().width();
        assert_eq!(encoded.len(), table.n_rows() * width);
        let back = t.inverse(&encoded, table.n_rows());
        for (orig, dec) in table.columns.iter().zip(&back.columns) {
            assert_eq!(orig.name, dec.name);
            match (&orig.values, &dec.values) {
                (Values::Str(a), Values::Str(b)) => assert_eq!(a, b, "{}", orig.name),
                (Values::Int(a), Values::Int(b)) => {
                    // Encoded values clipped at +-0.99 (beyond 3.96 sigma of their mode) cannot
                    // come back exactly; every other one must.
                    let enc = &t.columns.iter().find(|c| c.name == orig.name).unwrap();
                    let Encoder::Continuous(_) = &enc.encoder else {
                        assert_eq!(a, b, "{}", orig.name);
                        continue;
                    };
                    let offset: usize = t
                        .layout()
                        .spans()
                        .iter()
                        .find(|s| t.columns[s.column].name == orig.name)
                        .unwrap()
                        .start;
                    let mut exact = 0;
                    for r in 0..a.len() {
                        let alpha = encoded[r * width + offset].abs();
                        if alpha < 0.99 {
                            let (x, y) = (a[r].unwrap() as f64, b[r].unwrap() as f64);
                            assert!(
                                (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                                "{} row {r}: {x} -> {y}",
                                orig.name
                            );
                            exact += 1;
                        }
                    }
                    assert!(
                        exact as f64 > 0.99 * a.len() as f64,
                        "{}: {exact}",
                        orig.name
                    );
                }
                (a, b) => panic!(
                    "{}: type changed {:?} -> {:?}",
                    orig.name,
                    a.dtype(),
                    b.dtype()
                ),
            }
        }
    }

    #[test]
    fn fit_is_deterministic() {
        let (table, schema, t) = adult();
        let again = DataTransformer::fit(&table, &schema, &TransformerConfig::default()).unwrap();
        assert_eq!(t, again);
        assert_eq!(t.transform(&table, 3), again.transform(&table, 3));
    }

    #[test]
    fn nulls_get_an_indicator_and_come_back() {
        let table = Table {
            columns: vec![
                Column {
                    name: "x".into(),
                    values: Values::Float(
                        (0..200)
                            .map(|i| (i % 4 != 0).then_some(i as f64 * 0.5))
                            .collect(),
                    ),
                },
                Column {
                    name: "c".into(),
                    values: Values::Str(
                        (0..200)
                            .map(|i| (i % 5 != 0).then(|| format!("k{}", i % 3).into()))
                            .collect(),
                    ),
                },
            ],
        };
        let schema = Schema {
            columns: vec![
                crate::data::schema::ColumnSchema {
                    name: "x".into(),
                    dtype: DType::Float,
                    kind: ColumnKind::Continuous,
                },
                crate::data::schema::ColumnSchema {
                    name: "c".into(),
                    dtype: DType::Str,
                    kind: ColumnKind::Discrete,
                },
            ],
            ignored: vec![],
        };
        let t = DataTransformer::fit(&table, &schema, &TransformerConfig::default()).unwrap();
        let Encoder::Continuous(e) = &t.columns[0].encoder else {
            panic!()
        };
        assert!((e.null_fraction - 0.25).abs() < 1e-12);
        let Encoder::Discrete(d) = &t.columns[1].encoder else {
            panic!()
        };
        assert_eq!(d.categories[0], None, "null sorts first");
        let enc = t.transform(&table, 1);
        let back = t.inverse(&enc, 200);
        let (Values::Float(a), Values::Float(b)) =
            (&table.columns[0].values, &back.columns[0].values)
        else {
            panic!()
        };
        assert_eq!(
            a.iter().map(Option::is_none).collect::<Vec<_>>(),
            b.iter().map(Option::is_none).collect::<Vec<_>>()
        );
        assert_eq!(table.columns[1], back.columns[1]);
    }
}
