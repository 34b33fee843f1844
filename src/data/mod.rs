//! Tables in and out, their schema, the reversible encoding and the data <-> model layout;
//! image sets for DDPM.

pub mod gmm;
pub mod images;
pub mod io;
pub mod layout;
pub mod sampler;
pub mod schema;
pub mod transformer;

pub use io::{Column, DType, Table, Values};
pub use layout::{Activation, Layout, Span};
pub use schema::{ColumnKind, Schema};
pub use transformer::DataTransformer;
