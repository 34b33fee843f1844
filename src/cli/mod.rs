//! Command-line front ends: clap arguments, logging, progress, and errors to exit codes
//! (0 ok, 1 a problem with the input, 2 a bug).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};
use tracing_subscriber::EnvFilter;

use crate::device::DeviceChoice;
use crate::error::Error;
use crate::eval::EvalOptions;
use crate::sample::SampleOptions;
use crate::train::TrainOptions;

/// Shared verbosity flags.
#[derive(Debug, Args)]
pub struct Verbosity {
    /// Only warnings and errors; no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Debug logs (per-epoch losses, checkpoints).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Train a generative model on a table; prints the run directory on stdout.
#[derive(Debug, Parser)]
#[command(name = "train", version, about)]
pub struct TrainArgs {
    /// TOML config (see configs/).
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Override [train] epochs (with --resume: the new target).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Name of the run directory (default: <model>-<data>-<UTC time>).
    #[arg(long, conflicts_with = "resume")]
    pub run_id: Option<String>,
    /// Where runs live.
    #[arg(long, env = "SYNTHGEN_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// auto: a hardware GPU through wgpu if there is one, else the CPU.
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Seed of everything random (drawn, logged and saved when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue a run (id or path) to its configured epochs.
    #[arg(long, value_name = "ID", conflicts_with = "config")]
    pub resume: Option<String>,
    /// Replace an existing run of the same id.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Sample rows (tables) or images (DDPM) from a trained run.
#[derive(Debug, Parser)]
#[command(name = "sample", version, about)]
pub struct SampleArgs {
    /// Run id (under the models directory) or path to a run directory.
    #[arg(long)]
    pub checkpoint: String,
    /// Number of rows (or images).
    #[arg(short = 'n', long = "rows")]
    pub rows: usize,
    /// Output: .csv or .parquet file, or '-' for CSV on stdout; for images a new directory.
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Seed of the sampler (drawn and logged when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rows (default 10,000) or images (default 64) generated per batch; changes speed and memory, not the distribution.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Keep only rows where COLUMN has VALUE (a discrete column; repeatable: all must hold).
    #[arg(long = "condition", value_name = "COLUMN=VALUE")]
    pub conditions: Vec<String>,
    /// Equal counts of each category of this discrete column (e.g. to augment a rare class).
    #[arg(long, value_name = "COLUMN")]
    pub balance: Option<String>,
    /// Images: sample with DDIM in this many steps (default: ancestral DDPM over all T steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Images: DDIM's eta (0 = deterministic; 1 = DDPM-like noise).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Images: generate this class (name or index) from a class-conditional model.
    #[arg(long)]
    pub class: Option<String>,
    /// Images: classifier-free guidance weight (1 = plain conditional; larger = closer to the class).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Device (default: the run's configured device).
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Where runs live.
    #[arg(long, env = "SYNTHGEN_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Measure how faithful, private and useful a synthetic table is (SDMetrics' definitions), or
/// with --images how close generated images are to real ones.
#[derive(Debug, Parser)]
#[command(name = "evaluate", version, about)]
pub struct EvaluateArgs {
    /// The real table (the model's training data): CSV or Parquet; with --images an IDX file or a folder of images.
    #[arg(long)]
    pub real: PathBuf,
    /// The synthetic table; with --images a folder of images (as `sample` writes) or an IDX file.
    #[arg(long)]
    pub synthetic: PathBuf,
    /// Compare images: Frechet distance in a shipped classifier's feature space, confidence, class histogram.
    #[arg(long)]
    pub images: bool,
    /// With --images: the shipped classifier whose features are compared.
    #[arg(long, value_enum, default_value = "mnist", requires = "images")]
    pub classifier: crate::eval::images::ClassifierKind,
    /// Real rows the model never saw: adds DCR overfitting protection and utility.
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    /// A discrete column to predict for the utility measure (needs --holdout).
    #[arg(long)]
    pub target: Option<String>,
    /// Directory for report.json and report.html.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Columns to treat as discrete whatever their type (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub discrete: Vec<String>,
    /// Numeric columns to treat as continuous (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub continuous: Vec<String>,
    /// Columns to leave out (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// CSV separator (sniffed when absent).
    #[arg(long)]
    pub separator: Option<char>,
    /// Where distances are computed: cpu runs a fused host loop, wgpu/cuda batched tensors.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Seed of the random baseline and of the classifier.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Integer columns with at most this many distinct values are discrete (as [data]).
    #[arg(long, default_value_t = 10)]
    pub discrete_max_distinct: usize,
    /// Print the whole report.json on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

fn init_logging(v: &Verbosity) {
    let level = if v.quiet {
        "warn"
    } else if v.verbose {
        "debug"
    } else {
        "info"
    };
    let default = format!(
        "{level},wgpu_core=warn,wgpu_hal=warn,naga=warn,cubecl=warn,cubecl_wgpu=warn,cubecl_runtime=warn,burn=warn"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Keep freed tensor buffers in the process heap. Tensors of a few hundred KiB are allocated
/// and freed every training step; glibc serves blocks that large with `mmap` and returns them
/// with `munmap`, so each step paid for fresh zeroed pages (a CTGAN step on Adult spent a fifth
/// of its time in page faults). A fixed, high mmap threshold and trim threshold let the heap
/// reuse them. Call once, at the start of a process, before other threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// What every binary does first: tune the allocator, and install the panic hook.
fn start() {
    tune_allocator();
    install_panic_hook();
}

/// A panic is a bug: say so and exit with 2.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (this is a bug in synthgen): {info}");
        std::process::exit(2);
    }));
}

/// Print an error as `error: ...` and `hint: ...`, and return exit code 1.
pub fn report(e: &Error) -> ExitCode {
    eprintln!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !e.to_string().contains(&text) {
            eprintln!("  caused by: {text}");
        }
        source = s.source();
    }
    if let Some(h) = e.hint() {
        eprintln!("hint: {h}");
    }
    ExitCode::from(1)
}

/// `train` binary.
pub fn train_main() -> ExitCode {
    start();
    let args = TrainArgs::parse();
    init_logging(&args.verbosity);
    let opts = TrainOptions {
        config: args.config,
        epochs: args.epochs,
        run_id: args.run_id,
        models_dir: args.models_dir,
        device: args.device,
        seed: args.seed,
        resume: args.resume,
        force: args.force,
        quiet: args.verbosity.quiet,
    };
    match crate::train::train(&opts) {
        Ok(dir) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `sample` binary.
pub fn sample_main() -> ExitCode {
    start();
    let args = SampleArgs::parse();
    init_logging(&args.verbosity);
    let opts = SampleOptions {
        checkpoint: args.checkpoint,
        rows: args.rows,
        output: args.output,
        seed: args.seed,
        batch_size: args.batch_size,
        device: args.device,
        models_dir: args.models_dir,
        conditions: args.conditions,
        balance: args.balance,
        quiet: args.verbosity.quiet,
        steps: args.steps,
        eta: args.eta,
        class: args.class,
        guidance: args.guidance,
    };
    match crate::sample::sample(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// `evaluate --images`.
fn evaluate_images_main(args: &EvaluateArgs) -> ExitCode {
    let table_only = [
        ("--holdout", args.holdout.is_some()),
        ("--target", args.target.is_some()),
        ("--discrete", !args.discrete.is_empty()),
        ("--continuous", !args.continuous.is_empty()),
        ("--ignore", !args.ignore.is_empty()),
        ("--separator", args.separator.is_some()),
    ];
    if let Some((flag, _)) = table_only.iter().find(|(_, given)| *given) {
        return report(&Error::Invalid {
            what: (*flag).into(),
            message: "applies to tables, not to --images".into(),
        });
    }
    let run = || -> crate::error::Result<crate::eval::images::ImageReport> {
        let selected = crate::device::select(args.device)?;
        let r = crate::eval::images::evaluate_images(
            &args.real,
            &args.synthetic,
            args.classifier,
            &selected.device,
        )?;
        if let Some(dir) = &args.output {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: dir.clone(),
                source,
            })?;
            let json = serde_json::to_string_pretty(&r).expect("a report serializes");
            crate::run::atomic_write(&dir.join("images-report.json"), json.as_bytes())?;
        }
        Ok(r)
    };
    match run() {
        Ok(r) => {
            eprint!("{}", crate::eval::images::summary(&r));
            if args.json {
                use std::io::Write;
                let json = serde_json::to_string_pretty(&r).expect("a report serializes");
                let _ = writeln!(std::io::stdout().lock(), "{json}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `evaluate` binary.
pub fn evaluate_main() -> ExitCode {
    start();
    let args = EvaluateArgs::parse();
    init_logging(&args.verbosity);
    if args.images {
        return evaluate_images_main(&args);
    }
    let opts = EvalOptions {
        real: args.real,
        synthetic: args.synthetic,
        holdout: args.holdout,
        target: args.target,
        output: args.output,
        discrete: args.discrete,
        continuous: args.continuous,
        ignore: args.ignore,
        separator: args.separator,
        device: args.device,
        seed: args.seed,
        discrete_max_distinct: args.discrete_max_distinct,
    };
    match crate::eval::evaluate(&opts) {
        Ok(report) => {
            eprint!("{}", crate::eval::report::summary(&report));
            if args.json {
                use std::io::Write;
                let json = serde_json::to_string_pretty(&report).expect("a report serializes");
                // A closed pipe (`evaluate --json | head`) ends the output quietly.
                let _ = writeln!(std::io::stdout().lock(), "{json}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
