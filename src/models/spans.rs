//! Softmax and cross-entropy within spans of a row, as a few whole-batch tensor ops.
//!
//! Written span by span, a row of Adult's 14 softmax spans costs about six tensor ops per span
//! forward, and as many backward, each narrowing backward filling a full-width buffer of zeros.
//! Here the spans are matrices instead: `member` [width, k] sums each span's positions, and its
//! transpose `spread` [k, width] copies a per-span value back to the span's positions. The
//! stabilizing shift is each span's own maximum, detached (exact gradients, no graph).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::layout::Layout;

#[derive(Debug, Clone)]
pub struct Segments {
    /// [width, k]: 1 where position i belongs to span j.
    member: Tensor<2>,
    /// [k, width]: `member` transposed.
    spread: Tensor<2>,
    /// [1, width]: 1 inside a span, 0 outside.
    inside: Tensor<2>,
    /// [1, width]: 1 - `inside`.
    outside: Tensor<2>,
    /// (start, width) of each span, for their maxima.
    spans: Vec<(usize, usize)>,
    /// The positions outside every span, and [n, width] putting n values back there.
    outside_at: Option<(Tensor<1, Int>, Tensor<2>)>,
}

impl Segments {
    /// Spans `(start, width)` of rows `width` wide; they must not overlap.
    pub fn new(width: usize, spans: &[(usize, usize)], device: &Device) -> Segments {
        let k = spans.len();
        let mut member = vec![0.0f32; width * k];
        let mut spread = vec![0.0f32; k * width];
        let mut inside = vec![0.0f32; width];
        for (j, &(start, w)) in spans.iter().enumerate() {
            assert!(w > 0 && start + w <= width, "span inside the row");
            for i in start..start + w {
                assert_eq!(inside[i], 0.0, "spans do not overlap");
                member[i * k + j] = 1.0;
                spread[j * width + i] = 1.0;
                inside[i] = 1.0;
            }
        }
        let outside: Vec<f32> = inside.iter().map(|v| 1.0 - v).collect();
        let at: Vec<usize> = (0..width).filter(|&i| inside[i] == 0.0).collect();
        let t2 =
            |v: Vec<f32>, shape: [usize; 2]| Tensor::from_data(TensorData::new(v, shape), device);
        let outside_at = (!at.is_empty()).then(|| {
            let mut place = vec![0.0f32; at.len() * width];
            for (r, &i) in at.iter().enumerate() {
                place[r * width + i] = 1.0;
            }
            let idx: Vec<i32> = at.iter().map(|&i| i as i32).collect();
            (
                Tensor::from_data(TensorData::new(idx, [at.len()]), device),
                t2(place, [at.len(), width]),
            )
        });
        Segments {
            member: t2(member, [width, k]),
            spread: t2(spread, [k, width]),
            inside: t2(inside, [1, width]),
            outside: t2(outside, [1, width]),
            spans: spans.to_vec(),
            outside_at,
        }
    }

    /// The softmax spans of `layout`.
    pub fn softmaxes(layout: &Layout, device: &Device) -> Segments {
        Segments::new(layout.width(), &layout.softmax_spans(), device)
    }

