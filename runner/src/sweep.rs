//! [`sweep`]: one pipeline run at a series of values of one of its keys (a pruning ratio, a
//! sparsity, a rank), each run verified and gated as `whittle run` would, and the figures of
//! every run in one table: the task metric, the output SQNR, parameters, MACs, sizes and the
//! measured tract latency (ratio with its 95% interval), so a user can pick the point that fits
//! their device. Written as CSV, Markdown and an SVG chart ([`Sweep::csv`], [`Sweep::markdown`],
//! [`Sweep::svg`]).
//!
//! Measure once: a step with `scope: sensitivity` and no `sensitivity_file` gets one in the
//! sweep's folder, so the per-layer sensitivity (which does not depend on the swept target) is
//! measured by the first run and reused by the others.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::pipeline::{Diagnostic, Overrides, Pipeline, PipelineError, Position};
use crate::report::{Report, RunStatus};
use crate::run::{RunError, RunOptions, run_pipeline};
use crate::verify::Comparison;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The `--set` key varied (`steps.8.prune_channels.ratio`); `None`: the `ratio` or `sparsity`
    /// of the pipeline's first step that has one.
    pub key: Option<String>,
    pub values: Vec<f64>,
    /// Models, reports, the sensitivity table and the tables go here.
    pub out_dir: PathBuf,
    pub run: RunOptions,
}

/// One run of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub value: f64,
    pub status: RunStatus,
    /// Why the run stopped, when it did not reach the gate.
    pub error: Option<String>,
    /// The task metric's name and its value on the candidate (`strings`, `iou@0.3`,
    /// `accuracy`, `argmax agreement`), on the evaluation data.
    pub metric: Option<(String, f64)>,
    /// Lowest output SQNR on the evaluation data, dB.
    pub sqnr_db: Option<f64>,
    /// Candidate / original.
    pub parameters_ratio: Option<f64>,
    pub macs_ratio: Option<f64>,
    pub size_ratio: Option<f64>,
    pub compressed_ratio: Option<f64>,
    /// Median tract latency ratio with its 95% interval.
    pub latency: Option<(f64, f64, f64)>,
    pub output: Option<PathBuf>,
    pub report: PathBuf,
}

/// The whole sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub pipeline: String,
    pub model: String,
    pub key: String,
    /// The original's task metric, where it has one (labelled accuracy).
    pub reference_metric: Option<(String, f64)>,
    pub points: Vec<SweepPoint>,
}

/// Runs `file` (with the user's `sets` and `overrides`) once per value of the key; see the module
/// documentation. A run that fails its gate is a point of the table (status `failed`, nothing
/// exported); a pipeline or data error stops the sweep.
pub fn sweep(file: &Path, sets: &[String], overrides: &Overrides, options: &SweepOptions) -> Result<Sweep, RunError> {
    let flag_error = |flag: &str, message: String| -> RunError {
        PipelineError::from(Diagnostic {
            file: file.to_path_buf(),
            position: Position::Flag(flag.into()),
            message,
            did_you_mean: Vec::new(),
        })
        .into()
    };
    if options.values.is_empty() {
        return Err(flag_error("--values", "no values to sweep".into()));
    }
    let mut probe = Pipeline::load_with_sets(file, sets)?;
    probe.apply(overrides)?;
    let key = match &options.key {
        Some(k) => k.clone(),
        None => default_key(&probe).ok_or_else(|| {
            flag_error("--vary", "no step has a `ratio` or `sparsity` parameter: say which key to vary (--vary steps.N.PASS.PARAM)".into())
        })?,
    };
    std::fs::create_dir_all(&options.out_dir).map_err(|e| RunError::Write { path: options.out_dir.clone(), error: e.to_string() })?;
    // The probe holds the user's sets: a step they gave a table file keeps it.
    let extra = sensitivity_files(&probe, &options.out_dir);
    let model = probe.model.as_ref().map(|m| m.value.clone()).unwrap_or_default();
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let param = key.rsplit('.').next().unwrap_or("value").to_string();
    let mut points = Vec::new();
    let mut reference_metric = None;
    for &value in &options.values {
        let mut all: Vec<String> = sets.to_vec();
        all.extend(extra.iter().cloned());
        all.push(format!("{key}={value}"));
        let output = options.out_dir.join(format!("{stem}.{param}-{value}.onnx"));
        let report = options.out_dir.join(format!("{stem}.{param}-{value}.report.json"));
        let mut o = overrides.clone();
        o.output = Some(output);
        o.report = Some(report.clone());
        let mut run = options.run.clone();
        run.force = true;
        let outcome = Pipeline::load_with_sets(file, &all).map_err(RunError::from).and_then(|mut pipeline| {
            pipeline.apply(&o)?;
            run_pipeline(&pipeline, &run)
        });
        let (status, report_data, error) = match outcome {
            Ok(outcome) => (outcome.status, outcome.report, None),
            Err(RunError::Step { error, report }) => (RunStatus::Error, *report, Some(error.to_string())),
            // The first run's error is the pipeline's (nothing to table yet); a later one is
            // this value's, a row of the table.
            Err(e) if points.is_empty() => return Err(e),
            Err(e) => {
                points.push(SweepPoint::failed(value, e.to_string(), report));
                continue;
            }
        };
        if reference_metric.is_none() {
            reference_metric = report_data.verification.as_ref().and_then(|v| v.comparison.as_ref()).and_then(reference_of);
        }
        points.push(point(value, status, error, &report_data, report));
    }
    Ok(Sweep { pipeline: file.display().to_string(), model: model.display().to_string(), key, reference_metric, points })
}

