//! Agreement of predicted classes: top-1 and top-k over score vectors on the last axis, and
//! argmax along any axis.
//!
//! Ties go to the lowest index; NaN never wins against a number.

use ndarray::{ArrayViewD, Axis};

use super::Agreement;

/// Index of the largest value (first one on ties, 0 for an empty or all-NaN input).
pub fn argmax<'a>(values: impl IntoIterator<Item = &'a f32>) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.into_iter().enumerate() {
        match best {
            _ if v.is_nan() => {}
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Indices of the `k` largest values, largest first (lower index first on ties; NaN last).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) => y.total_cmp(&x),
        }
        .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// Fraction of score rows (consecutive runs of `classes` values) whose argmax is the same.
pub fn top1_agreement(reference: &[f32], candidate: &[f32], classes: usize) -> Agreement {
    rows(reference, candidate, classes, |r, c| argmax(r) == argmax(c))
}

/// Fraction of score rows where the reference's top-1 class is among the candidate's top `k`
/// classes (`k` is clamped to the number of classes; `k = 1` is top-1 agreement).
pub fn topk_agreement(reference: &[f32], candidate: &[f32], classes: usize, k: usize) -> Agreement {
    rows(reference, candidate, classes, |r, c| top_k(c, k.max(1)).contains(&argmax(r)))
}

fn rows(reference: &[f32], candidate: &[f32], classes: usize, agree: impl Fn(&[f32], &[f32]) -> bool) -> Agreement {
    assert_eq!(reference.len(), candidate.len(), "agreement: length mismatch");
    assert!(classes > 0 && reference.len().is_multiple_of(classes), "agreement: {} values are not rows of {classes}", reference.len());
    let matches = reference.chunks(classes).zip(candidate.chunks(classes)).filter(|(r, c)| agree(r, c)).count();
    Agreement::new(matches, reference.len() / classes)
}

/// Fraction of positions whose argmax along `axis` is the same (e.g. per-pixel class maps).
pub fn argmax_agreement(reference: &ArrayViewD<f32>, candidate: &ArrayViewD<f32>, axis: usize) -> Agreement {
    assert_eq!(reference.shape(), candidate.shape(), "argmax agreement: shape mismatch");
    let r = reference.map_axis(Axis(axis), |lane| argmax(lane.iter()));
    let c = candidate.map_axis(Axis(axis), |lane| argmax(lane.iter()));
    let matches = r.iter().zip(c.iter()).filter(|(a, b)| a == b).count();
    Agreement::new(matches, r.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn argmax_ties_and_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -5.0, -6.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn top_k_order() {
        assert_eq!(top_k(&[0.1, 0.5, 0.2, 0.5, f32::NAN], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[0.1, 0.2], 5), vec![1, 0]);
    }

    #[test]
    fn top1_and_topk_on_three_rows() {
        let r = [0.9, 0.05, 0.05, /**/ 0.1, 0.8, 0.1, /**/ 0.2, 0.3, 0.5];
        // Row 0 agrees; row 1: cand top-1 is 0, ref's class 1 is cand's 2nd; row 2: ref's class 2
        // is cand's last.
        let c = [0.8, 0.1, 0.1, /**/ 0.6, 0.3, 0.1, /**/ 0.5, 0.4, 0.1];
        assert_eq!(top1_agreement(&r, &c, 3), Agreement::new(1, 3));
        assert_eq!(topk_agreement(&r, &c, 3, 2), Agreement::new(2, 3));
        assert_eq!(topk_agreement(&r, &c, 3, 3), Agreement::new(3, 3));
        assert_eq!(topk_agreement(&r, &c, 3, 1), top1_agreement(&r, &c, 3));
    }

    #[test]
    fn argmax_along_middle_axis() {
        // Shape [1, 2, 3]: classes on axis 1, three positions.
        let r = ArrayD::from_shape_vec(IxDyn(&[1, 2, 3]), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).unwrap();
        let c = ArrayD::from_shape_vec(IxDyn(&[1, 2, 3]), vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]).unwrap();
        // Positions: (0 vs 0) (1 vs 1) (0 vs 1) -> 2 of 3.
        assert_eq!(argmax_agreement(&r.view(), &c.view(), 1), Agreement::new(2, 3));
        // Along the last axis: 2 rows, argmax r = [0, 1], c = [0, 1] -> 2 of 2.
        assert_eq!(argmax_agreement(&r.view(), &c.view(), 2), Agreement::new(2, 2));
    }
}
