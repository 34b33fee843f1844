//! `evaluate --images`: image quality without downloads. A small classifier trained by the
//! project on MNIST or Fashion-MNIST (shipped in `assets/`, compiled into the binary) embeds
//! real and generated images; the report gives the Frechet distance between the two feature
//! distributions (Heusel et al. 2017, in this classifier's 64-d feature space rather than
//! Inception's, so figures compare runs with each other, not with published FIDs), the mean
//! confidence of its predictions on the samples and their class histogram.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::images::{ImageSet, ImageSpec, LABELS_FILE, Resize, folder_images, to_unit};
use crate::error::{Error, Result};
use crate::models::classifier::{self, Classifier, FEATURES, SIDE};

/// A shipped classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierKind {
    #[default]
    Mnist,
    FashionMnist,
}

impl ClassifierKind {
    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::Mnist => "mnist",
            ClassifierKind::FashionMnist => "fashion-mnist",
        }
    }

    /// Class names in label order.
    pub fn classes(self) -> Vec<String> {
        match self {
            ClassifierKind::Mnist => (0..10).map(|d| d.to_string()).collect(),
            ClassifierKind::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn weights(self) -> &'static [u8] {
        match self {
            ClassifierKind::Mnist => include_bytes!("../../assets/classifier-mnist.bpk"),
            ClassifierKind::FashionMnist => {
                include_bytes!("../../assets/classifier-fashion-mnist.bpk")
            }
        }
    }

    /// The shipped classifier on `device`.
    pub fn load(self, device: &Device) -> Result<Classifier> {
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            self.weights().to_vec(),
        ))
        .and_then(|r| classifier::init(10, device).try_load_record(r))
        .map_err(|e| Error::Evaluate {
            message: format!(
                "the shipped {} classifier cannot be loaded: {e}",
                self.name()
            ),
            hint: "rebuild synthgen; scripts/train-classifiers.sh retrains the classifiers".into(),
        })?;
        Ok(record)
    }
}

/// What `evaluate --images` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageReport {
    pub real: PathBuf,
    pub synthetic: PathBuf,
    pub classifier: String,
    pub real_images: usize,
    pub synthetic_images: usize,
    /// Frechet distance between the classifier features of real and synthetic images.
    pub frechet_distance: f64,
    /// The same between two halves of the real images: the floor that sampling noise alone gives.
    pub frechet_distance_real_halves: f64,
    /// Mean top-class probability on the synthetic images (and on the real ones).
    pub mean_confidence: f64,
    pub real_mean_confidence: f64,
    /// Share of the synthetic (and real) images predicted as each class.
    pub class_histogram: Vec<ClassShare>,
    /// Accuracy of the classifier on the real images, when they have labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_accuracy: Option<f64>,
    /// Share of the synthetic images that the classifier assigns to the class they were sampled
    /// for, when the folder has `sample`'s labels.csv naming this classifier's classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_agreement: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassShare {
    pub class: String,
    pub synthetic: f64,
    pub real: f64,
}

/// Load images for the classifier: 28x28, grayscale.
fn load_for_classifier(path: &Path) -> Result<ImageSet> {
    let spec = ImageSpec {
        size: Some(SIDE),
        channels: Some(1),
        resize: Resize::Fill,
        ..ImageSpec::new(path)
    };
    ImageSet::load(&spec)
}

/// Features [n, FEATURES] and class probabilities [n, classes] of a set, in batches.
pub fn embed(model: &Classifier, set: &ImageSet, device: &Device) -> (Vec<f32>, Vec<f32>) {
    const BATCH: usize = 500;
    let len = set.image_len();
    let mut features = Vec::with_capacity(set.len() * FEATURES);
    let mut probs = Vec::new();
    for start in (0..set.len()).step_by(BATCH) {
        let b = BATCH.min(set.len() - start);
        let x = to_unit(&set.pixels[start * len..(start + b) * len]);
        let x = Tensor::<4>::from_data(TensorData::new(x, [b, 1, SIDE, SIDE]), device);
        let f = model.features(x);
        let p = activation::softmax(model.logits(f.clone()), 1);
        features.extend(f.into_data().try_into_vec::<f32>().expect("f32 features"));
        probs.extend(
            p.into_data()
                .try_into_vec::<f32>()
                .expect("f32 probabilities"),
        );
    }
    (features, probs)
}

