//! [`run_pipeline`]: a whole run as one library call (the CLI's `whittle run` is a thin shell
//! around it).
//!
//! Order: check everything (model, inputs, data, paths; a [`RunError::Invalid`] names the
//! place), compute the fingerprint and skip when the output is up to date, run the original
//! with tract on the evaluation set, run the steps (with the differential check after exact
//! steps when asked), compare the candidate with the original and time both, judge the gate,
//! then write: on a pass the model (atomically) and the report; on a failure only the report.

mod deadline;
mod differential;
pub mod measure;
mod progress;
pub mod timings;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayD;
use rayon::prelude::*;
use whittle_graph::Model;

use crate::data::{InputSet, Labels};
use crate::fingerprint::{self, Fingerprint};
use crate::gate::{self, GateResult, Measured};
use crate::manager::{self, ManagerOptions, ModelFigures, StepError, StepRecord, StopReason};
use crate::memory::MemoryLimit;
use crate::pipeline::{DataSpec, Diagnostic, Origin, Pipeline, PipelineError, Position, PrepareOptions, Prepared};
use crate::report::{self, DataInfo, Files, InputInfo, ModelInfo, PipelineInfo, Report, RunStatus, Verification};
use crate::verify::{self, CompareOptions, LatencyOptions, Runnable, VerifyError};
use deadline::{Deadline, TimedOut};
use timings::Timings;

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
    /// End the run when it has taken this long: status `failed` (exit 3), nothing exported, the
    /// report saying what finished ([`Report::timed_out`]).
    pub timeout: Option<std::time::Duration>,
    /// The most memory the run may need (default: [`MemoryLimit::machine_default`]); a run whose
    /// estimate is above it is refused before it starts ([`crate::memory`]).
    pub max_memory: Option<MemoryLimit>,
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
    let deadline = options.timeout.map(Deadline::new);
    let mut timings = Timings::default();
    let prepare_options = PrepareOptions {
        memory: options.max_memory.clone().unwrap_or_else(MemoryLimit::machine_default),
        parallel: options.threads.unwrap_or_else(rayon::current_num_threads).max(1),
    };
    let prepared = timings.time("prepare", || pipeline.prepare_with(&prepare_options))?;
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
    Run::new(pipeline, options, prepared, stop_after, pool, timings, deadline)?.go()
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
    timings: Timings,
    /// The model tract loaded last for a differential check, with its bytes: when the final
    /// candidate is that model, verification reuses it instead of loading it again.
    last_checked: Option<(Vec<u8>, Runnable)>,
    deadline: Option<Deadline>,
}

impl<'a> Run<'a> {
    fn new(
        pipeline: &'a Pipeline,
        options: &'a RunOptions,
        prep: Prepared,
        stop_after: Option<usize>,
        pool: Option<rayon::ThreadPool>,
        timings: Timings,
        deadline: Option<Deadline>,
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
            timings: Vec::new(),
            timed_out: None,
        };
        Ok(Run { pipeline, options, prep, stop_after, original_bytes, fingerprint, report, pool, timings, last_checked: None, deadline })
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
        let shapes = self.prep.shapes_usize();
        let eval = self.prep.evaluation.set.clone();

