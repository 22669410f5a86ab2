//! Metric functions: plain functions on slices and arrays, no tract, no I/O.
//!
//! Functions that compare two outputs take `reference` first, `candidate` second, and panic if
//! the two do not have the same length or shape (callers check shapes first; see
//! [`compare`](super::compare())). Counting metrics return an [`Agreement`] so that results of
//! several samples can be merged before taking the rate.

mod accuracy;
mod classify;
mod ctc;
mod fidelity;
mod mask;

pub use accuracy::{ClassAccuracy, LabeledAccuracy, labeled_accuracy};
pub use classify::{argmax, argmax_agreement, top_k, top1_agreement, topk_agreement};
pub use ctc::{Charset, ctc_greedy_decode, exact_string_accuracy, sequence_agreement};
pub use fidelity::{Fidelity, FidelityAccumulator, fidelity, sqnr_db};
pub use mask::{MaskIou, mask_iou};

use serde::Serialize;

use super::json;

/// `matches` out of `total`, with `rate = matches / total` (NaN, written as `null`, when
/// `total` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    pub matches: usize,
    pub total: usize,
    #[serde(serialize_with = "json::finite_or_null")]
    pub rate: f64,
}

impl Agreement {
    pub fn new(matches: usize, total: usize) -> Self {
        let rate = if total == 0 { f64::NAN } else { matches as f64 / total as f64 };
        Agreement { matches, total, rate }
    }

    /// The agreement over both sets of cases.
    pub fn merge(self, other: Agreement) -> Agreement {
        Agreement::new(self.matches + other.matches, self.total + other.total)
    }
}

impl Default for Agreement {
    fn default() -> Self {
        Agreement::new(0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_merges_counts_not_rates() {
        let a = Agreement::new(1, 1).merge(Agreement::new(0, 3));
        assert_eq!((a.matches, a.total), (1, 4));
        assert_eq!(a.rate, 0.25);
        assert!(Agreement::default().rate.is_nan());
    }
}
