//! `evaluate`: how faithful, how private and how useful a synthetic table is.
//!
//! Every measure follows the definition of SDMetrics (MIT), so numbers compare across tools:
//! [`fidelity`] (column shapes, column pair trends: the quality score), [`diagnostic`]
//! (boundary and category adherence, table structure), [`privacy`] (distance to closest record
//! against a random baseline and a holdout, new row synthesis) and [`utility`] (a classifier
//! trained on synthetic rows, tested on held-out real rows). [`report`] gathers them into
//! `report.json`, a summary on stderr and a self-contained `report.html`.
//!
//! Tables are read as `train` reads them and column kinds are inferred as `train` infers them,
//! with the same overrides. Cells are turned into one [`Cells`] per column: numbers (NaN for a
//! null) for continuous columns, codes into one vocabulary shared by all the tables for
//! discrete ones.

pub mod diagnostic;
pub mod fidelity;
mod html;
pub mod images;
pub mod privacy;
pub mod report;
pub mod utility;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{info, warn};

use crate::config::DataConfig;
use crate::data::io::{DType, Table, Values};
use crate::data::schema::{ColumnKind, Schema};
use crate::device::{self, DeviceChoice};
use crate::error::{Error, Result};

pub use report::Report;

/// Smallest and largest of the values that are not NaN; None when there are none.
pub fn span(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|x| !x.is_nan())
        .fold(None, |acc, x| {
            Some(match acc {
                None => (x, x),
                Some((lo, hi)) => (f64::min(lo, x), f64::max(hi, x)),
            })
        })
}

/// The code of a null cell in a discrete column.
pub const NULL: u32 = u32::MAX;

/// What `evaluate` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub real: PathBuf,
    pub synthetic: PathBuf,
    /// Real rows the generator never saw: enables DCR overfitting protection and utility.
    pub holdout: Option<PathBuf>,
    /// A discrete column to predict for the utility measure.
    pub target: Option<String>,
    /// Directory for report.json and report.html (none: print the summary only).
    pub output: Option<PathBuf>,
    pub discrete: Vec<String>,
    pub continuous: Vec<String>,
    pub ignore: Vec<String>,
    pub separator: Option<char>,
    pub device: DeviceChoice,
    /// Seed of the random baseline of DCR and of the classifier.
    pub seed: u64,
    /// Integer columns with at most this many distinct values are discrete (as `[data]`).
    pub discrete_max_distinct: usize,
}

impl EvalOptions {
    pub fn new(real: impl Into<PathBuf>, synthetic: impl Into<PathBuf>) -> EvalOptions {
        EvalOptions {
            real: real.into(),
            synthetic: synthetic.into(),
            holdout: None,
            target: None,
            output: None,
            discrete: Vec::new(),
            continuous: Vec::new(),
            ignore: Vec::new(),
            separator: None,
            device: DeviceChoice::Cpu,
            seed: 0,
            discrete_max_distinct: DataConfig::new("").discrete_max_distinct,
        }
    }
}

/// The cells of one column of one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cells {
    /// Continuous: NaN is a null.
    Num(Vec<f64>),
    /// Discrete: codes into the column's [`EvalColumn::vocab`]; [`NULL`] is a null.
    Cat(Vec<u32>),
}

impl Cells {
    pub fn len(&self) -> usize {
        match self {
            Cells::Num(v) => v.len(),
            Cells::Cat(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num(&self) -> &[f64] {
        match self {
            Cells::Num(v) => v,
            Cells::Cat(_) => panic!("a continuous column holds numbers"),
        }
    }

    pub fn cat(&self) -> &[u32] {
        match self {
            Cells::Cat(v) => v,
            Cells::Num(_) => panic!("a discrete column holds codes"),
        }
    }
}

/// An evaluated column: its name, kind, the real table's type and, for a discrete column,
/// the vocabulary its codes index.
#[derive(Debug, Clone)]
pub struct EvalColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub dtype: DType,
    /// Smallest and largest real value of a numeric column (for the random baseline).
    pub range: Option<(f64, f64)>,
    pub vocab: Vec<String>,
}

/// One table, column by column, in the order of [`Prepared::columns`].
#[derive(Debug, Clone)]
pub struct Dataset {
    pub cells: Vec<Cells>,
    pub rows: usize,
    /// (name, pandas-style dtype) of every column the file has, for table structure.
    pub structure: Vec<(String, String)>,
}

/// Real, synthetic and (optional) holdout tables encoded the same way.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub columns: Vec<EvalColumn>,
    pub real: Dataset,
    pub synthetic: Dataset,
    pub holdout: Option<Dataset>,
}

/// A discrete column's growing vocabulary: the key of a cell (its text form) to a code.
#[derive(Debug, Default, Clone)]
pub struct Vocab {
    index: HashMap<String, u32>,
    keys: Vec<String>,
}

impl Vocab {
    pub fn code(&mut self, key: &str) -> u32 {
        if let Some(&c) = self.index.get(key) {
            return c;
        }
        let c = self.keys.len() as u32;
        self.index.insert(key.to_string(), c);
        self.keys.push(key.to_string());
        c
    }

