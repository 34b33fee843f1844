//! TVAE (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN", section 5 and the
//! reference TVAE): an MLP variational autoencoder over the encoded rows, with a learned
//! per-position output scale `sigma` for the tanh spans.

pub mod host;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::TvaeConfig;
use crate::data::layout::Layout;
use crate::models::host::{HostLayer, HostNet, Wiring};
use crate::models::spans::Segments;

/// `sigma` starts here and is clamped to [SIGMA_MIN, SIGMA_MAX] after every step.
pub const SIGMA_INIT: f32 = 0.1;
pub const SIGMA_MIN: f32 = 0.01;
pub const SIGMA_MAX: f32 = 1.0;

/// The approximate posterior q(z | x) = N(mu, exp(logvar)).
#[derive(Debug, Clone)]
pub struct Posterior {
    /// [batch, embedding_dim]
    pub mu: Tensor<2>,
    /// [batch, embedding_dim]
    pub logvar: Tensor<2>,
    /// exp(logvar / 2), computed once for the sample and the KL term.
    std: Tensor<2>,
}

impl Posterior {
    pub fn new(mu: Tensor<2>, logvar: Tensor<2>) -> Self {
        let std = logvar.clone().mul_scalar(0.5).exp();
        Posterior { mu, logvar, std }
    }

    /// Reparameterized sample z = mu + eps * exp(logvar / 2); eps: [batch, embedding_dim].
    pub fn sample(&self, eps: Tensor<2>) -> Tensor<2> {
        self.mu.clone() + eps * self.std.clone()
    }

    /// KL(q || N(0, I)) summed over the batch: -1/2 sum(1 + logvar - mu^2 - exp(logvar)),
    /// with exp(logvar) as the square of the standard deviation (one exponential fewer).
    pub fn kl(&self) -> Tensor<1> {
        (self.logvar.clone().add_scalar(1.0)
            - self.mu.clone().powf_scalar(2.0)
            - self.std.clone().powf_scalar(2.0))
        .sum()
        .mul_scalar(-0.5)
    }
}

/// x -> hidden ReLU layers -> (mu, logvar).
#[derive(Module, Debug)]
pub struct Encoder {
    hidden: Vec<Linear>,
    mu: Linear,
    logvar: Linear,
    relu: Relu,
}

impl Encoder {
    /// x: [batch, data_dim] -> posterior over [batch, embedding_dim]
    pub fn forward(&self, x: Tensor<2>) -> Posterior {
        let mut h = x;
        for layer in &self.hidden {
            h = self.relu.forward(layer.forward(h));
        }
        Posterior::new(self.mu.forward(h.clone()), self.logvar.forward(h))
    }
}

/// z -> hidden ReLU layers -> Linear to the data width; plus the learned sigma.
#[derive(Module, Debug)]
pub struct Decoder {
    hidden: Vec<Linear>,
    out: Linear,
    relu: Relu,
    /// [data_dim]; only the tanh positions are used.
    pub sigma: Param<Tensor<1>>,
}

impl Decoder {
    /// z: [batch, embedding_dim] -> raw output [batch, data_dim] (before activations)
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        let mut h = z;
        for layer in &self.hidden {
            h = self.relu.forward(layer.forward(h));
        }
        self.out.forward(h)
    }

    /// This decoder on the host, for sampling on the CPU; `embedding_dim` is the width of z.
    pub fn to_host(&self, embedding_dim: usize) -> HostNet {
        let mut layers: Vec<HostLayer> = self
            .hidden
            .iter()
            .map(|l| HostLayer::linear(l).then_relu())
            .collect();
        layers.push(HostLayer::linear(&self.out));
        HostNet::new(embedding_dim, Wiring::Sequential, layers)
    }

    /// Clamp sigma to [SIGMA_MIN, SIGMA_MAX], keeping it a trainable leaf.
    pub fn clamp_sigma(mut self) -> Self {
        self.sigma = self.sigma.map(|t| {
            let trainable = t.is_require_grad();
            let t = t.clamp(SIGMA_MIN, SIGMA_MAX).detach();
            if trainable { t.require_grad() } else { t }
        });
        self
    }
}

/// The whole model. Field names are checkpoint keys.
#[derive(Module, Debug)]
pub struct Tvae {
    pub encoder: Encoder,
    pub decoder: Decoder,
}

