//! Calibration: streaming statistics of activations and the ranges chosen from them.
//!
//! Each calibrated value keeps its exact min/max and a histogram of fixed size ([`BINS`] bins over
//! `[-R, R]`). The histogram starts at the first sample's largest magnitude and doubles `R` when
//! a later sample exceeds it, merging bin pairs (exact: the old range is the middle half of the
//! new one), so one pass over the data suffices and memory is the same for 10 or 10⁶ samples.
//!
//! Ranges from the statistics ([`Method`]):
//! - `minmax`: the observed min and max;
//! - `percentile`: the `percentile`-th and `(100 - percentile)`-th percentiles (two-sided);
//! - `mse`: the clipping range `[a·min, a·max]`, `a` in (0, 1], minimising the expected squared
//!   quantization error (clipping error of the clipped mass, `scale²/12` rounding noise inside);
//! - `entropy`: the same family of ranges minimising the KL divergence between the histogram and
//!   its quantized version (TensorRT's calibration, two-sided).
//!
//! Zero is always inside the range, so it is exactly representable (padding, ReLU).

use serde::{Deserialize, Serialize};

use crate::quant::params::{QParams, QType};

/// Histogram bins (a multiple of 4, so that doubling the range merges bins exactly).
pub const BINS: usize = 2048;

/// How a range is chosen from the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Minmax,
    Percentile,
    Mse,
    Entropy,
}

/// Streaming statistics of one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    /// Half-width of the histogram's range, `[-range, range]` (0 before the first sample).
    pub range: f32,
    pub counts: Vec<u64>,
    /// Elements seen.
    pub count: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats { min: f32::INFINITY, max: f32::NEG_INFINITY, range: 0.0, counts: vec![0; BINS], count: 0 }
    }
}

impl Stats {
    /// Adds one sample's elements (non-finite elements are ignored). A slice, not an ndarray
    /// iterator: walking a dynamic-rank array element by element costs as much as the model run.
    pub fn add(&mut self, data: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in data {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        let need = lo.abs().max(hi.abs());
        if self.range == 0.0 {
            self.range = if need > 0.0 { need } else { 1e-8 };
        }
        while need > self.range {
            self.double();
        }
        let width = 2.0 * self.range / BINS as f32;
        let mut added = 0;
        for &x in data {
            if x.is_finite() {
                let b = ((x + self.range) / width) as usize;
                self.counts[b.min(BINS - 1)] += 1;
                added += 1;
            }
        }
        self.count += added;
    }

    fn double(&mut self) {
        let mut merged = vec![0u64; BINS];
        for (j, c) in self.counts.iter().enumerate() {
            merged[(BINS / 2 + j) / 2] += c;
        }
        self.counts = merged;
        self.range *= 2.0;
    }

    fn width(&self) -> f64 {
        2.0 * self.range as f64 / BINS as f64
    }

    fn center(&self, b: usize) -> f64 {
        -(self.range as f64) + (b as f64 + 0.5) * self.width()
    }

    /// The value below which a fraction `q` of the elements lie (bin resolution, clamped to the
    /// observed range).
    pub fn quantile(&self, q: f64) -> f32 {
        let target = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target.max(1) {
                let edge = -(self.range as f64) + (b as f64 + 1.0) * self.width();
                return (edge as f32).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The range `method` chooses for quantization to `qtype`.
    pub fn choose_range(&self, method: Method, percentile: f64, qtype: QType, symmetric: bool) -> (f32, f32) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        let (min, max) = (self.min.min(0.0), self.max.max(0.0));
        match method {
            Method::Minmax => (min, max),
            Method::Percentile => {
                let p = (percentile / 100.0).clamp(0.5, 1.0);
                (self.quantile(1.0 - p).min(0.0), self.quantile(p).max(0.0))
            }
            Method::Mse | Method::Entropy => {
                let width = self.width();
                let cost = |lo: f32, hi: f32| {
                    let q = QParams::for_range(lo, hi, qtype, symmetric);
                    match method {
                        Method::Mse => self.mse(q),
                        // KL needs each quantization level to span at least one histogram bin.
                        _ if (q.scale as f64) < width => f64::INFINITY,
                        _ => self.kl(q),
                    }
                };
                // Coordinate search: the upper end with the lower at the minimum, then the lower
                // end; each over a geometric grid down to 1% of the observed extreme.
                let grid: Vec<f32> = (0..=150).map(|k| 0.97f32.powi(k)).collect();
                let mut hi = max;
                let mut best = cost(min, max);
                for &a in &grid {
                    let c = cost(min, max * a);
                    if c < best {
                        (best, hi) = (c, max * a);
                    }
                }
                let mut lo = min;
                for &a in &grid {
                    let c = cost(min * a, hi);
                    if c < best {
                        (best, lo) = (c, min * a);
                    }
                }
                (lo, hi)
            }
        }
    }

    /// Expected squared error of quantizing with `q`, per element.
    pub fn mse(&self, q: QParams) -> f64 {
        let (lo, hi) = q.representable();
        let s = q.scale as f64;
        let mut err = 0.0;
        for (b, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = self.center(b);
            let e = if x < lo {
                (lo - x).powi(2)
            } else if x > hi {
                (x - hi).powi(2)
            } else {
                s * s / 12.0
            };
            err += c as f64 * e;
        }
        err / self.count.max(1) as f64
    }

    /// KL divergence between the histogram clipped to `q`'s range and its quantized version.
    pub fn kl(&self, q: QParams) -> f64 {
        let (lo, hi) = q.representable();
        let s = q.scale as f64;
        // P: the histogram with the clipped mass folded into the edge bins. Q: the clipped
        // histogram *without* that mass, each quantization level's mass spread evenly over its
        // non-empty bins (TensorRT's construction: heavy clipping puts a spike in P that Q lacks).
        let mut p: Vec<(i64, f64, f64)> = Vec::new();
        let (mut below, mut above) = (0.0, 0.0);
        for (b, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = self.center(b);
            if x < lo {
                below += c as f64;
            } else if x > hi {
                above += c as f64;
            } else {
                p.push((((x - lo) / s).round() as i64, c as f64, c as f64));
            }
        }
        if p.is_empty() {
            return f64::INFINITY;
        }
        p.first_mut().expect("not empty").1 += below;
        p.last_mut().expect("not empty").1 += above;
        let p_total: f64 = p.iter().map(|e| e.1).sum();
        let q_total: f64 = p.iter().map(|e| e.2).sum();
        let mut level_mass = vec![(0.0f64, 0usize); 257];
        for &(level, _, c) in &p {
            let e = &mut level_mass[level.clamp(0, 256) as usize];
            e.0 += c;
            e.1 += 1;
        }
        p.iter()
            .map(|&(level, pc, _)| {
                let (mass, n) = level_mass[level.clamp(0, 256) as usize];
                let (pp, qq) = (pc / p_total, mass / n as f64 / q_total);
                pp * (pp / qq).ln()
            })
            .sum()
    }

    /// Predicted signal-to-quantization-noise ratio of quantizing with `q`, dB (a cheap per-point
    /// sensitivity: no model run).
    pub fn predicted_sqnr_db(&self, q: QParams) -> f64 {
        let signal: f64 =
            self.counts.iter().enumerate().map(|(b, &c)| c as f64 * self.center(b).powi(2)).sum::<f64>() / self.count.max(1) as f64;
        10.0 * (signal / self.mse(q).max(1e-30)).log10()
    }
}

/// Streaming per-channel means of a value (for bias correction): `channel` is the axis.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelMeans {
    pub axis: usize,
    sums: Vec<f64>,
    counts: Vec<u64>,
}

impl ChannelMeans {
    pub fn new(axis: usize) -> ChannelMeans {
        ChannelMeans { axis, sums: Vec::new(), counts: Vec::new() }
    }

