//! One error type for the library. Every variant names the file, column or run involved so
//! that the CLI can print what went wrong, where, and (through [`Error::hint`]) what to do.

use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A text file's contents, or [`Error::Io`] naming it.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Everything that can go wrong for a user: bad files, bad configs, bad runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write '{path}': {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("data file '{path}' not found")]
    DataNotFound { path: PathBuf },

    #[error("cannot parse '{path}': {message}")]
    Parse { path: PathBuf, message: String },

    #[error("'{path}' has no rows")]
    EmptyTable { path: PathBuf },

    #[error("'{path}' has a single row: a model needs at least 2")]
    SingleRow { path: PathBuf },

    #[error("'{path}' has no column to model")]
    NoColumns { path: PathBuf },

    #[error("config '{path}' is invalid: {message}")]
    Config { path: PathBuf, message: String },

    #[error(
        "config '{path}' names column '{column}' in [data] {key}, but the data has no such column"
    )]
    UnknownColumn {
        path: PathBuf,
        key: &'static str,
        column: String,
        available: Vec<String>,
    },

    #[error("column '{column}' of '{path}': {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },

    #[error("invalid value for {what}: {message}")]
    Invalid { what: String, message: String },

    #[error("no run '{id}' under '{models_dir}'")]
    UnknownRun {
        id: String,
        models_dir: PathBuf,
        existing: Vec<String>,
    },

    #[error("run directory '{path}' already exists")]
    RunExists { path: PathBuf },

    #[error("run '{path}' is damaged: {message}")]
    BadRun { path: PathBuf, message: String },

    #[error("run '{path}' was trained on different data: {message}")]
    DataMismatch { path: PathBuf, message: String },

    #[error("training diverged at epoch {epoch}: the {what} loss is {value}")]
    Diverged {
        epoch: usize,
        what: &'static str,
        value: f64,
        kept: Option<(usize, PathBuf)>,
    },

    #[error("device '{device}' is not available: {message}")]
    Device { device: String, message: String },

    #[error("{message}")]
    Condition { message: String, hint: String },

    #[error("{message}")]
    Evaluate { message: String, hint: String },

    #[error("images '{path}': {message}")]
    Images { path: PathBuf, message: String },

    #[error("output '{path}': {message}")]
    Output { path: PathBuf, message: String },
}

impl Error {
    /// Something the user can do about it, printed as `hint: ...` after the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::DataNotFound { .. } => Some(
                "paths in a config are relative to the working directory; check [data] path"
                    .into(),
            ),
            Error::Parse { .. } => Some(
                "every line of a CSV must have as many fields as the header; set [data] separator if it is not ',' or ';'"
                    .into(),
            ),
            Error::EmptyTable { .. } | Error::SingleRow { .. } => {
                Some("train on a table with a header and at least 2 data rows".into())
            }
            Error::UnknownColumn { available, .. } => {
                Some(format!("columns in the data: {}", available.join(", ")))
            }
            Error::UnknownRun { existing, .. } => Some(if existing.is_empty() {
                "there are no runs yet: train one with 'train --config FILE'".into()
            } else {
                format!("runs that exist: {}", existing.join(", "))
            }),
            Error::RunExists { .. } => Some(
                "pass --force to overwrite it, --run-id to pick another name, or --resume to continue it"
                    .into(),
            ),
            Error::BadRun { .. } => Some(
                "the run's files were changed or cut short; train again or resume from a copy"
                    .into(),
            ),
            Error::DataMismatch { .. } => Some(
                "resume with the same data file the run was trained on, or start a new run".into(),
            ),
            Error::Diverged { kept, .. } => Some(match kept {
                Some((epoch, path)) => format!(
                    "the last good checkpoint (epoch {epoch}) is kept in '{}'; lower the learning rate or resume with --resume",
                    path.display()
                ),
                None => "no checkpoint was written; lower the learning rate or check the data for extreme values"
                    .into(),
            }),
            Error::Condition { hint, .. } | Error::Evaluate { hint, .. } => Some(hint.clone()),
            Error::Images { .. } => Some(
                "[data] path takes an IDX image file (raw or .gz) or a folder of PNG / JPEG images, optionally in one sub-folder per class".into(),
            ),
            Error::Device { .. } => Some(
                "use --device cpu, or install a Vulkan driver (Debian: mesa-vulkan-drivers) for --device wgpu"
                    .into(),
            ),
            _ => None,
        }
    }
}