/// Mean and covariance (denominator n - 1) of row-major `[n, d]` data, in f64.
pub fn moments(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut mean = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; d * d];
    for row in x.chunks_exact(d) {
        let c: Vec<f64> = row
            .iter()
            .zip(&mean)
            .map(|(&v, m)| f64::from(v) - m)
            .collect();
        for i in 0..d {
            for j in i..d {
                cov[i * d + j] += c[i] * c[j];
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / denom;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// Frechet distance between N(m1, c1) and N(m2, c2):
/// |m1 - m2|^2 + tr(c1) + tr(c2) - 2 tr((c1 c2)^(1/2)), with
/// tr((c1 c2)^(1/2)) = sum sqrt(eig(c1^(1/2) c2 c1^(1/2))).
pub fn frechet_distance(m1: &[f64], c1: &[f64], m2: &[f64], c2: &[f64]) -> f64 {
    let d = m1.len();
    let (w, v) = symmetric_eigen(c1, d);
    // c1^(1/2) = V diag(sqrt(max(w, 0))) V^T
    let mut root = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            root[i * d + j] = (0..d)
                .map(|k| v[i * d + k] * w[k].max(0.0).sqrt() * v[j * d + k])
                .sum();
        }
    }
    let inner = matmul(&matmul(&root, c2, d), &root, d);
    let (e, _) = symmetric_eigen(&inner, d);
    let tr_sqrt: f64 = e.iter().map(|x| x.max(0.0).sqrt()).sum();
    let diff: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    (diff + tr(c1) + tr(c2) - 2.0 * tr_sqrt).max(0.0)
}

fn fd_of(a: &[f32], b: &[f32]) -> f64 {
    let (m1, c1) = moments(a, FEATURES);
    let (m2, c2) = moments(b, FEATURES);
    frechet_distance(&m1, &c1, &m2, &c2)
}

/// Predicted class and confidence per row of probabilities.
fn predictions(probs: &[f32], classes: usize) -> Vec<(usize, f32)> {
    probs
        .chunks_exact(classes)
        .map(|p| {
            p.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, v)| if v > best.1 { (i, v) } else { best },
                )
        })
        .collect()
}

