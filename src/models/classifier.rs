//! A small convolutional classifier of 28x28 grayscale images (MNIST, Fashion-MNIST), trained
//! by the project and shipped with it: its penultimate layer is the feature space of the
//! Frechet distance that `evaluate --images` reports, and its predictions give the samples'
//! class histogram and confidence.
//!
//! conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (32) -> ReLU -> max-pool 2 -> Linear 64 ->
//! ReLU (the features) -> Linear (classes).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor, activation};

/// Input side in pixels.
pub const SIDE: usize = 28;
/// Width of the feature layer.
pub const FEATURES: usize = 64;

#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    hidden: Linear,
    head: Linear,
}

pub fn init(classes: usize, device: &Device) -> Classifier {
    let conv = |cin, cout| {
        Conv2dConfig::new([cin, cout], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device)
    };
    Classifier {
        conv1: conv(1, 16),
        conv2: conv(16, 32),
        pool: MaxPool2dConfig::new([2, 2]).init(),
        hidden: LinearConfig::new(32 * 7 * 7, FEATURES).init(device),
        head: LinearConfig::new(FEATURES, classes).init(device),
    }
}

impl Classifier {
    /// x: [b, 1, 28, 28] in [-1, 1] -> features [b, FEATURES]
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.pool.forward(activation::relu(self.conv1.forward(x)));
        let h = self.pool.forward(activation::relu(self.conv2.forward(h)));
        let [b, c, hh, ww] = h.dims();
        activation::relu(self.hidden.forward(h.reshape([b, c * hh * ww])))
    }

    /// Features -> logits [b, classes].
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// Mean cross-entropy of the logits of `x` against `labels`.
    pub fn loss(&self, x: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        let logits = self.logits(self.features(x));
        let [b, _] = logits.dims();
        let logp = activation::log_softmax(logits, 1);
        logp.gather(1, labels.reshape([b, 1])).mean().neg()
    }
}
