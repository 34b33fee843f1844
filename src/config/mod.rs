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
    /// `[images]`: how DDPM reads `[data] path` (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesConfig>,
    #[serde(default)]
    pub transformer: TransformerConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// `[eval]`: evaluate the trained model at the end of the run (no section: no evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalConfig>,
}

/// `[eval]`: sample the final model and run `evaluate` against the training data; the report
/// goes to `<run>/report/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Synthetic rows to sample (default: as many as the training rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Real rows kept out of training: DCR overfitting protection and utility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<PathBuf>,
    /// A discrete column to predict for the utility measure (needs `holdout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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

impl DataConfig {
    /// `[data]` for a file, every other key at its default.
    pub fn new(path: impl Into<PathBuf>) -> DataConfig {
        DataConfig {
            path: path.into(),
            separator: None,
            discrete: Vec::new(),
            continuous: Vec::new(),
            ignore: Vec::new(),
            discrete_max_distinct: default_discrete_max_distinct(),
        }
    }
}

/// `[images]`: the shape DDPM trains on. `[data] path` is an IDX image file (raw or gzip) or a
/// folder of PNG / JPEG images, with class labels from sub-folder names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// IDX label file (default: the `*-labels-idx1-ubyte*` file beside an IDX image file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    /// Side of the square images the model sees (default: the data's own size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB) (default: 1 for IDX and all-gray folders, else 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Images of another size: "fill" (scale and crop the centre), "stretch" or "none" (refuse).
    pub resize: crate::data::images::Resize,
    /// Train on the first this many images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl ImagesConfig {
    /// What to load for `[data] path`.
    pub fn spec(&self, path: &Path) -> crate::data::images::ImageSpec {
        crate::data::images::ImageSpec {
            path: path.to_path_buf(),
            labels: self.labels.clone(),
            size: self.size,
            channels: self.channels,
            resize: self.resize,
            limit: self.limit,
        }
    }
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
    Ctgan(CtganConfig),
    Ddpm(DdpmConfig),
}

impl ModelConfig {
    /// The model's name as written in manifests and run ids.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Tvae(_) => "tvae",
            ModelConfig::Ctgan(_) => "ctgan",
            ModelConfig::Ddpm(_) => "ddpm",
        }
    }

    /// Does the model train on images (not on a table)?
    pub fn is_image(&self) -> bool {
        matches!(self, ModelConfig::Ddpm(_))
    }
}

/// DDPM hyperparameters (Ho et al. 2020, with the improvements of Nichol & Dhariwal 2021 and
/// classifier-free guidance, Ho & Salimans 2022). The defaults fit MNIST on a CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdpmConfig {
    /// Channels of the first UNet level.
    pub base_channels: usize,
    /// Channels of each level as multiples of base_channels; each level after the first halves
    /// the resolution.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level.
    pub res_blocks: usize,
    /// Self-attention at levels of these side lengths (the middle always has it).
    pub attention_resolutions: Vec<usize>,
    /// Attention heads (must divide every level's channels).
    pub heads: usize,
    /// GroupNorm groups (must divide every level's channels).
    pub groups: usize,
    /// Dropout in the residual blocks.
    pub dropout: f64,
    /// Diffusion steps T.
    pub timesteps: usize,
    /// "linear" (1e-4 .. 0.02) or "cosine" (s = 0.008).
    pub schedule: crate::models::ddpm::schedule::ScheduleKind,
    /// Condition on the data's class labels (when it has them), for `sample --class`.
    pub class_conditional: bool,
    /// Share of training images whose label is dropped (classifier-free guidance).
    pub label_dropout: f64,
    /// AdamW learning rate after warm-up.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Steps of linear learning-rate warm-up from 0.
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// Decay of the exponential moving average of the weights used for sampling, reached after
    /// a warm-up of min(decay, (1 + step) / (10 + step)).
    pub ema_decay: f64,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        Self {
            base_channels: 32,
            channel_mults: vec![1, 2, 2],
            res_blocks: 2,
            attention_resolutions: vec![7],
            heads: 4,
            groups: 8,
            dropout: 0.1,
            timesteps: 1000,
            schedule: crate::models::ddpm::schedule::ScheduleKind::Linear,
            class_conditional: true,
            label_dropout: 0.1,
            learning_rate: 2e-4,
            weight_decay: 0.0,
            warmup_steps: 500,
            grad_clip: 1.0,
            ema_decay: 0.999,
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

/// CTGAN hyperparameters (Xu et al. 2019; defaults of the reference implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CtganConfig {
    /// Width of the generator's noise input.
    pub embedding_dim: usize,
    /// Widths of the generator's residual blocks.
    pub generator_dims: Vec<usize>,
    /// Widths of the critic's hidden layers.
    pub discriminator_dims: Vec<usize>,
    /// Adam learning rate of the generator.
    pub generator_lr: f64,
    /// Adam learning rate of the critic.
    pub discriminator_lr: f64,
    /// Adam L2 weight decay (both networks).
    pub weight_decay: f64,
    /// Adam betas.
    pub beta_1: f64,
    pub beta_2: f64,
    /// Adam epsilon (PyTorch's default; Burn's own default is 1e-5).
    pub epsilon: f64,
    /// Critic updates per generator update.
    pub discriminator_steps: usize,
    /// Rows the critic judges together (PacGAN); the batch size must be a multiple.
    pub pac: usize,
    /// Dropout after each critic hidden layer.
    pub dropout: f64,
    /// Gumbel-softmax temperature on one-hot spans.
    pub gumbel_tau: f64,
    /// Gradient-penalty weight lambda.
    pub gradient_penalty: f64,
}