    pub fn encode(&mut self, values: &Values) -> Vec<u32> {
        values
            .as_keys()
            .iter()
            .map(|k| k.as_deref().map_or(NULL, |k| self.code(k)))
            .collect()
    }
}

/// The dtype pandas would give a column read from the same file (SDMetrics' table structure
/// compares these).
fn pandas_dtype(values: &Values) -> &'static str {
    if values.as_keys().iter().all(Option::is_none) {
        return "float64"; // pandas reads a column of empty cells as NaN floats
    }
    let has_null = match values {
        Values::Int(v) => v.iter().any(Option::is_none),
        Values::Float(_) => false,
        Values::Bool(v) => v.iter().any(Option::is_none),
        Values::Str(_) => false,
    };
    match (values.dtype(), has_null) {
        (DType::Int, false) => "int64",
        (DType::Int, true) | (DType::Float, _) => "float64",
        (DType::Bool, false) => "bool",
        (DType::Bool, true) | (DType::Str, _) => "object",
    }
}

fn read_table(path: &Path, separator: Option<char>, role: &str) -> Result<Table> {
    match Table::read(path, separator) {
        Ok(t) if t.n_rows() > 0 => Ok(t),
        Ok(_) | Err(Error::EmptyTable { .. }) => Err(Error::Evaluate {
            message: format!("the {role} table '{}' has no rows", path.display()),
            hint: "evaluate needs a header and at least one row in every table; sample rows with 'sample --checkpoint RUN -n N -o FILE'".into(),
        }),
        Err(e) => Err(e),
    }
}

/// Read the tables of `opts`.
pub fn read_tables(opts: &EvalOptions) -> Result<(Table, Table, Option<Table>)> {
    let real = read_table(&opts.real, opts.separator, "real")?;
    let synthetic = read_table(&opts.synthetic, opts.separator, "synthetic")?;
    let holdout = match &opts.holdout {
        Some(p) => Some(read_table(p, opts.separator, "holdout")?),
        None => None,
    };
    Ok((real, synthetic, holdout))
}

