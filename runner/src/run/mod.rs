//! [`run_pipeline`]: a whole run as one library call (the CLI's `whittle run` is a thin shell
//! around it).
//!
//! Order: check everything (model, inputs, data, paths; a [`RunError::Invalid`] names the
//! place), compute the fingerprint and skip when the output is up to date, run the original
//! with tract on the evaluation set, run the steps (with the differential check after exact
//! steps when asked), compare the candidate with the original and time both, judge the gate,
//! then write: on a pass the model (atomically) and the report; on a failure only the report.

mod differential;
mod progress;

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use rayon::prelude::*;
use whittle_graph::Model;

use crate::data::{InputSet, Labels};
use crate::fingerprint::{self, Fingerprint};
use crate::gate::{self, GateResult, Measured};
use crate::manager::{self, ManagerOptions, ModelFigures, StepError, StepRecord, StopReason};
use crate::pipeline::{DataSpec, Diagnostic, Origin, Pipeline, PipelineError, Position, Prepared};
use crate::report::{self, DataInfo, Files, InputInfo, ModelInfo, PipelineInfo, Report, RunStatus, Verification};
use crate::verify::{self, CompareOptions, LatencyOptions, Runnable, VerifyError};

/// How to run a pipeline, besides what the pipeline says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Redo the work even when the output is up to date.
    pub force: bool,
    /// Run the steps up to this one (1-based index or pass name), then verify and report.
    pub stop_after: Option<String>,
    /// Write the canonical text form of the model before the first step and after each step.
    pub dump_after_each: Option<PathBuf>,
    /// Worker threads for running evaluation samples (default: one per core). Latency is always
    /// measured on one thread.
    pub threads: Option<usize>,
    /// Show progress bars (only ever on a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub report: Report,
    /// The model file written, if any.
    pub output_written: Option<PathBuf>,
    /// The report file written, if any.
    pub report_written: Option<PathBuf>,
}

/// Why a run stopped without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline, the model or the data is wrong; nothing ran, nothing was written.
    #[error(transparent)]
    Invalid(#[from] PipelineError),
    /// A step failed; the report (status `error`) was written when a report path was set.
    #[error("{error}")]
    Step { error: StepError, report: Box<Report> },
    /// Writing a result failed.
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: String },
    /// The environment failed (e.g. the thread pool could not start).
    #[error("{0}")]
    Internal(String),
}

/// Runs a pipeline (with its overrides already applied); see the module doc.
pub fn run_pipeline(pipeline: &Pipeline, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let stop_after = match &options.stop_after {
        None => None,
        Some(what) => Some(
            pipeline
                .find_step(what)
                .map_err(|close| Diagnostic {
                    file: pipeline.file.clone(),
                    position: Position::Flag(format!("--stop-after {what}")),
                    message: format!("no step `{what}` in the pipeline (steps: {})", step_list(pipeline)),
                    did_you_mean: close,
                })
                .map_err(PipelineError::from)?,
        ),
    };
    let prepared = pipeline.prepare()?;
    // The dump folder gets `NN-PASS.txt` files: none of them may be something the run reads.
    if let Some(dir) = &options.dump_after_each {
        let names: Vec<String> = std::iter::once("original")
            .chain(pipeline.steps.iter().map(|s| s.name))
            .enumerate()
            .map(|(i, name)| manager::dump_file_name(i, name))
            .collect();
        let clash = prepared.reads.iter().find(|r| {
            crate::pipeline::paths::same_file(&r.path, dir)
                || names.iter().any(|n| crate::pipeline::paths::same_file(&r.path, &dir.join(n)))
        });
        if let Some(r) = clash {
            return Err(PipelineError::from(Diagnostic {
                file: pipeline.file.clone(),
                position: Position::Flag(format!("--dump-after-each {}", dir.display())),
                message: format!(
                    "the dump folder would write over the {} {}: whittle never writes over what it reads",
                    r.what,
                    r.path.display()
                ),
                did_you_mean: Vec::new(),
            })
            .into());
        }
    }
    let pool = match options.threads {
        None => None,
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build().map_err(|e| RunError::Internal(format!("thread pool: {e}")))?,
        ),
    };
    Run::new(pipeline, options, prepared, stop_after, pool)?.go()
}

/// Runs `f` on `pool` when there is one (for `--threads`), else on rayon's global pool.
fn in_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

fn step_list(p: &Pipeline) -> String {
    p.steps.iter().enumerate().map(|(i, s)| format!("{} {}", i + 1, s.name)).collect::<Vec<_>>().join(", ")
}

