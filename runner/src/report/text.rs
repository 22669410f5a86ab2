//! The terminal summary of a [`Report`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Report, RunStatus};
use crate::gate::CheckStatus;
use crate::manager::{ModelFigures, StepRecord};

/// Human-readable summary: steps, before/after figures, latency, metrics, gate, declined
/// patterns and notes.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let status = match r.status {
        RunStatus::Passed => "PASSED",
        RunStatus::Failed => "FAILED",
        RunStatus::Skipped => "SKIPPED (up to date)",
        RunStatus::Error => "ERROR",
    };
    let _ = writeln!(s, "whittle {}: {}  [{status}]", r.whittle_version, r.pipeline.file);
    if let Some(d) = &r.pipeline.description {
        let _ = writeln!(s, "  {d}");
    }
    let _ = writeln!(s, "model   {}", r.files.model);
    let inputs: Vec<String> = r.inputs.iter().map(|i| format!("{}={}", i.name, join(&i.shape))).collect();
    let _ = writeln!(s, "inputs  {}  (one sample at a time, at these full shapes)", inputs.join(" "));
    let labels = r.evaluation.labels.as_deref().map(|l| format!(", {l} labels")).unwrap_or_default();
    let _ = writeln!(s, "eval    {} ({} samples{labels})", r.evaluation.source, r.evaluation.samples);
    if let Some(c) = &r.calibration {
        let _ = writeln!(s, "calib   {} ({} samples)", c.source, c.samples);
    }
    if r.status == RunStatus::Skipped {
        let _ = writeln!(
            s,
            "\n{} is up to date (fingerprint {}); nothing ran. Use --force to redo.",
            r.files.output.as_deref().unwrap_or("the output"),
            short(&r.fingerprint)
        );
        return s;
    }

    steps_table(&mut s, &r.original.figures, &r.steps);
    if let Some(stop) = &r.stopped {
        let why = match stop.reason {
            crate::manager::StopReason::Requested => "as requested (--stop-after)",
            crate::manager::StopReason::DifferentialFailed => "its differential check failed",
            crate::manager::StopReason::TimedOut => "the time limit (--timeout) ran out",
        };
        let _ = writeln!(s, "  stopped after step {} ({}): {why}", stop.index, stop.pass);
    }

    // Before / after.
    if let Some(c) = &r.candidate {
        let o = &r.original;
        let _ = writeln!(s, "\n{:<16}{:>14}{:>14}{:>9}", "", "before", "after", "ratio");
        row(&mut s, "size (encoded)", o.figures.encoded_bytes as f64, c.figures.encoded_bytes as f64, bytes);
        row(&mut s, "size (zstd)", o.compressed_bytes as f64, c.compressed_bytes as f64, bytes);
        row(&mut s, "parameters", o.figures.parameters as f64, c.figures.parameters as f64, count);
        if o.figures.nonzero_parameters != o.figures.parameters || c.figures.nonzero_parameters != c.figures.parameters {
            row(&mut s, "nonzero params", o.figures.nonzero_parameters as f64, c.figures.nonzero_parameters as f64, count);
        }
        row(&mut s, "MACs", o.figures.macs as f64, c.figures.macs as f64, count);
        row(&mut s, "nodes", o.figures.nodes as f64, c.figures.nodes as f64, |v| format!("{v}"));
        if let Some(l) = r.verification.as_ref().and_then(|v| v.latency.as_ref()) {
            let ms = |v: f64| format!("{v:.3} ms");
            let _ = writeln!(
                s,
                "{:<16}{:>14}{:>14}{:>8.3}x  95% CI [{:.3}, {:.3}]",
                "latency median",
                ms(l.original.median_ms),
                ms(l.candidate.median_ms),
                l.ratio.median_ratio,
                l.ratio.ci95_low,
                l.ratio.ci95_high
            );
            row(&mut s, "latency p90", l.original.p90_ms, l.candidate.p90_ms, ms);
            let _ = writeln!(s, "  ({} interleaved runs each after {} warm-up, {} thread)", l.original.runs, l.warmup, l.threads);
        }
        let _ = writeln!(s, "  original file on disk: {}", bytes(o.file_bytes as f64));
    }

    if let Some(v) = &r.verification {
        if let Some(e) = &v.error {
            let _ = writeln!(s, "\nverification failed: {e}");
        }
        if let Some(c) = &v.comparison {
            let _ = writeln!(s, "\nmetrics over {} samples", c.samples);
            for o in &c.outputs {
                let f = &o.fidelity;
                let sqnr = if f.exact_match {
                    "identical".to_string()
                } else {
                    format!("SQNR {:.1} dB (sample median {:.1})", f.sqnr_db, o.sqnr_db_sample_median)
                };
                let _ = writeln!(
                    s,
                    "  {} {}: {sqnr}, cosine {:.6}, max|err| {:.3e}, mean|err| {:.3e}",
                    o.name,
                    join(&o.shape),
                    f.cosine_similarity,
                    f.max_abs_error,
                    f.mean_abs_error
                );
                let mut extra = Vec::new();
                if let Some(a) = o.top1_agreement {
                    extra.push(format!("top-1 agreement {}", pct(a.rate)));
                }
                if let (Some(a), Some(k)) = (o.topk_agreement, o.top_k) {
                    extra.push(format!("top-{k} {}", pct(a.rate)));
                }
                if let Some(a) = o.argmax_agreement {
                    extra.push(format!("argmax agreement {}", pct(a.rate)));
                }
                if let Some(m) = o.mask_iou {
                    extra.push(format!("mask IoU@{} {:.4}", m.threshold, m.iou));
                }
                if let Some(ctc) = &o.ctc {
                    extra.push(format!("CTC sequence agreement {}", pct(ctc.sequence_agreement.rate)));
                    if let (Some(a), Some(b)) = (ctc.reference_accuracy, ctc.candidate_accuracy) {
                        extra.push(format!("string accuracy {} -> {}", pct(a.rate), pct(b.rate)));
                    }
                }
                if !extra.is_empty() {
                    let _ = writeln!(s, "    {}", extra.join(", "));
                }
                if let Some(a) = &o.labeled_accuracy {
                    let _ = writeln!(
                        s,
                        "    accuracy {} -> {} (drop {:+.4}); worst class {} drops {:+.4}",
                        pct(a.reference.rate),
                        pct(a.candidate.rate),
                        a.reference.rate - a.candidate.rate,
                        a.worst_class,
                        a.worst_class_drop
                    );
                    let classes: Vec<String> = a
                        .per_class
                        .iter()
                        .map(|c| format!("{}: {} -> {}", c.label, pct(c.reference.rate), pct(c.candidate.rate)))
                        .collect();
                    let _ = writeln!(s, "    per class: {}", classes.join("; "));
                }
            }
            for n in &c.notes {
                let _ = writeln!(s, "  note: {n}");
            }
        }
    }

    if let Some(g) = &r.gate {
        let _ = writeln!(s, "\ngate: {}", if g.passed { "PASS" } else { "FAIL" });
        if let Some(f) = &g.failure {
            let _ = writeln!(s, "  FAIL {f}");
        }
        for c in &g.checks {
            let tag = match c.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::NotApplicable => "n/a ",
            };
            let value = if c.status == CheckStatus::NotApplicable { "-".into() } else { num(c.value) };
            let margin = if c.margin.is_finite() { format!("{:+.4}", c.margin) } else { "-".into() };
            let _ = writeln!(
                s,
                "  {tag} {:<22} value {:>10}  threshold {:>8}  margin {:>9}  {}",
                c.name,
                value,
                num(c.threshold),
                margin,
                c.detail
            );
        }
        if g.checks.is_empty() {
            let _ = writeln!(s, "  (no thresholds set)");
        }
    }

    changes(&mut s, &r.steps);
    declined(&mut s, &r.steps);
    step_notes(&mut s, &r.steps);
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "\nerror: {e}");
    }
    let written = match (&r.files.output, r.files.output_written) {
        (Some(o), true) => format!("wrote {o}"),
        (Some(o), false) => format!("nothing written at {o}"),
        (None, _) => "no output path: model not written".into(),
    };
    let report = r.files.report.as_deref().map(|p| format!("; report {p}")).unwrap_or_default();
    let _ = writeln!(s, "\nresult: {status}: {written}{report}");
    s
}

