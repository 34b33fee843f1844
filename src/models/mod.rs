//! Architectures and losses only: no IO, no loops.

pub mod classifier;
pub mod ctgan;
pub mod ddpm;
pub mod host;
pub mod noise;
pub mod spans;
pub mod tvae;
