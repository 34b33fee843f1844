//! Architectures and losses only: no IO, no loops.

pub mod ctgan;
pub mod tvae;