/// Build a TVAE for rows of width `data_dim`.
pub fn init(config: &TvaeConfig, data_dim: usize, device: &Device) -> Tvae {
    let stack = |input: usize, dims: &[usize]| {
        let mut layers = Vec::with_capacity(dims.len());
        let mut d = input;
        for &h in dims {
            layers.push(LinearConfig::new(d, h).init(device));
            d = h;
        }
        (layers, d)
    };
    let (hidden, last) = stack(data_dim, &config.compress_dims);
    let encoder = Encoder {
        hidden,
        mu: LinearConfig::new(last, config.embedding_dim).init(device),
        logvar: LinearConfig::new(last, config.embedding_dim).init(device),
        relu: Relu::new(),
    };
    let (hidden, last) = stack(config.embedding_dim, &config.decompress_dims);
    let decoder = Decoder {
        hidden,
        out: LinearConfig::new(last, data_dim).init(device),
        relu: Relu::new(),
        sigma: Param::from_tensor(Tensor::full([data_dim], SIGMA_INIT, device)),
    };
    Tvae { encoder, decoder }
}

/// The three parts of the TVAE objective for one batch, each a [1] tensor.
#[derive(Debug, Clone)]
pub struct TvaeLoss {
    /// loss_factor * reconstruction / N + kl / N: what is minimized.
    pub total: Tensor<1>,
    /// Reconstruction negative log-likelihood summed over the batch (before the factor).
    pub reconstruction: Tensor<1>,
    /// KL summed over the batch.
    pub kl: Tensor<1>,
}

/// What [`loss`] needs of a layout, as tensors built once: the tanh positions and the softmax
/// spans.
#[derive(Debug, Clone)]
pub struct LossLayout {
    scalars: Option<Tensor<1, Int>>,
    softmax: Option<Segments>,
}

impl LossLayout {
    pub fn new(layout: &Layout, device: &Device) -> LossLayout {
        let scalars: Vec<i32> = layout
            .scalar_positions()
            .into_iter()
            .map(|c| c as i32)
            .collect();
        let k = scalars.len();
        LossLayout {
            scalars: (k > 0).then(|| Tensor::from_data(TensorData::new(scalars, [k]), device)),
            softmax: (layout.softmaxes().count() > 0).then(|| Segments::softmaxes(layout, device)),
        }
    }
}

