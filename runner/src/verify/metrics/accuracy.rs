//! Accuracy of both models against integer labels, overall and per class, and the worst
//! class's drop.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Agreement;

/// Accuracy on the samples of one class (class = label value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub label: i64,
    pub reference: Agreement,
    pub candidate: Agreement,
    /// reference.rate - candidate.rate (positive = the candidate is worse).
    pub drop: f64,
}

/// Labeled accuracy of the reference and the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabeledAccuracy {
    pub reference: Agreement,
    pub candidate: Agreement,
    /// Classes in increasing label order.
    pub per_class: Vec<ClassAccuracy>,
    /// max over classes of (reference - candidate) accuracy; can be negative when the
    /// candidate is better on every class.
    pub worst_class_drop: f64,
    /// The class with that drop (lowest label on ties).
    pub worst_class: i64,
}

/// Accuracy of the predicted class indices against `labels`. Panics if the lengths differ or
/// are 0.
pub fn labeled_accuracy(labels: &[i64], reference: &[usize], candidate: &[usize]) -> LabeledAccuracy {
    assert!(
        !labels.is_empty() && labels.len() == reference.len() && labels.len() == candidate.len(),
        "labeled accuracy: need one prediction per label"
    );
    let hit = |pred: usize, label: i64| i64::try_from(pred) == Ok(label);
    // label -> (total, reference hits, candidate hits)
    let mut classes: BTreeMap<i64, (usize, usize, usize)> = BTreeMap::new();
    for ((&label, &r), &c) in labels.iter().zip(reference).zip(candidate) {
        let entry = classes.entry(label).or_default();
        entry.0 += 1;
        entry.1 += usize::from(hit(r, label));
        entry.2 += usize::from(hit(c, label));
    }
    let per_class: Vec<ClassAccuracy> = classes
        .into_iter()
        .map(|(label, (n, r, c))| {
            let (reference, candidate) = (Agreement::new(r, n), Agreement::new(c, n));
            ClassAccuracy { label, reference, candidate, drop: reference.rate - candidate.rate }
        })
        .collect();
    let worst = per_class
        .iter()
        .fold(None::<&ClassAccuracy>, |w, c| match w {
            Some(w) if w.drop >= c.drop => Some(w),
            _ => Some(c),
        })
        .copied();
    let (total_r, total_c) = per_class.iter().fold((0, 0), |(r, c), k| (r + k.reference.matches, c + k.candidate.matches));
    LabeledAccuracy {
        reference: Agreement::new(total_r, labels.len()),
        candidate: Agreement::new(total_c, labels.len()),
        worst_class_drop: worst.map_or(0.0, |w| w.drop),
        worst_class: worst.map_or(0, |w| w.label),
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_and_worst_drop() {
        // Class 0: 4 samples, ref 4/4, cand 3/4 (drop 0.25).
        // Class 1: 2 samples, ref 1/2, cand 2/2 (drop -0.5).
        // Class 7: 2 samples, ref 2/2, cand 1/2 (drop 0.5)  <- worst.
        let labels = [0, 0, 0, 0, 1, 1, 7, 7];
        let reference = [0, 0, 0, 0, 1, 0, 7, 7];
        let candidate = [0, 0, 0, 1, 1, 1, 7, 0];
        let acc = labeled_accuracy(&labels, &reference, &candidate);
        assert_eq!(acc.reference, Agreement::new(7, 8));
        assert_eq!(acc.candidate, Agreement::new(6, 8));
        assert_eq!(acc.per_class.len(), 3);
        assert_eq!(acc.per_class[0].drop, 0.25);
        assert_eq!(acc.per_class[1].drop, -0.5);
        assert_eq!(acc.worst_class, 7);
        assert_eq!(acc.worst_class_drop, 0.5);
    }

    #[test]
    fn negative_labels_never_match() {
        let acc = labeled_accuracy(&[-1, 0], &[0, 0], &[0, 1]);
        assert_eq!(acc.reference, Agreement::new(1, 2));
        assert_eq!(acc.candidate, Agreement::new(0, 2));
        assert_eq!(acc.worst_class, 0);
        assert_eq!(acc.worst_class_drop, 1.0);
    }
}
