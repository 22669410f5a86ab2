//! Loading and cross-checking everything a pipeline names before anything runs: the model, the
//! input shapes against the model's inputs, the data against the shapes, the output paths, and
//! the memory the run will need against the limit ([`crate::memory`]).

use std::path::PathBuf;

use whittle_graph::Model;
use whittle_graph::shape::infer::{InferOptions, infer_shapes};

use super::data_source::{self, Loaded};
use super::paths;
use super::spec::{DataSpec, RandomSpec};
use super::{Diagnostic, Origin, Pipeline, PipelineError, Seg, Setting};
use crate::data::{DatumType, InputShape};
use crate::memory::{self, MemoryLimit, RunShape};

/// How a pipeline is prepared, besides what it says.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The most memory the run may need; data files decoding to more are refused unread.
    pub memory: MemoryLimit,
    /// Samples the run will execute at the same time (its worker threads).
    pub parallel: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions { memory: MemoryLimit::machine_default(), parallel: rayon::current_num_threads() }
    }
}

/// A pipeline's model and data, loaded and checked.
#[derive(Debug)]
pub struct Prepared {
    pub model_path: PathBuf,
    /// The model, validated, with shapes inferred for `input_shapes`.
    pub model: Model,
    /// Every runtime input of the model with its concrete shape, in model order.
    pub input_shapes: Vec<(String, Vec<i64>)>,
    pub evaluation: Loaded,
    pub calibration: Option<Loaded>,
    pub output: Option<PathBuf>,
    pub report: Option<PathBuf>,
    /// Things the user should know (defaults taken, unknown ops).
    pub notes: Vec<String>,
    /// Every path the run reads: nothing it writes may be one of them.
    pub reads: Vec<paths::Read>,
}

impl Prepared {
    /// The input shapes as the data and verify modules take them.
    pub fn shapes_usize(&self) -> Vec<InputShape> {
        to_usize(&self.input_shapes)
    }
}

fn to_usize(shapes: &[(String, Vec<i64>)]) -> Vec<InputShape> {
    shapes.iter().map(|(n, d)| (n.clone(), d.iter().map(|&v| v.max(0) as usize).collect())).collect()
}

impl Pipeline {
    /// Loads the model and the data and checks them (see the module doc), with the default
    /// [`PrepareOptions`]. Collects every problem it can before giving up.
    pub fn prepare(&self) -> Result<Prepared, PipelineError> {
        self.prepare_with(&PrepareOptions::default())
    }

