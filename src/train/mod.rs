//! Training: resolve the run (new or resumed), prepare the data, run the model's loop,
//! checkpoint.

pub mod ctgan;
pub mod ddpm;
pub mod host;
pub mod metrics;
pub mod tvae;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngExt;
use tracing::info;

use crate::config::{Config, ModelConfig};
use crate::data::transformer::mix_seed;
use crate::data::{DataTransformer, Schema, Table};
use crate::device::{self, DeviceChoice};
use crate::error::{Error, Result};
use crate::run::manifest::{DataInfo, FORMAT_VERSION, read_verified, sha256_hex};
use crate::run::{self, Checkpoint, Manifest, RunDir};

pub use metrics::Metrics;

/// What `train` was asked to do (flags resolved by the CLI).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub config: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub run_id: Option<String>,
    pub models_dir: Option<PathBuf>,
    pub device: Option<DeviceChoice>,
    pub seed: Option<u64>,
    pub resume: Option<String>,
    pub force: bool,
    pub quiet: bool,
}

/// Stream number of the encoder's mode sampling in [`mix_seed`].
const TRANSFORM_STREAM: u64 = 0x7ab1e;

/// Train and return the run directory.
pub fn train(opts: &TrainOptions) -> Result<PathBuf> {
    let models_dir = run::models_dir(opts.models_dir.as_deref());
    let dir = match &opts.resume {
        Some(id) => resume(opts, id, &models_dir)?,
        None => start(opts, &models_dir)?,
    };
    evaluate_run(&dir, opts.quiet)?;
    Ok(dir)
}

/// Refuse an `[eval]` section that could only fail after training.
fn check_eval(config: &Config, config_path: &Path, prepared: &Prepared) -> Result<()> {
    let Some(eval) = &config.eval else {
        return Ok(());
    };
    if let Some(h) = eval.holdout.as_ref().filter(|h| !h.exists()) {
        return Err(Error::DataNotFound { path: h.clone() });
    }
    if let Some(t) = eval
        .target
        .as_ref()
        .filter(|t| !prepared.info.columns.contains(t))
    {
        return Err(Error::Config {
            path: config_path.to_path_buf(),
            message: format!(
                "[eval] target '{t}' is not a modelled column; columns: {}",
                prepared.info.columns.join(", ")
            ),
        });
    }
    Ok(())
}

/// `[eval]`: sample the finished run and evaluate it against its training data; the report
/// goes to `<run>/report/`.
fn evaluate_run(dir: &Path, quiet: bool) -> Result<()> {
    let config = run::read_config(dir)?;
    let Some(eval) = &config.eval else {
        return Ok(());
    };
    let started = Instant::now();
    let real = Table::read(&config.data.path, config.data.separator)?;
    let rows = eval.rows.unwrap_or(real.n_rows());
    let seed = config.train.seed.unwrap_or(0);
    let synthetic = crate::sample::generate(&crate::sample::SampleOptions {
        checkpoint: dir.display().to_string(),
        rows,
        seed: Some(seed),
        device: Some(config.train.device),
        quiet: true,
        ..Default::default()
    })?;
    let holdout = match &eval.holdout {
        Some(p) => Some(Table::read(p, config.data.separator)?),
        None => None,
    };
    let opts = crate::eval::EvalOptions {
        real: config.data.path.clone(),
        synthetic: PathBuf::from(format!("{rows} rows sampled from {}", dir.display())),
        holdout: eval.holdout.clone(),
        target: eval.target.clone(),
        output: Some(dir.join("report")),
        discrete: config.data.discrete.clone(),
        continuous: config.data.continuous.clone(),
        ignore: config.data.ignore.clone(),
        separator: config.data.separator,
        device: config.train.device,
        seed,
        discrete_max_distinct: config.data.discrete_max_distinct,
    };
    let report = crate::eval::evaluate_tables(&real, &synthetic, holdout.as_ref(), &opts, started)?;
    if !quiet {
        eprint!("{}", crate::eval::report::summary(&report));
    }
    Ok(())
}

