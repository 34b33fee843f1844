//! CTGAN (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN"): a conditional
//! generator of residual blocks and a PacGAN critic trained with WGAN-GP.
//!
//! Burn's autodiff is first-order only, so the gradient penalty cannot differentiate through
//! a backward pass. The critic is Linear -> LeakyReLU -> Dropout -> ... -> Linear, so its input
//! gradient is a product of the weight matrices and the same activation slopes and dropout masks
//! as the forward pass ([`Critic::input_gradient`]); the penalty is built from those tensor ops
//! and one ordinary backward differentiates it with respect to the weights.

pub mod host;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};

use crate::config::CtganConfig;
use crate::models::host::{HostLayer, HostNet, Wiring};
use crate::models::spans::Segments;

/// Linear -> BatchNorm -> ReLU, concatenated with the block's input.
#[derive(Module, Debug)]
pub struct Residual {
    fc: Linear,
    bn: BatchNorm,
    relu: Relu,
}

impl Residual {
    /// x: [batch, i] (the block's input without the conditional vector) -> [batch, o + i]
    pub fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<1, Int>>) -> Tensor<2> {
        let h = self
            .relu
            .forward(self.bn.forward(linear_with_cond(&self.fc, x.clone(), cond)));
        Tensor::cat(vec![h, x], 1)
    }
}

/// `linear` applied to `[x | cond]`, where `cond` is a one-hot conditional vector given as the
/// position of its 1 in each row (`None`: no conditional vector). The weights' last rows belong
/// to the conditional vector, and its product with them is the row at that position: a lookup
/// instead of a product over mostly zeros.
fn linear_with_cond(linear: &Linear, x: Tensor<2>, cond: Option<&Tensor<1, Int>>) -> Tensor<2> {
    let Some(cond) = cond else {
        return linear.forward(x);
    };
    let w = linear.weight.val();
    let [inputs, _] = w.dims();
    let [_, dense] = x.dims();
    let y = x.matmul(w.clone().narrow(0, 0, dense))
        + w.narrow(0, dense, inputs - dense).select(0, cond.clone());
    match &linear.bias {
        Some(b) => y + b.val().unsqueeze(),
        None => y,
    }
}

/// z + cond -> residual blocks -> Linear to the data width. The blocks' outputs are
/// concatenated before their inputs, so every layer's input ends with the conditional vector.
#[derive(Module, Debug)]
pub struct Generator {
    blocks: Vec<Residual>,
    out: Linear,
}

impl Generator {
    /// z: [batch, embedding_dim]; `cond`: the position of the 1 in each row's conditional
    /// vector ([`CondSampler::indices`](crate::data::sampler::CondSampler::indices)), `None`
    /// for a table without discrete columns -> raw output [batch, data_dim]
    pub fn forward(&self, z: Tensor<2>, cond: Option<&Tensor<1, Int>>) -> Tensor<2> {
        let mut h = z;
        for b in &self.blocks {
            h = b.forward(h, cond);
        }
        linear_with_cond(&self.out, h, cond)
    }

    /// This generator in eval mode on the host (BatchNorm on its running statistics), for
    /// sampling on the CPU; `embedding_dim` is the width of z.
    pub fn to_host(&self, embedding_dim: usize) -> HostNet {
        let mut layers: Vec<HostLayer> = self
            .blocks
            .iter()
            .map(|b| HostLayer::linear(&b.fc).then_batch_norm(&b.bn).then_relu())
            .collect();
        layers.push(HostLayer::linear(&self.out));
        HostNet::new(embedding_dim, Wiring::Residual, layers)
    }
}

/// Conditional vectors by their nonzero entries: row r is the sum over j of `weight[r, j]`
/// times the one-hot vector with its 1 at `index[r, j]`. CTGAN's are one-hot (one entry of
/// weight 1); the gradient penalty's interpolations between two rows have two.
#[derive(Debug, Clone)]
pub struct SparseCond {
    /// [batch, k]
    pub index: Tensor<2, Int>,
    /// [batch, k]; `None`: every entry is 1.
    pub weight: Option<Tensor<2>>,
}

/// The PacGAN critic: `pac` rows are judged together.
#[derive(Module, Debug)]
pub struct Critic {
    hidden: Vec<Linear>,
    out: Linear,
    pac: usize,
    slope: f64,
}

