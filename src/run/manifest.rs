//! `manifest.json`: what a run is and which checkpoint is complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bump when the layout of a run directory or a model's field names change.
pub const FORMAT_VERSION: u32 = 1;

/// The data a run was trained on (never the rows themselves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub path: PathBuf,
    pub rows: usize,
    pub columns: Vec<String>,
    pub schema_digest: String,
}

/// The last complete checkpoint: files and their SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub epoch: usize,
    pub weights: String,
    pub weights_sha256: String,
    pub optimizer: String,
    pub optimizer_sha256: String,
}

/// A self-describing run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model: String,
    pub synthgen_version: String,
    pub burn_version: String,
    pub seed: u64,
    pub device: String,
    pub data: DataInfo,
    /// Epochs the config asks for.
    pub epochs: usize,
    pub checkpoint: Option<Checkpoint>,
    pub created: String,
    pub updated: String,
}

impl Manifest {
    pub fn load(run: &Path) -> Result<Manifest> {
        let m: Manifest = super::read_json(run, super::MANIFEST)?;
        if m.format_version > FORMAT_VERSION {
            return Err(Error::BadRun {
                path: run.to_path_buf(),
                message: format!(
                    "format version {} is newer than this synthgen reads ({FORMAT_VERSION}); upgrade synthgen",
                    m.format_version
                ),
            });
        }
        Ok(m)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        super::atomic_write(&dir.join(super::MANIFEST), text.as_bytes())
    }

    /// The complete checkpoint, or an error saying the run has none.
    pub fn checkpoint(&self, run: &Path) -> Result<&Checkpoint> {
        self.checkpoint.as_ref().ok_or_else(|| Error::BadRun {
            path: run.to_path_buf(),
            message: "it has no complete checkpoint".into(),
        })
    }
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Read a checkpoint file and check it against the digest in the manifest.
pub fn read_verified(run: &Path, name: &str, sha256: &str) -> Result<Vec<u8>> {
    let path = run.join(name);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    if sha256_hex(&bytes) != sha256 {
        return Err(Error::BadRun {
            path: run.to_path_buf(),
            message: format!(
                "'{name}' does not match the checksum in the manifest (truncated or corrupted)"
            ),
        });
    }
    Ok(bytes)
}