fn start(opts: &TrainOptions, models_dir: &Path) -> Result<PathBuf> {
    let config_path = opts.config.as_deref().ok_or_else(|| Error::Invalid {
        what: "arguments".into(),
        message: "train needs --config FILE (or --resume RUN)".into(),
    })?;
    let mut config = Config::load(config_path)?;
    if let Some(e) = opts.epochs {
        config.train.epochs = e;
    }
    if let Some(d) = opts.device {
        config.train.device = d;
    }
    if opts.seed.is_some() {
        config.train.seed = opts.seed;
    }
    config.validate(config_path)?;
    let id = match &opts.run_id {
        Some(id) => id.clone(),
        None => run::default_run_id(config.model.kind(), &config.data.path),
    };
    run::check_run_id(&id)?;
    if models_dir.join(&id).exists() && !opts.force {
        return Err(Error::RunExists {
            path: models_dir.join(&id),
        });
    }
    let seed = match config.train.seed {
        Some(s) => s,
        None => {
            let s = rand::rng().random::<u64>() >> 11; // exact in TOML and JSON numbers
            info!(seed = s, "no seed given: drew one (saved in the run)");
            s
        }
    };
    config.train.seed = Some(seed);

    let data = if config.model.is_image() {
        Data::Images(ddpm::prepare(&config, config_path)?)
    } else {
        let prepared = prepare(&config, config_path, None)?;
        check_eval(&config, config_path, &prepared)?;
        Data::Table(prepared)
    };
    let selected = device::select(config.train.device)?;
    let run = RunDir::create(models_dir, &id, opts.force)?;
    run::atomic_write(&run.file(run::CONFIG), config.to_toml().as_bytes())?;
    let (file, json) = match &data {
        Data::Table(p) => (
            run::TRANSFORMER,
            serde_json::to_string_pretty(&p.transformer).expect("a transformer serializes"),
        ),
        Data::Images(p) => (
            ddpm::IMAGES,
            serde_json::to_string_pretty(&p.images).expect("image info serializes"),
        ),
    };
    run::atomic_write(&run.file(file), json.as_bytes())?;
    let now = run::utc_stamp(std::time::SystemTime::now(), true);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model: config.model.kind().into(),
        synthgen_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: BURN_VERSION.into(),
        seed,
        device: selected.description.clone(),
        data: data.info().clone(),
        epochs: config.train.epochs,
        checkpoint: None,
        created: now.clone(),
        updated: now,
    };
    info!(run = %run.path.display(), seed, "training");
    let session = Session {
        run,
        manifest,
        metrics: Metrics::new(loss_names(&config.model)),
        progress: epoch_bar(config.train.epochs, 0, opts.quiet),
    };
    fit(&config, &data, &selected.device, session, None)
}

