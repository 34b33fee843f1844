//! `metrics.csv`: one row per epoch, rewritten atomically after every epoch.

use std::path::Path;

use crate::error::{Error, Result};

/// Per-epoch figures with named columns; the first column is `epoch`, the last `seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Metrics {
    pub fn new(losses: &[&str]) -> Metrics {
        let mut header = vec!["epoch".to_string()];
        header.extend(losses.iter().map(|s| s.to_string()));
        header.push("seconds".into());
        Metrics {
            header,
            rows: Vec::new(),
        }
    }

    /// Read an existing file, keeping rows up to `max_epoch` (a resumed run drops the epochs
    /// after its checkpoint).
    pub fn load(path: &Path, losses: &[&str], max_epoch: usize) -> Result<Metrics> {
        let mut m = Metrics::new(losses);
        let text = crate::error::read_text(path)?;
        for (i, line) in text.lines().enumerate().skip(1) {
            let row: std::result::Result<Vec<f64>, _> = line.split(',').map(str::parse).collect();
            let row = row
                .ok()
                .filter(|r| r.len() == m.header.len())
                .ok_or_else(|| Error::BadRun {
                    path: path.to_path_buf(),
                    message: format!("line {} of metrics.csv is malformed", i + 1),
                })?;
            if row[0] as usize <= max_epoch {
                m.rows.push(row);
            }
        }
        Ok(m)
    }

    pub fn push(&mut self, epoch: usize, losses: &[f64], seconds: f64) {
        let mut row = vec![epoch as f64];
        row.extend_from_slice(losses);
        row.push(seconds);
        assert_eq!(row.len(), self.header.len(), "one value per column");
        self.rows.push(row);
    }

    pub fn to_csv(&self) -> String {
        let mut out = self.header.join(",");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i == 0 {
                        format!("{}", *v as usize)
                    } else {
                        format!("{v}")
                    }
                })
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::run::atomic_write(path, self.to_csv().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_truncates_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut m = Metrics::new(&["loss"]);
        for e in 1..=4 {
            m.push(e, &[1.5 / e as f64], 0.25);
        }
        m.save(&path).unwrap();
        let back = Metrics::load(&path, &["loss"], 2).unwrap();
        assert_eq!(back.rows, m.rows[..2].to_vec());
    }
}
