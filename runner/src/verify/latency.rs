//! Latency of a candidate against its original, measured back to back.
//!
//! After `warmup` runs of each model, the two models run interleaved, one run each per
//! iteration, alternating which goes first (O C, C O, O C, ...) so neither always benefits
//! from the other's warm caches. Each run's wall time is recorded.
//!
//! The ratio is `median(candidate) / median(original)`. Its 95% confidence interval is a
//! *paired* percentile bootstrap: iterations are resampled with replacement (keeping each
//! iteration's original and candidate times together, since they share the machine's load at
//! that moment), the ratio of medians is recomputed on each resample, and the 2.5th and
//! 97.5th percentiles of those ratios are the bounds. The resampling uses a ChaCha8 generator
//! seeded with `seed`, so the interval is deterministic for given times.
//!
//! Threads: tract runs single-threaded unless the workspace enables the
//! `tract-linalg/multithread-mm` feature, which this crate does not (one feature set across
//! the workspace, or tract rebuilds). `threads` must therefore be 1; any other value is
//! rejected with [`VerifyError::Unsupported`].

use std::time::Instant;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tract_onnx::prelude::Tensor;

use super::{Runnable, VerifyError};

/// How to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyOptions {
    /// Untimed runs of each model before measuring.
    pub warmup: usize,
    /// Timed runs of each model (at least 2).
    pub runs: usize,
    /// Must be 1 (see the module doc).
    pub threads: usize,
    /// Bootstrap resamples for the confidence interval (at least 100).
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions { warmup: 3, runs: 30, threads: 1, bootstrap_resamples: 2000, seed: 0 }
    }
}

/// Summary of one model's run times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyStats {
    pub runs: usize,
    pub median_ms: f64,
    /// 90th percentile (linear interpolation between order statistics).
    pub p90_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
}

/// candidate / original, with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyRatio {
    /// median(candidate) / median(original); below 1 means the candidate is faster.
    pub median_ratio: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub resamples: usize,
    pub seed: u64,
    /// How the interval was computed.
    pub method: String,
}

/// Latency of both models and their ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    pub warmup: usize,
    pub threads: usize,
    pub original: LatencyStats,
    pub candidate: LatencyStats,
    pub ratio: LatencyRatio,
}

/// Times `original` and `candidate` on `sample` (inputs by name with their batch axis), see
/// the module doc for the protocol.
pub fn measure_latency(
    original: &Runnable,
    candidate: &Runnable,
    sample: &[(String, Tensor)],
    options: &LatencyOptions,
) -> Result<LatencyReport, VerifyError> {
    check_options(options)?;
    let original_inputs = original.prepare(sample)?;
    let candidate_inputs = candidate.prepare(sample)?;
    let time = |model: &Runnable, inputs: &tract_onnx::prelude::TVec<_>| {
        let start = Instant::now();
        model.run_prepared(inputs.clone())?;
        Ok::<f64, VerifyError>(start.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..options.warmup {
        time(original, &original_inputs)?;
        time(candidate, &candidate_inputs)?;
    }
    let mut orig_ms = Vec::with_capacity(options.runs);
    let mut cand_ms = Vec::with_capacity(options.runs);
    for i in 0..options.runs {
        if i % 2 == 0 {
            orig_ms.push(time(original, &original_inputs)?);
            cand_ms.push(time(candidate, &candidate_inputs)?);
        } else {
            cand_ms.push(time(candidate, &candidate_inputs)?);
            orig_ms.push(time(original, &original_inputs)?);
        }
    }
    Ok(report(&orig_ms, &cand_ms, options))
}

fn check_options(o: &LatencyOptions) -> Result<(), VerifyError> {
    if o.threads != 1 {
        return Err(VerifyError::Unsupported {
            what: format!("{} threads: tract is built single-threaded here (no multithread-mm feature)", o.threads),
        });
    }
    if o.runs < 2 {
        return Err(VerifyError::InvalidOption { what: format!("latency runs = {}, need at least 2", o.runs) });
    }
    if o.bootstrap_resamples < 100 {
        return Err(VerifyError::InvalidOption { what: format!("bootstrap resamples = {}, need at least 100", o.bootstrap_resamples) });
    }
    Ok(())
}

/// The report for paired times (`original[i]` and `candidate[i]` from iteration `i`).
fn report(original: &[f64], candidate: &[f64], o: &LatencyOptions) -> LatencyReport {
    let (lo, hi) = bootstrap_ratio_ci(original, candidate, o.bootstrap_resamples, o.seed);
    LatencyReport {
        warmup: o.warmup,
        threads: o.threads,
        original: summarize(original),
        candidate: summarize(candidate),
        ratio: LatencyRatio {
            median_ratio: median(candidate) / median(original),
            ci95_low: lo,
            ci95_high: hi,
            resamples: o.bootstrap_resamples,
            seed: o.seed,
            method: "paired percentile bootstrap of median(candidate)/median(original) over \
                     iterations"
                .into(),
        },
    }
}

/// Median, p90, mean and min of `times_ms` (non-empty).
pub fn summarize(times_ms: &[f64]) -> LatencyStats {
    let mut sorted = times_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    LatencyStats {
        runs: sorted.len(),
        median_ms: percentile(&sorted, 0.5),
        p90_ms: percentile(&sorted, 0.9),
        mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
        min_ms: sorted.first().copied().unwrap_or(f64::NAN),
    }
}

/// The `q`-quantile of sorted values, interpolating linearly between order statistics
/// (NumPy's default). NaN for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (below, frac) = (pos.floor() as usize, pos.fract());
            let above = (below + 1).min(n - 1);
            // Exact order statistics need no interpolation (and stay right for infinities).
            if frac == 0.0 || sorted[above] == sorted[below] {
                return sorted[below];
            }
            sorted[below] + (sorted[above] - sorted[below]) * frac
        }
    }
}