fn steps_table(s: &mut String, original: &ModelFigures, steps: &[StepRecord]) {
    let _ = writeln!(
        s,
        "\n{:<24}{:>7}{:>12}{:>12}{:>14}{:>10}{:>8}{:>9}  check",
        "step", "nodes", "params", "bytes", "MACs", "ms", "applied", "declined"
    );
    let line = |s: &mut String, label: &str, f: &ModelFigures, rest: &str| {
        let _ = writeln!(s, "{label:<24}{:>7}{:>12}{:>12}{:>14}{rest}", f.nodes, f.parameters, f.encoded_bytes, f.macs);
    };
    line(s, "  0 original", original, "");
    for st in steps {
        let check = match &st.differential {
            Some(d) if d.error.is_some() => "FAILED to run".to_string(),
            Some(d) => format!("{} rel.err {:.1e}", if d.passed { "ok" } else { "FAIL" }, d.relative_max_error),
            None => String::new(),
        };
        let rest = format!("{:>10.1}{:>8}{:>9}  {check}", st.wall_ms, st.applied, st.declined.len());
        line(s, &format!("{:>3} {}", st.index, st.pass), &st.after, &rest);
    }
}

/// What each step changed, the first few lines per step (all of them are in the JSON report).
fn changes(s: &mut String, steps: &[StepRecord]) {
    const SHOWN: usize = 5;
    let mut any = false;
    for st in steps.iter().filter(|st| !st.changes.is_empty()) {
        if !any {
            let _ = writeln!(
                s,
                "
applied"
            );
            any = true;
        }
        let more = st.changes.len().saturating_sub(SHOWN);
        let tail = if more > 0 { format!("; ... and {more} more") } else { String::new() };
        let shown: Vec<&str> = st.changes.iter().take(SHOWN).map(String::as_str).collect();
        let _ = writeln!(s, "  step {} {}: {}{tail}", st.index, st.pass, shown.join("; "));
    }
}

