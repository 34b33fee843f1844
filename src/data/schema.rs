//! Which columns are continuous, which are discrete, and which are left out.
//!
//! Inference: floats are continuous; integers are continuous unless they have at most
//! `[data] discrete_max_distinct` distinct values; booleans and text are discrete. The config's
//! `discrete`, `continuous` and `ignore` lists override it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::DataConfig;
use crate::data::io::{DType, Table, Values};
use crate::error::{Error, Result};

/// How a column is modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Continuous,
    Discrete,
}

/// One modelled column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub dtype: DType,
    pub kind: ColumnKind,
}

/// The modelled columns in table order, and the names of those left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<ColumnSchema>,
    pub ignored: Vec<String>,
}

impl Schema {
    /// Infer a schema from a table and the `[data]` overrides; `config_path` names the config
    /// in errors.
    pub fn infer(table: &Table, data: &DataConfig, config_path: &Path) -> Result<Schema> {
        let names: HashSet<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        for (key, list) in [
            ("discrete", &data.discrete),
            ("continuous", &data.continuous),
            ("ignore", &data.ignore),
        ] {
            if let Some(missing) = list.iter().find(|c| !names.contains(c.as_str())) {
                return Err(Error::UnknownColumn {
                    path: config_path.to_path_buf(),
                    key,
                    column: missing.clone(),
                    available: table.names(),
                });
            }
        }
        let mut columns = Vec::new();
        let mut ignored = Vec::new();
        for col in &table.columns {
            let name = &col.name;
            if data.ignore.contains(name) {
                ignored.push(name.clone());
                continue;
            }
            let dtype = col.values.dtype();
            let kind = if data.discrete.contains(name) {
                ColumnKind::Discrete
            } else if data.continuous.contains(name) {
                if !matches!(dtype, DType::Int | DType::Float) {
                    return Err(Error::Column {
                        path: data.path.clone(),
                        column: name.clone(),
                        message: format!(
                            "[data] continuous lists it, but it holds {} values; only numbers can be continuous",
                            if dtype == DType::Bool {
                                "boolean"
                            } else {
                                "text"
                            }
                        ),
                    });
                }
                ColumnKind::Continuous
            } else {
                match &col.values {
                    Values::Float(_) => ColumnKind::Continuous,
                    Values::Int(v) => {
                        let distinct: HashSet<i64> = v.iter().flatten().copied().collect();
                        if distinct.len() <= data.discrete_max_distinct {
                            ColumnKind::Discrete
                        } else {
                            ColumnKind::Continuous
                        }
                    }
                    Values::Bool(_) | Values::Str(_) => ColumnKind::Discrete,
                }
            };
            columns.push(ColumnSchema {
                name: name.clone(),
                dtype,
                kind,
            });
        }
        if columns.is_empty() {
            return Err(Error::NoColumns {
                path: data.path.clone(),
            });
        }
        Ok(Schema { columns, ignored })
    }

    /// A digest of names, types and kinds: a resumed run must see the same schema.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a schema serializes");
        let hash = Sha256::digest(&json);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Check that a table has this schema's columns with the same types.
    pub fn check_table(&self, table: &Table, path: &Path) -> Result<()> {
        for c in &self.columns {
            let Some(col) = table.column(&c.name) else {
                return Err(Error::DataMismatch {
                    path: path.to_path_buf(),
                    message: format!("the data has no column '{}'", c.name),
                });
            };
            if col.values.dtype() != c.dtype {
                return Err(Error::DataMismatch {
                    path: path.to_path_buf(),
                    message: format!(
                        "column '{}' is {:?} in the data but was {:?}",
                        c.name,
                        col.values.dtype(),
                        c.dtype
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::io::bundled;

    fn data_config(path: &Path) -> DataConfig {
        DataConfig::new(path)
    }

    #[test]
    fn adult_has_six_continuous_and_nine_discrete_columns() {
        let path = bundled("adult.csv");
        let t = Table::read(&path, None).unwrap();
        let s = Schema::infer(&t, &data_config(&path), Path::new("c.toml")).unwrap();
        let continuous: Vec<&str> = s
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Continuous)
            .map(|c| c.name.as_str())
            .collect();
        // data/README.md: age, fnlwgt, education-num, capital-gain, capital-loss, hours-per-week.
        assert_eq!(
            continuous,
            [
                "age",
                "fnlwgt",
                "education-num",
                "capital-gain",
                "capital-loss",
                "hours-per-week"
            ]
        );
        assert_eq!(s.columns.len(), 15);
    }

    #[test]
    fn overrides_apply_and_unknown_columns_are_named() {
        let path = bundled("adult.csv");
        let t = Table::read(&path, None).unwrap();
        let mut d = data_config(&path);
        d.discrete = vec!["education-num".into()];
        d.ignore = vec!["fnlwgt".into()];
        let s = Schema::infer(&t, &d, Path::new("c.toml")).unwrap();
        assert_eq!(s.ignored, ["fnlwgt"]);
        let en = s
            .columns
            .iter()
            .find(|c| c.name == "education-num")
            .unwrap();
        assert_eq!(en.kind, ColumnKind::Discrete);

        d.continuous = vec!["agee".into()];
        let err = Schema::infer(&t, &d, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("'agee'"), "{err}");
        assert!(err.hint().unwrap().contains("age, workclass"));

        d.continuous = vec!["workclass".into()];
        let err = Schema::infer(&t, &d, Path::new("c.toml")).unwrap_err();
        assert!(
            err.to_string().contains("only numbers can be continuous"),
            "{err}"
        );
    }
}
