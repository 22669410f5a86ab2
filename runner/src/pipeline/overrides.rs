//! Command-line values that replace the pipeline's per-model settings, so one pipeline file
//! serves many models.
//!
//! The rule (docs/pipeline-format.md): with `--model`, the file is a recipe for that model: the
//! file's settings that describe its own model (`inputs`, `calibration`, `evaluation`, the
//! `export` paths) no longer apply unless given again on the command line. Input shapes come from
//! the `--input` flags (the complete set) or the new model's own concrete shapes; evaluation data
//! from `--eval`, else seeded random samples; the output from `--out`, else
//! `out/MODEL.PIPELINE.onnx`. Without `--model`, each flag replaces the one setting it names.

use std::path::PathBuf;

use super::spec::{DataSpec, RandomSpec};
use super::{Diagnostic, Origin, Pipeline, PipelineError, Position, Setting};

/// Values given on the command line (or by a program), each replacing the pipeline's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Another model: the pipeline becomes a recipe for it (see the module doc).
    pub model: Option<PathBuf>,
    /// `NAME=DIMS`: replaces that input's shape, or adds the input (with `model`: the complete
    /// set, the file's `inputs` no longer apply).
    pub inputs: Vec<(String, Vec<i64>)>,
    /// Data source: a path (`.npz`, `.npy`, folder of images) or `random[:SEED]`.
    pub calibration: Option<String>,
    pub evaluation: Option<String>,
    /// Also moves the report beside it (`.report.json`) unless `report` is given.
    pub output: Option<PathBuf>,
    pub report: Option<PathBuf>,
}

/// Where `--model M` writes without `--out`: `out/M.PIPELINE.onnx` in the current folder (the
/// model's and the pipeline's file stems), never a path the pipeline names for its own model.
pub fn default_output(model: &std::path::Path, pipeline: &std::path::Path) -> PathBuf {
    let stem =
        |p: &std::path::Path, fallback: &str| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| fallback.into());
    PathBuf::from("out").join(format!("{}.{}.onnx", stem(model, "model"), stem(pipeline, "pipeline")))
}

/// Parses a data argument: `random`, `random:SEED`, or a path whose kind is told by its
/// extension (`.npz`, `.npy`) or by being a folder (images).
pub fn parse_data_arg(arg: &str) -> Result<DataSpec, String> {
    if let Some(rest) = arg.strip_prefix("random") {
        let seed = match rest.strip_prefix(':') {
            None if rest.is_empty() => 0,
            Some(s) => s.parse::<u64>().map_err(|_| format!("`{arg}`: the seed after `random:` must be a non-negative integer"))?,
            None => return parse_path(arg),
        };
        return Ok(DataSpec { random: Some(RandomSpec { seed, ..RandomSpec::default() }), ..DataSpec::default() });
    }
    parse_path(arg)
}

fn parse_path(arg: &str) -> Result<DataSpec, String> {
    let path = PathBuf::from(arg);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npz") => Ok(DataSpec { npz: Some(path), ..DataSpec::default() }),
        Some("npy") => Ok(DataSpec { npy: Some(path), ..DataSpec::default() }),
        _ if path.is_dir() => Ok(DataSpec { images: Some(path), ..DataSpec::default() }),
        _ => Err(format!("`{arg}`: give an .npz or .npy file, a folder of images, or random[:SEED]")),
    }
}

/// The pipeline's spec with its source replaced by `new`'s: options that still apply (sample
/// count; image preprocessing when both are image folders; the input name) are kept.
fn merge_data(old: Option<&DataSpec>, new: DataSpec) -> DataSpec {
    let Some(old) = old else { return new };
    let mut merged = new.clone();
    merged.samples = old.samples;
    if new.images.is_some() && old.images.is_some() {
        merged = DataSpec { images: new.images, ..old.clone() };
    } else if (new.npy.is_some() || new.images.is_some()) && (old.npy.is_some() || old.images.is_some()) {
        merged.input = old.input.clone();
    }
    merged
}

