//! Conditional vectors and training-by-sampling (Xu et al. 2019, section 4.3).
//!
//! The conditional vector is a one-hot over the categories of all discrete columns. In
//! training, a discrete column is chosen uniformly, a category with probability proportional
//! to log(count + 1), and the critic's real row is drawn among the rows that hold that
//! category. Offsets come from the [`Layout`], so every column is conditioned at its own place
//! (the reference implementation used the first column's offset for every column).

use rand::RngExt;
use rand::rngs::StdRng;

use crate::data::layout::{Activation, Layout};
use crate::data::transformer::{DataTransformer, Encoder};

/// One discrete column as the conditional vector sees it.
#[derive(Debug, Clone)]
pub struct CondColumn {
    /// Index of the column in the transformer (schema order).
    pub column: usize,
    pub name: String,
    /// Start of the column's one-hot span in the encoded row.
    pub data_start: usize,
    /// Start of the column's block in the conditional vector.
    pub cond_start: usize,
    pub width: usize,
    /// Cumulative probabilities of the categories, proportional to log(count + 1).
    log_cdf: Vec<f64>,
    /// Cumulative probabilities proportional to the counts (for unconditional sampling).
    freq_cdf: Vec<f64>,
    /// Training rows holding each category (empty until [`CondSampler::with_rows`]).
    rows: Vec<Vec<i32>>,
}

/// A (column, category) choice per conditional vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index into [`CondSampler::columns`].
    pub column: usize,
    pub category: usize,
}

/// Builds conditional vectors for a transformer's discrete columns.
#[derive(Debug, Clone)]
pub struct CondSampler {
    columns: Vec<CondColumn>,
    cond_dim: usize,
    rows: usize,
}

fn cdf(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let w: Vec<f64> = weights.collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

fn draw(cdf: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1)
}

impl CondSampler {
    /// From the fitted transformer (category counts are aggregates kept in it).
    pub fn new(transformer: &DataTransformer) -> CondSampler {
        let layout: Layout = transformer.layout();
        let mut columns = Vec::new();
        let mut cond_start = 0;
        for (i, c) in transformer.columns.iter().enumerate() {
            let Encoder::Discrete(d) = &c.encoder else {
                continue;
            };
            let span = layout
                .spans()
                .iter()
                .find(|s| s.column == i && s.activation == Activation::Softmax)
                .expect("a discrete column has a softmax span");
            columns.push(CondColumn {
                column: i,
                name: c.name.clone(),
                data_start: span.start,
                cond_start,
                width: span.width,
                log_cdf: cdf(d.counts.iter().map(|&n| (n as f64 + 1.0).ln())),
                freq_cdf: cdf(d.counts.iter().map(|&n| n as f64)),
                rows: Vec::new(),
            });
            cond_start += span.width;
        }
        CondSampler {
            columns,
            cond_dim: cond_start,
            rows: 0,
        }
    }

    /// Index the training rows by category, from encoded rows `[rows, width]`.
    pub fn with_rows(mut self, encoded: &[f32], rows: usize, width: usize) -> CondSampler {
        for c in &mut self.columns {
            c.rows = vec![Vec::new(); c.width];
            for r in 0..rows {
                let cell = &encoded[r * width + c.data_start..r * width + c.data_start + c.width];
                let k = cell.iter().position(|&v| v > 0.5).expect("a one-hot cell");
                c.rows[k].push(r as i32);
            }
        }
        self.rows = rows;
        self
    }

    pub fn columns(&self) -> &[CondColumn] {
        &self.columns
    }

    /// Width of a conditional vector (0 without discrete columns).
    pub fn cond_dim(&self) -> usize {
        self.cond_dim
    }

    /// (data offset, cond offset, width) per discrete column, for the conditioning loss.
    pub fn spans(&self) -> Vec<(usize, usize, usize)> {
        self.columns
            .iter()
            .map(|c| (c.data_start, c.cond_start, c.width))
            .collect()
    }

    /// Training picks: column uniform, category by log-frequency.
    pub fn sample_train(&self, batch: usize, rng: &mut StdRng) -> Vec<Pick> {
        (0..batch)
            .map(|_| {
                let column = rng.random_range(0..self.columns.len());
                Pick {
                    column,
                    category: draw(&self.columns[column].log_cdf, rng),
                }
            })
            .collect()
    }

    /// Picks that follow the data: column uniform, category by its frequency.
    pub fn sample_original(&self, batch: usize, rng: &mut StdRng) -> Vec<Pick> {
        (0..batch)
            .map(|_| {
                let column = rng.random_range(0..self.columns.len());
                Pick {
                    column,
                    category: draw(&self.columns[column].freq_cdf, rng),
                }
            })
            .collect()
    }

