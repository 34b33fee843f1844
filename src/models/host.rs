//! The table generators' eval-mode forward pass on the host, for sampling on the CPU.
//!
//! Sampling needs no autodiff and runs a few layers over many rows. As Burn ops each layer is a
//! product over all rows followed by one pass per element-wise op (bias, BatchNorm, ReLU) and,
//! for CTGAN, a concatenation that copies every earlier activation again. Here:
//! - BatchNorm (eval mode: running statistics) is folded into the Linear before it;
//! - every activation lives in one buffer, the newest output left of the older ones, so a
//!   residual layer's input (its block's output, then the block's input) is a run of columns
//!   read in place: no concatenation;
//! - each output starts as its bias plus the conditional vector's weight row, and the product
//!   accumulates onto it;
//! - blocks of rows run the whole network in parallel, one thread each: products of a few
//!   hundred rows scale better across cores that way than one product split by `gemm`.

use burn::nn::{BatchNorm, Linear};
use burn::tensor::Tensor;
use rayon::prelude::*;

/// Rows per block: each block's activations (about 600 floats a row for CTGAN) stay in cache.
const ROWS_PER_BLOCK: usize = 256;

/// One layer: `y = x W + b` (plus the conditional vector's row of `W`), then ReLU if set.
#[derive(Debug, Clone)]
pub struct HostLayer {
    /// [inputs, outputs], row-major: one row per input column read, then (CTGAN) one row per
    /// conditional-vector position.
    weight: Vec<f32>,
    /// [outputs]
    bias: Vec<f32>,
    outputs: usize,
    relu: bool,
}

/// A float tensor's values, row-major (one read from the device).
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 values")
}

impl HostLayer {
    /// A copy of a Burn `Linear` (its weight is already [inputs, outputs]).
    pub fn linear(linear: &Linear) -> Self {
        let [_, outputs] = linear.weight.dims();
        let weight = values(linear.weight.val());
        let bias = linear
            .bias
            .as_ref()
            .map_or_else(|| vec![0.0; outputs], |b| values(b.val()));
        HostLayer {
            weight,
            bias,
            outputs,
            relu: false,
        }
    }

    /// Folds an eval-mode BatchNorm after this layer into its weights:
    /// `(y - mean) / sqrt(var + eps) * gamma + beta` is `y * s + (beta - mean * s)` with
    /// `s = gamma / sqrt(var + eps)`, per output.
    pub fn then_batch_norm(mut self, bn: &BatchNorm) -> Self {
        let gamma = values(bn.gamma.val());
        let beta = values(bn.beta.val());
        let mean = values(bn.running_mean.value());
        let var = values(bn.running_var.value());
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + bn.epsilon as f32).sqrt())
            .collect();
        for row in self.weight.chunks_exact_mut(self.outputs) {
            for (w, s) in row.iter_mut().zip(&scale) {
                *w *= s;
            }
        }
        for (j, b) in self.bias.iter_mut().enumerate() {
            *b = (*b - mean[j]) * scale[j] + beta[j];
        }
        self
    }

    /// ReLU after this layer.
    pub fn then_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    fn rows(&self) -> usize {
        self.weight.len() / self.outputs
    }
}

/// How each layer's input is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// The previous layer's output (TVAE's decoder).
    Sequential,
    /// The previous layer's output, then that layer's input (CTGAN's residual blocks).
    Residual,
}

/// Buffer columns of one layer: its input run, and where its output goes (`None`: the
/// network's output).
#[derive(Debug, Clone, Copy)]
struct Columns {
    input: (usize, usize),
    output: Option<usize>,
}

/// A stack of [`HostLayer`]s over an input `input` wide.
#[derive(Debug, Clone)]
pub struct HostNet {
    layers: Vec<HostLayer>,
    columns: Vec<Columns>,
    /// Buffer width: every hidden output, newest first, then the input.
    width: usize,
    input: usize,
}