/// What a critic forward pass keeps for its input gradient.
#[derive(Debug, Clone)]
pub struct CriticPass {
    /// [batch / pac, 1]
    pub score: Tensor<2>,
    /// Pre-activations of each hidden layer, [groups, width].
    pre: Vec<Tensor<2>>,
}

impl CriticPass {
    /// The part of a pass over stacked inputs that judged groups `start..start + len`.
    pub fn rows(&self, start: usize, len: usize) -> CriticPass {
        CriticPass {
            score: self.score.clone().narrow(0, start, len),
            pre: self
                .pre
                .iter()
                .map(|p| p.clone().narrow(0, start, len))
                .collect(),
        }
    }
}

impl Critic {
    pub fn pac(&self) -> usize {
        self.pac
    }

    /// Widths of the hidden layers (for drawing dropout masks).
    pub fn hidden_dims(&self) -> Vec<usize> {
        self.hidden.iter().map(|l| l.weight.dims()[1]).collect()
    }

    /// x: [batch, width] with batch a multiple of pac; `masks`: one dropout mask per hidden
    /// layer, [batch / pac, hidden width], already scaled by 1 / (1 - p) (ones in eval mode).
    /// `cond`: the rows' conditional vectors by their nonzero entries, in which case `x` holds
    /// the data part of each row only; `None`: `x` holds whole rows.
    pub fn forward(
        &self,
        x: Tensor<2>,
        cond: Option<&SparseCond>,
        masks: &[Tensor<2>],
    ) -> CriticPass {
        assert_eq!(masks.len(), self.hidden.len(), "one mask per hidden layer");
        let mut p = match cond {
            Some(cond) => self.first_layer_sparse(x, cond),
            None => {
                let [b, w] = x.dims();
                self.hidden[0].forward(x.reshape([b / self.pac, w * self.pac]))
            }
        };
        let mut pre = Vec::with_capacity(self.hidden.len());
        for (l, mask) in masks.iter().enumerate() {
            let h = activation::leaky_relu(p.clone(), self.slope) * mask.clone();
            pre.push(p);
            p = match self.hidden.get(l + 1) {
                Some(layer) => layer.forward(h),
                None => self.out.forward(h),
            };
        }
        CriticPass { score: p, pre }
    }

    /// The first layer on the data parts x [batch, w] and sparse conditional vectors. Its
    /// weight rows are, for each of the pac rows of a group, w data rows then cond_dim
    /// conditional rows. The data parts are one batched product per position in the group, on
    /// views of the weight (nothing copied); the conditional parts are a lookup of the rows of
    /// the nonzero entries, weighted and summed over each group.
    fn first_layer_sparse(&self, x: Tensor<2>, cond: &SparseCond) -> Tensor<2> {
        let layer = &self.hidden[0];
        let weight = layer.weight.val();
        let [inputs, out] = weight.dims();
        let [b, w] = x.dims();
        let pac = self.pac;
        let groups = b / pac;
        let per_row = inputs / pac;
        // [pac, groups, w] x [pac, w, h] -> [pac, groups, h], summed over the group.
        let by_position = x.reshape([groups, pac, w]).swap_dims(0, 1);
        let data_rows = weight.clone().reshape([pac, per_row, out]).narrow(1, 0, w);
        let dense = by_position
            .matmul(data_rows)
            .sum_dim(0)
            .reshape([groups, out]);
        // Row r of the batch is row r % pac of its group: its conditional rows start at
        // (r % pac) * per_row + w.
        let device = weight.device();
        let start: Vec<i32> = (0..b).map(|r| ((r % pac) * per_row + w) as i32).collect();
        let start = Tensor::<1, Int>::from_data(TensorData::new(start, [b]), &device);
        let [_, k] = cond.index.dims();
        let mut looked_up: Option<Tensor<2>> = None;
        for j in 0..k {
            let idx = cond.index.clone().narrow(1, j, 1).reshape([b]) + start.clone();
            let mut rows = weight.clone().select(0, idx);
            if let Some(weight) = &cond.weight {
                rows = rows * weight.clone().narrow(1, j, 1);
            }
            looked_up = Some(match looked_up {
                Some(sum) => sum + rows,
                None => rows,
            });
        }
        let looked_up = looked_up
            .expect("at least one entry per row")
            .reshape([groups, pac, out])
            .sum_dim(1)
            .reshape([groups, out]);
        let y = dense + looked_up;
        match &layer.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }

    /// The gradient of the summed scores with respect to the packed input,
    /// [batch / pac, pac * width], as differentiable tensor ops of the weights:
    /// delta_L = (s_L * m_L) * w_out^T; delta_l = (delta_{l+1} W_{l+1}^T) * s_l * m_l;
    /// dD/dx = delta_1 W_1^T, where s_l is the LeakyReLU slope at the pre-activation
    /// (1 or `slope`, a constant almost everywhere) and m_l the dropout mask.
    pub fn input_gradient(&self, pass: &CriticPass, masks: &[Tensor<2>]) -> Tensor<2> {
        let slope = |p: &Tensor<2>| {
            p.clone()
                .detach()
                .greater_elem(0.0)
                .float()
                .mul_scalar(1.0 - self.slope)
                .add_scalar(self.slope)
        };
        let n = self.hidden.len();
        let w_out = self.out.weight.val().transpose(); // [1, h_L]
        let mut delta = w_out * slope(&pass.pre[n - 1]) * masks[n - 1].clone();
        for l in (0..n - 1).rev() {
            let w_next = self.hidden[l + 1].weight.val().transpose(); // [h_{l+1}, h_l]
            delta = delta.matmul(w_next) * slope(&pass.pre[l]) * masks[l].clone();
        }
        delta.matmul(self.hidden[0].weight.val().transpose())
    }

    /// WGAN-GP penalty lambda * mean over pac groups of (||dD/dx|| - 1)^2.
    pub fn gradient_penalty(
        &self,
        pass: &CriticPass,
        masks: &[Tensor<2>],
        lambda: f64,
    ) -> Tensor<1> {
        let g = self.input_gradient(pass, masks);
        let norm = g.powf_scalar(2.0).sum_dim(1).add_scalar(1e-12).sqrt();
        norm.sub_scalar(1.0)
            .powf_scalar(2.0)
            .mean()
            .mul_scalar(lambda)
    }
}

/// Generator and critic; field names are checkpoint keys.
#[derive(Module, Debug)]
pub struct Ctgan {
    pub generator: Generator,
    pub critic: Critic,
}

impl Ctgan {
    /// The weights as burnpack bytes. BatchNorm's running statistics hold their last update
    /// apart until they are synchronized, and a record taken directly would miss it; `valid()`
    /// synchronizes them (parameter ids are kept, so optimizer state still matches).
    pub fn to_bytes(&self) -> Result<burn::tensor::Bytes, burn::store::RecordError> {
        self.valid().into_record().into_bytes()
    }
}

/// Build a CTGAN for rows of width `data_dim` and conditional vectors of width `cond_dim`.
pub fn init(config: &CtganConfig, data_dim: usize, cond_dim: usize, device: &Device) -> Ctgan {
    let model = uninitialized(config, data_dim, cond_dim, device);
    model.visit(&mut Materialize);
    model
}

/// The model with its parameters not yet drawn (Burn draws them on first use), to load
/// weights into: loading replaces them, so drawing them first would be wasted work.
pub fn uninitialized(
    config: &CtganConfig,
    data_dim: usize,
    cond_dim: usize,
    device: &Device,
) -> Ctgan {
    let mut blocks = Vec::new();
    let mut d = config.embedding_dim + cond_dim;
    for &h in &config.generator_dims {
        blocks.push(Residual {
            fc: LinearConfig::new(d, h).init(device),
            bn: BatchNormConfig::new(h).init(device),
            relu: Relu::new(),
        });
        d += h;
    }
    let generator = Generator {
        blocks,
        out: LinearConfig::new(d, data_dim).init(device),
    };
    let mut hidden = Vec::new();
    let mut d = (data_dim + cond_dim) * config.pac;
    for &h in &config.discriminator_dims {
        hidden.push(LinearConfig::new(d, h).init(device));
        d = h;
    }
    let critic = Critic {
        hidden,
        out: LinearConfig::new(d, 1).init(device),
        pac: config.pac,
        slope: 0.2,
    };
    Ctgan { generator, critic }
}

