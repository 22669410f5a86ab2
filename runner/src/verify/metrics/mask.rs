//! Text-mask IoU for probability maps (PP-OCR det): a pixel is text when its value is strictly
//! greater than the threshold (as PaddleOCR's DB post-processing and the peer `compare.py` do).
//! Counts are summed over all samples before dividing. Two empty masks agree fully (IoU 1; the
//! peer script reports 0 in that corner case).

use serde::Serialize;

use super::super::json;

/// Intersection and union pixel counts of the two masks, and their ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MaskIou {
    pub threshold: f32,
    pub intersection: u64,
    pub union: u64,
    #[serde(serialize_with = "json::finite_or_null")]
    pub iou: f64,
}

impl MaskIou {
    /// Pools the counts of two results at the same threshold.
    pub fn merge(self, other: MaskIou) -> MaskIou {
        MaskIou::from_counts(self.threshold, self.intersection + other.intersection, self.union + other.union)
    }

    fn from_counts(threshold: f32, intersection: u64, union: u64) -> MaskIou {
        let iou = if union == 0 { 1.0 } else { intersection as f64 / union as f64 };
        MaskIou { threshold, intersection, union, iou }
    }
}

/// IoU of `reference > threshold` and `candidate > threshold`.
pub fn mask_iou(reference: &[f32], candidate: &[f32], threshold: f32) -> MaskIou {
    assert_eq!(reference.len(), candidate.len(), "mask IoU: length mismatch");
    let (mut inter, mut union) = (0u64, 0u64);
    for (&r, &c) in reference.iter().zip(candidate) {
        let (a, b) = (r > threshold, c > threshold);
        inter += u64::from(a && b);
        union += u64::from(a || b);
    }
    MaskIou::from_counts(threshold, inter, union)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_iou() {
        // ref mask: 1 1 0 0 0 ; cand mask: 0 1 1 0 0 ; 0.3 itself is not text.
        let r = [0.9, 0.5, 0.3, 0.0, 0.1];
        let c = [0.2, 0.4, 0.31, 0.3, 0.0];
        let m = mask_iou(&r, &c, 0.3);
        assert_eq!((m.intersection, m.union), (1, 3));
        assert!((m.iou - 1.0 / 3.0).abs() < 1e-12);
        // Pooling counts, not averaging ratios: (1 + 2) / (3 + 2) = 0.6.
        let full = mask_iou(&[1.0, 1.0], &[1.0, 1.0], 0.3);
        assert!((m.merge(full).iou - 0.6).abs() < 1e-12);
    }

    #[test]
    fn empty_masks_agree() {
        assert_eq!(mask_iou(&[0.0; 4], &[0.1; 4], 0.3).iou, 1.0);
    }
}
