//! Parameters and Adam on the host, for models trained without Burn's autodiff on the CPU.
//!
//! The weights come from and go back to the model's burnpack record (same names, shapes and
//! parameter ids), and the optimizer state is written in the layout Burn's `ModuleOptimizer`
//! reads (per parameter id: `momentum.moment_1`, `momentum.moment_2`, `momentum.time`), so a
//! run trained here resumes on any device, and the other way round.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Bytes, DType};
use burn_pack::{Reader, Scalar, Writer};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::models::host::{Mat, column_sums, matmul};
use crate::train::ResumeState;

/// The parameters a host-trained run starts from, and the last epoch done: for a new run the
/// record `init` builds (Burn's initialization); for a resumed one the checkpoint's weights,
/// checked by `check` against the model's shapes first, with its optimizer state.
pub fn start(
    run: &Path,
    resume: Option<ResumeState>,
    check: impl FnOnce(Vec<u8>) -> Result<()>,
    init: impl FnOnce() -> std::result::Result<Bytes, burn::store::RecordError>,
) -> Result<(HostParams, usize)> {
    let bad = |what: &str, e: String| Error::BadRun {
        path: run.to_path_buf(),
        message: format!("the {what} cannot be loaded: {e}"),
    };
    let (record, optimizer, epoch) = match resume {
        Some(state) => {
            check(state.weights.clone())?;
            (state.weights, Some(state.optimizer), state.epoch)
        }
        None => {
            let bytes = init().map_err(|e| bad("initial weights", e.to_string()))?;
            (bytes.to_vec(), None, 0)
        }
    };
    let mut params = HostParams::from_record(record).map_err(|e| bad("weights", e))?;
    if let Some(bytes) = optimizer {
        params
            .load_optimizer(bytes)
            .map_err(|e| bad("optimizer state", e))?;
    }
    Ok((params, epoch))
}

/// Adam as Burn's `AdamConfig` computes it (L2 weight decay added to the gradient; bias
/// corrections folded into the step and into epsilon).
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    pub learning_rate: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// One parameter tensor with its gradient and Adam state.
#[derive(Debug, Clone)]
pub struct HostParam {
    /// Its record name, e.g. `decoder.out.weight`.
    pub name: String,
    /// Its parameter id (the optimizer state is keyed by it).
    pub id: u64,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    moment_1: Vec<f32>,
    moment_2: Vec<f32>,
    /// Adam steps taken; 0: no state yet.
    time: usize,
}

/// A model's parameters, in record order.
#[derive(Debug, Clone)]
pub struct HostParams {
    pub params: Vec<HostParam>,
    /// The record's scalars and metadata, written back unchanged.
    scalars: Vec<(String, Scalar)>,
    metadata: Vec<(String, String)>,
}

/// Why a record cannot be read as host parameters.
pub type RecordResult<T> = std::result::Result<T, String>;

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn to_bytes(v: &[f32]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from_bytes_vec(out)
}

/// Elements per parallel chunk of an Adam update.
const ADAM_CHUNK: usize = 1 << 15;

const MOMENT_1: &str = "momentum.moment_1";
const MOMENT_2: &str = "momentum.moment_2";
const TIME: &str = "momentum.time";
const RANK: &str = "__rank";

