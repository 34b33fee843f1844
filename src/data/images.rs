//! Images for DDPM: IDX files (MNIST, Fashion-MNIST; raw or gzip) and folders of PNG / JPEG
//! images, with class labels from an IDX label file or from sub-folder names.
//!
//! Pixels are kept as `u8` in channel-first order `[n, channels, height, width]`; the model
//! sees them scaled to [-1, 1] ([`to_unit`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How images of another size are brought to the configured size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale the shorter side to the size and crop the centre (keeps the aspect ratio).
    #[default]
    Fill,
    /// Scale both sides to the size (distorts non-square images).
    Stretch,
    /// Refuse images of another size.
    None,
}

/// What to load: the source and the shape to bring every image to.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// An IDX image file (`*-idx3-ubyte[.gz]`) or a folder of images.
    pub path: PathBuf,
    /// IDX label file; found beside an IDX image file by name when absent.
    pub labels: Option<PathBuf>,
    /// Output side in pixels (square); `None`: the source's own size (which must be square).
    pub size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB); `None`: 1 for IDX, else 3 unless every image is grayscale.
    pub channels: Option<usize>,
    pub resize: Resize,
    /// Keep only the first this many images.
    pub limit: Option<usize>,
}

impl ImageSpec {
    pub fn new(path: impl Into<PathBuf>) -> ImageSpec {
        ImageSpec {
            path: path.into(),
            labels: None,
            size: None,
            channels: None,
            resize: Resize::Fill,
            limit: None,
        }
    }
}

/// A set of same-shaped images with optional class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[n, channels, height, width]`, row-major.
    pub pixels: Vec<u8>,
    /// One class index per image (into `classes`), when the source has labels.
    pub labels: Option<Vec<u32>>,
    /// Class names: sub-folder names, or "0".."9" for IDX labels.
    pub classes: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.pixels[i * l..(i + 1) * l]
    }

    /// Read the images a spec names.
    pub fn load(spec: &ImageSpec) -> Result<ImageSet> {
        if !spec.path.exists() {
            return Err(Error::DataNotFound {
                path: spec.path.clone(),
            });
        }
        if let Some(c) = spec.channels.filter(|c| *c != 1 && *c != 3) {
            return Err(bad(&spec.path, format!("channels must be 1 or 3, not {c}")));
        }
        let mut set = if spec.path.is_dir() {
            read_folder(spec)?
        } else {
            read_idx_set(spec)?
        };
        if set.is_empty() {
            return Err(bad(&spec.path, "holds no images".into()));
        }
        if let Some(limit) = spec.limit {
            let keep = limit.min(set.len());
            set.pixels.truncate(keep * set.image_len());
            if let Some(l) = &mut set.labels {
                l.truncate(keep);
            }
        }
        Ok(set)
    }

    /// A stable description of the shape and classes (digested into the manifest).
    pub fn signature(&self) -> String {
        format!(
            "images:{}x{}x{};labels:{};classes:{}",
            self.channels,
            self.height,
            self.width,
            self.labels.is_some(),
            self.classes.join("\u{1f}")
        )
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::Images {
        path: path.to_path_buf(),
        message,
    }
}

/// Scale `u8` pixels to [-1, 1].
pub fn to_unit(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect()
}

/// Map [-1, 1] back to `u8`, clamping and rounding.
pub fn from_unit(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|&v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
        .collect()
}