impl HostNet {
    /// Panics without layers, or if a layer's weight rows are fewer than its input's columns.
    pub fn new(input: usize, wiring: Wiring, layers: Vec<HostLayer>) -> Self {
        assert!(!layers.is_empty(), "a network has at least one layer");
        let hidden: usize = layers.iter().rev().skip(1).map(|l| l.outputs).sum();
        let width = hidden + input;
        let mut columns = Vec::with_capacity(layers.len());
        // The latest output's first column and width; the input comes first.
        let (mut start, mut len) = (hidden, input);
        for (i, layer) in layers.iter().enumerate() {
            let read = match wiring {
                Wiring::Sequential => (start, len),
                Wiring::Residual => (start, width - start),
            };
            assert!(
                layer.rows() >= read.1,
                "layer {i} has {} weight rows for {} inputs",
                layer.rows(),
                read.1
            );
            let output = (i + 1 < layers.len()).then(|| start - layer.outputs);
            columns.push(Columns {
                input: read,
                output,
            });
            if let Some(o) = output {
                (start, len) = (o, layer.outputs);
            }
        }
        HostNet {
            layers,
            columns,
            width,
            input,
        }
    }

    /// Width of the output.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// `z`: [rows, input]; `cond`: per row, the position of the 1 in its one-hot conditional
    /// vector (its weight rows follow the input's in every layer) -> [rows, outputs].
    pub fn forward(&self, z: &[f32], cond: Option<&[i32]>) -> Vec<f32> {
        let rows = z.len() / self.input;
        assert_eq!(z.len(), rows * self.input, "z is [rows, input]");
        if let Some(c) = cond {
            assert_eq!(c.len(), rows, "one conditional position per row");
        }
        let out_w = self.outputs();
        let mut out = vec![0.0f32; rows * out_w];
        out.par_chunks_mut(ROWS_PER_BLOCK * out_w)
            .enumerate()
            .for_each(|(block, out)| {
                let r0 = block * ROWS_PER_BLOCK;
                let n = out.len() / out_w;
                let cond = cond.map(|c| &c[r0..r0 + n]);
                let mut rows = z[r0 * self.input..(r0 + n) * self.input].chunks_exact(self.input);
                self.forward_block(out, cond, |row| {
                    row.copy_from_slice(rows.next().expect("a row of z per output row"));
                });
            });
        out
    }

    /// The network over one block of rows on this thread: `out` [rows, outputs]; `cond` as in
    /// [`HostNet::forward`]; `input` writes each row's input (`input` values), in order, in
    /// place in the activations' buffer.
    pub fn forward_block(
        &self,
        out: &mut [f32],
        cond: Option<&[i32]>,
        mut input: impl FnMut(&mut [f32]),
    ) {
        let n = out.len() / self.outputs();
        assert_eq!(out.len(), n * self.outputs(), "out holds whole rows");
        if let Some(c) = cond {
            assert_eq!(c.len(), n, "one conditional position per row");
            let positions = self
                .layers
                .iter()
                .zip(&self.columns)
                .map(|(l, cols)| l.rows() - cols.input.1)
                .min()
                .unwrap_or(0);
            assert!(
                c.iter().all(|&p| p >= 0 && (p as usize) < positions),
                "conditional positions lie in 0..{positions}"
            );
        }
        let w = self.width;
        let mut buf = vec![0.0f32; n * w];
        for row in buf.chunks_exact_mut(w) {
            input(&mut row[w - self.input..]);
        }
        for (layer, cols) in self.layers.iter().zip(&self.columns) {
            let o = layer.outputs;
            let (in_start, k) = cols.input;
            // The output rows: `dst[r * stride + offset ..][..o]`.
            let (dst, stride, offset): (&mut [f32], usize, usize) = match cols.output {
                Some(start) => (&mut buf[..], w, start),
                None => (&mut *out, o, 0),
            };
            for r in 0..n {
                let y = &mut dst[r * stride + offset..r * stride + offset + o];
                y.copy_from_slice(&layer.bias);
                if let Some(c) = cond {
                    let row = cols.input.1 + c[r] as usize;
                    for (v, wv) in y.iter_mut().zip(&layer.weight[row * o..(row + 1) * o]) {
                        *v += wv;
                    }
                }
            }
            // SAFETY: `base` points at `buf`, which holds `n` rows of `w` floats; the input
            // columns `in_start..in_start + k` of each row lie inside it (`new`'s layout). The
            // output rows lie inside `dst` (sliced above). Input and output never overlap:
            // outputs are written left of every column a layer reads, or into `out`. `gemm`
            // reads lhs and rhs and writes dst, with the strides given, for n x o x k.
            unsafe {
                let base = buf.as_mut_ptr();
                let dst_ptr = match cols.output {
                    Some(_) => base.add(offset),
                    None => out.as_mut_ptr(),
                };
                gemm::gemm(
                    n,
                    o,
                    k,
                    dst_ptr,
                    1,
                    stride as isize,
                    true,
                    base.add(in_start).cast_const(),
                    1,
                    w as isize,
                    layer.weight.as_ptr(),
                    1,
                    o as isize,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            if layer.relu {
                let dst: &mut [f32] = match cols.output {
                    Some(_) => &mut buf[..],
                    None => &mut *out,
                };
                for r in 0..n {
                    for v in &mut dst[r * stride + offset..r * stride + offset + o] {
                        *v = v.max(0.0);
                    }
                }
            }
        }
    }
}

/// A read-only matrix operand: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a row-major [rows, cols] matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a [{rows}, {cols}] matrix");
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Rows of `cols` values `rs` apart in `data` (columns of a wider row-major buffer).
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        let m = Mat {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        };
        assert!(
            cols <= rs && m.in_bounds(),
            "a [{rows}, {cols}] view with row stride {rs}"
        );
        m
    }

