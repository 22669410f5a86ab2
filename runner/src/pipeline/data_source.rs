//! Turning a [`DataSpec`] into an [`InputSet`] for the model's inputs.

use std::path::{Path, PathBuf};

use super::locate::Seg;
use super::spec::{ChannelOrderSpec, DataSpec, DistributionKind, LayoutSpec};
use crate::data::{ChannelOrder, DatumType, Distribution, ImageLayout, ImageOptions, InputSet, InputShape};

/// Random samples drawn when a `random` source does not say how many.
pub const DEFAULT_RANDOM_SAMPLES: usize = 8;

/// The kind of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Npz,
    Npy,
    Images,
    Random,
}

/// A loaded data set.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub set: InputSet,
    /// Files read (for the fingerprint), sorted.
    pub files: Vec<PathBuf>,
    /// One line saying what the data is.
    pub description: String,
}

/// A problem with a data spec: the key it is about (relative to the spec) and the message.
pub type SpecError = (Vec<Seg>, String);

fn err(key: &str, message: impl Into<String>) -> SpecError {
    (if key.is_empty() { Vec::new() } else { vec![Seg::key(key)] }, message.into())
}

impl DataSpec {
    /// Which source the spec names; an error unless exactly one is set.
    pub fn kind(&self) -> Result<DataKind, String> {
        let set: Vec<DataKind> = [
            (self.npz.is_some(), DataKind::Npz),
            (self.npy.is_some(), DataKind::Npy),
            (self.images.is_some(), DataKind::Images),
            (self.random.is_some(), DataKind::Random),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err("no data source: give one of `npz`, `npy`, `images` or `random`".into()),
            _ => Err("more than one data source: give only one of `npz`, `npy`, `images` or `random`".into()),
        }
    }

    /// The source path (none for random data).
    pub fn path(&self) -> Option<&Path> {
        self.npz.as_deref().or(self.npy.as_deref()).or(self.images.as_deref())
    }
}

/// Loads the samples described by `spec` for a model with these inputs (full shapes) taking
/// these element types (random samples are drawn in them); data files decoding to more than
/// `max_bytes` are refused unread.
pub fn load(spec: &DataSpec, inputs: &[InputShape], dtypes: &[(String, DatumType)], max_bytes: u64) -> Result<Loaded, SpecError> {
    let kind = spec.kind().map_err(|m| err("", m))?;
    check_options(spec, kind)?;
    if spec.samples == Some(0) {
        return Err(err("samples", "`samples` must be at least 1"));
    }
    let (set, files, description) = match kind {
        DataKind::Npz => {
            let path = spec.npz.as_deref().unwrap_or(Path::new(""));
            let set = InputSet::from_npz_within(path, max_bytes).map_err(|e| err("npz", e.to_string()))?;
            (set, vec![path.to_path_buf()], format!("npz {}", path.display()))
        }
        DataKind::Npy => {
            let path = spec.npy.as_deref().unwrap_or(Path::new(""));
            let input = target_input(spec, inputs)?;
            let set = InputSet::from_npy_within(path, &input.0, max_bytes).map_err(|e| err("npy", e.to_string()))?;
            (set, vec![path.to_path_buf()], format!("npy {} -> {}", path.display(), input.0))
        }
        DataKind::Images => {
            let dir = spec.images.as_deref().unwrap_or(Path::new(""));
            let input = target_input(spec, inputs)?;
            let options = image_options(spec, input)?;
            let files = list_files(dir);
            // Every image becomes an f32 sample of the input's shape: refuse a folder too big to hold.
            let held = (files.len() as u64).saturating_mul(input.1.iter().product::<usize>() as u64).saturating_mul(4);
            if held > max_bytes {
                return Err(err(
                    "images",
                    format!(
                        "{}: {} images decode to {}, more than the {} this run may still use (the memory limit, --max-memory)",
                        dir.display(),
                        files.len(),
                        crate::memory::human(held),
                        crate::memory::human(max_bytes)
                    ),
                ));
            }
            let set = InputSet::from_image_dir(dir, &input.0, &options).map_err(|e| err("images", e.to_string()))?;
            let description = format!(
                "images {} -> {} ({}x{}, {:?}, {:?})",
                dir.display(),
                input.0,
                options.height,
                options.width,
                options.layout,
                options.channel_order
            );
            (set, files, description)
        }
        DataKind::Random => {
            let r = spec.random.clone().unwrap_or_default();
            let distribution = match r.distribution {
                DistributionKind::Uniform => {
                    if r.mean.is_some() || r.std.is_some() {
                        return Err(err("random", "`mean` and `std` apply to `distribution: normal`; uniform takes `low` and `high`"));
                    }
                    Distribution::Uniform { lo: r.low.unwrap_or(0.0), hi: r.high.unwrap_or(1.0) }
                }
                DistributionKind::Normal => {
                    if r.low.is_some() || r.high.is_some() {
                        return Err(err("random", "`low` and `high` apply to `distribution: uniform`; normal takes `mean` and `std`"));
                    }
                    Distribution::Normal { mean: r.mean.unwrap_or(0.0), std: r.std.unwrap_or(1.0) }
                }
            };
            let n = spec.samples.unwrap_or(DEFAULT_RANDOM_SAMPLES);
            let set = InputSet::random(inputs, n, distribution, r.seed)
                .and_then(|set| set.into_dtypes(dtypes))
                .map_err(|e| err("random", e.to_string()))?;
            (set, Vec::new(), format!("{n} random samples, {distribution:?}, seed {}", r.seed))
        }
    };
    let mut set = match spec.samples {
        Some(n) if kind != DataKind::Random => set.take(n).map_err(|e| err("samples", e.to_string()))?,
        _ => set,
    };
    set.check_shapes(inputs).map_err(|e| err(source_key(kind), e.to_string()))?;
    Ok(Loaded { set, files, description })
}