/// The bytes of a file, gunzipped when they start with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("is not valid gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// An IDX array of unsigned bytes: its dimensions and values.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            path,
            "is not an IDX file (the first two bytes must be 0)".into(),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(
            path,
            format!(
                "holds IDX type 0x{:02x}; only unsigned bytes (0x08) are read",
                bytes[2]
            ),
        ));
    }
    let rank = usize::from(bytes[3]);
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(bad(path, "has a truncated IDX header".into()));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, "has IDX dimensions that overflow".into()))?;
    if bytes.len() - header != count {
        return Err(bad(
            path,
            format!(
                "has {} data bytes where its IDX header ({dims:?}) promises {count}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// `train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz`, when that file exists.
fn sibling_labels(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let guess = name.replace("images-idx3", "labels-idx1");
    (guess != name)
        .then(|| path.with_file_name(guess))
        .filter(|p| p.is_file())
}

fn read_idx_set(spec: &ImageSpec) -> Result<ImageSet> {
    let (dims, pixels) = read_idx(&spec.path)?;
    let (n, h, w, c) = match dims[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
        _ => {
            return Err(bad(
                &spec.path,
                format!(
                    "holds an IDX array of shape {dims:?}; images are [n, height, width] or [n, height, width, channels]"
                ),
            ));
        }
    };
    let labels_path = spec.labels.clone().or_else(|| sibling_labels(&spec.path));
    let labels = match &labels_path {
        Some(p) => {
            if !p.exists() {
                return Err(Error::DataNotFound { path: p.clone() });
            }
            let (ldims, labels) = read_idx(p)?;
            if ldims != [n] {
                return Err(bad(
                    p,
                    format!("holds labels of shape {ldims:?}; the images need [{n}]"),
                ));
            }
            Some(labels.into_iter().map(u32::from).collect::<Vec<u32>>())
        }
        None => None,
    };
    let classes = match &labels {
        Some(l) => {
            let max = l.iter().copied().max().unwrap_or(0);
            (0..=max).map(|c| c.to_string()).collect()
        }
        None => Vec::new(),
    };
    // IDX stores [n, h, w, c]; channel-first for the model.
    let images: Vec<DynamicImage> = (0..n)
        .map(|i| {
            let raw = &pixels[i * h * w * c..(i + 1) * h * w * c];
            raw_to_image(raw, w, h, c)
        })
        .collect();
    let mut set = assemble(images, spec, &spec.path, labels, classes, 1)?;
    if spec.channels.is_none() {
        set.channels = c;
    }
    Ok(set)
}

fn raw_to_image(raw: &[u8], w: usize, h: usize, c: usize) -> DynamicImage {
    if c == 1 {
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w as u32, h as u32, raw.to_vec()).expect("sized buffer"),
        )
    } else {
        DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(w as u32, h as u32, raw.to_vec()).expect("sized buffer"),
        )
    }
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// The contact sheet that `sample` writes beside the images; not an image of the set.
pub const GRID_FILE: &str = "grid.png";
/// The class each image was sampled for (`file,class`), written by `sample` beside the images.
pub const LABELS_FILE: &str = "labels.csv";

/// The images directly in `dir`, sorted by name, without a `sample` grid beside them: the
/// images, in order, of an unlabelled folder.
pub fn folder_images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(direct_images(&sorted_entries(dir)?))
}

/// The images among a folder's sorted entries, without a `sample` grid beside them.
fn direct_images(entries: &[PathBuf]) -> Vec<PathBuf> {
    let mut direct: Vec<PathBuf> = entries.iter().filter(|p| is_image(p)).cloned().collect();
    if direct.len() > 1 {
        direct.retain(|p| p.file_name().and_then(|n| n.to_str()) != Some(GRID_FILE));
    }
    direct
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// A folder of images, or a folder of class sub-folders of images.
fn read_folder(spec: &ImageSpec) -> Result<ImageSet> {
    let entries = sorted_entries(&spec.path)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let direct = direct_images(&entries);
    let (files, labels, classes) = if !subdirs.is_empty() && direct.is_empty() {
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::new();
        for dir in subdirs {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let inside: Vec<PathBuf> = sorted_entries(dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if inside.is_empty() {
                continue;
            }
            let class = classes.len() as u32;
            classes.push(name);
            labels.extend(std::iter::repeat_n(class, inside.len()));
            files.extend(inside);
        }
        (files, Some(labels), classes)
    } else {
        (direct, None, Vec::new())
    };
    if files.is_empty() {
        return Err(bad(
            &spec.path,
            format!(
                "holds no images ({}), neither directly nor in class sub-folders",
                EXTENSIONS.join(", ")
            ),
        ));
    }
    let files: Vec<PathBuf> = match spec.limit {
        Some(l) => files.into_iter().take(l).collect(),
        None => files,
    };
    let labels = labels.map(|l| l[..files.len()].to_vec());
    let mut images = Vec::with_capacity(files.len());
    let mut gray = true;
    for f in &files {
        let img = image::open(f).map_err(|e| bad(f, format!("cannot be decoded: {e}")))?;
        gray &= !img.color().has_color();
        images.push(img);
    }
    let default_channels = if gray { 1 } else { 3 };
    assemble(images, spec, &spec.path, labels, classes, default_channels)
}

/// Bring decoded images to one size and channel count.
fn assemble(
    images: Vec<DynamicImage>,
    spec: &ImageSpec,
    source: &Path,
    labels: Option<Vec<u32>>,
    classes: Vec<String>,
    default_channels: usize,
) -> Result<ImageSet> {
    let channels = spec.channels.unwrap_or(default_channels);
    let first = images
        .first()
        .ok_or_else(|| bad(source, "holds no images".into()))?
        .dimensions();
    let (height, width) = match spec.size {
        Some(s) => (s, s),
        None => (first.1 as usize, first.0 as usize),
    };
    if height == 0 || width == 0 {
        return Err(bad(source, "has an image of size 0".into()));
    }
    let mut pixels = Vec::with_capacity(images.len() * channels * height * width);
    for (i, img) in images.into_iter().enumerate() {
        let (w, h) = img.dimensions();
        let img = if (w as usize, h as usize) == (width, height) {
            img
        } else {
            match spec.resize {
                Resize::None => {
                    return Err(bad(
                        source,
                        format!(
                            "image {i} is {w}x{h}, not {width}x{height}; set [images] resize = \"fill\" or \"stretch\" (and size) to bring every image to one size"
                        ),
                    ));
                }
                Resize::Fill => {
                    img.resize_to_fill(width as u32, height as u32, FilterType::Triangle)
                }
                Resize::Stretch => {
                    img.resize_exact(width as u32, height as u32, FilterType::Triangle)
                }
            }
        };
        if channels == 1 {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            let rgb = img.to_rgb8();
            let raw = rgb.as_raw();
            for c in 0..3 {
                pixels.extend(raw.iter().skip(c).step_by(3));
            }
        }
    }
    Ok(ImageSet {
        channels,
        height,
        width,
        pixels,
        labels,
        classes,
    })
}

/// One image (channel-first `u8`) as an `image` buffer.
pub fn to_dynamic(pixels: &[u8], channels: usize, height: usize, width: usize) -> DynamicImage {
    if channels == 1 {
        raw_to_image(pixels, width, height, 1)
    } else {
        let plane = height * width;
        let mut raw = vec![0u8; plane * 3];
        for p in 0..plane {
            for c in 0..3 {
                raw[p * 3 + c] = pixels[c * plane + p];
            }
        }
        raw_to_image(&raw, width, height, 3)
    }
}

/// Tile images into a square-ish grid with a 2-pixel border.
pub fn grid(set: &ImageSet, columns: usize) -> DynamicImage {
    let n = set.len();
    let cols = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (h, w) = (set.height, set.width);
    let gw = cols * (w + pad) + pad;
    let gh = rows * (h + pad) + pad;
    let mut out = vec![0u8; set.channels * gh * gw];
    for i in 0..n {
        let (r, c) = (i / cols, i % cols);
        let img = set.image(i);
        for ch in 0..set.channels {
            for y in 0..h {
                let src = &img[ch * h * w + y * w..ch * h * w + (y + 1) * w];
                let gy = pad + r * (h + pad) + y;
                let gx = pad + c * (w + pad);
                let dst = ch * gh * gw + gy * gw + gx;
                out[dst..dst + w].copy_from_slice(src);
            }
        }
    }
    to_dynamic(&out, set.channels, gh, gw)
}

/// Write one image as PNG.
pub fn write_png(img: &DynamicImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::run::atomic_write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist/t10k-images-idx3-ubyte.gz")
    }

    #[test]
    fn reads_shipped_mnist_with_labels() {
        let mut spec = ImageSpec::new(mnist());
        spec.limit = Some(100);
        let set = ImageSet::load(&spec).unwrap();
        assert_eq!((set.channels, set.height, set.width), (1, 28, 28));
        assert_eq!(set.len(), 100);
        let labels = set.labels.as_ref().unwrap();
        // The first MNIST test digits are 7, 2, 1, 0, 4.
        assert_eq!(&labels[..5], &[7, 2, 1, 0, 4]);
        assert_eq!(set.classes.len(), 10);
        // Digits are white on black: corners are 0, some pixels are 255.
        assert_eq!(set.image(0)[0], 0);
        assert!(set.image(0).contains(&255));
    }

    #[test]
    fn folder_with_class_subfolders_resizes_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (class, (w, h)) in [("cat", (40u32, 30u32)), ("dog", (20, 20))] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..2 {
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    image::Rgb([x as u8 * 5, y as u8 * 5, 200 + i])
                });
                img.save(dir.path().join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let mut spec = ImageSpec::new(dir.path());
        spec.size = Some(16);
        let set = ImageSet::load(&spec).unwrap();
        assert_eq!(
            (set.channels, set.height, set.width, set.len()),
            (3, 16, 16, 4)
        );
        assert_eq!(set.classes, ["cat", "dog"]);
        assert_eq!(set.labels.as_deref(), Some(&[0, 0, 1, 1][..]));
        // Blue plane holds 200 + i everywhere.
        let blue = &set.image(1)[2 * 256..3 * 256];
        assert!(blue.iter().all(|&b| b == 201), "{blue:?}");

        spec.resize = Resize::None;
        let err = ImageSet::load(&spec).unwrap_err().to_string();
        assert!(err.contains("not 16x16"), "{err}");
    }

    #[test]
    fn a_sample_folder_leaves_out_its_grid() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            image::GrayImage::from_pixel(8, 8, image::Luma([i * 50]))
                .save(dir.path().join(format!("{i:05}.png")))
                .unwrap();
        }
        image::GrayImage::from_pixel(30, 12, image::Luma([255]))
            .save(dir.path().join(GRID_FILE))
            .unwrap();
        let set = ImageSet::load(&ImageSpec::new(dir.path())).unwrap();
        assert_eq!((set.len(), set.channels, set.height), (3, 1, 8));
        assert_eq!(set.image(2)[0], 100);
    }

    #[test]
    fn empty_folder_and_broken_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = ImageSet::load(&ImageSpec::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no images"), "{err}");
        std::fs::write(dir.path().join("a.png"), b"not a png").unwrap();
        let err = ImageSet::load(&ImageSpec::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.png") && err.contains("cannot be decoded"),
            "{err}"
        );
        let idx = dir.path().join("x-idx3-ubyte");
        std::fs::write(&idx, [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1]).unwrap();
        let err = ImageSet::load(&ImageSpec::new(&idx))
            .unwrap_err()
            .to_string();
        assert!(err.contains("promises 8"), "{err}");
    }

    #[test]
    fn unit_scaling_round_trips() {
        let px: Vec<u8> = (0..=255).collect();
        assert_eq!(from_unit(&to_unit(&px)), px);
        assert_eq!(to_unit(&[0, 255]), [-1.0, 1.0]);
    }

    #[test]
    fn rgb_planes_round_trip_through_png() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 4 * 5).map(|v| (v * 4) as u8).collect();
        let set = ImageSet {
            channels: 3,
            height: 4,
            width: 5,
            pixels: pixels.clone(),
            labels: None,
            classes: Vec::new(),
        };
        write_png(
            &to_dynamic(set.image(0), 3, 4, 5),
            &dir.path().join("x.png"),
        )
        .unwrap();
        let back = ImageSet::load(&ImageSpec::new(dir.path())).unwrap();
        assert_eq!(back.pixels, pixels);
        let g = grid(&set, 8);
        assert_eq!(g.dimensions(), (5 + 4, 4 + 4));
    }
}