/// The class each image of a `sample` folder was asked for, in the folder's image order, from
/// its labels.csv; `None` for an IDX file or a folder without one.
fn sampled_classes(synthetic: &Path) -> Result<Option<Vec<String>>> {
    let file = synthetic.join(LABELS_FILE);
    if !synthetic.is_dir() || !file.is_file() {
        return Ok(None);
    }
    let text = crate::error::read_text(&file)?;
    let bad = |message: String| Error::Evaluate {
        message: format!("'{}': {message}", file.display()),
        hint: "it must list `file,class` for every image of the folder, as `sample` writes it; \
               remove it to evaluate without the classes"
            .into(),
    };
    let mut asked = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let (name, class) = line
            .split_once(',')
            .ok_or_else(|| bad(format!("line {} is not `file,class`", i + 1)))?;
        asked.insert(name.to_string(), class.to_string());
    }
    let images = folder_images(synthetic)?;
    if images.is_empty() {
        return Ok(None);
    }
    images
        .iter()
        .map(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            asked
                .remove(name)
                .ok_or_else(|| bad(format!("has no class for {name}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Evaluate generated images against real ones.
pub fn evaluate_images(
    real: &Path,
    synthetic: &Path,
    kind: ClassifierKind,
    device: &Device,
) -> Result<ImageReport> {
    let started = Instant::now();
    let model = kind.load(device)?;
    let real_set = load_for_classifier(real)?;
    let synth_set = load_for_classifier(synthetic)?;
    for (set, path) in [(&real_set, real), (&synth_set, synthetic)] {
        if set.len() < 2 {
            return Err(Error::Evaluate {
                message: format!("'{}' holds {} image(s)", path.display(), set.len()),
                hint: "a Frechet distance needs at least 2 images on each side (hundreds for a stable figure)".into(),
            });
        }
    }
    let names = kind.classes();
    let k = names.len();
    let (rf, rp) = embed(&model, &real_set, device);
    let (sf, sp) = embed(&model, &synth_set, device);
    let half = real_set.len() / 2;
    let rpred = predictions(&rp, k);
    let spred = predictions(&sp, k);
    let share = |pred: &[(usize, f32)], c: usize| {
        pred.iter().filter(|p| p.0 == c).count() as f64 / pred.len() as f64
    };
    let mean_conf = |pred: &[(usize, f32)]| {
        pred.iter().map(|p| f64::from(p.1)).sum::<f64>() / pred.len() as f64
    };
    let class_index = |c: &str| {
        names
            .iter()
            .position(|n| n == c)
            .or_else(|| c.parse::<usize>().ok().filter(|i| *i < k))
    };
    // Real labels count only when they name this classifier's classes: folders named like its
    // classes, or IDX label numbers (0-9 index the classes in their published order).
    let real_accuracy = real_set.labels.as_ref().and_then(|labels| {
        let map: Option<Vec<usize>> = real_set.classes.iter().map(|c| class_index(c)).collect();
        map.map(|map| {
            let hits = labels
                .iter()
                .zip(&rpred)
                .filter(|(l, p)| map[**l as usize] == p.0)
                .count();
            hits as f64 / labels.len() as f64
        })
    });
    let class_agreement = sampled_classes(synthetic)?.and_then(|asked| {
        let asked: Option<Vec<usize>> = asked.iter().map(|c| class_index(c)).collect();
        asked.map(|asked| {
            let hits = asked.iter().zip(&spred).filter(|(a, p)| **a == p.0).count();
            hits as f64 / asked.len() as f64
        })
    });
    Ok(ImageReport {
        real: real.to_path_buf(),
        synthetic: synthetic.to_path_buf(),
        classifier: kind.name().into(),
        real_images: real_set.len(),
        synthetic_images: synth_set.len(),
        frechet_distance: fd_of(&rf, &sf),
        frechet_distance_real_halves: fd_of(&rf[..half * FEATURES], &rf[half * FEATURES..]),
        mean_confidence: mean_conf(&spred),
        real_mean_confidence: mean_conf(&rpred),
        class_histogram: names
            .iter()
            .enumerate()
            .map(|(c, name)| ClassShare {
                class: name.clone(),
                synthetic: share(&spred, c),
                real: share(&rpred, c),
            })
            .collect(),
        real_accuracy,
        class_agreement,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The report as text for the terminal.
pub fn summary(r: &ImageReport) -> String {
    let mut s = format!(
        "images: {} real, {} synthetic (classifier: {})\n",
        r.real_images, r.synthetic_images, r.classifier
    );
    s.push_str(&format!(
        "  Frechet distance (classifier features)  {:.4}   (real vs real halves: {:.4})\n",
        r.frechet_distance, r.frechet_distance_real_halves
    ));
    s.push_str(&format!(
        "  mean confidence                          {:.4}   (real: {:.4})\n",
        r.mean_confidence, r.real_mean_confidence
    ));
    if let Some(a) = r.real_accuracy {
        s.push_str(&format!(
            "  classifier accuracy on the real images   {a:.4}\n"
        ));
    }
    if let Some(a) = r.class_agreement {
        s.push_str(&format!(
            "  synthetic images of the class asked for  {a:.4}   (labels.csv)\n"
        ));
    }
    s.push_str("  class     synthetic   real\n");
    for c in &r.class_histogram {
        s.push_str(&format!(
            "  {:<10}  {:>6.1} %  {:>6.1} %\n",
            c.class,
            100.0 * c.synthetic,
            100.0 * c.real
        ));
    }
    s
}

/// Train a classifier on `train` (labels required) with Adam, `epochs` passes in batches of
/// 128; returns it with its accuracy on `test`.
pub fn train_classifier(
    train: &ImageSet,
    test: &ImageSet,
    epochs: usize,
    seed: u64,
    device: &Device,
) -> (Classifier, f64) {
    let labels = train.labels.as_ref().expect("training images have labels");
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let mut model = classifier::init(10, &ad);
    let mut optim = AdamConfig::new().init();
    let len = train.image_len();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for epoch in 0..epochs {
        order.shuffle(&mut rng);
        let lr = 1e-3 * 0.5f64.powi(epoch as i32);
        for idx in order.chunks(128) {
            let b = idx.len();
            let mut x = Vec::with_capacity(b * len);
            for &i in idx {
                x.extend(to_unit(train.image(i)));
            }
            let y: Vec<i64> = idx.iter().map(|&i| i64::from(labels[i])).collect();
            let x = Tensor::<4>::from_data(TensorData::new(x, [b, 1, SIDE, SIDE]), &ad);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [b]), &ad);
            let loss = model.loss(x, y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
    }
    let model = model.valid();
    let (_, probs) = embed(&model, test, device);
    let pred = predictions(&probs, 10);
    let test_labels = test.labels.as_ref().expect("test images have labels");
    let hits = pred
        .iter()
        .zip(test_labels)
        .filter(|(p, l)| p.0 == **l as usize)
        .count();
    (model, hits as f64 / test.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_distance_of_diagonal_gaussians() {
        // d = 2: means (0, 0) and (3, 4); variances (1, 4) and (4, 9):
        // 25 + (1 + 4 - 2*2) + (4 + 9 - 2*6) = 27.
        let fd = frechet_distance(
            &[0.0, 0.0],
            &[1.0, 0.0, 0.0, 4.0],
            &[3.0, 4.0],
            &[4.0, 0.0, 0.0, 9.0],
        );
        assert!((fd - 27.0).abs() < 1e-9, "{fd}");
        // A rotation of both covariances leaves it unchanged.
        let (c, s) = (0.6f64, 0.8f64);
        let rot = |a: f64, b: f64| {
            vec![
                c * c * a + s * s * b,
                c * s * (a - b),
                c * s * (a - b),
                s * s * a + c * c * b,
            ]
        };
        let fd = frechet_distance(&[0.0, 0.0], &rot(1.0, 4.0), &[3.0, 4.0], &rot(4.0, 9.0));
        assert!((fd - 27.0).abs() < 1e-9, "{fd}");
        // Identical distributions: 0.
        let c1 = rot(2.0, 0.5);
        assert!(frechet_distance(&[1.0, 2.0], &c1, &[1.0, 2.0], &c1) < 1e-9);
    }

    #[test]
    fn jacobi_finds_eigenvalues() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut w, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn moments_use_n_minus_one() {
        let (m, c) = moments(&[1.0, 2.0, 3.0, 6.0], 2);
        assert_eq!(m, [2.0, 4.0]);
        assert_eq!(c, [2.0, 4.0, 4.0, 8.0]);
    }
}