/// The `ratio` or `sparsity` of the first step that sets one, as a `--set` key (steps counted
/// from 1).
fn default_key(p: &Pipeline) -> Option<String> {
    p.steps.iter().enumerate().find_map(|(i, s)| {
        let params = whittle_passes::registry::lookup(s.name)?.params();
        let name = ["ratio", "sparsity"].into_iter().find(|k| params.iter().any(|p| p.name == *k))?;
        Some(format!("steps.{}.{}.{name}", i + 1, s.name))
    })
}

/// A step's parameter as it will run: as written, else the pass's default.
fn param(step: &crate::pipeline::steps::Step, name: &str) -> serde_json::Value {
    match step.params.get(name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => whittle_passes::registry::lookup(step.name).map(|i| i.default_params()[name].clone()).unwrap_or_default(),
    }
}

/// `--set` entries giving every `scope: sensitivity` step without a table file one in `dir`.
fn sensitivity_files(p: &Pipeline, dir: &Path) -> Vec<String> {
    p.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| param(s, "scope").as_str() == Some("sensitivity") && param(s, "sensitivity_file").is_null())
        .map(|(i, s)| {
            let path = std::path::absolute(dir.join(format!("step{}.{}.sensitivity.json", i + 1, s.name))).unwrap_or_default();
            format!(
                "steps.{}.{}.sensitivity_file={}",
                i + 1,
                s.name,
                serde_json::to_string(&path.display().to_string()).unwrap_or_default()
            )
        })
        .collect()
}

/// The task metric of a comparison: of the first output that has one, CTC strings, text-mask
/// IoU, labelled accuracy, argmax or top-k agreement, in that order.
fn metric_of(c: &Comparison) -> Option<(String, f64)> {
    c.outputs.iter().find_map(|o| {
        if let Some(ctc) = &o.ctc {
            return Some(("strings".into(), ctc.sequence_agreement.rate));
        }
        if let Some(m) = &o.mask_iou {
            return Some((format!("iou@{}", m.threshold), m.iou));
        }
        if let Some(a) = &o.labeled_accuracy {
            return Some(("accuracy".into(), a.candidate.rate));
        }
        if let Some(a) = &o.argmax_agreement {
            return Some(("argmax agreement".into(), a.rate));
        }
        o.topk_agreement.as_ref().map(|a| (format!("top-{} agreement", o.top_k.unwrap_or(1)), a.rate))
    })
}

/// The original's own task metric, where one exists without a reference (labelled accuracy).
fn reference_of(c: &Comparison) -> Option<(String, f64)> {
    c.outputs.iter().find_map(|o| o.labeled_accuracy.as_ref().map(|a| ("accuracy".to_string(), a.reference.rate)))
}