/// The state of one run.
struct Run<'a> {
    pipeline: &'a Pipeline,
    options: &'a RunOptions,
    prep: Prepared,
    stop_after: Option<usize>,
    original_bytes: Vec<u8>,
    fingerprint: String,
    report: Report,
    pool: Option<rayon::ThreadPool>,
}

impl<'a> Run<'a> {
    fn new(
        pipeline: &'a Pipeline,
        options: &'a RunOptions,
        prep: Prepared,
        stop_after: Option<usize>,
        pool: Option<rayon::ThreadPool>,
    ) -> Result<Run<'a>, RunError> {
        let original_bytes = whittle_graph::encode_for_runtime(&prep.model);
        let fingerprint = compute_fingerprint(pipeline, &prep, &original_bytes, stop_after)?;
        let file_bytes = std::fs::metadata(&prep.model_path).map(|m| m.len()).unwrap_or(0);
        let report = Report {
            schema_version: report::SCHEMA_VERSION,
            whittle_version: env!("CARGO_PKG_VERSION").to_string(),
            status: RunStatus::Error,
            error: None,
            fingerprint: fingerprint.clone(),
            pipeline: PipelineInfo {
                file: pipeline.file.display().to_string(),
                description: pipeline.description.clone(),
                steps: pipeline.steps.iter().map(|s| s.name.to_string()).collect(),
            },
            files: Files {
                model: prep.model_path.display().to_string(),
                output: prep.output.as_ref().map(|p| p.display().to_string()),
                output_written: false,
                report: prep.report.as_ref().map(|p| p.display().to_string()),
            },
            inputs: prep.input_shapes.iter().map(|(name, shape)| InputInfo { name: name.clone(), shape: shape.clone() }).collect(),
            evaluation: data_info(&prep.evaluation.description, &prep.evaluation.set),
            calibration: prep.calibration.as_ref().map(|c| data_info(&c.description, &c.set)),
            original: model_info(&prep.model, file_bytes),
            candidate: None,
            steps: Vec::new(),
            stopped: None,
            verification: None,
            gate: None,
            notes: prep.notes.clone(),
        };
        Ok(Run { pipeline, options, prep, stop_after, original_bytes, fingerprint, report, pool })
    }

    /// The original upgraded by `opset_conversion` alone, for tract, when tract lacks one of its
    /// old-opset forms. `Err(None)`: not applicable (opset 13 or later); `Err(Some(why))`: the
    /// conversion or the converted model failed too.
    fn converted_reference(&self, shapes: &[crate::data::InputShape]) -> Result<verify::Runnable, Option<String>> {
        use whittle_passes::pass::PassDef;
        let mut model = self.prep.model.clone();
        let from = model.opset("").ok_or(None)?;
        if from >= whittle_passes::opset_conversion::MIN_TARGET {
            return Err(None);
        }
        let pass = whittle_passes::opset_conversion::OpsetConversion::new(Default::default());
        whittle_passes::Pass::run(&pass, &mut model, &Default::default())
            .map_err(|e| Some(format!("converting it for tract failed: {e}")))?;
        verify::load_model(&whittle_graph::encode_for_runtime(&model), shapes)
            .map_err(|e| Some(format!("nor can it run it converted to opset 13: {e}")))
    }

    fn go(mut self) -> Result<RunOutcome, RunError> {
        if !self.options.force
            && let Some(out) = &self.prep.output
            && out.exists()
            && fingerprint::stored(out).as_deref() == Some(self.fingerprint.as_str())
        {
            return self.skipped();
        }
        if self.prep.calibration.is_some() {
            self.report.notes.push("calibration data loaded and checked; no step of this pipeline uses it".into());
        }
        let shapes = self.prep.shapes_usize();
        let eval = self.prep.evaluation.set.clone();

        // The original, with tract.
        let model_origin = self.pipeline.model.as_ref().map_or(Origin::Default, |s| s.origin.clone());
        let mut reference_converted = false;
        let original = match verify::load_model(&self.original_bytes, &shapes) {
            Ok(m) => m,
            // tract lacks some old-opset forms (Upsample, TopK-1, BatchNormalization's spatial):
            // a model below opset 13 is given to it converted; anything else is the user's to see.
            Err(e) => match self.converted_reference(&shapes) {
                Ok(m) => {
                    self.report.notes.push(format!(
                        "tract cannot run the original model as given ({e}); the reference is the original after \
                         opset_conversion to opset {} alone, so the gate checks the other steps, not that conversion \
                         (whittle's tests check it against onnxruntime, which runs the old operators); \
                         steps before the model reaches that opset get no differential check",
                        whittle_passes::opset_conversion::MIN_TARGET
                    ));
                    reference_converted = true;
                    m
                }
                Err(why) => {
                    let why = why.map(|w| format!("; {w}")).unwrap_or_default();
                    return Err(self.invalid(&model_origin, format!("tract cannot run the original model: {e}{why}")));
                }
            },
        };
        let reference = run_samples(&original, &eval, self.options.progress, "original on evaluation set", self.pool.as_ref())
            .map_err(|e| self.invalid(&eval_origin(self.pipeline), format!("the original model fails on the evaluation data: {e}")))?;

        // The steps.
        let mut candidate = self.prep.model.clone();
        let outcome = self.run_steps(&mut candidate, &shapes, &eval, &reference, original.output_names(), reference_converted)?;
        self.report.steps = outcome.steps;
        self.report.stopped = outcome.stopped.clone();
        // Declarations that the steps made stale (pinned inputs, new shapes) would make the
        // exported file fail onnx.checker's full check.
        for change in whittle_graph::shape::declare::reconcile_declared_shapes(&mut candidate) {
            self.report.notes.push(change);
        }
        let candidate_bytes = whittle_graph::encode_for_runtime(&candidate);
        let mut cand_info = model_info(&candidate, 0);
        cand_info.file_bytes = cand_info.figures.encoded_bytes;
        if cand_info.op_histogram.contains_key("QuantizeLinear") || cand_info.op_histogram.contains_key("DequantizeLinear") {
            self.report.notes.push(
                "the candidate holds QuantizeLinear/DequantizeLinear: tract runs QDQ INT8 in float with fake quantization, \
                 so its latency here is not the INT8 deployment gain (onnxruntime runs QDQ models faster than float)"
                    .into(),
            );
        }
        let size_ratio = cand_info.figures.encoded_bytes as f64 / self.report.original.figures.encoded_bytes.max(1) as f64;
        self.report.candidate = Some(cand_info);

        // Verification and the gate.
        let differential_failure = outcome.stopped.as_ref().filter(|s| s.reason == StopReason::DifferentialFailed).map(|s| {
            let d = self.report.steps.last().and_then(|r| r.differential.clone());
            match d {
                Some(d) if d.error.is_some() => {
                    format!("after step {} ({}): the candidate could not be run: {}", s.index, s.pass, d.error.unwrap_or_default())
                }
                Some(d) => format!(
                    "after step {} ({}): outputs changed: relative max error {:.3e} on `{}` exceeds the differential tolerance {:.1e}",
                    s.index, s.pass, d.relative_max_error, d.worst_output, d.tolerance
                ),
                None => format!("after step {} ({}): differential check failed", s.index, s.pass),
            }
        });
        let verification = match &differential_failure {
            Some(_) => Verification { comparison: None, latency: None, size_ratio, error: None },
            None => self.verify(&original, &candidate_bytes, &shapes, &eval, &reference, size_ratio),
        };
        let failure = differential_failure.or_else(|| verification.error.clone());
        let gate = gate::evaluate(
            &self.pipeline.verify,
            &Measured {
                comparison: verification.comparison.as_ref(),
                latency: verification.latency.as_ref(),
                size_ratio,
                failure: failure.as_deref(),
            },
        );
        self.report.verification = Some(verification);
        self.finish(candidate, gate)
    }

    fn run_steps(
        &mut self,
        candidate: &mut Model,
        shapes: &[(String, Vec<usize>)],
        eval: &InputSet,
        reference: &[Vec<ArrayD<f32>>],
        output_names: &[String],
        reference_converted: bool,
    ) -> Result<manager::ManagerOutcome, RunError> {
        let spec = &self.pipeline.verify;
        let total = self.stop_after.unwrap_or(self.pipeline.steps.len()) as u64;
        let pb = progress::bar(self.options.progress, total, "steps");
        let diff_reference = &reference[..spec.differential_samples.clamp(1, reference.len())];
        let pool = self.pool.as_ref();
        let mut after = |record: &mut StepRecord, model: &Model| {
            pb.set_message(format!("step {} {}", record.index, record.pass));
            pb.inc(1);
            if !(spec.differential && record.exact) {
                return true;
            }
            // tract could not run the original's opset: nor can it run the model before conversion.
            if reference_converted && model.opset("").is_some_and(|o| o < whittle_passes::opset_conversion::MIN_TARGET) {
                return true;
            }
            let bytes = whittle_graph::encode_for_runtime(model);
            let d = in_pool(pool, || differential::check(&bytes, shapes, eval, diff_reference, output_names, spec.differential_tolerance));
            let passed = d.passed;
            record.differential = Some(d);
            passed
        };
        let options = ManagerOptions {
            input_shapes: self.prep.input_shapes.clone(),
            stop_after: self.stop_after,
            dump_dir: self.options.dump_after_each.clone(),
        };
        let result = manager::run_steps(candidate, &self.pipeline.steps, &options, &mut after);
        pb.finish_and_clear();
        match result {
            Ok(o) => Ok(o),
            Err(error) => {
                self.report.status = RunStatus::Error;
                self.report.error = Some(error.to_string());
                self.report.steps = error.completed.clone();
                // Best effort: the step error is what the user needs to see.
                if let Some(path) = &self.prep.report {
                    let _ = self.report.write(path);
                }
                Err(RunError::Step { error, report: Box::new(self.report.clone()) })
            }
        }
    }

    fn verify(
        &self,
        original: &Runnable,
        candidate_bytes: &[u8],
        shapes: &[(String, Vec<usize>)],
        eval: &InputSet,
        reference: &[Vec<ArrayD<f32>>],
        size_ratio: f64,
    ) -> Verification {
        let spec = &self.pipeline.verify;
        let failed =
            |what: &str, e: VerifyError| Verification { comparison: None, latency: None, size_ratio, error: Some(format!("{what}: {e}")) };
        let candidate = match verify::load_model(candidate_bytes, shapes) {
            Ok(c) => c,
            Err(e) => return failed("tract cannot load the candidate", e),
        };
        let outputs = match run_samples(&candidate, eval, self.options.progress, "candidate on evaluation set", self.pool.as_ref()) {
            Ok(o) => o,
            Err(e) => return failed("tract cannot run the candidate", e),
        };
        let options = CompareOptions {
            top_k: spec.top_k,
            argmax_axis: spec.argmax_axis,
            mask_threshold: spec.mask_threshold,
            ctc: spec.ctc,
            charset: if spec.ctc { original.metadata("character").map(verify::metrics::Charset::from_character_list) } else { None },
        };
        let comparison = match verify::compare(reference, &outputs, original.output_names(), eval.labels(), &options) {
            Ok(c) => c,
            Err(e) => return failed("comparing outputs", e),
        };
        let latency = if spec.latency_runs == 0 {
            None
        } else {
            let pb = progress::bar(self.options.progress, 0, "measuring latency");
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            let options = LatencyOptions { warmup: spec.latency_warmup, runs: spec.latency_runs, ..LatencyOptions::default() };
            let measured =
                eval.sample(0).map_err(VerifyError::from).and_then(|s| verify::measure_latency(original, &candidate, &s, &options));
            pb.finish_and_clear();
            match measured {
                Ok(l) => Some(l),
                Err(e) => {
                    return Verification {
                        comparison: Some(comparison),
                        latency: None,
                        size_ratio,
                        error: Some(format!("measuring latency: {e}")),
                    };
                }
            }
        };
        Verification { comparison: Some(comparison), latency, size_ratio, error: None }
    }

    /// Writes the results for a judged candidate.
    fn finish(mut self, mut candidate: Model, gate: GateResult) -> Result<RunOutcome, RunError> {
        let passed = gate.passed;
        self.report.gate = Some(gate);
        self.report.status = if passed { RunStatus::Passed } else { RunStatus::Failed };
        let mut output_written = None;
        if passed && let Some(out) = &self.prep.output {
            fingerprint::stamp(&mut candidate, &self.fingerprint);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| RunError::Write { path: out.clone(), error: e.to_string() })?;
            }
            whittle_graph::save_model(&candidate, out, &whittle_graph::SaveOptions::default())
                .map_err(|e| RunError::Write { path: out.clone(), error: e.to_string() })?;
            self.report.files.output_written = true;
            if let Some(c) = self.report.candidate.as_mut() {
                c.file_bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(c.file_bytes);
            }
            output_written = Some(out.clone());
        } else if !passed
            && let Some(out) = &self.prep.output
            && out.exists()
        {
            self.report
                .notes
                .push(format!("{} exists from an earlier run; it was left untouched and does not hold this candidate", out.display()));
        }
        let report_written = self.write_report()?;
        Ok(RunOutcome { status: self.report.status, report: self.report, output_written, report_written })
    }

    /// The output is up to date: nothing runs. An existing report for the same fingerprint is
    /// kept (it describes the output); otherwise a report with status `skipped` is written.
    fn skipped(mut self) -> Result<RunOutcome, RunError> {
        self.report.status = RunStatus::Skipped;
        let keep = self.prep.report.as_ref().is_some_and(|p| report_fingerprint(p).as_deref() == Some(self.fingerprint.as_str()));
        let report_written = if keep { None } else { self.write_report()? };
        Ok(RunOutcome { status: RunStatus::Skipped, report: self.report, output_written: None, report_written })
    }

    fn write_report(&self) -> Result<Option<PathBuf>, RunError> {
        let Some(path) = &self.prep.report else { return Ok(None) };
        self.report.write(path).map_err(|e| RunError::Write { path: path.clone(), error: e.to_string() })?;
        Ok(Some(path.clone()))
    }

    fn invalid(&self, origin: &Origin, message: String) -> RunError {
        RunError::Invalid(self.pipeline.diagnostic(origin, message).into())
    }
}