fn source_key(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Npz => "npz",
        DataKind::Npy => "npy",
        DataKind::Images => "images",
        DataKind::Random => "random",
    }
}

/// Rejects options that do not apply to the source.
fn check_options(spec: &DataSpec, kind: DataKind) -> Result<(), SpecError> {
    let image_only = [
        ("height", spec.height.is_some()),
        ("width", spec.width.is_some()),
        ("mean", spec.mean.is_some()),
        ("std", spec.std.is_some()),
        ("layout", spec.layout.is_some()),
        ("channel_order", spec.channel_order.is_some()),
    ];
    if kind != DataKind::Images
        && let Some((key, _)) = image_only.iter().find(|(_, on)| *on)
    {
        return Err(err(key, format!("`{key}` applies to `images` sources only")));
    }
    if spec.input.is_some() && !matches!(kind, DataKind::Npy | DataKind::Images) {
        return Err(err("input", "`input` applies to `npy` and `images` sources (an npz names its arrays after the inputs)"));
    }
    Ok(())
}

/// The model input a single-array source feeds.
fn target_input<'a>(spec: &DataSpec, inputs: &'a [InputShape]) -> Result<&'a InputShape, SpecError> {
    let names = || inputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    match &spec.input {
        Some(name) => inputs.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let close = whittle_passes::registry::closest(name, inputs.iter().map(|(n, _)| n.as_str()));
            let hint = close.first().map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            err("input", format!("`{name}` is not an input of the model (inputs: {}){hint}", names()))
        }),
        None => match inputs {
            [one] => Ok(one),
            _ => Err(err("", format!("the model has several inputs ({}): say which one this data feeds with `input:`", names()))),
        },
    }
}

fn image_options(spec: &DataSpec, (name, shape): &InputShape) -> Result<ImageOptions, SpecError> {
    let layout = match spec.layout.unwrap_or(LayoutSpec::Nchw) {
        LayoutSpec::Nchw => ImageLayout::Nchw,
        LayoutSpec::Nhwc => ImageLayout::Nhwc,
    };
    let (h, w) = match (layout, shape.as_slice()) {
        (ImageLayout::Nchw, [_, _, h, w]) | (ImageLayout::Nhwc, [_, h, w, _]) => (*h, *w),
        _ => return Err(err("images", format!("input `{name}` has shape {shape:?}; images need a 4-D input"))),
    };
    let dim = |v: usize| u32::try_from(v).map_err(|_| err("images", format!("input `{name}`: dimension {v} is too large for an image")));
    let defaults = ImageOptions::default();
    Ok(ImageOptions {
        height: match spec.height {
            Some(v) => v,
            None => dim(h)?,
        },
        width: match spec.width {
            Some(v) => v,
            None => dim(w)?,
        },
        mean: spec.mean.unwrap_or(defaults.mean),
        std: spec.std.unwrap_or(defaults.std),
        layout,
        channel_order: match spec.channel_order.unwrap_or(ChannelOrderSpec::Rgb) {
            ChannelOrderSpec::Rgb => ChannelOrder::Rgb,
            ChannelOrderSpec::Bgr => ChannelOrder::Bgr,
        },
    })
}

/// Every file under `dir` (one level of sub-folders), sorted, for the fingerprint.
fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Ok(sub) = std::fs::read_dir(&path) {
                out.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
