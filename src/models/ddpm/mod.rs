//! DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"): a UNet that predicts
//! the noise in `x_t` given the step `t` (and optionally a class), and the noise schedules.
//!
//! The UNet: a 3x3 input convolution, then per resolution level `res_blocks` residual blocks
//! (GroupNorm, SiLU, 3x3 convolution, the time embedding added after the first convolution,
//! dropout before the second) with self-attention at the configured resolutions and a strided
//! convolution down; a middle of block, attention, block; the mirror path up, each block taking
//! the skip of its partner by concatenation, nearest-neighbour upsampling and a convolution;
//! GroupNorm, SiLU and a 3x3 convolution out. The time embedding is sinusoidal (computed on
//! the host) followed by an MLP; a class embedding (with one extra "no class" entry for
//! classifier-free guidance, Ho & Salimans 2022) is added to it.

pub mod schedule;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear,
    LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};

use crate::config::DdpmConfig;

pub use schedule::Schedule;

fn conv3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).init(device)
}

/// GroupNorm -> SiLU -> conv, twice, with the time embedding added in between.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(
        cin: usize,
        cout: usize,
        temb: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> ResBlock {
        ResBlock {
            norm1: norm(groups, cin, device),
            conv1: conv3(cin, cout, 1, device),
            time: LinearConfig::new(temb, cout).init(device),
            norm2: norm(groups, cout, device),
            dropout: DropoutConfig::new(dropout).init(),
            conv2: conv3(cout, cout, 1, device),
            skip: (cin != cout).then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device)),
        }
    }

    /// x: [b, cin, h, w], temb: [b, temb] (already through SiLU) -> [b, cout, h, w]
    pub fn forward(&self, x: Tensor<4>, temb: Tensor<2>) -> Tensor<4> {
        let h = self
            .conv1
            .forward(activation::silu(self.norm1.forward(x.clone())));
        let t = self.time.forward(temb);
        let [b, c] = t.dims();
        let h = h + t.reshape([b, c, 1, 1]);
        let h = self.conv2.forward(
            self.dropout
                .forward(activation::silu(self.norm2.forward(h))),
        );
        let skip = match &self.skip {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + skip
    }
}

/// Multi-head self-attention over the pixels of a feature map, with a residual connection.
#[derive(Module, Debug)]
pub struct Attention {
    norm: GroupNorm,
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn new(channels: usize, heads: usize, groups: usize, device: &Device) -> Attention {
        Attention {
            norm: norm(groups, channels, device),
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            out: LinearConfig::new(channels, channels).init(device),
            heads,
        }
    }

    /// x: [b, c, h, w] -> [b, c, h, w]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (n, heads) = (h * w, self.heads);
        let d = c / heads;
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([b, c, n])
            .swap_dims(1, 2);
        let qkv = self.qkv.forward(tokens); // [b, n, 3c]
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * c, c)
                .reshape([b, n, heads, d])
                .swap_dims(1, 2) // [b, heads, n, d]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt());
        let attended = activation::softmax(scores, 3).matmul(v); // [b, heads, n, d]
        let merged = attended.swap_dims(1, 2).reshape([b, n, c]);
        let out = self
            .out
            .forward(merged)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        x + out
    }
}

/// One resolution level of the down or up path.
#[derive(Module, Debug)]
pub struct Level {
    blocks: Vec<ResBlock>,
    attention: Vec<Attention>,
    /// Down path: a strided 3x3 convolution; up path: nearest x2 then a 3x3 convolution.
    resample: Option<Conv2d>,
}

/// The noise-prediction network.
#[derive(Module, Debug)]
pub struct UNet {
    input: Conv2d,
    time1: Linear,
    time2: Linear,
    /// `classes + 1` rows; the last is "no class".
    class: Option<Embedding>,
    down: Vec<Level>,
    mid1: ResBlock,
    mid_attention: Attention,
    mid2: ResBlock,
    up: Vec<Level>,
    out_norm: GroupNorm,
    output: Conv2d,
    base_channels: usize,
}

/// The shape of the data a UNet is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub size: usize,
    /// Number of classes for a class-conditional model (0: unconditional).
    pub classes: usize,
}