impl Pipeline {
    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), PipelineError> {
        let flag_error = |flag: String, message: String| Diagnostic {
            file: self.file.clone(),
            position: Position::Flag(flag),
            message,
            did_you_mean: Vec::new(),
        };
        let mut errors = Vec::new();
        if let Some(m) = &o.model {
            self.model = Some(Setting { value: m.clone(), origin: Origin::Flag(format!("--model {}", m.display())) });
            // A recipe for another model: what the file says about its own model goes (what
            // a --set gave on the command line stays).
            let from_file = |o: &Origin| matches!(o, Origin::File(_));
            self.inputs.retain(|s| !from_file(&s.origin));
            for slot in [&mut self.calibration, &mut self.evaluation] {
                if slot.as_ref().is_some_and(|s| from_file(&s.origin)) {
                    *slot = None;
                }
            }
            if self.report.as_ref().is_some_and(|s| from_file(&s.origin)) {
                self.report = None;
            }
            if self.output.as_ref().is_none_or(|s| from_file(&s.origin)) {
                self.output =
                    Some(Setting { value: default_output(m, &self.file), origin: Origin::Flag(format!("--model {}", m.display())) });
            }
        }
        for (k, (name, dims)) in o.inputs.iter().enumerate() {
            let flag = format!("--input {name}={}", dims.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
            if o.inputs[..k].iter().any(|(n, _)| n == name) {
                errors.push(flag_error(flag, format!("input `{name}` is given twice")));
                continue;
            }
            let setting = Setting { value: (name.clone(), dims.clone()), origin: Origin::Flag(flag) };
            match self.inputs.iter_mut().find(|s| s.value.0 == *name) {
                Some(existing) => *existing = setting,
                None => self.inputs.push(setting),
            }
        }
        for (arg, slot, flag) in [(&o.calibration, &mut self.calibration, "--calibration"), (&o.evaluation, &mut self.evaluation, "--eval")]
        {
            let Some(arg) = arg else { continue };
            match parse_data_arg(arg) {
                Ok(spec) => {
                    let merged = merge_data(slot.as_ref().map(|s| &s.value), spec);
                    *slot = Some(Setting { value: merged, origin: Origin::Flag(format!("{flag} {arg}")) });
                }
                Err(message) => errors.push(flag_error(format!("{flag} {arg}"), message)),
            }
        }
        if let Some(p) = &o.output {
            self.output = Some(Setting { value: p.clone(), origin: Origin::Flag(format!("--out {}", p.display())) });
            // The report follows the output unless given too: a file's `export.report` belongs
            // with its `export.output`.
            self.report = None;
        }
        if let Some(p) = &o.report {
            self.report = Some(Setting { value: p.clone(), origin: Origin::Flag(format!("--report {}", p.display())) });
        }
        if errors.is_empty() { Ok(()) } else { Err(PipelineError { diagnostics: errors }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_arguments() {
        assert_eq!(parse_data_arg("random").unwrap().random.unwrap().seed, 0);
        assert_eq!(parse_data_arg("random:7").unwrap().random.unwrap().seed, 7);
        assert!(parse_data_arg("random:x").is_err());
        assert_eq!(parse_data_arg("a/b.NPZ").unwrap().npz, Some(PathBuf::from("a/b.NPZ")));
        assert_eq!(parse_data_arg("x.npy").unwrap().npy, Some(PathBuf::from("x.npy")));
        assert!(parse_data_arg("x.bin").is_err());
    }

    #[test]
    fn merging_keeps_what_applies() {
        let old = DataSpec { images: Some("a".into()), height: Some(48), samples: Some(3), ..DataSpec::default() };
        let m = merge_data(Some(&old), DataSpec { images: Some("b".into()), ..DataSpec::default() });
        assert_eq!((m.images.as_deref(), m.height, m.samples), (Some(std::path::Path::new("b")), Some(48), Some(3)));
        let m = merge_data(Some(&old), DataSpec { npz: Some("c.npz".into()), ..DataSpec::default() });
        assert_eq!((m.images, m.height, m.samples), (None, None, Some(3)));
    }
}