    /// The position of each pick's 1 in its conditional vector (what the generator takes in
    /// place of the one-hot vector).
    pub fn indices(&self, picks: &[Pick]) -> Vec<i32> {
        picks
            .iter()
            .map(|p| (self.columns[p.column].cond_start + p.category) as i32)
            .collect()
    }

    /// Conditional vectors [picks, cond_dim] and column masks [picks, n_discrete], row-major.
    pub fn encode(&self, picks: &[Pick]) -> (Vec<f32>, Vec<f32>) {
        let n = self.columns.len();
        let mut cond = vec![0.0f32; picks.len() * self.cond_dim];
        let mut mask = vec![0.0f32; picks.len() * n];
        for (r, p) in picks.iter().enumerate() {
            let c = &self.columns[p.column];
            cond[r * self.cond_dim + c.cond_start + p.category] = 1.0;
            mask[r * n + p.column] = 1.0;
        }
        (cond, mask)
    }

    /// A real training row holding each pick's category (uniform among them).
    pub fn real_rows(&self, picks: &[Pick], rng: &mut StdRng) -> Vec<i32> {
        picks
            .iter()
            .map(|p| {
                let rows = &self.columns[p.column].rows[p.category];
                rows[rng.random_range(0..rows.len())]
            })
            .collect()
    }

    /// Uniform training rows (a table without discrete columns).
    pub fn uniform_rows(&self, batch: usize, rng: &mut StdRng) -> Vec<i32> {
        (0..batch)
            .map(|_| rng.random_range(0..self.rows) as i32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataConfig, TransformerConfig};
    use crate::data::io::bundled;
    use crate::data::{Schema, Table};
    use rand::SeedableRng;
    use std::path::Path;

    fn adult() -> (DataTransformer, Vec<f32>, usize) {
        let path = bundled("adult.csv");
        let table = Table::read(&path, None).unwrap();
        let data = DataConfig::new(&path);
        let schema = Schema::infer(&table, &data, Path::new("c.toml")).unwrap();
        let t = DataTransformer::fit(&table, &schema, &TransformerConfig::default()).unwrap();
        let encoded = t.transform(&table, 1);
        (t, encoded, table.n_rows())
    }

    #[test]
    fn picks_follow_log_frequency_with_columns_uniform() {
        let (t, _, _) = adult();
        let s = CondSampler::new(&t);
        assert_eq!(s.columns().len(), 9);
        assert_eq!(s.cond_dim(), 104);
        let mut rng = StdRng::seed_from_u64(5);
        let n = 400_000;
        let picks = s.sample_train(n, &mut rng);
        for (ci, c) in s.columns().iter().enumerate() {
            let in_col: Vec<&Pick> = picks.iter().filter(|p| p.column == ci).collect();
            let share = in_col.len() as f64 / n as f64;
            assert!((share - 1.0 / 9.0).abs() < 0.005, "{}: {share}", c.name);
            let Encoder::Discrete(d) = &t.columns[c.column].encoder else {
                panic!()
            };
            let logs: Vec<f64> = d.counts.iter().map(|&k| (k as f64 + 1.0).ln()).collect();
            let total: f64 = logs.iter().sum();
            for (k, l) in logs.iter().enumerate() {
                let got =
                    in_col.iter().filter(|p| p.category == k).count() as f64 / in_col.len() as f64;
                assert!(
                    (got - l / total).abs() < 0.01,
                    "{} category {k}: {got} vs {}",
                    c.name,
                    l / total
                );
            }
        }
    }

    #[test]
    fn every_column_conditions_at_its_own_offset_and_real_rows_match() {
        let (t, encoded, rows) = adult();
        let layout = t.layout();
        let width = layout.width();
        let s = CondSampler::new(&t).with_rows(&encoded, rows, width);
        let relationship = s
            .columns()
            .iter()
            .position(|c| c.name == "relationship")
            .unwrap();
        assert!(relationship > 0, "a column other than the first");
        let c = &s.columns()[relationship];
        let span = layout
            .spans()
            .iter()
            .find(|sp| sp.column == c.column)
            .unwrap();
        assert_eq!((c.data_start, c.width), (span.start, span.width));
        let wife = match &t.columns[c.column].encoder {
            Encoder::Discrete(d) => d.index_of(Some("Wife")).unwrap(),
            _ => panic!(),
        };
        let picks = vec![
            Pick {
                column: relationship,
                category: wife
            };
            300
        ];
        let (cond, mask) = s.encode(&picks);
        assert_eq!(cond[c.cond_start + wife], 1.0);
        assert_eq!(cond.iter().sum::<f32>(), 300.0);
        assert_eq!(mask[relationship], 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        for r in s.real_rows(&picks, &mut rng) {
            let row = &encoded[r as usize * width..(r as usize + 1) * width];
            assert_eq!(row[c.data_start + wife], 1.0, "real row {r} is a Wife");
        }
    }
}