fn eval_origin(p: &Pipeline) -> Origin {
    p.evaluation.as_ref().map_or(Origin::Default, |s| s.origin.clone())
}

/// Runs every sample (in parallel, results in order) with a progress bar.
fn run_samples(
    model: &Runnable,
    data: &InputSet,
    progress: bool,
    what: &str,
    pool: Option<&rayon::ThreadPool>,
) -> Result<Vec<Vec<ArrayD<f32>>>, VerifyError> {
    let pb = progress::bar(progress, data.len() as u64, what);
    let out = in_pool(pool, || {
        (0..data.len())
            .into_par_iter()
            .map(|i| {
                let sample = data.sample(i)?;
                let r = model.run(&sample).map_err(|e| VerifyError::Sample { index: i, error: Box::new(e) });
                pb.inc(1);
                r
            })
            .collect()
    });
    pb.finish_and_clear();
    out
}

fn data_info(description: &str, set: &InputSet) -> DataInfo {
    DataInfo {
        source: description.to_string(),
        samples: set.len(),
        labels: set.labels().map(|l| match l {
            Labels::Int(_) => "int".to_string(),
            Labels::Text(_) => "text".to_string(),
        }),
    }
}

fn model_info(model: &Model, file_bytes: u64) -> ModelInfo {
    let stats = whittle_graph::stats::model_stats(model);
    ModelInfo { file_bytes, figures: ModelFigures::of(model), op_histogram: stats.op_histogram }
}

