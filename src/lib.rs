//! synthgen: train deep generative models of private data (CTGAN and TVAE on tables, DDPM on
//! images) with Burn on a GPU through wgpu or on the CPU, checkpoint every run, and sample
//! from them.
//!
//! The binaries `train` and `sample` are one call each into [`cli`]. The library is laid out
//! as data (tables, schema, reversible encoding) -> models (architectures and losses) ->
//! train (loops) -> run (the run directory) -> sample.

pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod models;
pub mod run;
pub mod sample;
pub mod train;

pub use error::{Error, Result};