/// Build a UNet for `shape`. The config is validated beforehand ([`check`]).
pub fn init(m: &DdpmConfig, shape: ImageShape, device: &Device) -> UNet {
    let base = m.base_channels;
    let temb = 4 * base;
    let g = m.groups;
    let levels = m.channel_mults.len();
    let mut down = Vec::with_capacity(levels);
    let mut ch = base;
    let sizes = level_sizes(shape.size, levels);
    let mut skips = Vec::new();
    for (i, &mult) in m.channel_mults.iter().enumerate() {
        let out = base * mult;
        let mut blocks = Vec::new();
        let mut attention = Vec::new();
        for _ in 0..m.res_blocks {
            blocks.push(ResBlock::new(ch, out, temb, g, m.dropout, device));
            ch = out;
            if m.attention_resolutions.contains(&sizes[i]) {
                attention.push(Attention::new(ch, m.heads, g, device));
            }
            skips.push(ch);
        }
        let last = i + 1 == levels;
        down.push(Level {
            blocks,
            attention,
            resample: (!last).then(|| conv3(ch, ch, 2, device)),
        });
    }
    let mid1 = ResBlock::new(ch, ch, temb, g, m.dropout, device);
    let mid_attention = Attention::new(ch, m.heads, g, device);
    let mid2 = ResBlock::new(ch, ch, temb, g, m.dropout, device);
    let mut up = Vec::with_capacity(levels);
    for (i, &mult) in m.channel_mults.iter().enumerate().rev() {
        let out = base * mult;
        let mut blocks = Vec::new();
        let mut attention = Vec::new();
        for _ in 0..m.res_blocks {
            let skip = skips.pop().expect("one skip per down block");
            blocks.push(ResBlock::new(ch + skip, out, temb, g, m.dropout, device));
            ch = out;
            if m.attention_resolutions.contains(&sizes[i]) {
                attention.push(Attention::new(ch, m.heads, g, device));
            }
        }
        up.push(Level {
            blocks,
            attention,
            resample: (i > 0).then(|| conv3(ch, ch, 1, device)),
        });
    }
    UNet {
        input: conv3(shape.channels, base, 1, device),
        time1: LinearConfig::new(base, temb).init(device),
        time2: LinearConfig::new(temb, temb).init(device),
        class: (shape.classes > 0)
            .then(|| EmbeddingConfig::new(shape.classes + 1, temb).init(device)),
        down,
        mid1,
        mid_attention,
        mid2,
        up,
        out_norm: norm(g, ch, device),
        output: conv3(ch, shape.channels, 1, device),
        base_channels: base,
    }
}

/// Spatial sizes of the levels for an input of side `size`: each down step halves (rounding
/// up, as a stride-2 convolution with padding 1 does).
pub fn level_sizes(size: usize, levels: usize) -> Vec<usize> {
    let mut out = vec![size];
    for _ in 1..levels {
        out.push(out[out.len() - 1].div_ceil(2));
    }
    out
}

/// The sinusoidal embedding of integer steps (Vaswani et al. 2017, as in DDPM), `[t.len(), dim]`.
pub fn timestep_embedding(t: &[usize], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0.0f32; t.len() * dim];
    for (row, &step) in out.chunks_exact_mut(dim).zip(t) {
        for i in 0..half {
            let freq = (-(10_000f64.ln()) * i as f64 / half as f64).exp();
            let arg = step as f64 * freq;
            row[i] = arg.sin() as f32;
            row[half + i] = arg.cos() as f32;
        }
    }
    out
}