/// The fingerprint of a prepared run (see [`crate::fingerprint`]).
fn compute_fingerprint(pipeline: &Pipeline, prep: &Prepared, model_bytes: &[u8], stop_after: Option<usize>) -> Result<String, RunError> {
    let mut f = Fingerprint::new();
    f.add("model", model_bytes);
    f.add("pipeline", pipeline.text.as_bytes());
    f.add("sets", pipeline.sets.join("\n").as_bytes());
    let strip = |d: Option<&DataSpec>| {
        d.map(|d| {
            let name = |p: &Option<PathBuf>| p.as_ref().map(|p| PathBuf::from(p.file_name().unwrap_or_default()));
            DataSpec { npz: name(&d.npz), npy: name(&d.npy), images: name(&d.images), ..d.clone() }
        })
    };
    let settings = serde_json::json!({
        "inputs": prep.input_shapes,
        "evaluation": strip(pipeline.evaluation.as_ref().map(|s| &s.value)),
        "calibration": strip(pipeline.calibration.as_ref().map(|s| &s.value)),
        "steps": pipeline.steps.iter().map(|s| (s.name, &s.params)).collect::<Vec<_>>(),
        "verify": pipeline.verify,
        "stop_after": stop_after,
    });
    f.add("settings", settings.to_string().as_bytes());
    let files = prep.evaluation.files.iter().chain(prep.calibration.iter().flat_map(|c| c.files.iter()));
    for file in files {
        f.add_file(file).map_err(|e| RunError::Internal(format!("{}: cannot read for the fingerprint: {e}", file.display())))?;
    }
    Ok(f.finish())
}

/// The fingerprint recorded in an existing JSON report.
fn report_fingerprint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("fingerprint")?.as_str().map(str::to_string)
}