    pub fn add(&mut self, a: &ndarray::ArrayD<f32>) {
        if self.axis >= a.ndim() {
            return;
        }
        let c = a.shape()[self.axis];
        if self.sums.len() != c {
            self.sums = vec![0.0; c];
            self.counts = vec![0; c];
        }
        for (i, lane) in a.axis_iter(ndarray::Axis(self.axis)).enumerate() {
            self.sums[i] += lane.iter().map(|&x| x as f64).sum::<f64>();
            self.counts[i] += lane.len() as u64;
        }
    }

    pub fn means(&self) -> Vec<f64> {
        self.sums.iter().zip(&self.counts).map(|(s, &n)| if n > 0 { s / n as f64 } else { 0.0 }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_keeps_every_count_and_the_exact_extremes() {
        let mut s = Stats::default();
        s.add(&[0.5f32, -0.25]);
        s.add(&[3.0f32, -7.0, 0.1]);
        assert_eq!(s.count, 5);
        assert_eq!(s.counts.iter().sum::<u64>(), 5);
        assert_eq!((s.min, s.max), (-7.0, 3.0));
        assert!(s.range >= 7.0 && s.range <= 8.0, "{}", s.range);
    }

    #[test]
    fn streamed_histogram_equals_the_one_of_all_data_at_once() {
        let data: Vec<f32> = (0..4000).map(|i| ((i * 37 % 1000) as f32 - 300.0) / 10.0).collect();
        let mut streamed = Stats::default();
        for chunk in data.chunks(7) {
            streamed.add(chunk);
        }
        let mut once = Stats::default();
        once.add(&data);
        // Same extremes and count; quantiles agree to the streamed histogram's resolution.
        assert_eq!((streamed.min, streamed.max, streamed.count), (once.min, once.max, once.count));
        for q in [0.01, 0.5, 0.99] {
            let res = 2.0 * streamed.range / BINS as f32;
            assert!((streamed.quantile(q) - once.quantile(q)).abs() <= 2.0 * res, "q {q}");
        }
    }

    #[test]
    fn percentile_and_mse_clip_a_lone_outlier() {
        let mut s = Stats::default();
        let mut data: Vec<f32> = (0..100_000).map(|i| (i % 200) as f32 / 100.0 - 1.0).collect();
        data.push(50.0);
        s.add(&data);
        let (_, hi) = s.choose_range(Method::Minmax, 99.99, QType::Uint8, false);
        assert_eq!(hi, 50.0);
        for m in [Method::Percentile, Method::Mse, Method::Entropy] {
            let (lo, hi) = s.choose_range(m, 99.99, QType::Uint8, false);
            assert!(hi < 50.0 && lo < -0.5, "{m:?}: [{lo}, {hi}]");
        }
        let (lo, hi) = s.choose_range(Method::Percentile, 99.99, QType::Uint8, false);
        assert!((hi - 1.0).abs() < 0.1 && (lo + 1.0).abs() < 0.1, "[{lo}, {hi}]");
    }
}