    /// [`Pipeline::prepare`] with a memory limit and parallelism of one's own.
    pub fn prepare_with(&self, options: &PrepareOptions) -> Result<Prepared, PipelineError> {
        let mut errors: Vec<Diagnostic> = Vec::new();
        let fail = |errors: Vec<Diagnostic>| Err(PipelineError { diagnostics: errors });

        // The model.
        let Some(model_setting) = &self.model else {
            return fail(vec![self.diagnostic(&Origin::Default, "no model: set `model:` in the pipeline or pass --model")]);
        };
        let model_path = model_setting.value.clone();
        let mut model = match whittle_graph::load_model(&model_path) {
            Ok(m) => m,
            Err(e) => return fail(vec![self.diagnostic(&model_setting.origin, e.to_string())]),
        };
        let issues = whittle_graph::validate::validate(&model);
        if !issues.is_empty() {
            let e = whittle_graph::ModelError::Invalid { path: model_path.clone(), issues };
            return fail(vec![self.diagnostic(&model_setting.origin, e.to_string())]);
        }

        // Input shapes against the model's runtime inputs.
        let input_shapes = self.check_inputs(&model, &model_setting.origin, &mut errors);
        let mut notes = Vec::new();
        if errors.is_empty() {
            match infer_shapes(&mut model, &InferOptions { input_shapes: input_shapes.clone() }) {
                Ok(report) if !report.unknown_ops.is_empty() => notes.push(format!(
                    "shape inference has no rule for {}; MACs of layers after them may be unknown",
                    report.unknown_ops.join(", ")
                )),
                Ok(_) => {}
                Err(e) => errors.push(self.diagnostic(&inputs_origin(self), format!("{}: {e}", model_path.display()))),
            }
        }
        if !errors.is_empty() {
            return fail(errors);
        }

        // Data.
        let shapes = to_usize(&input_shapes);
        let dtypes: Vec<(String, DatumType)> = model
            .graph
            .runtime_inputs()
            .filter_map(|v| Some((model.graph.value(v).name.clone(), crate::verify::datum_type(model.graph.value(v).dtype?)?)))
            .collect();
        let max_bytes = options.memory.bytes;
        let evaluation = match &self.evaluation {
            Some(s) => self.load_data(s, &shapes, &dtypes, max_bytes, &mut errors),
            None => {
                let spec = DataSpec { random: Some(RandomSpec::default()), ..DataSpec::default() };
                let loaded = self.load_data(&Setting { value: spec, origin: Origin::Default }, &shapes, &dtypes, max_bytes, &mut errors);
                notes.push(format!(
                    "no evaluation data given: {} seeded random samples (uniform [0, 1); integer inputs rounded, so 0 or 1); give real data for meaningful task metrics",
                    data_source::DEFAULT_RANDOM_SAMPLES
                ));
                loaded
            }
        };
        let held = evaluation.as_ref().map_or(0, |e| e.set.held_bytes());
        let calibration =
            self.calibration.as_ref().and_then(|s| self.load_data(s, &shapes, &dtypes, max_bytes.saturating_sub(held), &mut errors));

        // Memory: refused before any sample runs, with the estimate.
        if let Some(e) = &evaluation {
            let held = held + calibration.as_ref().map_or(0, |c| c.set.held_bytes());
            let run = RunShape { samples: e.set.len(), parallel: options.parallel.min(e.set.len()), held_data: held };
            let estimate = memory::estimate(&model, run);
            if let Err(m) = options.memory.check("this run", estimate.total()) {
                errors.push(self.diagnostic(&model_setting.origin, format!("{m}: {}", estimate.describe())));
            }
        }

        // Outputs: never over anything this run reads, never a folder.
        let reads = self.reads(&model_path, &model);
        let output = self.output.as_ref().map(|s| s.value.clone());
        let report = self.report.as_ref().map(|s| s.value.clone()).or_else(|| output.as_ref().map(|o| o.with_extension("report.json")));
        let report_origin = self
            .report
            .as_ref()
            .map(|s| s.origin.clone())
            .unwrap_or_else(|| self.output.as_ref().map_or(Origin::Default, |s| s.origin.clone()));
        if let Some(out) = &self.output {
            let data_file =
                out.value.with_file_name(format!("{}.data", out.value.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()));
            for (path, what) in [(&out.value, "output model"), (&data_file, "output's external data file")] {
                if let Some(m) = paths::conflict(path, what, &reads) {
                    errors.push(self.diagnostic(&out.origin, m));
                }
            }
            if out.value.is_dir() {
                errors.push(self.diagnostic(&out.origin, format!("the output path {} is a folder", out.value.display())));
            }
        }
        if let Some(r) = &report {
            if let Some(m) = paths::conflict(r, "report", &reads) {
                errors.push(self.diagnostic(&report_origin, m));
            }
            if r.is_dir() {
                errors.push(self.diagnostic(&report_origin, format!("the report path {} is a folder", r.display())));
            }
            if let Some(o) = &output
                && paths::same_file(r, o)
            {
                errors.push(self.diagnostic(&report_origin, "the report path is the output model path"));
            }
        }
        match (evaluation, errors.is_empty()) {
            (Some(evaluation), true) => {
                Ok(Prepared { model_path, model, input_shapes, evaluation, calibration, output, report, notes, reads })
            }
            _ => fail(errors),
        }
    }

    /// Every runtime input of the model with a concrete shape: from the pipeline, or the
    /// model's own declared shape when fully known. Records problems in `errors`.
    fn check_inputs(&self, model: &Model, model_origin: &Origin, errors: &mut Vec<Diagnostic>) -> Vec<(String, Vec<i64>)> {
        let g = &model.graph;
        let declared: Vec<(String, Option<whittle_graph::Shape>)> =
            g.runtime_inputs().map(|v| (g.value(v).name.clone(), g.value(v).shape.clone())).collect();
        let names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
        for s in &self.inputs {
            let (name, _) = &s.value;
            if !names.contains(&name.as_str()) {
                let origin = match &s.origin {
                    Origin::File(path) => {
                        Origin::File(path[..path.len() - 1].iter().cloned().chain([Seg::KeyName(name.clone())]).collect())
                    }
                    other => other.clone(),
                };
                let mut d = self.diagnostic(&origin, format!("`{name}` is not an input of the model (inputs: {})", names.join(", ")));
                d.did_you_mean = whittle_passes::registry::closest(name, names.iter().copied()).into_iter().map(str::to_string).collect();
                errors.push(d);
            }
        }
        let mut shapes = Vec::new();
        for (name, shape) in &declared {
            let shape_text = shape.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
            match self.inputs.iter().find(|s| s.value.0 == *name) {
                Some(s) => {
                    let dims = &s.value.1;
                    if let Some(problem) = dims_problem(dims, shape.as_ref()) {
                        errors.push(self.diagnostic(&s.origin, format!("input `{name}`: {problem} (the model declares {shape_text})")));
                    }
                    shapes.push((name.clone(), dims.clone()));
                }
                None => match shape.as_ref().and_then(|s| s.concrete()) {
                    Some(dims) if dims.iter().all(|&d| d > 0) => shapes.push((name.clone(), dims)),
                    _ => {
                        let origin = if self.inputs.is_empty() { model_origin.clone() } else { inputs_origin(self) };
                        errors.push(self.diagnostic(&origin, missing_shape_message(name, shape.as_ref())));
                    }
                },
            }
        }
        shapes
    }

