//! A folder of images as an input set.
//!
//! Folder layout (the "one sub-folder per class" convention of torchvision's `ImageFolder`):
//! - images directly in the folder: one sample per image, no labels;
//! - only sub-folders: each sub-folder is a class; the label of an image is the index of its
//!   sub-folder in the sorted list of sub-folder names (`Labels::Int`). Sub-folders are not
//!   searched further down.
//!
//! A folder mixing images and sub-folders is rejected. Samples are ordered by class, then file
//! name (byte order), so a run is reproducible. Hidden files (`.name`) are ignored; any other file
//! that is not a `.png`, `.jpg` or `.jpeg` is an error naming it.
//!
//! Each image is decoded, converted to 8-bit RGB, resized to exactly `height`×`width` (bilinear,
//! the aspect ratio is not kept), scaled to [0, 1], then normalized per channel:
//! `(v - mean[c]) / std[c]`, with `c` counted in the output channel order.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use ndarray::{Array4, ArrayD, Axis};

use super::{DataError, InputSet, Labels, Tensor};

/// Channel order of the produced tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision, most ONNX exports).
    #[default]
    Rgb,
    /// Blue, green, red (models trained on OpenCV-loaded images, e.g. PaddleOCR).
    Bgr,
}

/// Axis layout of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageLayout {
    /// `[C, H, W]` per sample, `[N, C, H, W]` in the set.
    #[default]
    Nchw,
    /// `[H, W, C]` per sample, `[N, H, W, C]` in the set.
    Nhwc,
}

/// How images become a tensor. The default is ImageNet's 224×224 RGB NCHW normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    pub height: u32,
    pub width: u32,
    /// Per-channel mean, subtracted after scaling to [0, 1] (in output channel order).
    pub mean: [f32; 3],
    /// Per-channel standard deviation, divided by after subtracting the mean (non-zero).
    pub std: [f32; 3],
    pub layout: ImageLayout,
    pub channel_order: ChannelOrder,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            height: 224,
            width: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            layout: ImageLayout::Nchw,
            channel_order: ChannelOrder::Rgb,
        }
    }
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

impl InputSet {
    /// Loads a folder of images as the single input `input_name` (see the module doc for the
    /// folder layout and the preprocessing).
    pub fn from_image_dir(dir: impl AsRef<Path>, input_name: &str, options: &ImageOptions) -> Result<InputSet, DataError> {
        let dir = dir.as_ref();
        check_options(options)?;
        let (files, labels) = list_images(dir)?;
        if files.is_empty() {
            return Err(DataError::NoSamples { file: dir.display().to_string() });
        }
        let (h, w) = (options.height as usize, options.width as usize);
        let mut batch = Array4::<f32>::zeros((files.len(), 3, h, w));
        for (file, mut slot) in files.iter().zip(batch.axis_iter_mut(Axis(0))) {
            let img = image::ImageReader::open(file)
                .map_err(|e| DataError::io(file, e))?
                .with_guessed_format()
                .map_err(|e| DataError::io(file, e))?
                .decode()
                .map_err(|e| DataError::Format { file: file.display().to_string(), what: format!("cannot decode image: {e}") })?
                .to_rgb8();
            let img = imageops::resize(&img, options.width, options.height, FilterType::Triangle);
            for (x, y, pixel) in img.enumerate_pixels() {
                for c in 0..3 {
                    let source = match options.channel_order {
                        ChannelOrder::Rgb => c,
                        ChannelOrder::Bgr => 2 - c,
                    };
                    let v = f32::from(pixel[source]) / 255.0;
                    slot[[c, y as usize, x as usize]] = (v - options.mean[c]) / options.std[c];
                }
            }
        }
        let batch: ArrayD<f32> = match options.layout {
            ImageLayout::Nchw => batch.into_dyn(),
            ImageLayout::Nhwc => batch.permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned().into_dyn(),
        };
        InputSet::new(dir.display().to_string(), vec![(input_name.to_string(), Tensor::from(batch))], labels)
    }
}

fn check_options(o: &ImageOptions) -> Result<(), DataError> {
    if o.height == 0 || o.width == 0 {
        return Err(DataError::InvalidOption { what: format!("image size {}x{} must be positive", o.height, o.width) });
    }
    if o.std.iter().any(|s| *s == 0.0 || !s.is_finite()) || o.mean.iter().any(|m| !m.is_finite()) {
        return Err(DataError::InvalidOption { what: format!("image mean {:?} / std {:?} must be finite, std non-zero", o.mean, o.std) });
    }
    Ok(())
}

/// The image files of `dir` in sample order, and their labels when `dir` has class sub-folders.
fn list_images(dir: &Path) -> Result<(Vec<PathBuf>, Option<Labels>), DataError> {
    let entries = visible_entries(dir)?;
    let (subdirs, files): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    match (subdirs.is_empty(), files.is_empty()) {
        (true, _) => Ok((check_images(files)?, None)),
        (false, true) => {
            let mut all = Vec::new();
            let mut labels = Vec::new();
            for (class, sub) in subdirs.iter().enumerate() {
                let entries = visible_entries(sub)?;
                if let Some(nested) = entries.iter().find(|p| p.is_dir()) {
                    return Err(DataError::Format {
                        file: nested.display().to_string(),
                        what: "class folders must hold images only, found a folder".into(),
                    });
                }
                let images = check_images(entries)?;
                labels.extend(std::iter::repeat_n(class as i64, images.len()));
                all.extend(images);
            }
            Ok((all, Some(Labels::Int(labels))))
        }
        (false, false) => Err(DataError::Format {
            file: dir.display().to_string(),
            what: "holds both images and sub-folders; use either images only (no labels) \
                   or one sub-folder per class"
                .into(),
        }),
    }
}

