//! Configuration: plain serde structs read from TOML, one `impl Default` each, unknown keys
//! refused, and [`Config::validate`] run before any work starts.
//!
//! Every default lives here once; `configs/*.toml` repeat them only as commented documentation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::DeviceChoice;
use crate::error::{Error, Result};

/// The whole resolved configuration of a run, as saved in `config.toml` of the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    #[serde(default)]
    pub transformer: TransformerConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
}

/// `[data]`: where the table is and how to read its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// CSV or Parquet file, relative to the working directory.
    pub path: PathBuf,
    /// CSV field separator; sniffed from the header line (',', ';', tab or '|') when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<char>,
    /// Columns to model as discrete (one-hot) whatever their type.
    #[serde(default)]
    pub discrete: Vec<String>,
    /// Columns to model as continuous (mode-specific normalization); they must be numeric.
    #[serde(default)]
    pub continuous: Vec<String>,
    /// Columns left out of the model and of the samples.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Integer columns with at most this many distinct values are inferred discrete.
    #[serde(default = "default_discrete_max_distinct")]
    pub discrete_max_distinct: usize,
}

fn default_discrete_max_distinct() -> usize {
    10
}

/// `[transformer]`: mode-specific normalization (CTGAN, Xu et al. 2019, section 4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerConfig {
    /// Components of the variational Bayesian Gaussian mixture per continuous column.
    pub max_modes: usize,
    /// Modes whose mixture weight is at most this are dropped.
    pub weight_threshold: f64,
    /// Concentration of the Dirichlet-process prior on the mixture weights.
    pub weight_prior: f64,
    /// Variational iterations at most.
    pub max_iter: usize,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            max_modes: 10,
            weight_threshold: 0.005,
            weight_prior: 0.001,
            max_iter: 100,
        }
    }
}

/// `[model]`: which model and its hyperparameters, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Tvae(TvaeConfig),
}

impl ModelConfig {
    /// The model's name as written in manifests and run ids.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Tvae(_) => "tvae",
        }
    }
}

/// TVAE hyperparameters (Xu et al. 2019; defaults of the reference implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TvaeConfig {
    /// Width of the latent code.
    pub embedding_dim: usize,
    /// Hidden widths of the encoder.
    pub compress_dims: Vec<usize>,
    /// Hidden widths of the decoder.
    pub decompress_dims: Vec<usize>,
    /// Weight of the reconstruction term against the KL term.
    pub loss_factor: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam weight decay (L2, added to the gradient as PyTorch's Adam does).
    pub weight_decay: f64,
    /// Adam epsilon (PyTorch's default; Burn's own default is 1e-5).
    pub epsilon: f64,
}

impl Default for TvaeConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 128,
            compress_dims: vec![128, 128],
            decompress_dims: vec![128, 128],
            loss_factor: 2.0,
            learning_rate: 1e-3,
            weight_decay: 1e-5,
            epsilon: 1e-8,
        }
    }
}

/// `[train]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Write a checkpoint every this many epochs (and always at the end).
    pub checkpoint_every: usize,
    /// Drawn, logged and saved when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub device: DeviceChoice,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 300,
            batch_size: 500,
            checkpoint_every: 10,
            seed: None,
            device: DeviceChoice::Auto,
        }
    }
}

impl Config {
    /// Read and validate a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::parse(&text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Parse TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Refuse values no run can use, naming the key.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let t = &self.train;
        if t.epochs == 0 {
            return Err(bad("[train] epochs must be at least 1".into()));
        }
        if t.batch_size == 0 {
            return Err(bad("[train] batch_size must be at least 1".into()));
        }
        if t.checkpoint_every == 0 {
            return Err(bad("[train] checkpoint_every must be at least 1".into()));
        }
        let tr = &self.transformer;
        if tr.max_modes == 0 {
            return Err(bad("[transformer] max_modes must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&tr.weight_threshold) {
            return Err(bad(
                "[transformer] weight_threshold must be in [0, 1)".into()
            ));
        }
        if !(tr.weight_prior > 0.0 && tr.weight_prior.is_finite()) {
            return Err(bad("[transformer] weight_prior must be positive".into()));
        }
        if tr.max_iter == 0 {
            return Err(bad("[transformer] max_iter must be at least 1".into()));
        }
        let d = &self.data;
        for (a, la, b, lb) in [
            (&d.discrete, "discrete", &d.continuous, "continuous"),
            (&d.discrete, "discrete", &d.ignore, "ignore"),
            (&d.continuous, "continuous", &d.ignore, "ignore"),
        ] {
            if let Some(c) = a.iter().find(|c| b.contains(c)) {
                return Err(bad(format!(
                    "column '{c}' is in both [data] {la} and [data] {lb}"
                )));
            }
        }
        match &self.model {
            ModelConfig::Tvae(m) => {
                if m.embedding_dim == 0 {
                    return Err(bad("[model] embedding_dim must be at least 1".into()));
                }
                if m.compress_dims.contains(&0) || m.decompress_dims.contains(&0) {
                    return Err(bad("[model] layer widths must be at least 1".into()));
                }
                for (key, v) in [
                    ("learning_rate", m.learning_rate),
                    ("loss_factor", m.loss_factor),
                    ("epsilon", m.epsilon),
                ] {
                    if !(v > 0.0 && v.is_finite()) {
                        return Err(bad(format!("[model] {key} must be positive, got {v}")));
                    }
                }
                if !(m.weight_decay >= 0.0 && m.weight_decay.is_finite()) {
                    return Err(bad("[model] weight_decay must be 0 or more".into()));
                }
            }
        }
        Ok(())
    }

    /// The resolved config as TOML, for the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs_in(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("configs directory exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                out.extend(configs_in(&path));
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn every_shipped_config_parses_and_validates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let files = configs_in(&root);
        assert!(
            files.len() >= 2,
            "expected shipped configs, found {files:?}"
        );
        for f in files {
            Config::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }

    #[test]
    fn shipped_tvae_config_states_the_defaults() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Config::load(&root.join("configs/tvae.toml")).unwrap();
        assert_eq!(c.model, ModelConfig::Tvae(TvaeConfig::default()));
        assert_eq!(c.transformer, TransformerConfig::default());
        assert_eq!(c.train.epochs, 300);
        assert_eq!(c.train.batch_size, 500);
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let text = "[data]\npath = \"x.csv\"\n[model]\nkind = \"tvae\"\nlearnig_rate = 1.0\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("learnig_rate"), "{err}");
    }

    #[test]
    fn unknown_model_kind_is_refused() {
        let text = "[data]\npath = \"x.csv\"\n[model]\nkind = \"gpt\"\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt"), "{err}");
    }

    #[test]
    fn zero_epochs_and_zero_batch_are_refused() {
        for (key, value) in [("epochs", 0), ("batch_size", 0), ("checkpoint_every", 0)] {
            let text = format!(
                "[data]\npath = \"x.csv\"\n[model]\nkind = \"tvae\"\n[train]\n{key} = {value}\n"
            );
            let c = Config::parse(&text, Path::new("c.toml")).unwrap();
            let err = c.validate(Path::new("c.toml")).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn resolved_config_round_trips_through_toml() {
        let text = "[data]\npath = \"x.csv\"\n[model]\nkind = \"tvae\"\n[train]\nseed = 7\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let again = Config::parse(&c.to_toml(), Path::new("resolved.toml")).unwrap();
        assert_eq!(c, again);
    }
}
