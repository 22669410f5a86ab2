//! The gate: each threshold of the pipeline's `verify` section checked against what was
//! measured, with the margin.
//!
//! A check is `passed`, `failed`, or `not_applicable` (the metric does not exist for this model,
//! e.g. a top-1 threshold on a detector; it does not fail the gate, and the report says why).
//! `margin` is how far the value is on the good side of the threshold (negative: by how much it
//! failed). A gate with a failed check, or whose candidate could not be run, fails.
//!
//! Latency is noisy on shared machines: `max_latency_ratio` fails only when the whole 95%
//! confidence interval of the ratio lies above the threshold, i.e. the candidate is slower than
//! allowed with 95% confidence; `value` is the median ratio and `margin` is taken from the lower
//! bound of the interval.

use serde::Serialize;

use crate::pipeline::VerifySpec;
use crate::verify::{Comparison, LatencyReport};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    NotApplicable,
}

/// One threshold and what was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The threshold's key in the pipeline (`min_sqnr_db`, ...).
    pub name: String,
    pub threshold: f64,
    /// The measured value; `null` when not applicable or not finite (see `detail`).
    #[serde(serialize_with = "crate::verify::json::finite_or_null")]
    pub value: f64,
    pub status: CheckStatus,
    /// Distance to the threshold on the good side (negative when failed); `null` when infinite or
    /// not applicable.
    #[serde(serialize_with = "crate::verify::json::finite_or_null")]
    pub margin: f64,
    /// Which output or class, how it was judged, or why it does not apply.
    pub detail: String,
}

/// All checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub passed: bool,
    pub checks: Vec<Check>,
    /// Why the gate failed without a failed threshold (the candidate could not be run, a step's
    /// differential check failed).
    pub failure: Option<String>,
}

/// What the gate judges.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured<'a> {
    pub comparison: Option<&'a Comparison>,
    pub latency: Option<&'a LatencyReport>,
    /// candidate / original encoded size.
    pub size_ratio: f64,
    /// Set when verification could not be completed (e.g. tract failed on the candidate).
    pub failure: Option<&'a str>,
}

enum Dir {
    Min,
    Max,
}

fn check(name: &str, threshold: f64, dir: Dir, value: Option<(f64, String)>, na: &str) -> Check {
    let Some((value, detail)) = value else {
        return Check {
            name: name.into(),
            threshold,
            value: f64::NAN,
            status: CheckStatus::NotApplicable,
            margin: f64::NAN,
            detail: na.into(),
        };
    };
    let margin = match dir {
        Dir::Min => value - threshold,
        Dir::Max => threshold - value,
    };
    // NaN fails: a metric that could not be computed proves nothing.
    let status = if margin >= 0.0 { CheckStatus::Passed } else { CheckStatus::Failed };
    Check { name: name.into(), threshold, value, status, margin, detail }
}

/// The worst value over outputs (`pick` returns `None` for outputs without the metric), with
/// the output's name.
fn worst(cmp: Option<&Comparison>, dir: Dir, pick: impl Fn(&crate::verify::OutputComparison) -> Option<f64>) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    for o in &cmp?.outputs {
        let Some(v) = pick(o) else { continue };
        let worse = match (&best, &dir) {
            (None, _) => true,
            (Some((b, _)), Dir::Min) => v < *b || v.is_nan(),
            (Some((b, _)), Dir::Max) => v > *b || v.is_nan(),
        };
        if worse {
            best = Some((v, format!("output `{}`", o.name)));
        }
    }
    best
}

