//! Pipeline files: what to do to a model, on which data, how to judge the result and where to
//! write it. The format is documented in `docs/pipeline-format.md`.
//!
//! [`Pipeline::load`] parses a file (every step is built, so a misspelt pass or parameter fails
//! here); [`Pipeline::apply`] merges command-line [`Overrides`]; [`Pipeline::prepare`] loads the
//! model and the data and checks them against each other. Any problem is a [`PipelineError`]
//! whose diagnostics point at `FILE:LINE:COLUMN` (or at the flag that set the value), and
//! nothing has run or been written yet.
//!
//! Relative paths in the file resolve against the file's folder; paths given on the command
//! line resolve against the current directory.

mod data_source;
pub mod diagnostic;
pub mod locate;
mod overrides;
pub mod paths;
mod prepare;
pub mod set;
pub mod spec;
pub mod steps;

use std::path::{Path, PathBuf};

pub use data_source::DataKind;
pub use diagnostic::{Diagnostic, PipelineError, Position};
pub use locate::Seg;
pub use overrides::{Overrides, parse_data_arg};
pub use prepare::{PrepareOptions, Prepared};
pub use spec::{DataSpec, ExportSpec, VerifySpec};
pub use steps::Step;

/// Where a setting came from, so that an error about it points at the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The value at this path in the pipeline file.
    File(Vec<Seg>),
    /// A command-line flag (as the user would recognise it, e.g. `--input x=1,3,8,8`).
    Flag(String),
    /// Not given anywhere; a default was used.
    Default,
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn file(value: T, path: &[&str]) -> Setting<T> {
        Setting { value, origin: Origin::File(path.iter().map(|k| Seg::key(k)).collect()) }
    }
}

/// A parsed pipeline, with overrides applied. Paths are resolved (see the module doc).
#[derive(Debug)]
pub struct Pipeline {
    /// The pipeline file (as given), for messages; a made-up name for pipelines built in code.
    pub file: PathBuf,
    /// The file's text (used to locate errors and in the fingerprint).
    pub text: String,
    pub description: Option<String>,
    pub model: Option<Setting<PathBuf>>,
    /// Concrete input shapes (batch axis first), in file order, then flags.
    pub inputs: Vec<Setting<(String, Vec<i64>)>>,
    pub calibration: Option<Setting<DataSpec>>,
    pub evaluation: Option<Setting<DataSpec>>,
    pub steps: Vec<Step>,
    pub verify: VerifySpec,
    pub output: Option<Setting<PathBuf>>,
    pub report: Option<Setting<PathBuf>>,
    /// The `--set KEY=VALUE` overrides applied to the file (part of the fingerprint).
    pub sets: Vec<String>,
}

impl Pipeline {
    /// Reads and parses a pipeline file.
    pub fn load(path: impl AsRef<Path>) -> Result<Pipeline, PipelineError> {
        Pipeline::load_with_sets(path, &[])
    }