/// Initializes every parameter now. Burn initializes parameters lazily and shares that state
/// between clones: a copy made with `no_grad()` before then would freeze the original too.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Apply the layout's activations to raw generator output: tanh on scalar spans,
/// Gumbel-softmax with temperature `tau` on softmax spans (`softmax`: the layout's softmax
/// spans, [`Segments::softmaxes`]; `gumbel`: [batch, width] of Gumbel(0, 1) noise; zeros give a
/// plain softmax).
pub fn activate(raw: Tensor<2>, softmax: &Segments, gumbel: Tensor<2>, tau: f64) -> Tensor<2> {
    softmax.map_outside(raw.clone(), Tensor::tanh) + softmax.softmax((raw + gumbel).div_scalar(tau))
}

/// The discrete columns' spans in the data row and in the conditional vector, as tensors
/// built once for [`condition_loss`].
#[derive(Debug, Clone)]
pub struct Conditioning {
    spans: Segments,
    /// [cond_dim, width]: moves a conditional vector to the data positions of its columns.
    place: Tensor<2>,
}

impl Conditioning {
    /// `spans`: for each discrete column, (its offset in the data layout, its offset in the
    /// conditional vector, its width); rows `width` wide, conditional vectors `cond_dim`.
    pub fn new(
        width: usize,
        cond_dim: usize,
        spans: &[(usize, usize, usize)],
        device: &Device,
    ) -> Conditioning {
        let mut place = vec![0.0f32; cond_dim * width];
        for &(data_start, cond_start, w) in spans {
            for j in 0..w {
                place[(cond_start + j) * width + data_start + j] = 1.0;
            }
        }
        let data: Vec<(usize, usize)> = spans.iter().map(|&(d, _, w)| (d, w)).collect();
        Conditioning {
            spans: Segments::new(width, &data, device),
            place: Tensor::from_data(TensorData::new(place, [cond_dim, width]), device),
        }
    }
}