/// The median of unsorted values (NaN for none): the one median of the runner.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// 95% percentile-bootstrap interval of `median(candidate) / median(original)`, resampling
/// iteration indices (pairs) with replacement.
pub fn bootstrap_ratio_ci(original: &[f64], candidate: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    assert_eq!(original.len(), candidate.len(), "bootstrap: unpaired times");
    let n = original.len();
    if n == 0 || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ratios = Vec::with_capacity(resamples);
    let (mut o, mut c) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.random_range(0..n);
            o[k] = original[i];
            c[k] = candidate[i];
        }
        ratios.push(median(&c) / median(&o));
    }
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.025), percentile(&ratios, 0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_statistics() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.runs, 5);
        assert_eq!(s.median_ms, 3.0);
        assert_eq!(s.mean_ms, 3.0);
        assert_eq!(s.min_ms, 1.0);
        // Position 0.9 * 4 = 3.6 between 4 and 5.
        assert!((s.p90_ms - 4.6).abs() < 1e-12);
        assert_eq!(percentile(&[1.0, 2.0], 0.5), 1.5);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_ratio() {
        let orig: Vec<f64> = (0..40).map(|i| 10.0 + (i % 7) as f64 * 0.3).collect();
        let cand: Vec<f64> = orig.iter().enumerate().map(|(i, t)| t * 0.5 + (i % 3) as f64 * 0.1).collect();
        let a = bootstrap_ratio_ci(&orig, &cand, 500, 9);
        let b = bootstrap_ratio_ci(&orig, &cand, 500, 9);
        assert_eq!(a, b);
        let point = median(&cand) / median(&orig);
        assert!(a.0 <= point && point <= a.1, "{a:?} vs {point}");
        assert!(a.0 > 0.45 && a.1 < 0.56, "{a:?}");
        // Identical times: the ratio is exactly 1 in every resample.
        assert_eq!(bootstrap_ratio_ci(&orig, &orig, 200, 1), (1.0, 1.0));
    }

    #[test]
    fn options_are_checked() {
        let bad_threads = LatencyOptions { threads: 2, ..LatencyOptions::default() };
        assert!(matches!(check_options(&bad_threads), Err(VerifyError::Unsupported { .. })));
        let one_run = LatencyOptions { runs: 1, ..LatencyOptions::default() };
        assert!(matches!(check_options(&one_run), Err(VerifyError::InvalidOption { .. })));
        check_options(&LatencyOptions::default()).unwrap();
    }

    #[test]
    fn report_ratio_below_one_for_faster_candidate() {
        let r = report(&[10.0, 12.0, 11.0], &[5.0, 6.0, 5.5], &LatencyOptions::default());
        assert_eq!(r.ratio.median_ratio, 0.5);
        assert_eq!(r.original.median_ms, 11.0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ratio"]["median_ratio"], 0.5);
        assert!(json["candidate"]["p90_ms"].is_number());
    }
}