impl HostParams {
    /// The float tensors of a module's burnpack record.
    pub fn from_record(bytes: Vec<u8>) -> RecordResult<HostParams> {
        let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
        let scalars = reader
            .scalars()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let metadata = reader
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut params = Vec::new();
        for t in reader.into_tensors().map_err(|e| e.to_string())? {
            let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| e.to_string())?;
            if dtype != DType::F32 {
                return Err(format!("tensor {name} is {dtype:?}, not f32"));
            }
            let id = id.ok_or_else(|| format!("tensor {name} has no parameter id"))?;
            let value = floats(&bytes);
            let shape = shape.to_vec();
            if value.len() != shape.iter().product::<usize>() {
                return Err(format!(
                    "tensor {name} holds {} values for {shape:?}",
                    value.len()
                ));
            }
            params.push(HostParam {
                grad: vec![0.0; value.len()],
                name,
                id,
                shape,
                value,
                moment_1: Vec::new(),
                moment_2: Vec::new(),
                time: 0,
            });
        }
        Ok(HostParams {
            params,
            scalars,
            metadata,
        })
    }

    /// The position of the parameter named `name`; panics if there is none (the names are
    /// the model's own field paths).
    pub fn index(&self, name: &str) -> usize {
        self.params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("the record has no parameter {name}"))
    }

    /// The weights as a burnpack record, in the layout they were read from.
    pub fn to_record(&self) -> RecordResult<Vec<u8>> {
        let tensors = self
            .params
            .iter()
            .map(|p| {
                burn_pack::Tensor::new(
                    p.name.clone(),
                    DType::F32,
                    p.shape.clone(),
                    Some(p.id),
                    to_bytes(&p.value),
                )
            })
            .collect();
        let mut writer = Writer::new(tensors);
        for (k, v) in &self.scalars {
            writer = writer.with_scalar(k, *v);
        }
        for (k, v) in &self.metadata {
            writer = writer.with_metadata(k, v);
        }
        Ok(writer.into_bytes().map_err(|e| e.to_string())?.to_vec())
    }

    /// Adam state from optimizer bytes written by Burn's `ModuleOptimizer` or by
    /// [`HostParams::optimizer_record`]. Parameters without state start fresh, as in Burn.
    pub fn load_optimizer(&mut self, bytes: Vec<u8>) -> RecordResult<()> {
        let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
        let times: HashMap<String, Scalar> = reader.scalars().clone().into_iter().collect();
        let mut moments: HashMap<String, Vec<f32>> = HashMap::new();
        for t in reader.into_tensors().map_err(|e| e.to_string())? {
            let (name, dtype, _, _, bytes) = t.into_parts().map_err(|e| e.to_string())?;
            if dtype != DType::F32 {
                return Err(format!("optimizer tensor {name} is {dtype:?}, not f32"));
            }
            moments.insert(name, floats(&bytes));
        }
        for p in &mut self.params {
            let key = |leaf: &str| format!("{}.{leaf}", p.id);
            let Some(time) = times.get(&key(TIME)) else {
                continue;
            };
            let time = u64::try_from(*time)
                .map_err(|_| format!("optimizer step count of {} is not a count", p.name))?;
            let mut moment = |leaf: &str| -> RecordResult<Vec<f32>> {
                let v = moments
                    .remove(&key(leaf))
                    .ok_or_else(|| format!("no {leaf} for {}", p.name))?;
                if v.len() != p.value.len() {
                    return Err(format!(
                        "{leaf} of {} holds {} values, the parameter {}",
                        p.name,
                        v.len(),
                        p.value.len()
                    ));
                }
                Ok(v)
            };
            p.moment_1 = moment(MOMENT_1)?;
            p.moment_2 = moment(MOMENT_2)?;
            p.time = time as usize;
        }
        Ok(())
    }

    /// The Adam state in the layout of Burn's `ModuleOptimizer::into_bytes`.
    pub fn optimizer_record(&self) -> RecordResult<Vec<u8>> {
        let stateful = || self.params.iter().filter(|p| p.time > 0);
        let mut tensors = Vec::new();
        for p in stateful() {
            for (leaf, v) in [(MOMENT_1, &p.moment_1), (MOMENT_2, &p.moment_2)] {
                tensors.push(burn_pack::Tensor::new(
                    format!("{}.{leaf}", p.id),
                    DType::F32,
                    p.shape.clone(),
                    Some(p.id),
                    to_bytes(v),
                ));
            }
        }
        let mut writer = Writer::new(tensors);
        for p in stateful() {
            writer = writer
                .with_scalar(&format!("{}.{RANK}", p.id), Scalar::from(p.shape.len()))
                .with_scalar(&format!("{}.{TIME}", p.id), Scalar::from(p.time))
                .with_metadata(&p.id.to_string(), &p.name);
        }
        Ok(writer.into_bytes().map_err(|e| e.to_string())?.to_vec())
    }

    /// The weights and the optimizer state, for a checkpoint.
    pub fn records(&self) -> RecordResult<(Vec<u8>, Vec<u8>)> {
        Ok((self.to_record()?, self.optimizer_record()?))
    }

    /// One Adam step of the parameters at positions `which`, with their gradients in `grad`.
    pub fn adam_step(&mut self, adam: &Adam, which: &[usize]) {
        for &i in which {
            self.params[i].adam_step(adam);
        }
    }

    /// Set every parameter's values to `other`'s (a copy of the same model).
    pub fn copy_values_from(&mut self, other: &HostParams) {
        for (p, q) in self.params.iter_mut().zip(&other.params) {
            p.value.copy_from_slice(&q.value);
        }
    }

    /// Every position, for a model whose parameters all train with one optimizer.
    pub fn all(&self) -> Vec<usize> {
        (0..self.params.len()).collect()
    }
}