fn resume(opts: &TrainOptions, id: &str, models_dir: &Path) -> Result<PathBuf> {
    let path = run::resolve(id, models_dir)?;
    let manifest = Manifest::load(&path)?;
    let config_file = path.join(run::CONFIG);
    let mut config = run::read_config(&path)?;
    if let Some(e) = opts.epochs {
        config.train.epochs = e;
    }
    if let Some(d) = opts.device {
        config.train.device = d;
    }
    if opts.seed.is_some_and(|s| Some(s) != config.train.seed) {
        return Err(Error::Invalid {
            what: "--seed".into(),
            message: "a resumed run keeps the seed it was started with".into(),
        });
    }
    config.validate(&config_file)?;
    let checkpoint = manifest.checkpoint(&path)?.clone();
    if checkpoint.epoch >= config.train.epochs {
        info!(run = %path.display(), epochs = checkpoint.epoch, "the run already has its epochs; pass --epochs N to train further");
        return Ok(path);
    }
    let data = if config.model.is_image() {
        Data::Images(ddpm::prepare(&config, &config_file)?)
    } else {
        let transformer = load_transformer(&path)?;
        Data::Table(prepare(&config, &config_file, Some(transformer))?)
    };
    if data.info().schema_digest != manifest.data.schema_digest {
        return Err(Error::DataMismatch {
            path: config.data.path.clone(),
            message: "its columns or their types differ from those the run was trained on".into(),
        });
    }
    let weights = read_verified(&path, &checkpoint.weights, &checkpoint.weights_sha256)?;
    let optimizer = read_verified(&path, &checkpoint.optimizer, &checkpoint.optimizer_sha256)?;
    let selected = device::select(config.train.device)?;
    let run = RunDir::open(&path);
    // The resolved config now names the new epoch target.
    run::atomic_write(&run.file(run::CONFIG), config.to_toml().as_bytes())?;
    let metrics = Metrics::load(
        &path.join(run::METRICS),
        loss_names(&config.model),
        checkpoint.epoch,
    )?;
    let mut manifest = manifest;
    manifest.epochs = config.train.epochs;
    manifest.device = selected.description.clone();
    info!(run = %path.display(), from_epoch = checkpoint.epoch, to_epoch = config.train.epochs, "resuming");
    let session = Session {
        run,
        manifest,
        metrics,
        progress: epoch_bar(config.train.epochs, checkpoint.epoch, opts.quiet),
    };
    let state = ResumeState {
        epoch: checkpoint.epoch,
        weights,
        optimizer,
    };
    fit(&config, &data, &selected.device, session, Some(state))
}

/// What a run trains on.
enum Data {
    Table(Prepared),
    Images(ddpm::PreparedImages),
}

impl Data {
    fn info(&self) -> &DataInfo {
        match self {
            Data::Table(p) => &p.info,
            Data::Images(p) => &p.info,
        }
    }
}

/// The Burn version this build links (kept in manifests).
pub const BURN_VERSION: &str = "0.22.1";

/// Load `transformer.json` of a run.
pub fn load_transformer(run: &Path) -> Result<DataTransformer> {
    run::read_json(run, run::TRANSFORMER)
}

/// The encoded training data and what describes it.
pub struct Prepared {
    pub transformer: DataTransformer,
    /// Row-major [rows, layout width].
    pub encoded: Vec<f32>,
    pub rows: usize,
    pub info: DataInfo,
}

impl Prepared {
    /// The encoded rows `idx`, gathered into one row-major buffer (a batch becomes one tensor).
    pub fn gather(&self, idx: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let width = self.transformer.layout().width();
        let idx = idx.into_iter();
        let mut out = Vec::with_capacity(idx.size_hint().0 * width);
        for i in idx {
            out.extend_from_slice(&self.encoded[i * width..(i + 1) * width]);
        }
        out
    }
}

/// Read, check, fit (unless resuming) and encode the training table.
fn prepare(
    config: &Config,
    config_path: &Path,
    fitted: Option<DataTransformer>,
) -> Result<Prepared> {
    let seed = config
        .train
        .seed
        .expect("the seed is resolved before preparing data");
    let t0 = Instant::now();
    let table = Table::read(&config.data.path, config.data.separator)?;
    let rows = table.n_rows();
    if rows < 2 {
        return Err(Error::SingleRow {
            path: config.data.path.clone(),
        });
    }
    let schema = Schema::infer(&table, &config.data, config_path)?;
    info!(
        rows,
        columns = schema.columns.len(),
        ignored = schema.ignored.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "data read"
    );
    let transformer = match fitted {
        Some(t) => t,
        None => {
            let t1 = Instant::now();
            let t = DataTransformer::fit(&table, &schema, &config.transformer)?;
            info!(seconds = t1.elapsed().as_secs_f64(), "encoder fitted");
            t
        }
    };
    let t2 = Instant::now();
    let encoded = transformer.transform(&table, mix_seed(seed, TRANSFORM_STREAM));
    info!(
        seconds = t2.elapsed().as_secs_f64(),
        width = transformer.layout().width(),
        "data encoded"
    );
    Ok(Prepared {
        info: DataInfo {
            path: config.data.path.clone(),
            rows,
            columns: schema.columns.iter().map(|c| c.name.clone()).collect(),
            schema_digest: schema.digest(),
        },
        transformer,
        encoded,
        rows,
    })
}