    /// Every path this run reads: the model, its external data files, the pipeline file, the
    /// data files and image folders.
    fn reads(&self, model_path: &std::path::Path, model: &Model) -> Vec<paths::Read> {
        let read = |path: PathBuf, what: &str, folder: bool| paths::Read { path, what: what.to_string(), folder };
        let mut reads = vec![read(model_path.to_path_buf(), "input model", false)];
        let dir = model_path.parent().unwrap_or(std::path::Path::new(""));
        let g = &model.graph;
        let mut locations: Vec<String> =
            g.value_ids().filter_map(|v| g.value(v).constant()?.tensor.external_entry("location").map(str::to_string)).collect();
        locations.sort();
        locations.dedup();
        reads.extend(locations.into_iter().map(|l| read(dir.join(l), "model's external data file", false)));
        if self.file.is_file() {
            reads.push(read(self.file.clone(), "pipeline", false));
        }
        for (spec, what) in [(&self.evaluation, "evaluation data"), (&self.calibration, "calibration data")] {
            if let Some(s) = spec
                && let Some(p) = s.value.path()
            {
                reads.push(read(p.to_path_buf(), what, s.value.images.is_some()));
            }
        }
        reads
    }

    fn load_data(
        &self,
        s: &Setting<DataSpec>,
        shapes: &[InputShape],
        dtypes: &[(String, DatumType)],
        max_bytes: u64,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<Loaded> {
        match data_source::load(&s.value, shapes, dtypes, max_bytes) {
            Ok(loaded) => Some(loaded),
            Err((sub, message)) => {
                let origin = match &s.origin {
                    Origin::File(path) => Origin::File(path.iter().cloned().chain(sub).collect()),
                    other => other.clone(),
                };
                errors.push(self.diagnostic(&origin, message));
                None
            }
        }
    }
}

/// Where to point for a problem with the inputs as a whole.
fn inputs_origin(p: &Pipeline) -> Origin {
    p.inputs.first().map(|s| s.origin.clone()).map_or(Origin::File(vec![Seg::key("inputs")]), |o| match o {
        Origin::File(_) => Origin::File(vec![Seg::key("inputs")]),
        other => other,
    })
}

/// What to say about a model input without a concrete shape: which dimensions have no value,
/// and the flag to give (known dimensions filled in, a leading symbolic one as 1).
fn missing_shape_message(name: &str, declared: Option<&whittle_graph::Shape>) -> String {
    let Some(shape) = declared else {
        return format!(
            "model input `{name}` has no declared shape: give it under `inputs:` or with --input {name}=D1,D2,... (--input {name}=scalar for a scalar)"
        );
    };
    let unknown: Vec<String> = shape
        .0
        .iter()
        .enumerate()
        .filter(|(_, d)| d.known().is_none_or(|k| k <= 0))
        .map(|(i, d)| match d {
            whittle_graph::Dim::Sym(s) if s != "?" => format!("{i} (`{s}`)"),
            _ => format!("{i}"),
        })
        .collect();
    let example: Vec<String> = shape
        .0
        .iter()
        .enumerate()
        .map(|(i, d)| match d.known().filter(|k| *k > 0) {
            Some(k) => k.to_string(),
            None if i == 0 => "1".into(),
            None => match d {
                whittle_graph::Dim::Sym(s) if s != "?" => format!("<{s}>"),
                _ => format!("<d{i}>"),
            },
        })
        .collect();
    format!(
        "model input `{name}` has shape {shape}: dimension{} {} {} no value; give a concrete shape under `inputs:` or with --input {name}={}",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", "),
        if unknown.len() == 1 { "has" } else { "have" },
        example.join(",")
    )
}

/// Why `dims` cannot be the shape of an input declared as `declared`. Any rank is fine (a
/// scalar is `[]`); whittle runs one sample of this full shape at a time.
fn dims_problem(dims: &[i64], declared: Option<&whittle_graph::Shape>) -> Option<String> {
    if let Some(d) = dims.iter().find(|&&d| d < 1) {
        return Some(format!("dimension {d} in {dims:?} is not a positive integer"));
    }
    let declared = declared?;
    if declared.rank() != dims.len() {
        return Some(format!("shape {dims:?} has rank {}, the model's input has rank {}", dims.len(), declared.rank()));
    }
    for (axis, (d, want)) in declared.0.iter().zip(dims).enumerate() {
        if let Some(k) = d.known().filter(|k| *k >= 0)
            && k != *want
        {
            return Some(format!("axis {axis} is {want} in {dims:?}, the model fixes it to {k}"));
        }
    }
    None
}