    /// Reads a pipeline file, applies `--set KEY=VALUE` overrides to it (see [`set`]), then
    /// parses and validates the result. Errors in the file point at its lines; errors an
    /// override causes name the override.
    pub fn load_with_sets(path: impl AsRef<Path>, sets: &[String]) -> Result<Pipeline, PipelineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Diagnostic {
            file: path.to_path_buf(),
            position: Position::Unknown,
            message: format!("cannot read the pipeline: {e}"),
            did_you_mean: Vec::new(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Pipeline::parse_with_sets(&text, path, &base, sets)
    }

    /// [`Pipeline::parse`], then `--set KEY=VALUE` overrides applied (see
    /// [`Pipeline::load_with_sets`]).
    pub fn parse_with_sets(text: &str, path: &Path, base: &Path, sets: &[String]) -> Result<Pipeline, PipelineError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let parsed = Pipeline::parse(text, path, base)?;
        if sets.is_empty() {
            return Ok(parsed);
        }
        let flag_error = |flag: &str, message: String| Diagnostic {
            file: path.to_path_buf(),
            position: Position::Flag(flag.to_string()),
            message,
            did_you_mean: Vec::new(),
        };
        let mut overrides = Vec::new();
        for arg in sets {
            let o = set::SetOverride::parse(arg).map_err(|m| flag_error(&format!("--set {arg}"), m))?;
            if o.path[0] == "model" {
                return Err(
                    flag_error(&o.flag, "give another model with --model, which also sets its inputs, data and output".into()).into()
                );
            }
            overrides.push(o);
        }
        let mut doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| diagnostic::from_yaml_error(path.to_path_buf(), &e))?;
        let original = doc.clone();
        for o in &overrides {
            o.apply(&mut doc).map_err(|m| flag_error(&o.flag, m))?;
        }
        let new_text = serde_norway::to_string(&doc).map_err(|e| flag_error(&overrides[0].flag, e.to_string()))?;
        let mut pipeline = Pipeline::parse(&new_text, path, base).map_err(|mut e| {
            for d in &mut e.diagnostics {
                // The override whose key the message is about, else the last one.
                let about = overrides.iter().rev().find(|o| o.is_about(&d.message, &original)).unwrap_or(&overrides[overrides.len() - 1]);
                d.position = Position::Flag(about.flag.clone());
            }
            e
        })?;
        // Locate later errors in the file as written; what an override set points at the flag.
        pipeline.text = text.to_string();
        for o in &overrides {
            pipeline.mark_set(o);
        }
        pipeline.sets = sets.to_vec();
        Ok(pipeline)
    }

    /// Gives the settings an override replaced the override's flag as their origin.
    fn mark_set(&mut self, o: &set::SetOverride) {
        let flag = || Origin::Flag(o.flag.clone());
        let second = o.path.get(1).map(String::as_str);
        match o.path[0].as_str() {
            "model" => self.model.iter_mut().for_each(|s| s.origin = flag()),
            "inputs" => self.inputs.iter_mut().filter(|s| second.is_none_or(|n| n == s.value.0)).for_each(|s| s.origin = flag()),
            "calibration" => self.calibration.iter_mut().for_each(|s| s.origin = flag()),
            "evaluation" => self.evaluation.iter_mut().for_each(|s| s.origin = flag()),
            "export" => {
                if second.is_none_or(|k| k == "output") {
                    self.output.iter_mut().for_each(|s| s.origin = flag());
                }
                if second.is_none_or(|k| k == "report") {
                    self.report.iter_mut().for_each(|s| s.origin = flag());
                }
            }
            _ => {}
        }
    }

    /// Parses pipeline text. `file` names it in messages; relative paths resolve against
    /// `base_dir`.
    pub fn parse(text: &str, file: impl Into<PathBuf>, base_dir: &Path) -> Result<Pipeline, PipelineError> {
        let file = file.into();
        // A UTF-8 byte-order mark (some editors write one) is not part of the YAML.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some(position) = too_deep(text) {
            return Err(Diagnostic {
                file,
                position,
                message: format!("the YAML nests deeper than {MAX_NESTING} levels; a pipeline never needs that"),
                did_you_mean: Vec::new(),
            }
            .into());
        }
        let parsed: spec::PipelineFile =
            serde_norway::from_str(text).map_err(|e| PipelineError::from(diagnostic::from_yaml_error(file.clone(), &e)))?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { normalize(&base_dir.join(p)) };
        let mut pipeline = Pipeline {
            file,
            text: text.to_string(),
            description: parsed.description,
            model: parsed.model.map(|m| Setting::file(resolve(m), &["model"])),
            inputs: parsed
                .inputs
                .0
                .into_iter()
                .map(|(name, dims)| Setting { origin: Origin::File(vec![Seg::key("inputs"), Seg::Key(name.clone())]), value: (name, dims) })
                .collect(),
            calibration: parsed.calibration.map(|d| Setting::file(resolve_data(d, &resolve), &["calibration"])),
            evaluation: parsed.evaluation.map(|d| Setting::file(resolve_data(d, &resolve), &["evaluation"])),
            steps: parsed.steps,
            verify: parsed.verify,
            output: parsed.export.output.map(|p| Setting::file(resolve(p), &["export", "output"])),
            report: parsed.export.report.map(|p| Setting::file(resolve(p), &["export", "report"])),
            sets: Vec::new(),
        };
        if let Some(v) = parsed.version
            && v != 1
        {
            return Err(pipeline
                .diagnostic(
                    &Origin::File(vec![Seg::key("version")]),
                    format!("pipeline format version {v} is not supported (this whittle reads version 1)"),
                )
                .into());
        }
        pipeline.capture_step_params();
        Ok(pipeline)
    }

    /// A pipeline built in code (no file): `name` labels it in messages and reports.
    pub fn from_steps(name: impl Into<PathBuf>, steps: Vec<Step>) -> Pipeline {
        Pipeline {
            file: name.into(),
            text: String::new(),
            description: None,
            model: None,
            inputs: Vec::new(),
            calibration: None,
            evaluation: None,
            steps,
            verify: VerifySpec::default(),
            output: None,
            report: None,
            sets: Vec::new(),
        }
    }

    /// A diagnostic about the setting from `origin`.
    pub fn diagnostic(&self, origin: &Origin, message: impl Into<String>) -> Diagnostic {
        let position = match origin {
            Origin::File(path) => locate::locate(&self.text, path),
            Origin::Flag(flag) => Position::Flag(flag.clone()),
            Origin::Default => Position::Unknown,
        };
        Diagnostic { file: self.file.clone(), position, message: message.into(), did_you_mean: Vec::new() }
    }

    /// Records each step's parameters as written (for reports): parse the text again as plain
    /// YAML values.
    fn capture_step_params(&mut self) {
        let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(&self.text) else { return };
        let Some(items) = doc.get("steps").and_then(|s| s.as_sequence()) else { return };
        for (step, item) in self.steps.iter_mut().zip(items) {
            if let Some(map) = item.as_mapping()
                && let Some((_, params)) = map.iter().next()
            {
                step.params = serde_json::to_value(params).unwrap_or(serde_json::Value::Null);
            }
        }
    }

    /// The step matching `what`: a 1-based index or a pass name (the first step running it).
    pub fn find_step(&self, what: &str) -> Result<usize, Vec<String>> {
        if let Ok(i) = what.parse::<usize>() {
            return if (1..=self.steps.len()).contains(&i) { Ok(i) } else { Err(Vec::new()) };
        }
        match self.steps.iter().position(|s| s.name == what) {
            Some(i) => Ok(i + 1),
            None => {
                Err(whittle_passes::registry::closest(what, self.steps.iter().map(|s| s.name)).into_iter().map(str::to_string).collect())
            }
        }
    }
}

