//! Sampling images from a DDPM run: ancestral DDPM over all T steps, or DDIM over `--steps`
//! (eta 0 by default: deterministic given the seed), batched, with classifier-free guidance for
//! class-conditional models. Writes one PNG per image, `grid.png` and, for conditional models,
//! `labels.csv`, into a staging folder renamed into place at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tracing::info;

use crate::config::{Config, ModelConfig};
use crate::data::images::{
    GRID_FILE, ImageSet, LABELS_FILE, from_unit, grid, to_dynamic, write_png,
};
use crate::device;
use crate::error::{Error, Result};
use crate::models::ddpm::{Schedule, UNet};
use crate::models::noise::standard_normals;
use crate::run::manifest::read_verified;
use crate::run::{self, Manifest};
use crate::sample::{SampleOptions, seed_or_draw};
use crate::train::ddpm::{ImageInfo, load};
use crate::train::progress_bar;

/// Images per batch unless `--batch-size` says otherwise.
pub const DEFAULT_BATCH: usize = 64;
/// `grid.png` shows at most this many images.
pub const GRID_MAX: usize = 400;

/// How to run the reverse process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling over all T steps (Ho et al. 2020).
    Ddpm,
    /// DDIM over this many evenly spaced steps with this eta (Song et al. 2021).
    Ddim { steps: usize, eta: f64 },
}

/// The class of each image of a batch, and the classifier-free guidance weight
/// (1 = plain conditional sampling).
#[derive(Debug, Clone, Copy)]
pub struct Classes<'a> {
    pub labels: &'a [u32],
    pub guidance: f64,
}

/// A DDPM run loaded for sampling: the EMA weights in eval mode.
pub struct ImageModel {
    pub unet: UNet,
    pub info: ImageInfo,
    pub schedule: Schedule,
}

impl ImageModel {
    /// The EMA weights of the run at `path`, trained with `config` (its config.toml).
    pub fn load(
        path: &Path,
        manifest: &Manifest,
        config: &Config,
        device: &Device,
    ) -> Result<ImageModel> {
        let ModelConfig::Ddpm(m) = &config.model else {
            return Err(Error::BadRun {
                path: path.to_path_buf(),
                message: format!("it is a {} run, not a DDPM", config.model.kind()),
            });
        };
        let info = ImageInfo::load(path)?;
        let checkpoint = manifest.checkpoint(path)?;
        let weights = read_verified(path, &checkpoint.weights, &checkpoint.weights_sha256)?;
        let unet = load(m, info.shape(), weights, device, path)?.ema.valid();
        Ok(ImageModel {
            unet,
            schedule: Schedule::new(m.schedule, m.timesteps),
            info,
        })
    }

    /// The index of a class given by name or by number.
    pub fn class_index(&self, class: &str) -> Result<u32> {
        if self.info.classes.is_empty() {
            return Err(Error::Invalid {
                what: "--class".into(),
                message: "the model is unconditional (its data had no labels, or [model] class_conditional = false)".into(),
            });
        }
        if let Some(i) = self.info.classes.iter().position(|c| c == class) {
            return Ok(i as u32);
        }
        match class.parse::<usize>() {
            Ok(i) if i < self.info.classes.len() => Ok(i as u32),
            _ => Err(Error::Invalid {
                what: "--class".into(),
                message: format!(
                    "'{class}' is not a class of the model; classes: {}",
                    self.info.classes.join(", ")
                ),
            }),
        }
    }

    /// Predicted noise, with classifier-free guidance `w` when classes are given and w != 1:
    /// eps = eps(no class) + w (eps(class) - eps(no class)).
    fn predict(&self, x: Tensor<4>, t: usize, classes: Option<Classes>) -> Tensor<4> {
        let b = x.dims()[0];
        let steps = vec![t; b];
        match classes {
            Some(Classes {
                labels: c,
                guidance: w,
            }) if w != 1.0 => {
                let null = self.info.classes.len() as u32;
                let mut both = c.to_vec();
                both.extend(std::iter::repeat_n(null, b));
                let out = self.unet.forward(
                    Tensor::cat(vec![x.clone(), x], 0),
                    &vec![t; 2 * b],
                    Some(&both),
                );
                let cond = out.clone().narrow(0, 0, b);
                let uncond = out.narrow(0, b, b);
                uncond.clone() + (cond - uncond).mul_scalar(w)
            }
            _ => self.unet.forward(x, &steps, classes.map(|c| c.labels)),
        }
    }