/// Load burnpack weights into a freshly initialized module.
pub fn load_weights<M: burn::module::Module>(module: M, bytes: Vec<u8>, run: &Path) -> Result<M> {
    let bad = |e: burn::store::RecordError| Error::BadRun {
        path: run.to_path_buf(),
        message: format!("the weights cannot be loaded: {e}"),
    };
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(bad)?;
    module.try_load_record(record).map_err(bad)
}

/// Load the optimizer state of a checkpoint into a freshly configured optimizer.
pub fn load_optimizer(
    optim: burn::optim::ModuleOptimizer,
    bytes: Vec<u8>,
    run: &Path,
) -> Result<burn::optim::ModuleOptimizer> {
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::BadRun {
            path: run.to_path_buf(),
            message: format!("the optimizer state cannot be loaded: {e}"),
        })
}

/// Run `f` on a thread of a new pool of `threads` threads (all cores when `None`), given the
/// pool's size. Work run that way starts its parallel sections on the thread that asks for
/// them, instead of handing them over from outside the pool and waiting: TVAE's epochs took
/// 0.42-0.49 s from outside against 0.34-0.42 s inside (alternating, 80 % Adult split).
pub(crate) fn in_pool<T: Send>(
    threads: Option<usize>,
    what: &str,
    f: impl FnOnce(usize) -> Result<T> + Send,
) -> Result<T> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = threads {
        builder = builder.num_threads(threads);
    }
    let pool = builder.build().map_err(|e| Error::Invalid {
        what: what.into(),
        message: format!("could not start the threads: {e}"),
    })?;
    let n = pool.current_num_threads();
    pool.install(|| f(n))
}

/// The records of a checkpoint of a model trained through Burn: its weights and its
/// optimizer's state.
pub fn burn_records(
    weights: std::result::Result<burn::tensor::Bytes, burn::store::RecordError>,
    optim: &burn::optim::ModuleOptimizer,
) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    let err = |e: burn::store::RecordError| e.to_string();
    Ok((
        weights.map_err(err)?.to_vec(),
        optim.into_bytes().map_err(err)?.to_vec(),
    ))
}

/// Checkpoints are written every `checkpoint_every` epochs and after the last.
fn checkpoint_due(epoch: usize, train: &crate::config::TrainConfig) -> bool {
    epoch.is_multiple_of(train.checkpoint_every) || epoch == train.epochs
}

/// Weights and optimizer state of the checkpoint a resumed run continues from.
pub struct ResumeState {
    pub epoch: usize,
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
}

/// The run being written, its metrics and its progress bar.
pub struct Session {
    pub run: RunDir,
    pub manifest: Manifest,
    pub metrics: Metrics,
    pub progress: ProgressBar,
}

impl Session {
    /// Record an epoch's figures (metrics.csv is rewritten once published).
    pub fn epoch_done(&mut self, epoch: usize, losses: &[f64], seconds: f64) -> Result<()> {
        self.metrics.push(epoch, losses, seconds);
        let names = &self.metrics.header[1..self.metrics.header.len() - 1];
        let msg: Vec<String> = names
            .iter()
            .zip(losses)
            .map(|(n, v)| format!("{n} {v:.4}"))
            .collect();
        self.progress.set_position(epoch as u64);
        self.progress.set_message(msg.join("  "));
        tracing::debug!(epoch, ?losses, seconds, "epoch done");
        if self.run.is_published() {
            self.metrics.save(&self.run.file(run::METRICS))?;
        }
        Ok(())
    }

