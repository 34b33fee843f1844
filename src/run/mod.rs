//! The run directory: `models/<run-id>/` with `manifest.json`, `config.toml`,
//! `transformer.json`, weights and optimizer state (`*.bpk`) and `metrics.csv`.
//!
//! Shared by `train` and `sample`. Every file is written beside its final name and renamed.
//! A new run is assembled in a hidden staging directory and renamed into place at its first
//! checkpoint, so a failed or killed first epoch leaves nothing behind. Later checkpoints write
//! new weight files first and then the manifest that names them: the manifest is the commit
//! point, so a killed run always resumes from a complete checkpoint.

pub mod manifest;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use manifest::{Checkpoint, Manifest};

/// File names inside a run directory.
pub const MANIFEST: &str = "manifest.json";
pub const CONFIG: &str = "config.toml";
pub const TRANSFORMER: &str = "transformer.json";
pub const METRICS: &str = "metrics.csv";

/// Write `bytes` to `path` atomically (a sibling temporary file, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Like [`atomic_write`], with a closure that writes into the temporary file.
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Where runs live: `--models-dir`, else `$SYNTHGEN_MODELS_DIR`, else `models/` (the CLI
/// resolves the first two).
pub fn models_dir(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from("models"), Path::to_path_buf)
}

/// The ids of the runs under `models_dir` (directories holding a manifest), sorted.
pub fn list_runs(models_dir: &Path) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(models_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(MANIFEST).is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    runs.sort();
    runs
}

/// A run's `config.toml`: the resolved configuration it was trained with.
pub fn read_config(run: &Path) -> Result<crate::config::Config> {
    let file = run.join(CONFIG);
    crate::config::Config::parse(&crate::error::read_text(&file)?, &file)
}

/// A JSON file `name` of a run (`transformer.json`, `images.json`).
pub fn read_json<T: serde::de::DeserializeOwned>(run: &Path, name: &str) -> Result<T> {
    let text = crate::error::read_text(&run.join(name))?;
    serde_json::from_str(&text).map_err(|e| Error::BadRun {
        path: run.to_path_buf(),
        message: format!("{name}: {e}"),
    })
}

/// `--checkpoint X`: a path if it is a run directory, else `models_dir/X`.
pub fn resolve(checkpoint: &str, models_dir: &Path) -> Result<PathBuf> {
    let direct = Path::new(checkpoint);
    if direct.join(MANIFEST).is_file() {
        return Ok(direct.to_path_buf());
    }
    let under = models_dir.join(checkpoint);
    if under.join(MANIFEST).is_file() {
        return Ok(under);
    }
    if direct.is_dir() || under.is_dir() {
        let path = if direct.is_dir() {
            direct.to_path_buf()
        } else {
            under
        };
        return Err(Error::BadRun {
            path,
            message: format!("it has no {MANIFEST}"),
        });
    }
    Err(Error::UnknownRun {
        id: checkpoint.to_string(),
        models_dir: models_dir.to_path_buf(),
        existing: list_runs(models_dir),
    })
}

/// A run id is a single path component of letters, digits, '-', '_' and '.'.
pub fn check_run_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "--run-id".into(),
            message: format!(
                "'{id}' must be letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        })
    }
}

/// A default run id: `<model>-<data stem>-<YYYYMMDD-HHMMSS>` (UTC).
pub fn default_run_id(model: &str, data: &Path) -> String {
    let stem: String = data
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("data")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{model}-{stem}-{}",
        utc_stamp(std::time::SystemTime::now(), false)
    )
}

/// `YYYYMMDD-HHMMSS` (compact) or RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_stamp(t: std::time::SystemTime, rfc3339: bool) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if rfc3339 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
    }
}

/// A run being written. New runs live in a staging directory until [`RunDir::publish`].
#[derive(Debug)]
pub struct RunDir {
    /// Where the run ends up.
    pub path: PathBuf,
    /// Where files are written now (the staging directory until published).
    dir: PathBuf,
    published: bool,
    /// With --force: an existing run to replace at publication.
    replace: bool,
}

impl RunDir {
    /// Start a new run `models_dir/id`. Refuses an existing run unless `force`.
    pub fn create(models_dir: &Path, id: &str, force: bool) -> Result<RunDir> {
        check_run_id(id)?;
        let path = models_dir.join(id);
        if path.exists() && !force {
            return Err(Error::RunExists { path });
        }
        std::fs::create_dir_all(models_dir).map_err(|source| Error::Write {
            path: models_dir.to_path_buf(),
            source,
        })?;
        let dir = models_dir.join(format!(".{id}.staging-{}", std::process::id()));
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(RunDir {
            replace: path.exists(),
            path,
            dir,
            published: false,
        })
    }

    /// Continue an existing run in place.
    pub fn open(path: &Path) -> RunDir {
        RunDir {
            path: path.to_path_buf(),
            dir: path.to_path_buf(),
            published: true,
            replace: false,
        }
    }

    /// The directory files go to now.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn is_published(&self) -> bool {
        self.published
    }

    /// Move the staging directory into place (after the first complete checkpoint).
    pub fn publish(&mut self) -> Result<()> {
        if self.published {
            return Ok(());
        }
        let err = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        if self.replace && self.path.exists() {
            std::fs::remove_dir_all(&self.path).map_err(err)?;
        }
        std::fs::rename(&self.dir, &self.path).map_err(err)?;
        self.dir = self.path.clone();
        self.published = true;
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_matches_known_dates() {
        use std::time::{Duration, UNIX_EPOCH};
        // 2000-02-29 12:34:56 UTC = 951827696 (date -d @951827696 -u).
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc_stamp(t, true), "2000-02-29T12:34:56Z");
        assert_eq!(utc_stamp(UNIX_EPOCH, false), "19700101-000000");
    }

    #[test]
    fn unpublished_runs_leave_nothing_and_existing_runs_are_kept() {
        let models = tempfile::tempdir().unwrap();
        {
            let run = RunDir::create(models.path(), "r1", false).unwrap();
            atomic_write(&run.file("x"), b"1").unwrap();
        }
        assert!(std::fs::read_dir(models.path()).unwrap().next().is_none());

        let mut run = RunDir::create(models.path(), "r1", false).unwrap();
        atomic_write(&run.file(MANIFEST), b"{}").unwrap();
        run.publish().unwrap();
        assert!(models.path().join("r1").join(MANIFEST).is_file());
        assert!(matches!(
            RunDir::create(models.path(), "r1", false),
            Err(Error::RunExists { .. })
        ));
        assert_eq!(list_runs(models.path()), ["r1"]);
        let err = resolve("r2", models.path()).unwrap_err();
        assert!(err.hint().unwrap().contains("r1"));
        assert!(check_run_id("../x").is_err());
    }
}