/// Encode the tables column by column (`opts` names them in errors and holds the overrides).
pub fn prepare(
    real: &Table,
    synthetic: &Table,
    holdout: Option<&Table>,
    opts: &EvalOptions,
) -> Result<Prepared> {
    let mut data = DataConfig::new(&opts.real);
    data.discrete = opts.discrete.clone();
    data.continuous = opts.continuous.clone();
    data.ignore = opts.ignore.clone();
    data.discrete_max_distinct = opts.discrete_max_distinct;
    let schema =
        Schema::infer(real, &data, Path::new("the command line")).map_err(|e| match e {
            Error::UnknownColumn {
                key,
                column,
                available,
                ..
            } => Error::Evaluate {
                message: format!(
                    "--{key} names column '{column}', but '{}' has no such column",
                    opts.real.display()
                ),
                hint: format!("columns in the real data: {}", available.join(", ")),
            },
            e => e,
        })?;
    check_columns(real, synthetic, &opts.synthetic, &opts.ignore)?;
    if let Some(h) = holdout {
        let p = opts.holdout.as_deref().unwrap_or(Path::new("the holdout"));
        check_columns(real, h, p, &opts.ignore)?;
    }

    let mut columns = Vec::with_capacity(schema.columns.len());
    let mut cells: [Vec<Cells>; 3] = Default::default();
    for c in &schema.columns {
        let tables: Vec<(&Table, &Path)> = [
            Some((real, opts.real.as_path())),
            Some((synthetic, opts.synthetic.as_path())),
            holdout.map(|h| {
                (
                    h,
                    opts.holdout.as_deref().unwrap_or(Path::new("the holdout")),
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        let real_values = &real
            .column(&c.name)
            .expect("schema columns are real columns")
            .values;
        let range = real_values
            .as_f64()
            .and_then(|v| span(v.iter().flatten().copied()));
        let mut vocab = Vocab::default();
        for (i, (table, path)) in tables.iter().enumerate() {
            let values = &table.column(&c.name).expect("checked above").values;
            let col = match c.kind {
                ColumnKind::Continuous => match values.as_f64() {
                    Some(v) => Cells::Num(v.iter().map(|x| x.unwrap_or(f64::NAN)).collect()),
                    None if values.as_keys().iter().all(Option::is_none) => {
                        Cells::Num(vec![f64::NAN; values.len()])
                    }
                    None => {
                        return Err(Error::Column {
                            path: path.to_path_buf(),
                            column: c.name.clone(),
                            message: format!(
                                "holds {:?} values, but the column is continuous in the real data",
                                values.dtype()
                            ),
                        });
                    }
                },
                ColumnKind::Discrete => Cells::Cat(vocab.encode(values)),
            };
            cells[i].push(col);
        }
        if c.kind == ColumnKind::Continuous {
            let all = span(
                cells
                    .iter()
                    .filter_map(|t| t.last())
                    .flat_map(|col| col.num().iter().copied()),
            );
            if let Some((lo, hi)) = all.filter(|(lo, hi)| !(hi - lo).is_finite()) {
                return Err(Error::Column {
                    path: opts.real.clone(),
                    column: c.name.clone(),
                    message: format!(
                        "its values span [{lo:e}, {hi:e}] across the tables, too wide to measure distances on"
                    ),
                });
            }
        }
        columns.push(EvalColumn {
            name: c.name.clone(),
            kind: c.kind,
            dtype: c.dtype,
            range,
            vocab: vocab.keys,
        });
    }
    let structure = |t: &Table| -> Vec<(String, String)> {
        t.columns
            .iter()
            .filter(|c| !opts.ignore.contains(&c.name))
            .map(|c| (c.name.clone(), pandas_dtype(&c.values).to_string()))
            .collect()
    };
    let [real_cells, synth_cells, holdout_cells] = cells;
    Ok(Prepared {
        columns,
        real: Dataset {
            cells: real_cells,
            rows: real.n_rows(),
            structure: structure(real),
        },
        synthetic: Dataset {
            cells: synth_cells,
            rows: synthetic.n_rows(),
            structure: structure(synthetic),
        },
        holdout: holdout.map(|h| Dataset {
            cells: holdout_cells,
            rows: h.n_rows(),
            structure: structure(h),
        }),
    })
}

/// Both tables must have the same columns (those ignored aside).
fn check_columns(real: &Table, other: &Table, other_path: &Path, ignore: &[String]) -> Result<()> {
    let kept = |t: &Table| -> Vec<String> {
        t.names()
            .into_iter()
            .filter(|n| !ignore.contains(n))
            .collect()
    };
    let (r, o) = (kept(real), kept(other));
    let missing: Vec<&String> = r.iter().filter(|n| !o.contains(n)).collect();
    let extra: Vec<&String> = o.iter().filter(|n| !r.contains(n)).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "it lacks {}",
            missing
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "it has {} that the real data does not",
            extra
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Err(Error::Evaluate {
        message: format!(
            "the columns of '{}' do not match the real data: {}",
            other_path.display(),
            parts.join("; ")
        ),
        hint: "evaluate tables with the same columns (a model's samples have its training columns), or leave some out with --ignore".into(),
    })
}

/// Run the whole evaluation of the files `opts` names and write the report when
/// `opts.output` is set.
pub fn evaluate(opts: &EvalOptions) -> Result<Report> {
    let t0 = Instant::now();
    let (real, synthetic, holdout) = read_tables(opts)?;
    evaluate_tables(&real, &synthetic, holdout.as_ref(), opts, t0)
}

/// Evaluate tables already in memory (`train`'s `[eval]`); `started` is when reading began.
pub fn evaluate_tables(
    real: &Table,
    synthetic: &Table,
    holdout: Option<&Table>,
    opts: &EvalOptions,
    started: Instant,
) -> Result<Report> {
    let prepared = prepare(real, synthetic, holdout, opts)?;
    if let Some(t) = &opts.target {
        utility::check_target(&prepared, t, opts)?;
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let selected = device::select(opts.device)?;
    let report = report::build(&prepared, opts, &selected, read_seconds)?;
    info!(seconds = started.elapsed().as_secs_f64(), "evaluated");
    if let Some(dir) = &opts.output {
        report::write(&report, &prepared, dir)?;
    }
    if opts.holdout.is_none() {
        warn!("no holdout: DCR overfitting protection and utility are left out");
    }
    Ok(report)
}