/// Checks every threshold set in `spec`.
pub fn evaluate(spec: &VerifySpec, m: &Measured<'_>) -> GateResult {
    let cmp = m.comparison;
    let mut checks = Vec::new();
    let failure = m.failure.map(str::to_string);
    if let Some(t) = spec.min_sqnr_db {
        let mut c = check("min_sqnr_db", t, Dir::Min, worst(cmp, Dir::Min, |o| Some(o.fidelity.sqnr_db)), "no comparison");
        if c.value == f64::INFINITY {
            c.detail = format!("{}: outputs identical (infinite SQNR)", c.detail);
        }
        checks.push(c);
    }
    if let Some(t) = spec.min_cosine {
        checks.push(check("min_cosine", t, Dir::Min, worst(cmp, Dir::Min, |o| Some(o.fidelity.cosine_similarity)), "no comparison"));
    }
    if let Some(t) = spec.max_top1_drop {
        let v = worst(cmp, Dir::Max, |o| o.top1_agreement.map(|a| 1.0 - a.rate));
        checks.push(check("max_top1_drop", t, Dir::Max, v, "no output holds one score vector per sample"));
    }
    if let Some(t) = spec.max_accuracy_drop {
        let v = cmp.and_then(|c| {
            c.outputs.iter().find_map(|o| {
                if let Some(a) = &o.labeled_accuracy {
                    return Some((
                        a.reference.rate - a.candidate.rate,
                        format!("output `{}`: {:.4} -> {:.4}", o.name, a.reference.rate, a.candidate.rate),
                    ));
                }
                let ctc = o.ctc.as_ref()?;
                let (r, c) = (ctc.reference_accuracy?, ctc.candidate_accuracy?);
                Some((r.rate - c.rate, format!("output `{}` (CTC strings): {:.4} -> {:.4}", o.name, r.rate, c.rate)))
            })
        });
        checks.push(check("max_accuracy_drop", t, Dir::Max, v, "no labels (or no output they can score)"));
    }
    if let Some(t) = spec.max_worst_class_drop {
        let v = cmp.and_then(|c| {
            c.outputs.iter().find_map(|o| {
                o.labeled_accuracy.as_ref().map(|a| (a.worst_class_drop, format!("output `{}`, class {}", o.name, a.worst_class)))
            })
        });
        checks.push(check("max_worst_class_drop", t, Dir::Max, v, "no integer labels"));
    }
    if let Some(t) = spec.min_argmax_agreement {
        let v = worst(cmp, Dir::Min, |o| o.argmax_agreement.map(|a| a.rate));
        checks.push(check("min_argmax_agreement", t, Dir::Min, v, "set `argmax_axis` to measure it"));
    }
    if let Some(t) = spec.min_ctc_agreement {
        let v = worst(cmp, Dir::Min, |o| o.ctc.as_ref().map(|c| c.sequence_agreement.rate));
        checks.push(check("min_ctc_agreement", t, Dir::Min, v, "set `ctc: true` to measure it"));
    }
    if let Some(t) = spec.min_mask_iou {
        let v = worst(cmp, Dir::Min, |o| o.mask_iou.map(|m| m.iou));
        checks.push(check("min_mask_iou", t, Dir::Min, v, "set `mask_threshold` to measure it"));
    }
    if let Some(t) = spec.max_latency_ratio {
        checks.push(latency_check(t, m.latency));
    }
    if let Some(t) = spec.max_size_ratio {
        checks.push(check("max_size_ratio", t, Dir::Max, Some((m.size_ratio, "encoded size, candidate / original".into())), ""));
    }
    if cmp.is_none() {
        for c in checks.iter_mut().filter(|c| c.status == CheckStatus::NotApplicable) {
            c.detail = "not measured: verification did not complete".into();
        }
    }
    let passed = failure.is_none() && m.comparison.is_some() && checks.iter().all(|c| c.status != CheckStatus::Failed);
    GateResult { passed, checks, failure }
}

fn latency_check(threshold: f64, latency: Option<&LatencyReport>) -> Check {
    let Some(l) = latency else {
        return check("max_latency_ratio", threshold, Dir::Max, None, "latency not measured (latency_runs: 0)");
    };
    let r = &l.ratio;
    let status = if r.ci95_low <= threshold { CheckStatus::Passed } else { CheckStatus::Failed };
    Check {
        name: "max_latency_ratio".into(),
        threshold,
        value: r.median_ratio,
        status,
        margin: threshold - r.ci95_low,
        detail: format!(
            "median ratio {:.3}, 95% CI [{:.3}, {:.3}]; fails only when the whole interval is above the threshold",
            r.median_ratio, r.ci95_low, r.ci95_high
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_missing_metrics() {
        let spec = VerifySpec { max_size_ratio: Some(1.0), max_top1_drop: Some(0.0), ..VerifySpec::default() };
        let cmp =
            Comparison { samples: 1, overall: crate::verify::metrics::fidelity(&[1.0], &[1.0]), outputs: Vec::new(), notes: Vec::new() };
        let g = evaluate(&spec, &Measured { comparison: Some(&cmp), size_ratio: 1.2, ..Measured::default() });
        assert!(!g.passed);
        assert_eq!(g.checks[0].status, CheckStatus::NotApplicable);
        assert_eq!(g.checks[1].status, CheckStatus::Failed);
        assert!((g.checks[1].margin + 0.2).abs() < 1e-12);
        let g = evaluate(&spec, &Measured { comparison: Some(&cmp), size_ratio: 0.5, ..Measured::default() });
        assert!(g.passed);
        // No comparison at all (the candidate did not run): never a pass.
        let g = evaluate(&spec, &Measured { size_ratio: 0.5, failure: Some("tract failed"), ..Measured::default() });
        assert!(!g.passed);
    }
}