/// Declined patterns grouped by step, op type and reason, with a few node names.
fn declined(s: &mut String, steps: &[StepRecord]) {
    let mut any = false;
    for st in steps {
        let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for d in &st.declined {
            groups.entry((d.op_type.as_str(), d.reason.as_str())).or_default().push(d.node.as_str());
        }
        for ((op, reason), nodes) in groups {
            if !any {
                let _ = writeln!(s, "\ndeclined");
                any = true;
            }
            let shown: Vec<&str> = nodes.iter().take(3).copied().collect();
            let more = if nodes.len() > 3 { format!(", ... ({} in all)", nodes.len()) } else { String::new() };
            let _ = writeln!(s, "  step {} {}: {}x {op}: {reason} [{}{more}]", st.index, st.pass, nodes.len(), shown.join(", "));
        }
    }
}

/// What passes said besides their changes (a figure they measured, a file they wrote).
fn step_notes(s: &mut String, steps: &[StepRecord]) {
    for st in steps {
        for n in &st.notes {
            let _ = writeln!(s, "step {} {}: {n}", st.index, st.pass);
        }
    }
}

fn row(s: &mut String, label: &str, before: f64, after: f64, fmt: impl Fn(f64) -> String) {
    let ratio = if before > 0.0 { format!("{:.3}x", after / before) } else { "-".into() };
    let _ = writeln!(s, "{label:<16}{:>14}{:>14}{:>9}", fmt(before), fmt(after), ratio);
}

fn bytes(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2} MB", v / 1e6),
        v if v >= 1e3 => format!("{:.1} kB", v / 1e3),
        v => format!("{v} B"),
    }
}

fn count(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.3} G", v / 1e9),
        v if v >= 1e6 => format!("{:.3} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v}"),
    }
}

fn pct(rate: f64) -> String {
    if rate.is_finite() { format!("{:.2}%", rate * 100.0) } else { "n/a".into() }
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        "inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(23)]
}