    /// The transpose, as a view (nothing is copied).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `start..start + rows` as a view.
    fn rows_from(self, start: usize, rows: usize) -> Self {
        assert!(start + rows <= self.rows);
        Mat {
            data: &self.data[start * self.rs..],
            rows,
            ..self
        }
    }

    /// Every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// Products smaller than this many multiply-adds run on one thread.
const PARALLEL_MIN: usize = 1 << 16;

/// `dst = a b`, or `dst += a b` when `accumulate`; `dst` is row-major [a.rows, b.cols].
/// Blocks of `dst`'s rows, or of its columns when it is wider than tall, run in parallel, one
/// single-threaded `gemm` call each (at a few hundred rows this scales across cores where
/// `gemm`'s own split does not). Splitting the longer side keeps each block's share of the
/// other operand, which every block packs again, the smaller one.
pub(crate) fn matmul(dst: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions agree");
    assert_eq!(dst.len(), m * n, "dst is [{m}, {n}]");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "operands lie inside their data"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let serial = m * n * k < PARALLEL_MIN || threads == 1;
    if !serial && n > m {
        return matmul_by_columns(dst, a, b, accumulate, n.div_ceil(threads));
    }
    let block = if serial { m } else { m.div_ceil(threads) };
    let run = |dst: &mut [f32], a: Mat<'_>| {
        let rows = dst.len() / n;
        // SAFETY: `dst` holds `rows` rows of `n` floats, written with row stride `n`; `a` and
        // `b` were checked to lie inside their slices for every (i, p) and (p, j) read, and
        // `a` is a view of `rows` rows. `dst` is a unique borrow, so it overlaps neither.
        unsafe {
            gemm_block(
                dst.as_mut_ptr(),
                n,
                rows,
                n,
                a,
                b.data.as_ptr(),
                b,
                accumulate,
            )
        }
    };
    if block == m {
        run(dst, a);
    } else {
        dst.par_chunks_mut(block * n)
            .enumerate()
            .for_each(|(i, d)| run(d, a.rows_from(i * block, d.len() / n)));
    }
}

/// A pointer to share between the threads that write disjoint parts of one buffer.
struct SharedPtr(*mut f32);

// SAFETY: only used by `matmul_by_columns`, whose threads write disjoint columns.
unsafe impl Send for SharedPtr {}
unsafe impl Sync for SharedPtr {}

impl SharedPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// [`matmul`] with blocks of `cols` columns of `dst` in parallel.
fn matmul_by_columns(dst: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool, cols: usize) {
    let (m, n) = (a.rows, b.cols);
    let base = SharedPtr(dst.as_mut_ptr());
    (0..n.div_ceil(cols)).into_par_iter().for_each(|i| {
        let j0 = i * cols;
        let width = cols.min(n - j0);
        // SAFETY: `dst` is [m, n] row-major (checked by `matmul`); this block writes columns
        // j0..j0 + width of each row, which no other block writes, through row stride n. `b`'s
        // columns from j0 lie inside its data (checked bounds, j0 < n), and `a` is read whole.
        unsafe {
            let b_cols = b.data.as_ptr().add(j0 * b.cs);
            gemm_block(base.get().add(j0), n, m, width, a, b_cols, b, accumulate);
        }
    });
}

