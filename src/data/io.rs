//! Reading and writing tables (CSV through polars, Parquet through polars).
//!
//! CSV cells are read as text, trimmed, and typed here (integer, float, boolean, text), so
//! that a UCI file with `", State-gov"` or `" 39"` reads as a category and an integer. An empty
//! cell is a null. Parquet columns keep their stored types.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;

use crate::error::{Error, Result};

/// The type a column is read and written back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Int,
    Float,
    Bool,
    Str,
}

/// A text cell. Shared: a column decoded from category positions holds each category once,
/// not a copy per row.
pub type Text = Arc<str>;

/// A column's cells; `None` is a null.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<Text>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Values::Int(_) => DType::Int,
            Values::Float(_) => DType::Float,
            Values::Bool(_) => DType::Bool,
            Values::Str(_) => DType::Str,
        }
    }

    /// The numbers of a numeric column as f64 (None for text and booleans).
    pub fn as_f64(&self) -> Option<Vec<Option<f64>>> {
        match self {
            Values::Int(v) => Some(v.iter().map(|x| x.map(|x| x as f64)).collect()),
            Values::Float(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The cells at `indices`, in their order.
    pub fn pick(&self, indices: &[usize]) -> Values {
        fn at<T: Clone>(v: &[T], indices: &[usize]) -> Vec<T> {
            indices.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Values::Int(v) => Values::Int(at(v, indices)),
            Values::Float(v) => Values::Float(at(v, indices)),
            Values::Bool(v) => Values::Bool(at(v, indices)),
            Values::Str(v) => Values::Str(at(v, indices)),
        }
    }

    /// Every cell as its text form (the category key used by discrete encoders).
    pub fn as_keys(&self) -> Vec<Option<String>> {
        match self {
            Values::Int(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            Values::Float(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            Values::Bool(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            Values::Str(v) => v.iter().map(|x| x.as_deref().map(String::from)).collect(),
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// A table held column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
}

impl Table {
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Read a CSV (`.csv`, `.tsv`, `.txt`) or Parquet (`.parquet`, `.pq`) file.
    pub fn read(path: &Path, separator: Option<char>) -> Result<Table> {
        if !path.exists() {
            return Err(Error::DataNotFound {
                path: path.to_path_buf(),
            });
        }
        match extension(path).as_str() {
            "parquet" | "pq" => read_parquet(path),
            _ => read_csv(path, separator),
        }
    }

    /// Write as CSV or Parquet (by extension); `-` streams CSV to stdout. Files are written
    /// beside and renamed, so a failed write never leaves a partial file under `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut df = self.to_polars();
        if path == Path::new("-") {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            return CsvWriter::new(&mut lock)
                .finish(&mut df)
                .map_err(|e| Error::Output {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
        }
        let parquet = matches!(extension(path).as_str(), "parquet" | "pq");
        crate::run::atomic_write_with(path, |file| {
            let mut w = BufWriter::new(file);
            let res = if parquet {
                ParquetWriter::new(&mut w).finish(&mut df).map(|_| ())
            } else {
                CsvWriter::new(&mut w).finish(&mut df)
            };
            res.map_err(|e| std::io::Error::other(e.to_string()))?;
            w.flush()
        })
    }

    fn to_polars(&self) -> DataFrame {
        let columns: Vec<polars::prelude::Column> = self
            .columns
            .iter()
            .map(|c| {
                let name: PlSmallStr = c.name.as_str().into();
                match &c.values {
                    Values::Int(v) => polars::prelude::Column::new(name, v),
                    Values::Float(v) => polars::prelude::Column::new(name, v),
                    Values::Bool(v) => polars::prelude::Column::new(name, v),
                    Values::Str(v) => {
                        let v: Vec<Option<&str>> = v.iter().map(|x| x.as_deref()).collect();
                        polars::prelude::Column::new(name, v)
                    }
                }
            })
            .collect();
        DataFrame::new(self.n_rows(), columns).expect("columns of one table have one length")
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn parse_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_csv(path: &Path, separator: Option<char>) -> Result<Table> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::EmptyTable {
            path: path.to_path_buf(),
        });
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(parse_error(path, "the file is not UTF-8 text"));
    }
    let sep = match separator {
        Some(c) if c.is_ascii() => c as u8,
        Some(c) => return Err(parse_error(path, format!("separator '{c}' is not ASCII"))),
        None => sniff_separator(&bytes),
    };
    check_field_counts(&bytes, sep).map_err(|m| parse_error(path, m))?;

    let options = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_raise_if_empty(false)
        .map_parse_options(|p| p.with_separator(sep).with_quote_char(Some(b'"')));
    let df = options
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| parse_error(path, e.to_string()))?;

    let mut columns = Vec::with_capacity(df.width());
    let mut seen = std::collections::HashSet::new();
    for col in df.columns() {
        let name = col.name().trim().to_string();
        if name.is_empty() {
            return Err(parse_error(path, "the header has an empty column name"));
        }
        if !seen.insert(name.clone()) {
            return Err(parse_error(
                path,
                format!("the header names '{name}' twice"),
            ));
        }
        let text = col
            .str()
            .map_err(|e| parse_error(path, e.to_string()))?
            .iter()
            .map(|v| v.map(str::trim).filter(|s| !s.is_empty()).map(Text::from))
            .collect::<Vec<_>>();
        columns.push(Column {
            name,
            values: type_text(text),
        });
    }
    let table = Table { columns };
    if table.n_rows() == 0 {
        return Err(Error::EmptyTable {
            path: path.to_path_buf(),
        });
    }
    Ok(table)
}

/// Pick the most frequent of `,` `;` tab `|` outside quotes in the header line.
fn sniff_separator(bytes: &[u8]) -> u8 {
    let candidates = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in bytes.iter().take_while(|&&b| b != b'\n') {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = candidates.iter().position(|&c| c == b) {
            counts[i] += 1;
        }
    }
    let best = (0..4)
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

/// Every record must have as many fields as the header; say which line does not.
fn check_field_counts(bytes: &[u8], sep: u8) -> std::result::Result<(), String> {
    let mut expected: Option<usize> = None;
    let mut fields = 1usize;
    let mut quoted = false;
    let mut line = 1usize;
    let mut record_start_line = 1usize;
    let mut record_empty = true;
    let mut finish = |fields: usize, at: usize, empty: bool| -> std::result::Result<(), String> {
        if empty {
            return Ok(());
        }
        match expected {
            None => expected = Some(fields),
            Some(n) if n != fields => {
                return Err(format!(
                    "line {at} has {fields} fields but the header has {n}"
                ));
            }
            _ => {}
        }
        Ok(())
    };
    for &b in bytes {
        match b {
            b'"' => {
                quoted = !quoted;
                record_empty = false;
            }
            b'\n' => {
                line += 1;
                if !quoted {
                    finish(fields, record_start_line, record_empty)?;
                    fields = 1;
                    record_empty = true;
                    record_start_line = line;
                }
            }
            b'\r' => {}
            _ if b == sep && !quoted => {
                fields += 1;
                record_empty = false;
            }
            _ => record_empty = false,
        }
    }
    if quoted {
        return Err(format!(
            "a quoted field opened on line {record_start_line} is never closed"
        ));
    }
    finish(fields, record_start_line, record_empty)
}

/// Type a column of trimmed text: integers, then floats, then booleans, else text.
fn type_text(text: Vec<Option<Text>>) -> Values {
    let present = || text.iter().flatten();
    if present().next().is_none() {
        return Values::Str(text);
    }
    if present().all(|s| s.parse::<i64>().is_ok()) {
        return Values::Int(
            text.iter()
                .map(|v| v.as_ref().map(|s| s.parse().expect("checked")))
                .collect(),
        );
    }
    if present().all(|s| parse_float(s).is_some()) {
        return Values::Float(
            text.iter()
                .map(|v| v.as_ref().and_then(|s| parse_float(s)))
                .collect(),
        );
    }
    if present().all(|s| parse_bool(s).is_some()) {
        return Values::Bool(
            text.iter()
                .map(|v| v.as_ref().and_then(|s| parse_bool(s)))
                .collect(),
        );
    }
    Values::Str(text)
}

/// A finite decimal number (no "inf" or "nan" spelled as words).
fn parse_float(s: &str) -> Option<f64> {
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn read_parquet(path: &Path) -> Result<Table> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| parse_error(path, e.to_string()))?;
    let mut columns = Vec::with_capacity(df.width());
    for col in df.columns() {
        let name = col.name().to_string();
        let err = |e: PolarsError| parse_error(path, format!("column '{name}': {e}"));
        let dtype = col.dtype();
        let values = if dtype.is_integer() {
            let c = col.cast(&DataType::Int64).map_err(err)?;
            Values::Int(c.i64().map_err(err)?.iter().collect())
        } else if dtype.is_float() {
            let c = col.cast(&DataType::Float64).map_err(err)?;
            Values::Float(
                c.f64()
                    .map_err(err)?
                    .iter()
                    .map(|x| x.filter(|x| x.is_finite()))
                    .collect(),
            )
        } else if dtype.is_bool() {
            Values::Bool(col.bool().map_err(err)?.iter().collect())
        } else {
            let c = col.cast(&DataType::String).map_err(err)?;
            Values::Str(
                c.str()
                    .map_err(err)?
                    .iter()
                    .map(|v| v.map(str::trim).filter(|s| !s.is_empty()).map(Text::from))
                    .collect(),
            )
        };
        columns.push(Column { name, values });
    }
    let table = Table { columns };
    if table.n_rows() == 0 {
        return Err(Error::EmptyTable {
            path: path.to_path_buf(),
        });
    }
    Ok(table)
}

/// Where the repository's bundled data lives (for tests and benchmarks).
pub fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adult_reads_with_trimmed_values_and_types() {
        let t = Table::read(&bundled("adult.csv"), None).unwrap();
        assert_eq!(t.n_rows(), 32_561);
        assert_eq!(t.columns.len(), 15);
        assert_eq!(t.column("age").unwrap().values.dtype(), DType::Int);
        let Values::Str(w) = &t.column("workclass").unwrap().values else {
            panic!("workclass is text")
        };
        assert_eq!(w[0].as_deref(), Some("State-gov"));
        // UCI's missing marker stays a category of its own (1,836 rows, data/README.md).
        assert_eq!(
            w.iter().filter(|v| v.as_deref() == Some("?")).count(),
            1_836
        );
    }

    #[test]
    fn bank_marketing_sniffs_semicolons_and_quotes() {
        let t = Table::read(&bundled("bank-marketing.csv"), None).unwrap();
        assert_eq!(t.columns.len(), 21);
        assert_eq!(t.columns[0].name, "age");
        assert_eq!(t.column("euribor3m").unwrap().values.dtype(), DType::Float);
        let Values::Str(y) = &t.column("y").unwrap().values else {
            panic!("y is text")
        };
        assert_eq!(y[0].as_deref(), Some("no"));
    }

    #[test]
    fn ragged_line_is_named() {
        let err = check_field_counts(b"a,b,c\n1,2,3\n4,5\n6,7,8\n", b',').unwrap_err();
        assert_eq!(err, "line 3 has 2 fields but the header has 3");
        assert!(check_field_counts(b"a,b\n\"x,\ny\",2\n", b',').is_ok());
    }

    #[test]
    fn csv_and_parquet_round_trip_types_and_nulls() {
        let t = Table {
            columns: vec![
                Column {
                    name: "i".into(),
                    values: Values::Int(vec![Some(1), None, Some(-3)]),
                },
                Column {
                    name: "f".into(),
                    values: Values::Float(vec![Some(0.5), Some(2.25), None]),
                },
                Column {
                    name: "b".into(),
                    values: Values::Bool(vec![Some(true), None, Some(false)]),
                },
                Column {
                    name: "s".into(),
                    values: Values::Str(vec![None, Some("x y".into()), Some("z".into())]),
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        for name in ["t.csv", "t.parquet"] {
            let p = dir.path().join(name);
            t.write(&p).unwrap();
            assert_eq!(Table::read(&p, None).unwrap(), t, "{name}");
        }
    }
}