impl HostParam {
    fn adam_step(&mut self, a: &Adam) {
        let first = self.time == 0;
        if first {
            self.moment_1 = vec![0.0; self.value.len()];
            self.moment_2 = vec![0.0; self.value.len()];
        }
        self.time += 1;
        let t = self.time as i32;
        let c2 = (1.0 - a.beta_2.powi(t)).sqrt();
        let factor = c2 / (1.0 - a.beta_1.powi(t));
        let eps = a.epsilon * c2;
        let (b1, b2) = (a.beta_1, a.beta_2);
        let (f1, f2) = (1.0 - b1, 1.0 - b2);
        // On the first step the moments start from the gradient (as Burn's, without reading
        // the zeros): b1 and b2 multiply 0.
        let (b1, b2) = if first { (0.0, 0.0) } else { (b1, b2) };
        let update = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((w, g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                let g = *w * a.weight_decay + g;
                *m = *m * b1 + g * f1;
                *v = *v * b2 + g * g * f2;
                *w -= *m * factor / (v.sqrt() + eps) * a.learning_rate;
            }
        };
        // Large tensors in parallel chunks (each element's update is independent).
        self.value
            .par_chunks_mut(ADAM_CHUNK)
            .zip(self.grad.par_chunks(ADAM_CHUNK))
            .zip(self.moment_1.par_chunks_mut(ADAM_CHUNK))
            .zip(self.moment_2.par_chunks_mut(ADAM_CHUNK))
            .for_each(|(((w, g), m), v)| update(w, g, m, v));
    }
}

/// A Linear layer located in [`HostParams`]: weight [rows, outputs] (a row per input, then, for
/// CTGAN, a row per conditional-vector position), bias [outputs].
#[derive(Debug, Clone, Copy)]
pub struct HostLinear {
    pub weight: usize,
    pub bias: usize,
    pub rows: usize,
    pub outputs: usize,
}

impl HostLinear {
    /// The layer whose parameters are `{path}.weight` and `{path}.bias`.
    pub fn new(params: &HostParams, path: &str) -> HostLinear {
        let weight = params.index(&format!("{path}.weight"));
        let bias = params.index(&format!("{path}.bias"));
        let shape = &params.params[weight].shape;
        assert_eq!(shape.len(), 2, "{path}.weight is a matrix");
        HostLinear {
            weight,
            bias,
            rows: shape[0],
            outputs: shape[1],
        }
    }

    /// The weight's values, row-major.
    pub fn w<'a>(&self, params: &'a HostParams) -> &'a [f32] {
        &params.params[self.weight].value
    }

    /// `n` rows of the bias, plus the weight row at each row's conditional position
    /// (`cond = Some((positions, first conditional row))`): an output for a product to
    /// accumulate onto.
    pub fn start(&self, params: &HostParams, n: usize, cond: Option<(&[i32], usize)>) -> Vec<f32> {
        let o = self.outputs;
        let bias = &params.params[self.bias].value;
        let w = self.w(params);
        let mut y = Vec::with_capacity(n * o);
        for r in 0..n {
            y.extend_from_slice(bias);
            if let Some((c, row0)) = cond {
                let row = row0 + c[r] as usize;
                for (v, wv) in y[r * o..].iter_mut().zip(&w[row * o..(row + 1) * o]) {
                    *v += wv;
                }
            }
        }
        y
    }

    /// `x W + b` over `n` rows of `x` ([n, rows]).
    pub fn forward(&self, params: &HostParams, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = self.start(params, n, None);
        let w = Mat::new(self.w(params), self.rows, self.outputs);
        matmul(&mut y, Mat::new(x, n, self.rows), w, true);
        y
    }

    /// Weight and bias gradients from the layer's input `x` [n, rows] and output gradient `dy`.
    pub fn gradients(&self, params: &mut HostParams, x: &[f32], dy: &[f32], n: usize) {
        let x = Mat::new(x, n, self.rows).t();
        let dy_m = Mat::new(dy, n, self.outputs);
        matmul(&mut params.params[self.weight].grad, x, dy_m, false);
        column_sums(&mut params.params[self.bias].grad, dy);
    }

    /// The input gradient `dy W^T` ([n, rows]), added to `dx` when `accumulate`.
    pub fn input_gradient(
        &self,
        params: &HostParams,
        dy: &[f32],
        n: usize,
        dx: &mut [f32],
        accumulate: bool,
    ) {
        let w = Mat::new(self.w(params), self.rows, self.outputs).t();
        matmul(dx, Mat::new(dy, n, self.outputs), w, accumulate);
    }

    /// The bias gradient from `dy` [n, outputs], and the conditional rows' gradient from
    /// `row0` on (the sum of the `dy` rows that looked each one up); the rows before `row0`
    /// are left to the caller.
    pub fn bias_and_cond_gradients(
        &self,
        params: &mut HostParams,
        dy: &[f32],
        cond: Option<(&[i32], usize)>,
    ) {
        let o = self.outputs;
        column_sums(&mut params.params[self.bias].grad, dy);
        if let Some((c, row0)) = cond {
            let grad = &mut params.params[self.weight].grad;
            grad[row0 * o..].fill(0.0);
            for (r, d) in dy.chunks_exact(o).enumerate() {
                let row = row0 + c[r] as usize;
                for (g, v) in grad[row * o..(row + 1) * o].iter_mut().zip(d) {
                    *g += v;
                }
            }
        }
    }
}
