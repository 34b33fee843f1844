//! Parameters and Adam on the host, for models trained without Burn's autodiff on the CPU.
//!
//! The weights come from and go back to the model's burnpack record (same names, shapes and
//! parameter ids), and the optimizer state is written in the layout Burn's `ModuleOptimizer`
//! reads (per parameter id: `momentum.moment_1`, `momentum.moment_2`, `momentum.time`), so a
//! run trained here resumes on any device, and the other way round.

use std::collections::HashMap;

use burn::tensor::{Bytes, DType};
use burn_pack::{Reader, Scalar, Writer};
use rayon::prelude::*;

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

    /// One Adam step of the parameters at positions `which`, with their gradients in `grad`.
    pub fn adam_step(&mut self, adam: &Adam, which: &[usize]) {
        let mut step = vec![false; self.params.len()];
        for &i in which {
            step[i] = true;
        }
        self.params
            .par_iter_mut()
            .zip(step)
            .filter(|(_, s)| *s)
            .for_each(|(p, _)| p.adam_step(adam));
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
        for (((w, g), m), v) in self
            .value
            .iter_mut()
            .zip(&self.grad)
            .zip(&mut self.moment_1)
            .zip(&mut self.moment_2)
        {
            let g = *w * a.weight_decay + g;
            if first {
                *m = g * f1;
                *v = g * g * f2;
            } else {
                *m = *m * b1 + g * f1;
                *v = *v * b2 + g * g * f2;
            }
            *w -= *m * factor / (v.sqrt() + eps) * a.learning_rate;
        }
    }
}
