//! `--condition col=value` and `--balance col`: parsed, checked against the run's vocabulary,
//! and tested on encoded rows.

use crate::data::sampler::{CondSampler, Pick};
use crate::data::transformer::{DataTransformer, Encoder, argmax};
use crate::error::{Error, Result};

/// A condition as typed: `column=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub value: String,
}

/// A condition checked against a run: where its column sits in an encoded row and which
/// category it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub column: String,
    pub value: String,
    data_start: usize,
    width: usize,
    category: usize,
    /// For CTGAN: the (column, category) of its conditional vector.
    pub pick: Option<Pick>,
}

impl Resolved {
    /// Does the encoded row hold this category? (The argmax that decoding applies.)
    pub fn holds(&self, row: &[f32]) -> bool {
        argmax(&row[self.data_start..self.data_start + self.width]) == self.category
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition> {
        match text.split_once('=') {
            Some((column, value)) if !column.trim().is_empty() => Ok(Condition {
                column: column.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(Error::Condition {
                message: format!("--condition '{text}' is not of the form column=value"),
                hint: "for example: --condition relationship=Wife".into(),
            }),
        }
    }

    /// Check the column and value against the run's columns and vocabulary. An empty value
    /// asks for the column's null category.
    pub fn resolve(
        &self,
        transformer: &DataTransformer,
        cond: Option<&CondSampler>,
    ) -> Result<Resolved> {
        let (index, encoder) = discrete_column(&self.column, transformer, "--condition")?;
        let key = (!self.value.is_empty()).then_some(self.value.as_str());
        let Some(category) = encoder.index_of(key) else {
            return Err(Error::Condition {
                message: format!("column '{}' has no category '{}'", self.column, self.value),
                hint: format!("its categories: {}", vocabulary(encoder)),
            });
        };
        Ok(resolved(
            transformer,
            index,
            category,
            &self.column,
            &self.value,
            cond,
        ))
    }
}

fn resolved(
    transformer: &DataTransformer,
    index: usize,
    category: usize,
    column: &str,
    value: &str,
    cond: Option<&CondSampler>,
) -> Resolved {
    let layout = transformer.layout();
    let span = layout
        .spans()
        .iter()
        .find(|s| s.column == index)
        .expect("a discrete column has a span");
    let pick = cond.and_then(|c| {
        c.columns()
            .iter()
            .position(|cc| cc.column == index)
            .map(|column| Pick { column, category })
    });
    Resolved {
        column: column.to_string(),
        value: value.to_string(),
        data_start: span.start,
        width: span.width,
        category,
        pick,
    }
}

fn discrete_column<'a>(
    name: &str,
    transformer: &'a DataTransformer,
    flag: &str,
) -> Result<(usize, &'a crate::data::transformer::DiscreteEncoder)> {
    let discrete: Vec<&str> = transformer
        .columns
        .iter()
        .filter(|c| matches!(c.encoder, Encoder::Discrete(_)))
        .map(|c| c.name.as_str())
        .collect();
    let Some(index) = transformer.columns.iter().position(|c| c.name == name) else {
        return Err(Error::Condition {
            message: format!("{flag}: the run has no column '{name}'"),
            hint: format!("discrete columns: {}", discrete.join(", ")),
        });
    };
    match &transformer.columns[index].encoder {
        Encoder::Discrete(d) => Ok((index, d)),
        Encoder::Continuous(_) => Err(Error::Condition {
            message: format!(
                "{flag}: column '{name}' is continuous; conditions apply to discrete columns"
            ),
            hint: format!("discrete columns: {}", discrete.join(", ")),
        }),
    }
}

fn vocabulary(encoder: &crate::data::transformer::DiscreteEncoder) -> String {
    let names: Vec<String> = encoder
        .categories
        .iter()
        .map(|c| c.clone().unwrap_or_else(|| "(null: an empty value)".into()))
        .collect();
    if names.len() > 60 {
        format!("{}, ... ({} in all)", names[..60].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

/// One condition per category of `column`, for `--balance`.
pub fn balance_conditions(
    column: &str,
    transformer: &DataTransformer,
    cond: Option<&CondSampler>,
) -> Result<Vec<Resolved>> {
    let (index, encoder) = discrete_column(column, transformer, "--balance")?;
    Ok(encoder
        .categories
        .iter()
        .enumerate()
        .map(|(k, c)| {
            resolved(
                transformer,
                index,
                k,
                column,
                c.as_deref().unwrap_or(""),
                cond,
            )
        })
        .collect())
}