/// One single-threaded `gemm` call: `rows` x `cols` of `dst` (row stride `dst_rs`) = (or +=)
/// `a` times the `cols` columns of `b`'s layout starting at `b_cols`; `k` is `a.cols`.
///
/// # Safety
/// `dst` must point at `rows` rows of `cols` writable floats `dst_rs` apart that nothing else
/// reads or writes meanwhile, and `b_cols` at columns of `b`'s strides that lie inside `b`'s
/// data.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block(
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    cols: usize,
    a: Mat<'_>,
    b_cols: *const f32,
    b: Mat<'_>,
    accumulate: bool,
) {
    // SAFETY: as the caller promises; `a` lies inside its data (checked by `matmul`).
    unsafe {
        gemm::gemm(
            rows,
            cols,
            a.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b_cols,
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Rows per parallel chunk of the element-wise passes over a batch.
pub(crate) const ROW_CHUNK: usize = 64;

/// Column sums of a row-major [rows, cols] matrix, into `out` ([cols]).
pub(crate) fn column_sums(out: &mut [f32], x: &[f32]) {
    column_sums_of(out, x, |v| v);
}

/// Column sums of `f` of each element. Chunks of rows are summed in parallel and their sums
/// added in order: the same result whatever the number of threads.
pub(crate) fn column_sums_of(out: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32 + Sync) {
    column_sums_with(out, x.len() / out.len().max(1), |r, acc| {
        let row = &x[r * acc.len()..(r + 1) * acc.len()];
        for (o, &v) in acc.iter_mut().zip(row) {
            *o += f(v);
        }
    });
}

/// Column sums over `rows` rows, `add(r, acc)` adding row r's terms to `acc` ([cols]), in
/// parallel chunks of rows added in order.
pub(crate) fn column_sums_with(
    out: &mut [f32],
    rows: usize,
    add: impl Fn(usize, &mut [f32]) + Sync,
) {
    let cols = out.len();
    let partial: Vec<Vec<f32>> = (0..rows.div_ceil(ROW_CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0f32; cols];
            for r in c * ROW_CHUNK..((c + 1) * ROW_CHUNK).min(rows) {
                add(r, &mut acc);
            }
            acc
        })
        .collect();
    out.fill(0.0);
    for p in partial {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize, phase: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.7548 + phase).sin()).collect()
    }

    /// `a b` by the definition, in f64.
    fn naive(a: Mat<'_>, b: Mat<'_>) -> Vec<f64> {
        let at = |m: &Mat<'_>, i: usize, j: usize| f64::from(m.data[i * m.rs + j * m.cs]);
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols).map(|p| at(&a, i, p) * at(&b, p, j)).sum();
            }
        }
        out
    }

    #[test]
    fn products_split_by_rows_or_columns_equal_the_definition() {
        // Tall (split by rows), wide (split by columns), small (one call); transposed and
        // strided operands; written and accumulated. Two threads, so that the splits happen.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(check_products);
    }

    fn check_products() {
        for &(m, k, n) in &[(300, 70, 40), (20, 300, 500), (5, 4, 3)] {
            let a_data = wave(m * k + 7, 0.1);
            let b_data = wave(k * n, 0.2);
            let a_t = wave(k * m, 0.3);
            let pairs = [
                (Mat::new(&a_data[..m * k], m, k), Mat::new(&b_data, k, n)),
                (Mat::new(&a_t, k, m).t(), Mat::new(&b_data, n, k).t()),
                (Mat::strided(&a_data[3..], m, k, k), Mat::new(&b_data, k, n)),
            ];
            for (a, b) in pairs {
                let want = naive(a, b);
                let start = wave(m * n, 0.4);
                let mut dst = start.clone();
                matmul(&mut dst, a, b, false);
                for (d, w) in dst.iter().zip(&want) {
                    assert!(
                        (f64::from(*d) - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n}"
                    );
                }
                let mut dst = start.clone();
                matmul(&mut dst, a, b, true);
                for ((d, w), s) in dst.iter().zip(&want).zip(&start) {
                    let w = w + f64::from(*s);
                    assert!(
                        (f64::from(*d) - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n} +="
                    );
                }
            }
        }
    }

    #[test]
    fn column_sums_do_not_depend_on_the_thread_count() {
        let x = wave(1000 * 37, 0.5);
        let mut one = vec![0.0f32; 37];
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| column_sums(&mut one, &x));
        let mut three = vec![0.0f32; 37];
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| column_sums(&mut three, &x));
        assert_eq!(one, three);
        let want: f32 = x.iter().step_by(37).sum();
        assert!((one[0] - want).abs() < 1e-3);
    }
}
