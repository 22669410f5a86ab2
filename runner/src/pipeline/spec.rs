//! The serde shape of a pipeline file (see `docs/pipeline-format.md`). Every struct rejects
//! unknown keys; checks that need the model or the file system come later (`check`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::steps::Step;

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineFile {
    /// Format version; only 1 exists.
    #[serde(default)]
    pub version: Option<u32>,
    /// Free text, shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Input name -> full shape (batch axis first). Kept in file order.
    #[serde(default)]
    pub inputs: InputsSpec,
    #[serde(default)]
    pub calibration: Option<DataSpec>,
    #[serde(default)]
    pub evaluation: Option<DataSpec>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub verify: VerifySpec,
    #[serde(default)]
    pub export: ExportSpec,
}

/// `inputs:` in file order (a map with duplicate keys is rejected by the YAML parser).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InputsSpec(pub Vec<(String, Vec<i64>)>);

impl<'de> Deserialize<'de> for InputsSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InputsSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map from input name to its shape, e.g. `x: [1, 3, 224, 224]`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<InputsSpec, A::Error> {
                let mut out: Vec<(String, Vec<i64>)> = Vec::new();
                while let Some((name, dims)) = map.next_entry::<String, Vec<i64>>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!("input `{name}` is given twice")));
                    }
                    out.push((name, dims));
                }
                Ok(InputsSpec(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Where a set of input samples comes from, and how to prepare it. Exactly one of `npz`, `npy`,
/// `images` and `random` is set (checked by `check`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// An `.npz` archive: one array per model input (axis 0 = sample), optional `labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npz: Option<PathBuf>,
    /// An `.npy` array for the one input of a single-input model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npy: Option<PathBuf>,
    /// A folder of images (one sub-folder per class for labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// Seeded random samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomSpec>,
    /// The model input fed by `npy` or `images` (default: the model's only input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Use only the first N samples (random: how many to draw, default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Images: target height and width (default: from the input's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Images: per-channel mean and std applied after scaling to [0, 1] (default ImageNet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// Images: `nchw` (default) or `nhwc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutSpec>,
    /// Images: `rgb` (default) or `bgr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_order: Option<ChannelOrderSpec>,
}

/// Image layout names in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutSpec {
    Nchw,
    Nhwc,
}

/// Channel order names in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrderSpec {
    Rgb,
    Bgr,
}

/// `random: {distribution: uniform, low: 0, high: 1, seed: 0}` or
/// `random: {distribution: normal, mean: 0, std: 1, seed: 0}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    #[serde(default)]
    pub distribution: DistributionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f32>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionKind {
    #[default]
    Uniform,
    Normal,
}

/// How to compare the candidate with the original, and the gate thresholds. A threshold left
/// out is not checked.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySpec {
    /// Run the evaluation samples after every exact step and stop at the first step whose
    /// outputs moved by more than `differential_tolerance`.
    pub differential: bool,
    /// Largest allowed max |original - candidate| / max |original| per output.
    #[serde(deserialize_with = "finite_non_negative")]
    pub differential_tolerance: f64,
    /// Evaluation samples used by the differential check (at least 1; `differential: false`
    /// turns the check off).
    #[serde(deserialize_with = "at_least_one")]
    pub differential_samples: usize,
    /// k of the top-k agreement.
    pub top_k: usize,
    /// Per-position argmax agreement along this axis of every output.
    pub argmax_axis: Option<isize>,
    /// Text-mask IoU of every output at this threshold (PP-OCR det: 0.3).
    pub mask_threshold: Option<f32>,
    /// Greedy CTC decoding of the first output `[1, T, classes]` (PP-OCR rec).
    pub ctc: bool,
    /// Timed runs of each model (0 = no latency measurement).
    pub latency_runs: usize,
    pub latency_warmup: usize,

    /// Gate: lowest per-output SQNR in dB.
    pub min_sqnr_db: Option<f64>,
    /// Gate: lowest per-output cosine similarity.
    pub min_cosine: Option<f64>,
    /// Gate: 1 - top-1 agreement on classifier outputs (fraction of samples whose class changed).
    pub max_top1_drop: Option<f64>,
    /// Gate: accuracy lost against the labels (integer labels: classification; text labels: CTC).
    pub max_accuracy_drop: Option<f64>,
    /// Gate: accuracy lost by the worst class.
    pub max_worst_class_drop: Option<f64>,
    /// Gate: per-position argmax agreement (needs `argmax_axis`).
    pub min_argmax_agreement: Option<f64>,
    /// Gate: CTC sequence agreement (needs `ctc`).
    pub min_ctc_agreement: Option<f64>,
    /// Gate: text-mask IoU (needs `mask_threshold`).
    pub min_mask_iou: Option<f64>,
    /// Gate: candidate / original median latency; fails only when the whole 95% confidence
    /// interval lies above it.
    pub max_latency_ratio: Option<f64>,
    /// Gate: candidate / original size (both as whittle encodes them, all tensors inline).
    pub max_size_ratio: Option<f64>,
}

/// A tolerance: a finite number, not negative (`.nan` would fail every check).
fn finite_non_negative<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !v.is_finite() || v < 0.0 {
        return Err(serde::de::Error::custom(format!("differential_tolerance {v} is not a finite, non-negative number")));
    }
    Ok(v)
}

/// A count that 0 would silently turn into "nothing checked".
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("differential_samples must be at least 1 (use `differential: false` to turn the check off)"));
    }
    Ok(v)
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec {
            differential: false,
            differential_tolerance: 1e-4,
            differential_samples: 4,
            top_k: 5,
            argmax_axis: None,
            mask_threshold: None,
            ctc: false,
            latency_runs: 20,
            latency_warmup: 3,
            min_sqnr_db: None,
            min_cosine: None,
            max_top1_drop: None,
            max_accuracy_drop: None,
            max_worst_class_drop: None,
            min_argmax_agreement: None,
            min_ctc_agreement: None,
            min_mask_iou: None,
            max_latency_ratio: None,
            max_size_ratio: None,
        }
    }
}

/// Where results go. Without `output`, nothing but the report is written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Default: the output path with `.report.json` in place of `.onnx`.
    #[serde(default)]
    pub report: Option<PathBuf>,
}