impl UNet {
    /// x: [b, c, s, s] (noised images), t: one step per image, classes: one class index per
    /// image for a conditional model (index `classes` or `None`: "no class") -> predicted noise.
    pub fn forward(&self, x: Tensor<4>, t: &[usize], classes: Option<&[u32]>) -> Tensor<4> {
        let device = x.device();
        let b = t.len();
        let base = self.base_channels;
        let emb = Tensor::<2>::from_data(
            TensorData::new(timestep_embedding(t, base), [b, base]),
            &device,
        );
        let mut temb = self
            .time2
            .forward(activation::silu(self.time1.forward(emb)));
        if let Some(table) = &self.class {
            // No classes for a conditional model: the "no class" row (the last).
            let null = table.weight.val().dims()[0] as i32 - 1;
            let idx: Vec<i32> = match classes {
                Some(c) => c.iter().map(|&v| v as i32).collect(),
                None => vec![null; b],
            };
            let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [b, 1]), &device);
            let e = table.forward(idx);
            let [_, _, d] = e.dims();
            temb = temb + e.reshape([b, d]);
        }
        let temb = activation::silu(temb);

        let mut h = self.input.forward(x);
        let mut skips = Vec::new();
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(h, temb.clone());
                if let Some(a) = level.attention.get(i) {
                    h = a.forward(h);
                }
                skips.push(h.clone());
            }
            if let Some(conv) = &level.resample {
                h = conv.forward(h);
            }
        }
        h = self.mid1.forward(h, temb.clone());
        h = self.mid_attention.forward(h);
        h = self.mid2.forward(h, temb.clone());
        for level in &self.up {
            for (i, block) in level.blocks.iter().enumerate() {
                let skip = skips.pop().expect("one skip per down block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), temb.clone());
                if let Some(a) = level.attention.get(i) {
                    h = a.forward(h);
                }
            }
            if let Some(conv) = &level.resample {
                // The partner level's size: nearest x2, cropped when the down step rounded up.
                let target = skips
                    .last()
                    .map(|s| s.dims()[2])
                    .unwrap_or_else(|| h.dims()[2] * 2);
                h = conv.forward(upsample(h, target));
            }
        }
        self.output
            .forward(activation::silu(self.out_norm.forward(h)))
    }
}

/// Nearest-neighbour x2 upsampling to side `target` (`2 * side` or one less).
fn upsample(x: Tensor<4>, target: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let up = x
        .reshape([b, c, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([b, c, 2 * h, 2 * w]);
    if target == 2 * h {
        up
    } else {
        up.narrow(2, 0, target).narrow(3, 0, target)
    }
}

/// Parameters of a model.
pub fn parameter_count(model: &UNet) -> usize {
    model.num_params()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(attention: Vec<usize>) -> DdpmConfig {
        DdpmConfig {
            base_channels: 8,
            channel_mults: vec![1, 2],
            res_blocks: 1,
            attention_resolutions: attention,
            heads: 2,
            groups: 4,
            ..DdpmConfig::default()
        }
    }

    #[test]
    fn output_shape_equals_input_shape() {
        let device = Device::flex();
        for (shape, attention, classes) in [
            ((1, 28), vec![14], 10),
            ((3, 32), vec![16], 0),
            ((1, 7), vec![4], 0),
        ] {
            let (channels, size) = shape;
            let m = tiny(attention);
            let net = init(
                &m,
                ImageShape {
                    channels,
                    size,
                    classes,
                },
                &device,
            );
            let x = Tensor::<4>::zeros([2, channels, size, size], &device);
            let labels = [1u32, classes as u32];
            let y = net.forward(x, &[0, 999], (classes > 0).then_some(&labels[..]));
            assert_eq!(y.dims(), [2, channels, size, size]);
        }
        // The shipped MNIST layout: [1, 2, 2] with attention at 7.
        let m = DdpmConfig::default();
        let net = init(
            &m,
            ImageShape {
                channels: 1,
                size: 28,
                classes: 10,
            },
            &device,
        );
        let y = net.forward(
            Tensor::<4>::zeros([1, 1, 28, 28], &device),
            &[500],
            Some(&[3]),
        );
        assert_eq!(y.dims(), [1, 1, 28, 28]);
    }

    #[test]
    fn timestep_embedding_is_sin_then_cos() {
        let e = timestep_embedding(&[0, 3], 4);
        assert_eq!(&e[..4], &[0.0, 0.0, 1.0, 1.0]);
        // freq_0 = 1, freq_1 = 1e-2.
        assert!((e[4] - 3f32.sin()).abs() < 1e-6);
        assert!((e[5] - 0.03f32.sin()).abs() < 1e-6);
        assert!((e[6] - 3f32.cos()).abs() < 1e-6);
    }
}