/// The deepest `[`/`{` nesting a pipeline may have (the YAML parser takes seconds on 10^5).
const MAX_NESTING: usize = 64;

/// Where flow collections (`[...]`, `{...}`) first nest deeper than [`MAX_NESTING`], if they
/// do. Quoted strings and comments are skipped.
fn too_deep(text: &str) -> Option<Position> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    for c in text.chars() {
        column += 1;
        if c == '\n' {
            (line, column, comment) = (line + 1, 0, false);
            continue;
        }
        if comment {
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(Position::File { line, column });
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Removes `.` and `name/..` components without touching the file system (symbolic links are
/// not resolved, so this is only for display and joining, as a shell would show the path).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::ParentDir if matches!(out.last(), Some(Component::RootDir | Component::Prefix(_))) => {}
            other => out.push(other),
        }
    }
    if out.is_empty() { PathBuf::from(".") } else { out.iter().collect() }
}

/// Resolves the paths of a data spec.
fn resolve_data(mut d: DataSpec, resolve: &dyn Fn(PathBuf) -> PathBuf) -> DataSpec {
    d.npz = d.npz.map(resolve);
    d.npy = d.npy.map(resolve);
    d.images = d.images.map(resolve);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> Diagnostic {
        let e = Pipeline::parse(text, "p.yaml", Path::new(".")).unwrap_err();
        assert_eq!(e.diagnostics.len(), 1, "{e}");
        e.diagnostics[0].clone()
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let d = parse_err("steps:\n  - dead_code\n  - constant_folding: {max_growth_byte: 3}\n");
        assert_eq!(d.position, Position::File { line: 3, column: 24 });
        assert_eq!(d.message.split(':').next(), Some("steps[1].constant_folding"));
        assert_eq!(d.did_you_mean, ["max_growth_bytes"]);
        let d = parse_err("steps:\n  - dead_cod\n");
        assert_eq!(d.position, Position::File { line: 2, column: 5 });
        assert!(d.message.contains("did you mean `dead_code`"), "{d}");
        let d = parse_err("steps: [dead_code]\nverfiy: {}\n");
        assert_eq!((d.position, d.did_you_mean.first().map(String::as_str)), (Position::File { line: 2, column: 1 }, Some("verify")));
        let d = parse_err("version: 3\nsteps: []\n");
        assert_eq!(d.position, Position::File { line: 1, column: 10 });
    }

    #[test]
    fn deep_nesting_is_refused_at_once() {
        let text = format!("steps: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let d = parse_err(&text);
        assert!(d.message.contains("nests deeper than 64"), "{d}");
        assert_eq!(d.position, Position::File { line: 1, column: 8 + 64 });
        // Brackets inside quotes and comments do not count.
        let ok = format!("description: \"{}\"  # {}\nsteps: []\n", "[".repeat(100), "{".repeat(100));
        Pipeline::parse(&ok, "p.yaml", Path::new(".")).unwrap();
    }

    #[test]
    fn a_byte_order_mark_is_not_yaml() {
        let p = Pipeline::parse("\u{feff}steps:\n  - dead_code\n", "p.yaml", Path::new(".")).unwrap();
        assert_eq!(p.steps.len(), 1);
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(Path::new("pipelines/../testdata/m.onnx")), PathBuf::from("testdata/m.onnx"));
        assert_eq!(normalize(Path::new("../a/./b/../c")), PathBuf::from("../a/c"));
        assert_eq!(normalize(Path::new("/x/../../y")), PathBuf::from("/y"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn parses_steps_with_params() {
        let p =
            Pipeline::parse("steps:\n  - dead_code\n  - opset_conversion: {target: 13}\n  - remove_noops:\n", "p.yaml", Path::new("/b"))
                .unwrap();
        assert_eq!(p.steps.iter().map(|s| s.name).collect::<Vec<_>>(), ["dead_code", "opset_conversion", "remove_noops"]);
        assert_eq!(p.steps[1].params, serde_json::json!({"target": 13}));
        let _ = parse_err;
    }
}