/// The TVAE loss of the reference implementation:
/// `loss_factor * (sum_tanh (x - tanh x^)^2 / (2 sigma^2) + N sum_tanh ln sigma
///  + sum_softmax CE(x^, x)) / N + KL / N`.
///
/// x: [batch, width] encoded rows; recon: [batch, width] decoder output; sigma: [width];
/// `layout`: which positions are tanh scalars and which softmax spans.
pub fn loss(
    x: Tensor<2>,
    recon: Tensor<2>,
    sigma: Tensor<1>,
    posterior: &Posterior,
    parts: &LossLayout,
    loss_factor: f64,
) -> TvaeLoss {
    let [n, _] = x.dims();
    // The Gaussian part over the tanh positions only (a few of the width: Adult has 6 of 157),
    // gathered once, so tanh and its backward never run on the softmax positions.
    let gaussian = parts.scalars.as_ref().map(|idx| {
        let xs = x.clone().select(1, idx.clone());
        let rs = recon.clone().select(1, idx.clone());
        let sigma = sigma.select(0, idx.clone());
        let diff = xs - rs.tanh();
        (diff.square() / sigma.clone().square().mul_scalar(2.0).unsqueeze::<2>()).sum()
            + sigma.log().sum().mul_scalar(n as f64)
    });
    let cross_entropy = parts
        .softmax
        .as_ref()
        .map(|spans| spans.cross_entropy(recon, x.clone()).sum());
    let reconstruction = match (gaussian, cross_entropy) {
        (Some(g), Some(ce)) => g + ce,
        (Some(g), None) => g,
        (None, Some(ce)) => ce,
        (None, None) => Tensor::zeros([1], &x.device()),
    };
    let kl = posterior.kl();
    let total =
        reconstruction.clone().mul_scalar(loss_factor / n as f64) + kl.clone().div_scalar(n as f64);
    TvaeLoss {
        total,
        reconstruction,
        kl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::layout::Activation;
    use burn::tensor::TensorData;

    fn t2(v: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    /// A layout of one tanh column with two modes and one discrete column of three categories.
    fn layout() -> Layout {
        Layout::new([
            (Activation::Tanh, 1, 0),
            (Activation::Softmax, 2, 0),
            (Activation::Softmax, 3, 1),
        ])
    }

    #[test]
    fn loss_matches_a_hand_computed_value() {
        let d = Device::flex();
        let layout = layout();
        // Two rows.
        let x = t2(
            vec![0.5, 1., 0., 0., 0., 1., -0.2, 0., 1., 1., 0., 0.],
            [2, 6],
            &d,
        );
        let recon = t2(
            vec![0.3, 2., 0., 1., 0., 0., -1.0, 0., 0., 0., 2., 1.],
            [2, 6],
            &d,
        );
        let sigma = Tensor::<1>::from_floats([0.1, 0.5, 0.5, 0.5, 0.5, 0.5], &d);
        let posterior = Posterior::new(
            t2(vec![0.5, -1.0, 0.0, 0.2], [2, 2], &d),
            t2(vec![0.0, 0.1, -0.3, 0.0], [2, 2], &d),
        );
        let l = loss(
            x,
            recon,
            sigma,
            &posterior,
            &LossLayout::new(&layout, &d),
            2.0,
        );

        // By hand (f64), following the formula in the doc comment:
        let g = |xv: f64, r: f64| (xv - r.tanh()).powi(2) / (2.0 * 0.01);
        let gaussian = g(0.5, 0.3) + g(-0.2, -1.0) + 2.0 * 0.1f64.ln();
        let ce = |logits: &[f64], k: usize| {
            let lse = logits.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - logits[k]
        };
        let ce_total =
            ce(&[2., 0.], 0) + ce(&[1., 0., 0.], 2) + ce(&[0., 0.], 1) + ce(&[0., 2., 1.], 0);
        let rec = gaussian + ce_total;
        let kl: f64 = [(0.5, 0.0), (-1.0, 0.1), (0.0, -0.3), (0.2, 0.0)]
            .iter()
            .map(|&(m, lv): &(f64, f64)| -0.5 * (1.0 + lv - m * m - lv.exp()))
            .sum();
        let total = 2.0 * rec / 2.0 + kl / 2.0;

        let got = |t: Tensor<1>| -> f64 { t.into_scalar::<f32>() as f64 };
        assert!(
            (got(l.reconstruction) - rec).abs() < 1e-4 * rec.abs(),
            "rec"
        );
        assert!((got(l.kl) - kl).abs() < 1e-5, "kl");
        assert!(
            (got(l.total) - total).abs() < 1e-4 * total.abs(),
            "total {total}"
        );
    }

    #[test]
    fn saved_and_loaded_weights_give_the_same_outputs() {
        use burn::store::ModuleRecord;
        use burn::tensor::Bytes;
        let d = Device::flex();
        let cfg = TvaeConfig::default();
        let model = init(&cfg, 6, &d);
        let z = t2(
            (0..256).map(|i| (i as f32 * 0.37).sin()).collect(),
            [2, 128],
            &d,
        );
        let before: Vec<f32> = model
            .decoder
            .forward(z.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let bytes = model.clone().into_record().into_bytes().unwrap();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
        let fresh = init(&cfg, 6, &d).try_load_record(record).unwrap();
        let after: Vec<f32> = fresh
            .decoder
            .forward(z)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn host_forward_equals_the_decoder() {
        let d = Device::flex();
        let config = TvaeConfig {
            embedding_dim: 6,
            decompress_dims: vec![5, 4],
            ..TvaeConfig::default()
        };
        let decoder = init(&config, 7, &d).decoder;
        // More rows than one host block, the last block partial.
        let rows = 600;
        let z: Vec<f32> = (0..rows * 6)
            .map(|i| (i as f32 * 0.7548).sin() * 2.0)
            .collect();
        let burn = decoder.forward(t2(z.clone(), [rows, 6], &d));
        let host = decoder.to_host(6).forward(&z, None);
        let burn: Vec<f32> = burn.into_data().try_into_vec().unwrap();
        assert_eq!(host.len(), burn.len());
        for (h, b) in host.iter().zip(&burn) {
            assert!((h - b).abs() < 1e-5 * (1.0 + b.abs()), "{h} vs {b}");
        }
    }

    #[test]
    fn sigma_is_clamped_and_stays_trainable() {
        let d = Device::flex().autodiff();
        let mut model = init(&TvaeConfig::default(), 4, &d);
        model.decoder.sigma =
            Param::from_tensor(Tensor::<1>::from_floats([0.001, 0.5, 3.0, 0.2], &d).require_grad());
        let model = Tvae {
            encoder: model.encoder,
            decoder: model.decoder.clamp_sigma(),
        };
        let s = model.decoder.sigma.val();
        assert!(s.is_require_grad());
        let v: Vec<f32> = s.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(v, [0.01, 0.5, 1.0, 0.2]);
    }
}