        // The original, with tract.
        let model_origin = self.pipeline.model.as_ref().map_or(Origin::Default, |s| s.origin.clone());
        let mut reference_converted = false;
        let start = Instant::now();
        let loaded = deadline::load_model(self.deadline.as_ref(), &self.original_bytes, &shapes, "while tract loaded the original");
        self.timings.since("tract_load_original", start);
        let loaded = match loaded {
            Ok(l) => l,
            Err(t) => return self.timed_out(t),
        };
        let original = match loaded {
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
        let start = Instant::now();
        let reference = self.run_samples(&original, &eval, "original on evaluation set");
        self.timings.since("run_original", start);
        if let Err(VerifyError::TimedOut) = reference {
            return self.timed_out(TimedOut { during: "while the original ran on the evaluation set".into() });
        }
        let reference = reference
            .map_err(|e| self.invalid(&eval_origin(self.pipeline), format!("the original model fails on the evaluation data: {e}")))?;

        // The steps.
        let mut candidate = self.prep.model.clone();
        let charset = original.metadata("character").map(str::to_string);
        let outcome =
            self.run_steps(&mut candidate, &shapes, &eval, &reference, original.output_names(), reference_converted, charset.as_deref())?;
        self.report.steps = outcome.steps;
        self.report.stopped = outcome.stopped.clone();
        if let Some(stop) = outcome.stopped.as_ref().filter(|s| s.reason == StopReason::TimedOut) {
            return self.timed_out(TimedOut { during: format!("after step {} ({})", stop.index, stop.pass) });
        }
        // Declarations that the steps made stale (pinned inputs, new shapes) would make the
        // exported file fail onnx.checker's full check.
        let start = Instant::now();
        for change in whittle_graph::shape::declare::reconcile_declared_shapes(&mut candidate) {
            self.report.notes.push(change);
        }
        let candidate_bytes = whittle_graph::encode_for_runtime(&candidate);
        self.timings.since("steps", start);
        let mut cand_info = model_info(&candidate, 0);
        cand_info.file_bytes = cand_info.figures.encoded_bytes;
        if let Some(note) = int8_latency_note(&cand_info.op_histogram) {
            self.report.notes.push(note.into());
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
            None => {
                // tract loads each distinct model once per run: the candidate may be the original
                // (no step changed it) or the model the last differential check loaded.
                let already_loaded = if candidate_bytes == self.original_bytes && !reference_converted {
                    Some(original.clone())
                } else {
                    self.last_checked.take().filter(|(bytes, _)| *bytes == candidate_bytes).map(|(_, m)| m)
                };
                match self.verify(&original, already_loaded, &candidate_bytes, &shapes, &eval, &reference, size_ratio) {
                    Ok(v) => v,
                    Err(t) => return self.timed_out(t),
                }
            }
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

    #[allow(clippy::too_many_arguments)]
    fn run_steps(
        &mut self,
        candidate: &mut Model,
        shapes: &[(String, Vec<usize>)],
        eval: &InputSet,
        reference: &[Vec<ArrayD<f32>>],
        output_names: &[String],
        reference_converted: bool,
        original_charset: Option<&str>,
    ) -> Result<manager::ManagerOutcome, RunError> {
        let spec = &self.pipeline.verify;
        let total = self.stop_after.unwrap_or(self.pipeline.steps.len()) as u64;
        let pb = progress::bar(self.options.progress, total, "steps");
        let diff_reference = &reference[..spec.differential_samples.clamp(1, reference.len())];
        let pool = self.pool.as_ref();
        let mut differential_time = std::time::Duration::ZERO;
        let mut last_checked = None;
        let deadline = self.deadline.as_ref();
        let mut after = |record: &mut StepRecord, model: &Model| {
            pb.set_message(format!("step {} {}", record.index, record.pass));
            pb.inc(1);
            if deadline.is_some_and(Deadline::expired) {
                return Some(StopReason::TimedOut);
            }
            if !(spec.differential && record.exact) {
                return None;
            }
            // tract could not run the original's opset: nor can it run the model before conversion.
            if reference_converted && model.opset("").is_some_and(|o| o < whittle_passes::opset_conversion::MIN_TARGET) {
                return None;
            }
            let start = Instant::now();
            // Loaded as it will be exported (declarations reconciled), so that verification can
            // reuse this load when no later step changes the model.
            let mut exported = model.clone();
            whittle_graph::shape::declare::reconcile_declared_shapes(&mut exported);
            let bytes = whittle_graph::encode_for_runtime(&exported);
            let Ok(loaded) = deadline::load_model(deadline, &bytes, shapes, "") else {
                differential_time += start.elapsed();
                return Some(StopReason::TimedOut);
            };
            let d = in_pool(pool, || differential::check(loaded.as_ref(), eval, diff_reference, output_names, spec.differential_tolerance));
            last_checked = loaded.ok().map(|m| (bytes, m));
            differential_time += start.elapsed();
            let passed = d.passed;
            record.differential = Some(d);
            (!passed).then_some(StopReason::DifferentialFailed)
        };
        let options = ManagerOptions {
            input_shapes: self.prep.input_shapes.clone(),
            stop_after: self.stop_after,
            dump_dir: self.options.dump_after_each.clone(),
            base_dir: self.pipeline.file.parent().map(Path::to_path_buf),
        };
        let compare = self.compare_options(original_charset);
        let measure = self.prep.calibration.as_ref().map(|c| {
            let mut f = Fingerprint::new();
            f.add("calibration", c.description.as_bytes());
            for file in &c.files {
                // A file that cannot be read now was read when the data loaded: it only weakens reuse.
                let _ = f.add_file(file);
            }
            measure::TractMeasure::new(&c.set, shapes.to_vec(), &self.prep.model, spec, compare, self.pool.as_ref(), f.finish())
        });
        let start = Instant::now();
        let result = manager::run_steps(
            candidate,
            &self.pipeline.steps,
            &options,
            measure.as_ref().map(|m| m as &dyn whittle_passes::measure::Measure),
            &mut after,
        );
        if let Some(m) = &measure {
            if !m.used() {
                self.report.notes.push("calibration data loaded and checked; no step of this pipeline uses it".into());
            }
            self.report.notes.extend(m.take_log());
        }
        pb.finish_and_clear();
        self.timings.add("steps", start.elapsed().saturating_sub(differential_time));
        if !differential_time.is_zero() {
            self.timings.add("differential", differential_time);
        }
        self.last_checked = last_checked;
        match result {
            Ok(o) => Ok(o),
            Err(error) => {
                self.report.status = RunStatus::Error;
                self.report.error = Some(error.to_string());
                self.report.steps = error.completed.clone();
                // Best effort: the step error is what the user needs to see.
                let _ = self.write_report();
                Err(RunError::Step { error, report: Box::new(self.report.clone()) })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn verify(
        &mut self,
        original: &Runnable,
        already_loaded: Option<Runnable>,
        candidate_bytes: &[u8],
        shapes: &[(String, Vec<usize>)],
        eval: &InputSet,
        reference: &[Vec<ArrayD<f32>>],
        size_ratio: f64,
    ) -> Result<Verification, TimedOut> {
        let spec = &self.pipeline.verify;
        let failed = |what: &str, e: VerifyError| {
            Ok(Verification { comparison: None, latency: None, size_ratio, error: Some(format!("{what}: {e}")) })
        };
        let candidate = match already_loaded {
            Some(c) => c,
            None => {
                let start = Instant::now();
                let loaded = deadline::load_model(self.deadline.as_ref(), candidate_bytes, shapes, "while tract loaded the candidate");
                self.timings.since("tract_load_candidate", start);
                match loaded? {
                    Ok(c) => c,
                    Err(e) => return failed("tract cannot load the candidate", e),
                }
            }
        };
        let start = Instant::now();
        let outputs = self.run_samples(&candidate, eval, "candidate on evaluation set");
        self.timings.since("run_candidate", start);
        let outputs = match outputs {
            Ok(o) => o,
            Err(VerifyError::TimedOut) => return Err(TimedOut { during: "while the candidate ran on the evaluation set".into() }),
            Err(e) => return failed("tract cannot run the candidate", e),
        };
        let options = self.compare_options(original.metadata("character"));
        let comparison = match verify::compare(reference, &outputs, original.output_names(), eval.labels(), &options) {
            Ok(c) => c,
            Err(e) => return failed("comparing outputs", e),
        };
        Deadline::check(self.deadline.as_ref(), "before latency was measured")?;
        let latency = if spec.latency_runs == 0 {
            None
        } else {
            let pb = progress::bar(self.options.progress, 0, "measuring latency");
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            let options = LatencyOptions { warmup: spec.latency_warmup, runs: spec.latency_runs, ..LatencyOptions::default() };
            let start = Instant::now();
            let measured =
                eval.sample(0).map_err(VerifyError::from).and_then(|s| verify::measure_latency(original, &candidate, &s, &options));
            self.timings.since("latency", start);
            pb.finish_and_clear();
            match measured {
                Ok(l) => Some(l),
                Err(e) => {
                    return Ok(Verification {
                        comparison: Some(comparison),
                        latency: None,
                        size_ratio,
                        error: Some(format!("measuring latency: {e}")),
                    });
                }
            }
        };
        Ok(Verification { comparison: Some(comparison), latency, size_ratio, error: None })
    }

    /// How outputs are compared (the pipeline's `verify` settings; `charset`: the original's
    /// `character` metadata, for CTC string accuracy).
    fn compare_options(&self, charset: Option<&str>) -> CompareOptions {
        let spec = &self.pipeline.verify;
        CompareOptions {
            top_k: spec.top_k,
            argmax_axis: spec.argmax_axis,
            mask_threshold: spec.mask_threshold,
            ctc: spec.ctc,
            charset: if spec.ctc { charset.map(verify::metrics::Charset::from_character_list) } else { None },
        }
    }

    /// Runs every sample (in parallel, results in order) with a progress bar, on `--threads`'s
    /// pool; [`VerifyError::TimedOut`] when the deadline passes first.
    fn run_samples(&self, model: &Runnable, data: &InputSet, what: &str) -> Result<Vec<Vec<ArrayD<f32>>>, VerifyError> {
        let pb = progress::bar(self.options.progress, data.len() as u64, what);
        let deadline = self.deadline.as_ref();
        let out = in_pool(self.pool.as_ref(), || {
            (0..data.len())
                .into_par_iter()
                .map(|i| {
                    if deadline.is_some_and(Deadline::expired) {
                        return Err(VerifyError::TimedOut);
                    }
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

    /// The time limit ran out: the run ends failed (exit 3 at the CLI) with nothing exported, and
    /// the report says when and which phases finished.
    fn timed_out(mut self, t: TimedOut) -> Result<RunOutcome, RunError> {
        let limit = self.deadline.map_or(0.0, |d| d.limit().as_secs_f64());
        let phases: Vec<&str> = self.timings.phases().iter().map(|p| p.phase.as_str()).collect();
        let failure = format!(
            "the time limit of {limit} s (--timeout) ran out {}; phases run: {}",
            t.during,
            if phases.is_empty() { "none".to_string() } else { phases.join(", ") }
        );
        // Nothing was measured to hold against the thresholds: the timeout is the verdict.
        let gate = GateResult { passed: false, checks: Vec::new(), failure: Some(failure) };
        self.report.timed_out = Some(report::TimedOutInfo { limit_seconds: limit, during: t.during });
        self.report.gate = Some(gate);
        self.report.status = RunStatus::Failed;
        let report_written = self.write_report()?;
        Ok(RunOutcome { status: RunStatus::Failed, report: self.report, output_written: None, report_written })
    }

    /// Writes the results for a judged candidate.
    fn finish(mut self, mut candidate: Model, gate: GateResult) -> Result<RunOutcome, RunError> {
        let passed = gate.passed;
        self.report.gate = Some(gate);
        self.report.status = if passed { RunStatus::Passed } else { RunStatus::Failed };
        let mut output_written = None;
        let start = Instant::now();
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
        self.timings.since("write", start);
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

    fn write_report(&mut self) -> Result<Option<PathBuf>, RunError> {
        self.report.timings = self.timings.phases().to_vec();
        let Some(path) = &self.prep.report else { return Ok(None) };
        self.report.write(path).map_err(|e| RunError::Write { path: path.clone(), error: e.to_string() })?;
        Ok(Some(path.clone()))
    }

    fn invalid(&self, origin: &Origin, message: String) -> RunError {
        RunError::Invalid(self.pipeline.diagnostic(origin, message).into())
    }
}

/// What tract's latency of an INT8 candidate means, when the candidate holds INT8 operators.
fn int8_latency_note(ops: &std::collections::BTreeMap<String, usize>) -> Option<&'static str> {
    let has = |op: &str| ops.contains_key(op);
    if has("QuantizeLinear") {
        Some(
            "the candidate holds QuantizeLinear/DequantizeLinear pairs: tract runs QDQ INT8 in float with fake quantization, \
             so its latency here is not the INT8 deployment gain (onnxruntime fuses the pairs into integer kernels)",
        )
    } else if has("DequantizeLinear") {
        Some("weight-only INT8: tract dequantizes the int8 weights and computes in float, so latency stays that of a float model")
    } else if has("MatMulInteger") || has("ConvInteger") || has("QLinearConv") || has("QLinearMatMul") {
        Some("integer kernels: tract runs them with int8 arithmetic but unfused requantization; onnxruntime's latency may differ")
    } else {
        None
    }
}

fn eval_origin(p: &Pipeline) -> Origin {
    p.evaluation.as_ref().map_or(Origin::Default, |s| s.origin.clone())
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
    // One statistics pass and one encoding serve the figures and the compressed size.
    let stats = whittle_graph::stats::model_stats(model);
    let encoded = whittle_graph::encode_model(model);
    let compressed_bytes = zstd::bulk::compress(&encoded, 3).map_or(0, |c| c.len() as u64);
    ModelInfo { file_bytes, figures: ModelFigures::from_stats(&stats, encoded.len()), compressed_bytes, op_histogram: stats.op_histogram }
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