    /// `f` applied to the positions outside every span, zeros inside the spans; [batch, width].
    /// (`f` runs on those positions only: a few of the row where they are tanh scalars.)
    pub fn map_outside(&self, x: Tensor<2>, f: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<2> {
        match &self.outside_at {
            Some((idx, place)) => f(x.select(1, idx.clone())).matmul(place.clone()),
            None => x.zeros_like(),
        }
    }

    /// Each span's maximum per row, [batch, k], detached (no graph is recorded).
    fn max(&self, x: Tensor<2>) -> Tensor<2> {
        let x = x.detach();
        let parts = self
            .spans
            .iter()
            .map(|&(start, w)| x.clone().narrow(1, start, w).max_dim(1))
            .collect();
        Tensor::cat(parts, 1)
    }

    /// exp(x - the span's maximum) inside spans, 0 outside; and that maximum, [batch, k].
    fn shifted_exp(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let m = self.max(x.clone());
        // Outside the spans the shift is 0 and the masked exponent 0: exp never overflows there.
        let e = ((x - m.clone().matmul(self.spread.clone())) * self.inside.clone()).exp()
            * self.inside.clone();
        (e, m)
    }

    /// ln sum_j exp(x_j) over each span, [batch, k].
    pub fn log_sum_exp(&self, x: Tensor<2>) -> Tensor<2> {
        let (e, m) = self.shifted_exp(x);
        e.matmul(self.member.clone()).log() + m
    }

    /// Softmax within each span, 0 outside the spans; [batch, width].
    pub fn softmax(&self, x: Tensor<2>) -> Tensor<2> {
        let (e, _) = self.shifted_exp(x);
        let sums = e
            .clone()
            .matmul(self.member.clone())
            .matmul(self.spread.clone());
        e / (sums + self.outside.clone())
    }

    /// Cross-entropy of each span's logits against its target distribution,
    /// -sum_j t_j ln softmax(x)_j = lse(x) sum_j t_j - sum_j t_j x_j; [batch, k].
    /// `target` is read inside the spans only.
    pub fn cross_entropy(&self, logits: Tensor<2>, target: Tensor<2>) -> Tensor<2> {
        let target = target * self.inside.clone();
        let lse = self.log_sum_exp(logits.clone());
        lse * target.clone().matmul(self.member.clone())
            - (target * logits).matmul(self.member.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation;

    fn t2(v: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    fn vec2(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec().unwrap()
    }

    /// A row of 12: a loose position, spans (1, 3) and (4, 1), two loose, span (7, 5).
    const SPANS: [(usize, usize); 3] = [(1, 3), (4, 1), (7, 5)];
    const WIDTH: usize = 12;

    /// Logits with wide ranges: one span lies 300 below another, a loose position at 200
    /// (exp overflows f32 at 89), so a shift by the row's maximum would lose spans.
    fn logits() -> Vec<f32> {
        let mut v: Vec<f32> = (0..3 * WIDTH)
            .map(|i| ((i as f32 + 1.0) * 0.7548).sin() * 4.0)
            .collect();
        for v in &mut v[7..12] {
            *v -= 300.0;
        }
        v[0] = 200.0;
        v[WIDTH + 5] = -150.0;
        v
    }

    fn targets() -> Vec<f32> {
        // Row 0 one-hot, row 1 soft distributions, row 2 one-hot; loose positions hold noise
        // that must be ignored.
        let mut t = vec![0.0; 3 * WIDTH];
        for (r, picks) in [[2usize, 4, 9], [1, 4, 7], [3, 4, 11]].iter().enumerate() {
            for &p in picks {
                t[r * WIDTH + p] = 1.0;
            }
        }
        t[WIDTH + 1] = 0.25;
        t[WIDTH + 2] = 0.75;
        t[WIDTH + 7] = 0.5;
        t[WIDTH + 10] = 0.5;
        t[WIDTH] = 9.0;
        t[2 * WIDTH + 6] = -3.0;
        t
    }

    /// The per-span formulation the module replaces.
    fn reference_softmax(x: Tensor<2>) -> Vec<Tensor<2>> {
        SPANS
            .iter()
            .map(|&(s, w)| activation::softmax(x.clone().narrow(1, s, w), 1))
            .collect()
    }

    fn reference_cross_entropy(x: Tensor<2>, t: Tensor<2>) -> Tensor<2> {
        let parts = SPANS
            .iter()
            .map(|&(s, w)| {
                (activation::log_softmax(x.clone().narrow(1, s, w), 1) * t.clone().narrow(1, s, w))
                    .sum_dim(1)
                    .neg()
            })
            .collect();
        Tensor::cat(parts, 1)
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(x.is_finite(), "{what}[{i}] = {x}");
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn softmax_matches_the_per_span_softmax_and_is_zero_outside() {
        let d = Device::flex();
        let seg = Segments::new(WIDTH, &SPANS, &d);
        let x = t2(logits(), [3, WIDTH], &d);
        let got = vec2(seg.softmax(x.clone()));
        let parts = reference_softmax(x);
        for r in 0..3 {
            let row = &got[r * WIDTH..(r + 1) * WIDTH];
            for (&(s, w), part) in SPANS.iter().zip(&parts) {
                let expect = vec2(part.clone());
                close(&row[s..s + w], &expect[r * w..(r + 1) * w], 1e-5, "softmax");
            }
            for p in [0, 5, 6] {
                assert_eq!(row[p], 0.0, "outside the spans");
            }
        }
    }

    #[test]
    fn map_outside_touches_the_loose_positions_only() {
        let ad = Device::flex().autodiff();
        let seg = Segments::new(WIDTH, &SPANS, &ad);
        let v: Vec<f32> = (0..3 * WIDTH).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = t2(v.clone(), [3, WIDTH], &ad).require_grad();
        let y = seg.map_outside(x.clone(), Tensor::tanh);
        let got = vec2(y.clone().detach());
        let grad = vec2(x.grad(&y.sum().backward()).unwrap());
        for (i, (&g, &d)) in got.iter().zip(&grad).enumerate() {
            let loose = [0, 5, 6].contains(&(i % WIDTH));
            let (want, slope) = if loose {
                (v[i].tanh(), 1.0 - v[i].tanh().powi(2))
            } else {
                (0.0, 0.0)
            };
            assert!((g - want).abs() < 1e-6, "value at {i}: {g} vs {want}");
            assert!((d - slope).abs() < 1e-5, "gradient at {i}: {d} vs {slope}");
        }
    }

    #[test]
    fn cross_entropy_and_its_gradient_match_the_per_span_computation() {
        let ad = Device::flex().autodiff();
        let seg = Segments::new(WIDTH, &SPANS, &ad);
        let t = t2(targets(), [3, WIDTH], &ad);
        // A weight per (row, span) so that each entry's gradient counts differently.
        let w = t2((1..=9).map(|v| v as f32 * 0.3).collect(), [3, 3], &ad);

        let x = t2(logits(), [3, WIDTH], &ad).require_grad();
        let ce = seg.cross_entropy(x.clone(), t.clone());
        let ce_values = vec2(ce.clone().detach());
        let grads = (ce * w.clone()).sum().backward();
        let grad = vec2(x.grad(&grads).unwrap());

        let x_ref = t2(logits(), [3, WIDTH], &ad).require_grad();
        let ce_ref = reference_cross_entropy(x_ref.clone(), t);
        let ref_values = vec2(ce_ref.clone().detach());
        let grads_ref = (ce_ref * w).sum().backward();
        let grad_ref = vec2(x_ref.grad(&grads_ref).unwrap());

        close(&ce_values, &ref_values, 1e-5, "cross-entropy");
        close(&grad, &grad_ref, 1e-5, "gradient");
        for r in 0..3 {
            for p in [0, 5, 6] {
                assert_eq!(grad[r * WIDTH + p], 0.0, "no gradient outside the spans");
            }
        }
    }

    #[test]
    fn softmax_gradient_matches_the_per_span_computation() {
        let ad = Device::flex().autodiff();
        let seg = Segments::new(WIDTH, &SPANS, &ad);
        let w = t2(
            (0..3 * WIDTH)
                .map(|i| ((i * 7 % 11) as f32) - 5.0)
                .collect(),
            [3, WIDTH],
            &ad,
        );
        let x = t2(logits(), [3, WIDTH], &ad).require_grad();
        let grads = (seg.softmax(x.clone()) * w.clone()).sum().backward();
        let grad = vec2(x.grad(&grads).unwrap());

        let x_ref = t2(logits(), [3, WIDTH], &ad).require_grad();
        let weighted: Vec<Tensor<2>> = reference_softmax(x_ref.clone())
            .into_iter()
            .zip(SPANS)
            .map(|(p, (s, w_))| p * w.clone().narrow(1, s, w_))
            .collect();
        let total = weighted
            .into_iter()
            .map(|p| p.sum())
            .reduce(|a, b| a + b)
            .unwrap();
        let grad_ref = vec2(x_ref.grad(&total.backward()).unwrap());
        close(&grad, &grad_ref, 1e-4, "softmax gradient");
    }
}