    /// `b` images in [-1, 1], channel-first, from the seeded generator.
    pub fn generate(
        &self,
        b: usize,
        classes: Option<Classes>,
        sampler: Sampler,
        rng: &mut StdRng,
        device: &Device,
        mut on_step: impl FnMut(),
    ) -> Vec<f32> {
        let (c, s) = (self.info.channels, self.info.height);
        let len = c * s * s;
        let shape = [b, c, s, s];
        let mut x = Tensor::<4>::from_data(
            TensorData::new(standard_normals(b * len, rng), shape),
            device,
        );
        let steps: Vec<_> = match sampler {
            Sampler::Ddpm => (1..=self.schedule.steps())
                .rev()
                .map(|t| (t, self.schedule.ddpm_step(t)))
                .collect(),
            Sampler::Ddim { steps, eta } => self
                .schedule
                .ddim_steps(steps)
                .into_iter()
                .map(|(t, prev)| (t, self.schedule.ddim_step(t, prev, eta)))
                .collect(),
        };
        for (t, k) in steps {
            let eps = self.predict(x.clone(), t, classes);
            let x0 = (x.clone().mul_scalar(k.x0_from_xt) - eps.mul_scalar(k.x0_from_eps))
                .clamp(-1.0, 1.0);
            let mut next = x0.mul_scalar(k.x0) + x.mul_scalar(k.xt);
            if k.sigma > 0.0 {
                let z = Tensor::<4>::from_data(
                    TensorData::new(standard_normals(b * len, rng), shape),
                    device,
                );
                next = next + z.mul_scalar(k.sigma);
            }
            x = next;
            on_step();
        }
        x.into_data().try_into_vec::<f32>().expect("f32 images")
    }
}