impl Default for CtganConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 128,
            generator_dims: vec![256, 256],
            discriminator_dims: vec![256, 256],
            generator_lr: 2e-4,
            discriminator_lr: 2e-4,
            weight_decay: 1e-6,
            beta_1: 0.5,
            beta_2: 0.9,
            epsilon: 1e-8,
            discriminator_steps: 1,
            pac: 10,
            dropout: 0.5,
            gumbel_tau: 0.2,
            gradient_penalty: 10.0,
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
    /// Threads for the training loop's CPU work. Absent: all cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 300,
            batch_size: 500,
            checkpoint_every: 10,
            seed: None,
            device: DeviceChoice::Auto,
            threads: None,
        }
    }
}

impl Config {
    /// Read and validate a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
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
        if t.threads == Some(0) {
            return Err(bad(
                "[train] threads must be at least 1 (leave it out for the default)".into(),
            ));
        }
        if let Some(e) = &self.eval {
            if e.rows == Some(0) {
                return Err(bad("[eval] rows must be at least 1".into()));
            }
            if e.target.is_some() && e.holdout.is_none() {
                return Err(bad(
                    "[eval] target needs [eval] holdout: utility is measured on real rows the model never saw".into(),
                ));
            }
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
        if self.model.is_image() {
            for (key, v) in [
                ("discrete", &d.discrete),
                ("continuous", &d.continuous),
                ("ignore", &d.ignore),
            ] {
                if !v.is_empty() {
                    return Err(bad(format!(
                        "[data] {key} names table columns; a DDPM trains on images"
                    )));
                }
            }
            if self.eval.is_some() {
                return Err(bad(
                    "[eval] evaluates tables; for images run 'evaluate --images' on the samples"
                        .into(),
                ));
            }
            if let Some(i) = &self.images {
                if i.channels.is_some_and(|c| c != 1 && c != 3) {
                    return Err(bad("[images] channels must be 1 or 3".into()));
                }
                if i.size == Some(0) || i.limit == Some(0) {
                    return Err(bad("[images] size and limit must be at least 1".into()));
                }
            }
        } else if self.images.is_some() {
            return Err(bad(format!(
                "[images] is for DDPM; a {} model trains on a table",
                self.model.kind()
            )));
        }
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
        let positive = |key: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(bad(format!("[model] {key} must be positive, got {v}")))
            }
        };
        let widths = |dims: &[&Vec<usize>], embedding: usize| {
            if embedding == 0 || dims.iter().any(|d| d.contains(&0)) {
                Err(bad(
                    "[model] embedding_dim and layer widths must be at least 1".into(),
                ))
            } else {
                Ok(())
            }
        };
        match &self.model {
            ModelConfig::Tvae(m) => {
                widths(&[&m.compress_dims, &m.decompress_dims], m.embedding_dim)?;
                positive("learning_rate", m.learning_rate)?;
                positive("loss_factor", m.loss_factor)?;
                positive("epsilon", m.epsilon)?;
                if !(m.weight_decay >= 0.0 && m.weight_decay.is_finite()) {
                    return Err(bad("[model] weight_decay must be 0 or more".into()));
                }
            }
            ModelConfig::Ctgan(m) => {
                widths(&[&m.generator_dims, &m.discriminator_dims], m.embedding_dim)?;
                if m.discriminator_dims.is_empty() {
                    return Err(bad(
                        "[model] discriminator_dims needs at least one layer".into()
                    ));
                }
                positive("generator_lr", m.generator_lr)?;
                positive("discriminator_lr", m.discriminator_lr)?;
                positive("epsilon", m.epsilon)?;
                positive("gumbel_tau", m.gumbel_tau)?;
                if !(m.weight_decay >= 0.0 && m.weight_decay.is_finite()) {
                    return Err(bad("[model] weight_decay must be 0 or more".into()));
                }
                if !(m.gradient_penalty >= 0.0 && m.gradient_penalty.is_finite()) {
                    return Err(bad("[model] gradient_penalty must be 0 or more".into()));
                }
                for (key, v) in [
                    ("beta_1", m.beta_1),
                    ("beta_2", m.beta_2),
                    ("dropout", m.dropout),
                ] {
                    if !(0.0..1.0).contains(&v) {
                        return Err(bad(format!("[model] {key} must be in [0, 1), got {v}")));
                    }
                }
                if m.discriminator_steps == 0 {
                    return Err(bad("[model] discriminator_steps must be at least 1".into()));
                }
                if m.pac == 0 || !t.batch_size.is_multiple_of(m.pac) {
                    return Err(bad(format!(
                        "[train] batch_size ({}) must be a multiple of [model] pac ({})",
                        t.batch_size, m.pac
                    )));
                }
            }
            ModelConfig::Ddpm(m) => {
                if m.base_channels == 0
                    || m.channel_mults.is_empty()
                    || m.channel_mults.contains(&0)
                {
                    return Err(bad(
                        "[model] base_channels and channel_mults must be at least 1 (and channel_mults not empty)".into(),
                    ));
                }
                if m.res_blocks == 0 || m.heads == 0 || m.groups == 0 {
                    return Err(bad(
                        "[model] res_blocks, heads and groups must be at least 1".into(),
                    ));
                }
                for mult in &m.channel_mults {
                    let ch = m.base_channels * mult;
                    for (key, v) in [("groups", m.groups), ("heads", m.heads)] {
                        if !ch.is_multiple_of(v) {
                            return Err(bad(format!(
                                "[model] {key} ({v}) must divide every level's channels; {ch} = base_channels {} x {mult} is not a multiple",
                                m.base_channels
                            )));
                        }
                    }
                }
                if m.timesteps < 2 {
                    return Err(bad("[model] timesteps must be at least 2".into()));
                }
                positive("learning_rate", m.learning_rate)?;
                for (key, v) in [
                    ("dropout", m.dropout),
                    ("label_dropout", m.label_dropout),
                    ("ema_decay", m.ema_decay),
                ] {
                    if !(0.0..1.0).contains(&v) {
                        return Err(bad(format!("[model] {key} must be in [0, 1), got {v}")));
                    }
                }
                for (key, v) in [("weight_decay", m.weight_decay), ("grad_clip", m.grad_clip)] {
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(bad(format!("[model] {key} must be 0 or more, got {v}")));
                    }
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
        for (key, value) in [
            ("epochs", 0),
            ("batch_size", 0),
            ("checkpoint_every", 0),
            ("threads", 0),
        ] {
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