/// The generator's conditioning loss: cross-entropy of each discrete column's raw logits
/// against the category in the conditional vector, counted only for the conditioned column
/// (`mask`: [batch, n_discrete]), summed and divided by the batch size.
pub fn condition_loss(
    raw: Tensor<2>,
    cond: Tensor<2>,
    mask: Tensor<2>,
    conditioning: &Conditioning,
) -> Tensor<1> {
    let [b, _] = raw.dims();
    let target = cond.matmul(conditioning.place.clone());
    (conditioning.spans.cross_entropy(raw, target) * mask)
        .sum()
        .div_scalar(b as f64)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::data::layout::Layout;

    fn t2(v: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    /// Equal up to `tol`, relative to 1 + |b|.
    fn assert_close(a: Tensor<2>, b: Tensor<2>, tol: f32) {
        let a: Vec<f32> = a.into_data().try_into_vec().unwrap();
        let b: Vec<f32> = b.into_data().try_into_vec().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn index(v: Vec<i32>, d: &Device) -> Tensor<1, Int> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), d)
    }

    pub(super) fn values(seed: u32, n: usize) -> Vec<f32> {
        // A fixed, irregular sequence in [-1, 1].
        (0..n)
            .map(|i| ((i as f32 + 1.0) * 0.7548 + seed as f32 * 0.5698).sin())
            .collect()
    }

    /// Replaces every float parameter by a fixed irregular sequence, one per parameter.
    pub(super) struct Fixed(pub(super) u32);

    impl burn::module::ModuleMapper for Fixed {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            let seed = self.0 + 1;
            param.map(|t| {
                let shape = t.shape();
                let n = shape.num_elements();
                let v: Vec<f32> = values(seed, n).into_iter().map(|x| 0.8 * x).collect();
                let fixed = Tensor::from_data(TensorData::new(v, shape), &t.device());
                if t.is_require_grad() {
                    fixed.require_grad()
                } else {
                    fixed
                }
            })
        }
    }

    /// A small critic: 2 rows of 3 values packed (pac 2), hidden [5, 4].
    fn critic(d: &Device) -> (Critic, Vec<Tensor<2>>, Tensor<2>) {
        let config = CtganConfig {
            discriminator_dims: vec![5, 4],
            pac: 2,
            ..CtganConfig::default()
        };
        // Fixed weights, not the device's random stream (shared by tests running in parallel),
        // so that no finite difference below straddles a kink of a leaky ReLU.
        let model = init(&config, 2, 1, d).map(&mut Fixed(0));
        let masks = vec![
            t2(vec![2., 0., 2., 2., 0., 2., 2., 2., 0., 2.], [2, 5], d),
            t2(vec![2., 2., 0., 2., 0., 2., 2., 2.], [2, 4], d),
        ];
        let x = t2(values(1, 12), [4, 3], d);
        (model.critic, masks, x)
    }

    fn total(critic: &Critic, x: Tensor<2>, masks: &[Tensor<2>]) -> f64 {
        f64::from(
            critic
                .forward(x, None, masks)
                .score
                .sum()
                .into_scalar::<f32>(),
        )
    }

    #[test]
    fn a_copy_without_gradients_leaves_a_fresh_model_trainable() {
        let d = Device::flex().autodiff();
        let config = CtganConfig::default();
        let model = init(&config, 6, 3, &d);
        let frozen = model.generator.clone().no_grad();
        assert!(!frozen.out.weight.is_require_grad());
        // The training loop's generator step differentiates the original.
        assert!(model.generator.out.weight.is_require_grad());
        let z = Tensor::<2>::ones([4, config.embedding_dim], &d);
        let cond = index(vec![0, 2, 1, 0], &d);
        let grads = model.generator.forward(z, Some(&cond)).sum().backward();
        assert!(model.generator.out.weight.grad(&grads).is_some());
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let d = Device::flex();
        let (critic, masks, x) = critic(&d);
        let pass = critic.forward(x.clone(), None, &masks);
        let grad: Vec<f32> = critic
            .input_gradient(&pass, &masks)
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(grad.len(), 12, "[groups, pac * width]");
        let base: Vec<f32> = x.into_data().try_into_vec().unwrap();
        let eps = 1e-3;
        for i in 0..12 {
            // Packed position i of group g is row 2g + i / 3 (within the group), column i % 3.
            let (group, within) = (i / 6, i % 6);
            let flat = (2 * group + within / 3) * 3 + within % 3;
            let mut plus = base.clone();
            plus[flat] += eps;
            let mut minus = base.clone();
            minus[flat] -= eps;
            let fd = (total(&critic, t2(plus, [4, 3], &d), &masks)
                - total(&critic, t2(minus, [4, 3], &d), &masks))
                / (2.0 * f64::from(eps));
            let g = f64::from(grad[group * 6 + within]);
            assert!(
                (fd - g).abs() < 2e-3,
                "position {i}: finite difference {fd}, explicit {g}"
            );
        }
    }

    #[test]
    fn sparse_conditional_entries_equal_the_product_with_the_dense_vectors() {
        let d = Device::flex().autodiff();
        // pac 2, 3 data columns and 4 conditional ones per row, hidden [5, 4].
        let config = CtganConfig {
            discriminator_dims: vec![5, 4],
            pac: 2,
            ..CtganConfig::default()
        };
        let critic = init(&config, 3, 4, &d).critic;
        let masks = vec![
            t2(values(5, 3 * 5), [3, 5], &d).greater_elem(0.0).float() * 2.0,
            t2(values(6, 3 * 4), [3, 4], &d).greater_elem(-0.5).float() * 2.0,
        ];
        let x = t2(values(7, 6 * 3), [6, 3], &d).require_grad();
        // Two entries per row: one-hot rows (the second entry weighs 0) and mixtures.
        let index: Vec<i32> = vec![0, 0, 3, 3, 1, 2, 2, 0, 3, 1, 1, 1];
        let weight: Vec<f32> = vec![1., 0., 1., 0., 0.3, 0.7, 0.9, 0.1, 1., 0., 0.5, 0.5];
        let mut dense = vec![0.0f32; 6 * 4];
        for r in 0..6 {
            for j in 0..2 {
                dense[r * 4 + index[2 * r + j] as usize] += weight[2 * r + j];
            }
        }
        let cond = SparseCond {
            index: Tensor::from_data(TensorData::new(index, [6, 2]), &d),
            weight: Some(t2(weight, [6, 2], &d)),
        };
        let whole = Tensor::cat(vec![x.clone(), t2(dense, [6, 4], &d)], 1);
        let sparse = critic.forward(x.clone(), Some(&cond), &masks);
        let product = critic.forward(whole, None, &masks);
        let close = |a, b| assert_close(a, b, 1e-5);
        close(
            sparse.score.clone().detach(),
            product.score.clone().detach(),
        );
        // The penalty sees the same pre-activations, and gradients reach the same weights.
        let loss = |pass: &CriticPass| {
            pass.score.clone().sum() + critic.gradient_penalty(pass, &masks, 10.0)
        };
        let g1 = loss(&sparse).backward();
        let g2 = loss(&product).backward();
        close(
            critic.hidden[0].weight.grad(&g1).unwrap(),
            critic.hidden[0].weight.grad(&g2).unwrap(),
        );
        close(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
    }

    #[test]
    fn penalty_gradient_matches_finite_differences() {
        let d = Device::flex().autodiff();
        let (mut critic, masks, x) = critic(&d);
        let w = critic.hidden[0].weight.val().detach();
        let [rows, cols] = w.dims();
        critic.hidden[0].weight = Param::from_tensor(w.clone().require_grad());
        let penalty = |c: &Critic| {
            let pass = c.forward(x.clone(), None, &masks);
            c.gradient_penalty(&pass, &masks, 10.0)
        };
        let p = penalty(&critic);
        let grads = p.backward();
        let analytic: Vec<f32> = critic.hidden[0]
            .weight
            .val()
            .grad(&grads)
            .expect("the first weight gets a gradient")
            .into_data()
            .try_into_vec()
            .unwrap();
        let base: Vec<f32> = w.into_data().try_into_vec().unwrap();
        let eps = 1e-3f32;
        let at = |v: Vec<f32>| {
            let mut c = critic.clone();
            c.hidden[0].weight = Param::from_tensor(t2(v, [rows, cols], &d));
            f64::from(penalty(&c).into_scalar::<f32>())
        };
        for i in (0..rows * cols).step_by(3) {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let fd = (at(plus) - at(minus)) / (2.0 * f64::from(eps));
            let g = f64::from(analytic[i]);
            assert!(
                (fd - g).abs() < 1e-2 * (1.0 + g.abs()),
                "weight {i}: finite difference {fd}, autodiff {g}"
            );
        }
    }

    /// tanh, softmax 3, tanh, softmax 2, softmax 4 (widths 1, 3, 1, 2, 4).
    fn mixed_layout() -> Layout {
        use crate::data::layout::Activation::{Softmax, Tanh};
        Layout::new([
            (Tanh, 1, 0),
            (Softmax, 3, 0),
            (Tanh, 1, 1),
            (Softmax, 2, 1),
            (Softmax, 4, 2),
        ])
    }

    fn softmax_of(cell: &[f32]) -> Vec<f32> {
        let max = cell.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = cell.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    #[test]
    fn activations_are_tanh_and_gumbel_softmax_per_span() {
        let d = Device::flex();
        let layout = mixed_layout();
        let (rows, width) = (3, layout.width());
        let raw = values(4, rows * width)
            .into_iter()
            .map(|v| 3.0 * v)
            .collect::<Vec<_>>();
        let gumbel = values(5, rows * width);
        let tau = 0.2;
        let out: Vec<f32> = activate(
            t2(raw.clone(), [rows, width], &d),
            &Segments::softmaxes(&layout, &d),
            t2(gumbel.clone(), [rows, width], &d),
            tau,
        )
        .into_data()
        .try_into_vec()
        .unwrap();
        for r in 0..rows {
            for span in layout.spans() {
                let at = r * width + span.start;
                let got = &out[at..at + span.width];
                let expect: Vec<f32> = match span.activation {
                    crate::data::layout::Activation::Tanh => vec![raw[at].tanh()],
                    crate::data::layout::Activation::Softmax => softmax_of(
                        &(0..span.width)
                            .map(|j| (raw[at + j] + gumbel[at + j]) / tau as f32)
                            .collect::<Vec<_>>(),
                    ),
                };
                for (g, e) in got.iter().zip(&expect) {
                    assert!(
                        (g - e).abs() < 1e-5,
                        "row {r}, span at {}: {g} vs {e}",
                        span.start
                    );
                }
            }
        }
    }

    #[test]
    fn conditioning_loss_is_the_cross_entropy_of_the_conditioned_column() {
        let d = Device::flex();
        let layout = mixed_layout();
        let width = layout.width();
        // Discrete columns: data spans at 1 (3), 5 (2), 7 (4); cond vector [3 | 2 | 4].
        let spans = [(1, 0, 3), (5, 3, 2), (7, 5, 4)];
        let raw = values(6, 2 * width)
            .into_iter()
            .map(|v| 2.0 * v)
            .collect::<Vec<_>>();
        // Row 0 conditioned on column 2, category 1; row 1 on column 0, category 2.
        let mut cond = vec![0.0; 2 * 9];
        cond[5 + 1] = 1.0;
        cond[9 + 2] = 1.0;
        let mask = vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let got = condition_loss(
            t2(raw.clone(), [2, width], &d),
            t2(cond, [2, 9], &d),
            t2(mask, [2, 3], &d),
            &Conditioning::new(width, 9, &spans, &d),
        )
        .into_scalar::<f32>();
        let p0 = softmax_of(&raw[7..11])[1];
        let p1 = softmax_of(&raw[width + 1..width + 4])[2];
        let expect = -(p0.ln() + p1.ln()) / 2.0;
        assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
    }

    /// The generator as the paper writes it: every layer takes the one-hot conditional vector
    /// as the last part of its input.
    fn forward_on_one_hot(g: &Generator, z: Tensor<2>, one_hot: Tensor<2>) -> Tensor<2> {
        let mut h = z;
        for b in &g.blocks {
            let x = Tensor::cat(vec![h.clone(), one_hot.clone()], 1);
            let a = b.relu.forward(b.bn.forward(b.fc.forward(x)));
            h = Tensor::cat(vec![a, h], 1);
        }
        g.out.forward(Tensor::cat(vec![h, one_hot], 1))
    }

    #[test]
    fn conditional_rows_looked_up_equal_the_product_with_the_one_hot_vector() {
        let d = Device::flex().autodiff();
        let config = CtganConfig {
            embedding_dim: 6,
            generator_dims: vec![5, 4],
            ..CtganConfig::default()
        };
        let cond_dim = 4;
        let generator = init(&config, 7, cond_dim, &d).generator;
        let picks = vec![3i32, 0, 2, 3, 1];
        let mut one_hot = vec![0.0f32; picks.len() * cond_dim];
        for (r, &p) in picks.iter().enumerate() {
            one_hot[r * cond_dim + p as usize] = 1.0;
        }
        let z = t2(values(4, 5 * 6), [5, 6], &d);
        let one_hot = t2(one_hot, [5, cond_dim], &d);
        // Training mode (batch statistics) and eval mode; output weights so that every output
        // position matters to the gradients.
        let weights = t2(values(9, 5 * 7), [5, 7], &d);
        let looked_up = generator.forward(z.clone(), Some(&index(picks, &d)));
        let product = forward_on_one_hot(&generator, z.clone(), one_hot.clone());
        let g1 = (looked_up.clone() * weights.clone()).sum().backward();
        let g2 = (product.clone() * weights).sum().backward();
        let close = |a, b| assert_close(a, b, 1e-4);
        close(looked_up.detach(), product.detach());
        for linear in [
            &generator.blocks[0].fc,
            &generator.blocks[1].fc,
            &generator.out,
        ] {
            close(
                linear.weight.grad(&g1).unwrap(),
                linear.weight.grad(&g2).unwrap(),
            );
        }
        let valid = generator.valid();
        let z = z.inner();
        let looked_up = valid.forward(z.clone(), Some(&index(vec![1, 1, 0, 2, 3], &z.device())));
        let mut one_hot = vec![0.0f32; 5 * cond_dim];
        for (r, p) in [1usize, 1, 0, 2, 3].into_iter().enumerate() {
            one_hot[r * cond_dim + p] = 1.0;
        }
        close(
            looked_up,
            forward_on_one_hot(&valid, z.clone(), t2(one_hot, [5, cond_dim], &z.device())),
        );
    }

    #[test]
    fn host_forward_equals_the_eval_mode_generator() {
        let ad = Device::flex().autodiff();
        let config = CtganConfig {
            embedding_dim: 6,
            generator_dims: vec![5, 4],
            ..CtganConfig::default()
        };
        // More rows than one host block, the last block partial.
        let rows = 600;
        for cond_dim in [4, 0] {
            let mut generator = init(&config, 7, cond_dim, &ad).generator;
            for block in &mut generator.blocks {
                block.bn.gamma = block.bn.gamma.clone().map(|g| g.mul_scalar(1.7));
                block.bn.beta = block.bn.beta.clone().map(|b| b.add_scalar(0.3));
                // Every unit's pre-BatchNorm mean well away from 0 whatever the random
                // weights (tests share the device's generator, so they vary from run to run):
                // the running means below move for certain.
                let bias = block.fc.bias.take().expect("Linear has a bias");
                block.fc.bias = Some(bias.map(|b| b.add_scalar(10.0)));
            }
            let picks: Vec<i32> = (0..rows).map(|r| (r * 7 % 4) as i32).collect();
            let cond = (cond_dim > 0).then_some(picks);
            // Training-mode passes move BatchNorm's running statistics away from 0 and 1.
            for seed in 0..3 {
                let z: Vec<f32> = values(seed, 50 * 6).iter().map(|v| 2.0 * v + 0.5).collect();
                let c = cond.as_ref().map(|c| index(c[..50].to_vec(), &ad));
                let _ = generator.forward(t2(z, [50, 6], &ad), c.as_ref());
            }
            let valid = generator.valid();
            let mean: Vec<f32> = valid.blocks[1]
                .bn
                .running_mean
                .value()
                .into_data()
                .try_into_vec()
                .unwrap();
            assert!(mean.iter().all(|m| m.abs() > 1e-3), "{mean:?}");
            let d = Device::flex();
            let z = values(11, rows * 6);
            let c = cond.as_ref().map(|c| index(c.clone(), &d));
            let burn = valid.forward(t2(z.clone(), [rows, 6], &d), c.as_ref());
            let host = valid.to_host(6).forward(&z, cond.as_deref());
            assert_close(t2(host, [rows, 7], &d), burn, 1e-5);
        }
    }

    #[test]
    fn generator_output_does_not_depend_on_the_batch_in_eval_mode() {
        let d = Device::flex();
        let model = init(&CtganConfig::default(), 7, 3, &d).valid();
        let z = t2(values(2, 4 * 128), [4, 128], &d);
        let cond = index(vec![2, 0, 1, 2], &d);
        let all: Vec<f32> = model
            .generator
            .forward(z.clone(), Some(&cond))
            .into_data()
            .try_into_vec()
            .unwrap();
        let first: Vec<f32> = model
            .generator
            .forward(z.narrow(0, 0, 1), Some(&cond.narrow(0, 0, 1)))
            .into_data()
            .try_into_vec()
            .unwrap();
        for (a, b) in all[..7].iter().zip(&first) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use burn::store::ModuleRecord;
    use burn::tensor::{Bytes, TensorData};

    #[test]
    fn saved_and_loaded_weights_keep_batchnorm_statistics() {
        let ad = Device::flex().autodiff();
        let config = CtganConfig::default();
        let model = init(&config, 7, 3, &ad);
        // A training-mode forward updates the running statistics.
        let x: Vec<f32> = (0..8 * 128)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let cond: Vec<i32> = vec![0, 1, 2, 0, 1, 2, 0, 1];
        let at = |d: &Device| {
            (
                Tensor::<2>::from_data(TensorData::new(x.clone(), [8, 128]), d),
                Tensor::<1, Int>::from_data(TensorData::new(cond.clone(), [8]), d),
            )
        };
        let (z, c) = at(&ad);
        let _ = model.generator.forward(z, Some(&c));
        let bytes = model.to_bytes().unwrap();
        let d = Device::flex();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
        let loaded = init(&config, 7, 3, &d)
            .try_load_record(record)
            .unwrap()
            .valid();
        let (z, c) = at(&d);
        let a: Vec<f32> = model
            .valid()
            .generator
            .forward(z.clone(), Some(&c))
            .into_data()
            .try_into_vec()
            .unwrap();
        let b: Vec<f32> = loaded
            .generator
            .forward(z, Some(&c))
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(a, b);
    }
}