impl SweepPoint {
    /// A value whose run stopped before it had figures.
    fn failed(value: f64, error: String, report: PathBuf) -> SweepPoint {
        SweepPoint {
            value,
            status: RunStatus::Error,
            error: Some(error),
            metric: None,
            sqnr_db: None,
            parameters_ratio: None,
            macs_ratio: None,
            size_ratio: None,
            compressed_ratio: None,
            latency: None,
            output: None,
            report,
        }
    }
}

fn point(value: f64, status: RunStatus, error: Option<String>, r: &Report, report: PathBuf) -> SweepPoint {
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let candidate = r.candidate.as_ref();
    let comparison = r.verification.as_ref().and_then(|v| v.comparison.as_ref());
    SweepPoint {
        value,
        status,
        error: error.or_else(|| r.error.clone()),
        metric: comparison.and_then(metric_of),
        sqnr_db: comparison.map(|c| c.overall.sqnr_db),
        parameters_ratio: candidate.and_then(|c| ratio(c.figures.parameters, r.original.figures.parameters)),
        macs_ratio: candidate.and_then(|c| ratio(c.figures.macs, r.original.figures.macs)),
        size_ratio: candidate.and_then(|c| ratio(c.figures.encoded_bytes, r.original.figures.encoded_bytes)),
        compressed_ratio: candidate.and_then(|c| ratio(c.compressed_bytes, r.original.compressed_bytes)),
        latency: r
            .verification
            .as_ref()
            .and_then(|v| v.latency.as_ref())
            .map(|l| (l.ratio.median_ratio, l.ratio.ci95_low, l.ratio.ci95_high)),
        output: r.files.output_written.then(|| r.files.output.clone().map(PathBuf::from)).flatten(),
        report,
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        Some(x) if x.is_infinite() => "inf".into(),
        _ => String::new(),
    }
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Passed => "passed",
        RunStatus::Failed => "failed",
        RunStatus::Skipped => "skipped",
        RunStatus::Error => "error",
    }
}

impl Sweep {
    fn metric_name(&self) -> String {
        self.points.iter().find_map(|p| p.metric.as_ref().map(|m| m.0.clone())).unwrap_or_else(|| "metric".into())
    }