/// Entries of `dir` not starting with `.`, sorted by name.
fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn check_images(files: Vec<PathBuf>) -> Result<Vec<PathBuf>, DataError> {
    for f in &files {
        let ext = f.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            return Err(DataError::Format {
                file: f.display().to_string(),
                what: format!("not an image (expected one of: {})", IMAGE_EXTENSIONS.join(", ")),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::values;
    use image::{Rgb, RgbImage};

    fn save(path: &Path, color: [u8; 3]) {
        RgbImage::from_pixel(4, 2, Rgb(color)).save(path).unwrap();
    }

    fn opts(layout: ImageLayout, order: ChannelOrder) -> ImageOptions {
        ImageOptions { height: 2, width: 3, mean: [0.5, 0.0, 0.0], std: [0.5, 1.0, 2.0], layout, channel_order: order }
    }

    #[test]
    fn class_folders_give_int_labels_and_normalized_pixels() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("cat")).unwrap();
        fs::create_dir(dir.path().join("ant")).unwrap();
        save(&dir.path().join("cat/b.png"), [255, 0, 51]);
        save(&dir.path().join("cat/a.png"), [0, 0, 0]);
        save(&dir.path().join("ant/z.png"), [255, 255, 255]);
        let set = InputSet::from_image_dir(dir.path(), "img", &opts(ImageLayout::Nchw, ChannelOrder::Rgb)).unwrap();
        // Order: ant/z, cat/a, cat/b; ant = class 0, cat = class 1.
        assert_eq!(set.labels(), Some(&Labels::Int(vec![0, 1, 1])));
        let x = set.input("img").unwrap();
        assert_eq!(x.shape(), &[3, 3, 2, 3]);
        let s = set.sample(2).unwrap().remove(0).1;
        let v = values::<f32>(&s);
        // Channel 0 (R=255): (1 - 0.5) / 0.5 = 1; channel 1 (G=0): 0; channel 2 (B=51): 0.2 / 2.
        assert!(v[..6].iter().all(|p| (p - 1.0).abs() < 1e-6), "{v:?}");
        assert!(v[6..12].iter().all(|p| p.abs() < 1e-6), "{v:?}");
        assert!(v[12..].iter().all(|p| (p - 0.1).abs() < 1e-6), "{v:?}");
    }

    #[test]
    fn nhwc_bgr_layout() {
        let dir = tempfile::tempdir().unwrap();
        save(&dir.path().join("one.jpg"), [255, 0, 0]);
        let mut set = InputSet::from_image_dir(dir.path(), "img", &opts(ImageLayout::Nhwc, ChannelOrder::Bgr)).unwrap();
        assert_eq!(set.labels(), None);
        set.check_shapes(&[("img".into(), vec![1, 2, 3, 3])]).unwrap();
        let s = set.sample(0).unwrap().remove(0).1;
        assert_eq!(s.shape(), &[1, 2, 3, 3]);
        let v = values::<f32>(&s);
        // First pixel, channels B, G, R: B≈0 -> (0-0.5)/0.5 = -1; R≈1 -> (1-0)/2 = 0.5 (JPEG: approx).
        assert!((v[0] + 1.0).abs() < 0.05, "{v:?}");
        assert!((v[2] - 0.5).abs() < 0.05, "{v:?}");
    }

    #[test]
    fn folder_errors() {
        let dir = tempfile::tempdir().unwrap();
        let o = ImageOptions::default();
        assert!(matches!(InputSet::from_image_dir(dir.path(), "x", &o), Err(DataError::NoSamples { .. })));
        fs::write(dir.path().join("notes.txt"), "hi").unwrap();
        let err = InputSet::from_image_dir(dir.path(), "x", &o).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        fs::remove_file(dir.path().join("notes.txt")).unwrap();
        save(&dir.path().join("a.png"), [0, 0, 0]);
        fs::create_dir(dir.path().join("class")).unwrap();
        assert!(matches!(InputSet::from_image_dir(dir.path(), "x", &o), Err(DataError::Format { .. })));
        fs::write(dir.path().join("broken.png"), "not a png").unwrap();
        fs::remove_dir(dir.path().join("class")).unwrap();
        let err = InputSet::from_image_dir(dir.path(), "x", &o).unwrap_err();
        assert!(err.to_string().contains("broken.png"), "{err}");
        let bad = ImageOptions { std: [1.0, 0.0, 1.0], ..ImageOptions::default() };
        assert!(matches!(InputSet::from_image_dir(dir.path(), "x", &bad), Err(DataError::InvalidOption { .. })));
        let missing = dir.path().join("nope");
        assert!(matches!(InputSet::from_image_dir(&missing, "x", &o), Err(DataError::NotFound { .. })));
    }
}