    /// Stop on a non-finite loss, naming the checkpoint that is kept.
    pub fn check_finite(&self, epoch: usize, names: &[&'static str], losses: &[f64]) -> Result<()> {
        if let Some(i) = losses.iter().position(|v| !v.is_finite()) {
            let kept = self
                .manifest
                .checkpoint
                .as_ref()
                .filter(|_| self.run.is_published())
                .map(|c| (c.epoch, self.run.path.clone()));
            return Err(Error::Diverged {
                epoch,
                what: names[i],
                value: losses[i],
                kept,
            });
        }
        Ok(())
    }

    /// Write a checkpoint when `epoch` is due (every `checkpoint_every` epochs and the last).
    /// `records` serializes the weights and the optimizer state; it runs only then.
    pub fn checkpoint_if_due(
        &mut self,
        epoch: usize,
        train: &crate::config::TrainConfig,
        records: impl FnOnce() -> std::result::Result<(Vec<u8>, Vec<u8>), String>,
    ) -> Result<()> {
        if !checkpoint_due(epoch, train) {
            return Ok(());
        }
        let (weights, optim) = records().map_err(|e| Error::Write {
            path: self.run.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.checkpoint(epoch, &weights, &optim)
    }

    /// Write a complete checkpoint: weight files first, then the manifest naming them.
    pub fn checkpoint(&mut self, epoch: usize, weights: &[u8], optimizer: &[u8]) -> Result<()> {
        let new = Checkpoint {
            epoch,
            weights: format!("model-{epoch:05}.bpk"),
            weights_sha256: sha256_hex(weights),
            optimizer: format!("optimizer-{epoch:05}.bpk"),
            optimizer_sha256: sha256_hex(optimizer),
        };
        run::atomic_write(&self.run.file(&new.weights), weights)?;
        run::atomic_write(&self.run.file(&new.optimizer), optimizer)?;
        self.metrics.save(&self.run.file(run::METRICS))?;
        let old = self.manifest.checkpoint.replace(new.clone());
        self.manifest.updated = run::utc_stamp(std::time::SystemTime::now(), true);
        self.manifest.save(self.run.dir())?;
        if !self.run.is_published() {
            self.run.publish()?;
        }
        if let Some(old) = old.filter(|o| o.epoch != new.epoch) {
            let _ = std::fs::remove_file(self.run.file(&old.weights));
            let _ = std::fs::remove_file(self.run.file(&old.optimizer));
        }
        tracing::debug!(epoch, "checkpoint written");
        Ok(())
    }
}

fn loss_names(model: &ModelConfig) -> &'static [&'static str] {
    match model {
        ModelConfig::Tvae(_) => tvae::LOSSES,
        ModelConfig::Ctgan(_) => ctgan::LOSSES,
        ModelConfig::Ddpm(_) => ddpm::LOSSES,
    }
}

fn epoch_bar(epochs: usize, done: usize, quiet: bool) -> ProgressBar {
    let pb = progress_bar(epochs as u64, "epoch {pos}/{len}  {msg}", quiet);
    pb.set_position(done as u64);
    pb
}

/// A progress bar on stderr (hidden with `quiet`): elapsed time, the bar, then `counter`.
pub fn progress_bar(len: u64, counter: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(&format!("{{elapsed_precise}} [{{bar:30}}] {counter}"))
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

fn fit(
    config: &Config,
    data: &Data,
    device: &burn::tensor::Device,
    mut session: Session,
    resume: Option<ResumeState>,
) -> Result<PathBuf> {
    let t = &config.train;
    let threads = t.threads;
    let run = || -> Result<()> {
        match (&config.model, data) {
            (ModelConfig::Tvae(m), Data::Table(p)) => {
                tvae::fit(m, t, p, device, &mut session, resume)
            }
            (ModelConfig::Ctgan(m), Data::Table(p)) => {
                ctgan::fit(m, t, p, device, &mut session, resume)
            }
            (ModelConfig::Ddpm(m), Data::Images(p)) => {
                ddpm::fit(m, t, p, device, &mut session, resume)
            }
            _ => unreachable!("the data is prepared for the model's kind"),
        }
    };
    in_pool(threads, "[train] threads", |n| {
        info!(threads = n, "training loop threads");
        run()
    })?;
    session.progress.finish_and_clear();
    let seconds: f64 = session.metrics.rows.iter().map(|r| r[r.len() - 1]).sum();
    info!(run = %session.run.path.display(), epochs = config.train.epochs, seconds, "training done");
    Ok(session.run.path.clone())
}