    /// One row per run: value, gate, task metric, SQNR, ratios, latency with its interval.
    pub fn csv(&self) -> String {
        let mut s = format!(
            "{},gate,{},sqnr_db,parameters_ratio,macs_ratio,size_ratio,zstd_ratio,latency_ratio,latency_ci95_low,latency_ci95_high\n",
            self.key,
            self.metric_name()
        );
        for p in &self.points {
            let (l, lo, hi) = p.latency.map_or((None, None, None), |(a, b, c)| (Some(a), Some(b), Some(c)));
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{}",
                p.value,
                status_word(p.status),
                num(p.metric.as_ref().map(|m| m.1), 4),
                num(p.sqnr_db, 2),
                num(p.parameters_ratio, 4),
                num(p.macs_ratio, 4),
                num(p.size_ratio, 4),
                num(p.compressed_ratio, 4),
                num(l, 3),
                num(lo, 3),
                num(hi, 3)
            );
        }
        s
    }

    /// The same table in Markdown, with the original's metric when it has one.
    pub fn markdown(&self) -> String {
        let mut s = format!("Sweep of `{}` over `{}` on {}", self.key, self.pipeline, self.model);
        if let Some((name, v)) = &self.reference_metric {
            let _ = write!(s, " (original {name} {v:.4})");
        }
        let _ = writeln!(
            s,
            "\n\n| {} | gate | {} | SQNR dB | parameters | MACs | size | zstd size | tract latency [95% CI] |\n|---|---|---|---|---|---|---|---|---|",
            self.key.rsplit('.').next().unwrap_or("value"),
            self.metric_name()
        );
        for p in &self.points {
            let latency = p.latency.map_or(String::new(), |(l, lo, hi)| format!("{l:.2}x [{lo:.2}, {hi:.2}]"));
            let x = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}x"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {latency} |",
                p.value,
                status_word(p.status),
                num(p.metric.as_ref().map(|m| m.1), 4),
                num(p.sqnr_db, 1),
                x(p.parameters_ratio),
                x(p.macs_ratio),
                x(p.size_ratio),
                x(p.compressed_ratio)
            );
        }
        s
    }

    /// A line chart against the swept value: the task metric, MACs ratio and tract latency ratio
    /// (with its interval as error bars) on the left axis (0 to 1.2), the SQNR on the right axis.
    pub fn svg(&self) -> String {
        let (w, h, left, right, top, bottom) = (640.0, 420.0, 60.0, 60.0, 64.0, 48.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let xs: Vec<f64> = self.points.iter().map(|p| p.value).collect();
        let (x0, x1) = (xs.iter().cloned().fold(f64::INFINITY, f64::min), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        let span = if x1 > x0 { x1 - x0 } else { 1.0 };
        let px = |x: f64| left + pw * (x - x0) / span;
        let py = |y: f64| top + ph * (1.0 - (y / 1.2).clamp(0.0, 1.0));
        let smax = self.points.iter().filter_map(|p| p.sqnr_db).filter(|v| v.is_finite()).fold(10.0f64, f64::max).ceil();
        let ps = |db: f64| top + ph * (1.0 - (db / smax).clamp(0.0, 1.0));
        let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
             <text x=\"{left}\" y=\"18\" font-size=\"13\">{}</text>\n",
            esc(&format!("{} over {}", self.model.rsplit('/').next().unwrap_or(&self.model), self.key))
        );
        // Axes and grid.
        for k in 0..=6 {
            let y = k as f64 * 0.2;
            let (gy, right_x, left_x, db) = (py(y), left + pw, left - 4.0, smax * y / 1.2);
            let _ = writeln!(
                s,
                "<line x1=\"{left}\" x2=\"{right_x}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{left_x}\" y=\"{ty:.1}\" text-anchor=\"end\">{y:.1}</text>\
                 <text x=\"{rx}\" y=\"{ty:.1}\">{db:.0}</text>",
                ty = gy + 4.0,
                rx = right_x + 4.0
            );
        }
        for &x in &xs {
            let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>", px(x), top + ph + 16.0);
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">ratio / metric</text><text x=\"{}\" y=\"{}\">SQNR dB</text>",
            left + pw / 2.0,
            h - 10.0,
            esc(&self.key),
            left + 30.0,
            top - 8.0,
            left + pw - 10.0,
            top - 8.0
        );
        type Series<'a> = (&'a str, &'a str, Box<dyn Fn(&SweepPoint) -> Option<f64>>);
        let series: [Series; 4] = [
            ("#1f77b4", "metric", Box::new(|p: &SweepPoint| p.metric.as_ref().map(|m| m.1))),
            ("#2ca02c", "MACs ratio", Box::new(|p: &SweepPoint| p.macs_ratio)),
            ("#d62728", "latency ratio", Box::new(|p: &SweepPoint| p.latency.map(|l| l.0))),
            ("#9467bd", "SQNR (right axis)", Box::new(|p: &SweepPoint| p.sqnr_db.filter(|v| v.is_finite()))),
        ];
        for (k, (colour, label, get)) in series.iter().enumerate() {
            let is_sqnr = k == 3;
            let mut pts: Vec<(f64, f64)> =
                self.points.iter().filter_map(|p| get(p).map(|v| (px(p.value), if is_sqnr { ps(v) } else { py(v) }))).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let dash = if is_sqnr { " stroke-dasharray=\"4 3\"" } else { "" };
            let _ = writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>", path.join(" "));
            for (x, y) in &pts {
                let _ = writeln!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"/>");
            }
            let label = if k == 0 { self.metric_name() } else { label.to_string() };
            let (lx, ly) = (left + 135.0 * k as f64, 38.0);
            let _ = writeln!(
                s,
                "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{ly}\">{}</text>",
                ly - 9.0,
                lx + 14.0,
                esc(&label)
            );
        }
        // The latency interval as error bars.
        for p in &self.points {
            if let Some((_, lo, hi)) = p.latency {
                let _ = writeln!(
                    s,
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#d62728\"/>",
                    px(p.value),
                    py(lo),
                    py(hi)
                );
            }
            if p.status != RunStatus::Passed {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#d62728\">gate {}</text>",
                    px(p.value),
                    top + 12.0,
                    status_word(p.status)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes `sweep.csv`, `sweep.md`, `sweep.svg` and `sweep.json` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)? + "\n";
        let files = [("sweep.csv", self.csv()), ("sweep.md", self.markdown()), ("sweep.svg", self.svg()), ("sweep.json", json)];
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            whittle_graph::atomic::write(&path, text.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}