/// `sample` for a DDPM run (its counts already checked): write `-n` PNGs, `grid.png` and
/// `labels.csv` into `-o DIR`.
pub fn sample(opts: &SampleOptions, path: &Path, manifest: &Manifest) -> Result<()> {
    let invalid = |what: &str, message: &str| Error::Invalid {
        what: what.into(),
        message: message.into(),
    };
    if !opts.conditions.is_empty() || opts.balance.is_some() {
        return Err(invalid(
            "--condition / --balance",
            "they select table rows; for an image model use --class",
        ));
    }
    if opts.steps == Some(0) {
        return Err(invalid("--steps", "must be at least 1"));
    }
    let eta = opts.eta.unwrap_or(0.0);
    if !(eta >= 0.0 && eta.is_finite()) {
        return Err(invalid("--eta", "must be 0 or more"));
    }
    if opts.eta.is_some() && opts.steps.is_none() {
        return Err(invalid("--eta", "applies to DDIM: give --steps too"));
    }
    let guidance = opts.guidance.unwrap_or(1.0);
    if !guidance.is_finite() {
        return Err(invalid("--guidance", "must be a number"));
    }
    let out = output_dir(&opts.output)?;
    let config = run::read_config(path)?;
    let selected = device::select(opts.device.unwrap_or(config.train.device))?;
    let device = &selected.device;
    let model = ImageModel::load(path, manifest, &config, device)?;
    let conditional = !model.info.classes.is_empty();
    let fixed = opts
        .class
        .as_deref()
        .map(|c| model.class_index(c))
        .transpose()?;
    if guidance != 1.0 && !conditional {
        return Err(invalid(
            "--guidance",
            "classifier-free guidance needs a class-conditional model",
        ));
    }
    let sampler = match opts.steps {
        Some(s) if s > model.schedule.steps() => {
            return Err(invalid(
                "--steps",
                &format!("the model has {} diffusion steps", model.schedule.steps()),
            ));
        }
        Some(steps) => Sampler::Ddim { steps, eta },
        None => Sampler::Ddpm,
    };
    let seed = seed_or_draw(opts.seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let n = opts.rows;
    let k = model.info.classes.len() as u32;
    // Conditional models without --class draw classes uniformly.
    let labels: Option<Vec<u32>> = conditional.then(|| {
        (0..n)
            .map(|_| fixed.unwrap_or_else(|| rng.random_range(0..k)))
            .collect()
    });
    let batch = opts.batch_size.unwrap_or(DEFAULT_BATCH);
    let per_batch = match sampler {
        Sampler::Ddpm => model.schedule.steps(),
        Sampler::Ddim { steps, .. } => steps,
    };
    let pb = progress_bar(
        (n.div_ceil(batch) * per_batch) as u64,
        "step {pos}/{len}",
        opts.quiet,
    );
    let t0 = Instant::now();
    let mut values =
        Vec::with_capacity(n * model.info.channels * model.info.height * model.info.width);
    for start in (0..n).step_by(batch) {
        let b = batch.min(n - start);
        let classes = labels.as_ref().map(|l| Classes {
            labels: &l[start..start + b],
            guidance,
        });
        values.extend(model.generate(b, classes, sampler, &mut rng, device, || pb.inc(1)));
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    info!(images = n, seconds, images_per_second = n as f64 / seconds, sampler = ?sampler, "sampled");
    let set = ImageSet {
        channels: model.info.channels,
        height: model.info.height,
        width: model.info.width,
        pixels: from_unit(&values),
        labels,
        classes: model.info.classes.clone(),
    };
    write_images(&set, &out)?;
    info!(output = %out.display(), "written");
    Ok(())
}

/// `-o` must name a directory that does not exist yet or is empty.
fn output_dir(output: &Path) -> Result<PathBuf> {
    if output == Path::new("-") {
        return Err(Error::Output {
            path: output.to_path_buf(),
            message: "an image model writes PNG files: give -o DIR".into(),
        });
    }
    if output.exists() {
        let empty = output.is_dir()
            && std::fs::read_dir(output)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(Error::Output {
                path: output.to_path_buf(),
                message: "exists and is not an empty directory; images go into a new (or empty) directory".into(),
            });
        }
    }
    Ok(output.to_path_buf())
}

/// Write `00000.png`.., `grid.png` and `labels.csv` into a staging directory, then rename it
/// to `out`.
pub fn write_images(set: &ImageSet, out: &Path) -> Result<()> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "samples".into());
    let err = |path: &Path, source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| err(&staging, e))?;
    let result = (|| {
        let (c, h, w) = (set.channels, set.height, set.width);
        let mut csv = String::from("file,class\n");
        for i in 0..set.len() {
            let file = format!("{i:05}.png");
            write_png(&to_dynamic(set.image(i), c, h, w), &staging.join(&file))?;
            if let Some(l) = &set.labels {
                csv.push_str(&format!("{file},{}\n", set.classes[l[i] as usize]));
            }
        }
        let shown = set.len().min(GRID_MAX);
        let first = ImageSet {
            pixels: set.pixels[..shown * set.image_len()].to_vec(),
            labels: None,
            ..set.clone()
        };
        let cols = (shown as f64).sqrt().ceil() as usize;
        write_png(&grid(&first, cols), &staging.join(GRID_FILE))?;
        if set.labels.is_some() {
            run::atomic_write(&staging.join(LABELS_FILE), csv.as_bytes())?;
        }
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| err(out, e))?;
        }
        std::fs::rename(&staging, out).map_err(|e| err(out, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DdpmConfig;
    use crate::models::ddpm::{self, ImageShape};
    use crate::train::ddpm::ImageInfo;

    fn model(device: &Device) -> ImageModel {
        let m = DdpmConfig {
            base_channels: 8,
            channel_mults: vec![1, 2],
            res_blocks: 1,
            attention_resolutions: vec![],
            heads: 1,
            groups: 4,
            timesteps: 50,
            ..DdpmConfig::default()
        };
        device.seed(11);
        let shape = ImageShape {
            channels: 1,
            size: 8,
            classes: 3,
        };
        ImageModel {
            unet: ddpm::init(&m, shape, device),
            info: ImageInfo {
                channels: 1,
                height: 8,
                width: 8,
                classes: vec!["a".into(), "b".into(), "c".into()],
            },
            schedule: Schedule::new(m.schedule, m.timesteps),
        }
    }

    #[test]
    fn ddim_with_eta_zero_is_deterministic_for_a_seed() {
        let device = Device::flex();
        let model = model(&device);
        let ddim = Sampler::Ddim { steps: 5, eta: 0.0 };
        let run = |seed: u64, guidance: f64| {
            let mut rng = StdRng::seed_from_u64(seed);
            let classes = Classes {
                labels: &[0, 1, 2],
                guidance,
            };
            model.generate(3, Some(classes), ddim, &mut rng, &device, || {})
        };
        let a = run(1, 1.0);
        assert_eq!(a.len(), 3 * 64);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(a, run(1, 1.0));
        assert_ne!(a, run(2, 1.0));
        // Guidance changes the images, deterministically too.
        let g = run(1, 3.0);
        assert_ne!(a, g);
        assert_eq!(g, run(1, 3.0));
        // Ancestral DDPM draws fresh noise at every step, from the same seeded generator.
        let mut r1 = StdRng::seed_from_u64(4);
        let mut r2 = StdRng::seed_from_u64(4);
        let d1 = model.generate(2, None, Sampler::Ddpm, &mut r1, &device, || {});
        let d2 = model.generate(2, None, Sampler::Ddpm, &mut r2, &device, || {});
        assert_eq!(d1, d2);
    }

    #[test]
    fn classes_by_name_or_index() {
        let model = model(&Device::flex());
        assert_eq!(model.class_index("b").unwrap(), 1);
        assert_eq!(model.class_index("2").unwrap(), 2);
        let err = model.class_index("7").unwrap_err().to_string();
        assert!(err.contains("a, b, c"), "{err}");
    }
}
