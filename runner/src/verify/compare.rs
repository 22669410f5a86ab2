//! Applying the metrics to two models' outputs over an input set.

use std::borrow::Cow;

use ndarray::ArrayD;
use serde::Serialize;

use super::latency::median;
use super::metrics::{
    Agreement, Charset, Fidelity, FidelityAccumulator, LabeledAccuracy, MaskIou, argmax, argmax_agreement, ctc_greedy_decode,
    exact_string_accuracy, labeled_accuracy, mask_iou, sequence_agreement, top1_agreement, topk_agreement,
};
use super::{Runnable, VerifyError, json, run_all};
use crate::data::{InputSet, Labels};

/// Which task metrics to compute besides fidelity (always computed for every output).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// k of the top-k agreement on classifier-like outputs (default 5).
    pub top_k: usize,
    /// Per-position argmax agreement along this axis of every output whose rank allows it
    /// (axis of the per-sample output, batch axis included; negative counts from the end).
    pub argmax_axis: Option<isize>,
    /// Text-mask IoU of every output at this threshold (PP-OCR det: 0.3).
    pub mask_threshold: Option<f32>,
    /// Greedy CTC agreement on the first output, read as `[1, T, classes]`.
    pub ctc: bool,
    /// Symbols for CTC string accuracy against text labels. [`compare_models`] takes it from
    /// the original model's `character` metadata when not given.
    pub charset: Option<Charset>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { top_k: 5, argmax_axis: None, mask_threshold: None, ctc: false, charset: None }
    }
}

/// Everything measured on one output. Task metrics that do not apply are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputComparison {
    pub name: String,
    /// Shape of the output for one sample (batch axis included).
    pub shape: Vec<usize>,
    /// Pooled over all samples.
    pub fidelity: Fidelity,
    /// Median over samples of the per-sample SQNR (robust to a few outlier samples).
    #[serde(serialize_with = "json::finite_or_null")]
    pub sqnr_db_sample_median: f64,
    /// Classifier-like outputs only (one score vector per sample): same argmax.
    pub top1_agreement: Option<Agreement>,
    /// The k used for `topk_agreement`.
    pub top_k: Option<usize>,
    /// Classifier-like outputs only: the reference's top-1 class is in the candidate's top-k.
    pub topk_agreement: Option<Agreement>,
    /// With `argmax_axis`: same argmax at each position.
    pub argmax_agreement: Option<Agreement>,
    pub mask_iou: Option<MaskIou>,
    pub ctc: Option<CtcComparison>,
    /// Integer labels, on the first classifier-like output: accuracy of both models.
    pub labeled_accuracy: Option<LabeledAccuracy>,
}

/// Greedy CTC results on one output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtcComparison {
    /// Samples whose decoded index sequences are identical.
    pub sequence_agreement: Agreement,
    /// With text labels and a charset: decoded strings equal to the label (trimmed).
    pub reference_accuracy: Option<Agreement>,
    pub candidate_accuracy: Option<Agreement>,
}

/// A candidate judged against its reference over an input set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub samples: usize,
    /// Fidelity pooled over all outputs.
    pub overall: Fidelity,
    pub outputs: Vec<OutputComparison>,
    /// Metrics that were asked for or possible but not computed, and why.
    pub notes: Vec<String>,
}

/// Runs `original` and `candidate` on every sample of `data` and compares their outputs.
/// The models must have the same output names in the same order. Without a charset in
/// `options`, CTC string accuracy uses the original's `character` metadata when present.
pub fn compare_models(
    original: &Runnable,
    candidate: &Runnable,
    data: &InputSet,
    options: &CompareOptions,
) -> Result<Comparison, VerifyError> {
    if original.output_names() != candidate.output_names() {
        return Err(VerifyError::OutputMismatch {
            what: format!("original outputs {:?}, candidate outputs {:?}", original.output_names(), candidate.output_names()),
        });
    }
    let mut options = options.clone();
    if options.ctc && options.charset.is_none() {
        options.charset = original.metadata("character").map(Charset::from_character_list);
    }
    let reference = run_all(original, data)?;
    let cand = run_all(candidate, data)?;
    compare(&reference, &cand, original.output_names(), data.labels(), &options)
}

/// Compares per-sample outputs (`[sample][output]`, as returned by [`run_all`]) of a reference
/// and a candidate. Outputs are matched by position and named by `output_names`.
pub fn compare(
    reference: &[Vec<ArrayD<f32>>],
    candidate: &[Vec<ArrayD<f32>>],
    output_names: &[String],
    labels: Option<&Labels>,
    options: &CompareOptions,
) -> Result<Comparison, VerifyError> {
    check_shapes(reference, candidate, output_names)?;
    if let Some(l) = labels
        && l.len() != reference.len()
    {
        return Err(VerifyError::InvalidOption { what: format!("{} labels for {} samples", l.len(), reference.len()) });
    }
    if options.top_k == 0 {
        return Err(VerifyError::InvalidOption { what: "top_k must be at least 1".into() });
    }
    let mut notes = Vec::new();
    let mut overall = FidelityAccumulator::default();
    let mut outputs = Vec::with_capacity(output_names.len());
    let mut labels_used = false;
    for (o, name) in output_names.iter().enumerate() {
        let refs: Vec<&ArrayD<f32>> = reference.iter().map(|s| &s[o]).collect();
        let cands: Vec<&ArrayD<f32>> = candidate.iter().map(|s| &s[o]).collect();
        let (acc, per_sample_sqnr) = fidelity_of(&refs, &cands);
        overall.merge(&acc);
        let shape = refs[0].shape().to_vec();
        let mut out = OutputComparison {
            name: name.clone(),
            shape: shape.clone(),
            fidelity: acc.finish(),
            sqnr_db_sample_median: median(&per_sample_sqnr),
            top1_agreement: None,
            top_k: None,
            topk_agreement: None,
            argmax_agreement: None,
            mask_iou: None,
            ctc: None,
            labeled_accuracy: None,
        };
        if let Some(classes) = classifier_classes(&shape) {
            out.top1_agreement = Some(sum(&refs, &cands, |r, c| top1_agreement(r, c, classes)));
            out.top_k = Some(options.top_k.min(classes));
            out.topk_agreement = Some(sum(&refs, &cands, |r, c| topk_agreement(r, c, classes, options.top_k)));
            if let (Some(Labels::Int(labels)), false) = (labels, labels_used) {
                // A label no output position can have would score 0% on both sides, silently.
                if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as u64 >= classes as u64) {
                    return Err(VerifyError::InvalidOption {
                        what: format!(
                            "label {bad} is outside the {classes} classes of output `{name}` (labels are class indices 0..{classes})"
                        ),
                    });
                }
                let preds = |outs: &[&ArrayD<f32>]| outs.iter().map(|a| argmax(a.iter())).collect::<Vec<_>>();
                out.labeled_accuracy = Some(labeled_accuracy(labels, &preds(&refs), &preds(&cands)));
                labels_used = true;
            }
        }
        if let Some(axis) = options.argmax_axis {
            match resolve_axis(axis, shape.len()) {
                Some(a) => {
                    out.argmax_agreement = Some(
                        refs.iter()
                            .zip(&cands)
                            .fold(Agreement::default(), |acc, (r, c)| acc.merge(argmax_agreement(&r.view(), &c.view(), a))),
                    );
                }
                None => notes.push(format!("{name}: argmax axis {axis} does not exist in shape {shape:?}")),
            }
        }
        if let Some(t) = options.mask_threshold {
            out.mask_iou = refs.iter().zip(&cands).map(|(r, c)| mask_iou(&slice(r), &slice(c), t)).reduce(MaskIou::merge);
        }
        if options.ctc && o == 0 {
            out.ctc = Some(ctc(&refs, &cands, &shape, labels, options, &mut notes)?);
            labels_used |= matches!(labels, Some(Labels::Text(_))) && options.charset.is_some();
        }
        outputs.push(out);
    }
    match labels {
        Some(Labels::Int(_)) if !labels_used => notes.push("integer labels given but no output holds one score vector per sample".into()),
        Some(Labels::Text(_)) if !labels_used && !options.ctc => {
            notes.push("text labels need CTC decoding (ctc option) and a charset to be scored".into())
        }
        _ => {}
    }
    Ok(Comparison { samples: reference.len(), overall: overall.finish(), outputs, notes })
}

fn check_shapes(reference: &[Vec<ArrayD<f32>>], candidate: &[Vec<ArrayD<f32>>], names: &[String]) -> Result<(), VerifyError> {
    let mismatch = |what: String| Err(VerifyError::OutputMismatch { what });
    if reference.len() != candidate.len() {
        return mismatch(format!("{} reference samples, {} candidate samples", reference.len(), candidate.len()));
    }
    if reference.is_empty() {
        return mismatch("no samples to compare".into());
    }
    for (i, (r, c)) in reference.iter().zip(candidate).enumerate() {
        if r.len() != names.len() || c.len() != names.len() {
            return mismatch(format!("sample {i}: {} reference and {} candidate outputs for {} names", r.len(), c.len(), names.len()));
        }
        for (o, ((a, b), name)) in r.iter().zip(c).zip(names).enumerate() {
            let first = reference[0][o].shape();
            if a.shape() != b.shape() || a.shape() != first {
                return mismatch(format!(
                    "sample {i}, output `{name}`: reference shape {:?}, candidate shape {:?} \
                     (sample 0: {first:?})",
                    a.shape(),
                    b.shape()
                ));
            }
        }
    }
    Ok(())
}

/// Pooled fidelity and the per-sample SQNRs of one output.
fn fidelity_of(refs: &[&ArrayD<f32>], cands: &[&ArrayD<f32>]) -> (FidelityAccumulator, Vec<f64>) {
    let mut pooled = FidelityAccumulator::default();
    let mut per_sample = Vec::with_capacity(refs.len());
    for (r, c) in refs.iter().zip(cands) {
        let mut one = FidelityAccumulator::default();
        one.add(&slice(r), &slice(c));
        per_sample.push(one.sqnr_db());
        pooled.merge(&one);
    }
    (pooled, per_sample)
}

/// The array's values in logical (C) order: borrowed when the array is in standard layout (as
/// `run_all` returns them), copied otherwise.
fn slice(a: &ArrayD<f32>) -> Cow<'_, [f32]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

fn sum(refs: &[&ArrayD<f32>], cands: &[&ArrayD<f32>], f: impl Fn(&[f32], &[f32]) -> Agreement) -> Agreement {
    refs.iter().zip(cands).fold(Agreement::default(), |acc, (r, c)| acc.merge(f(&slice(r), &slice(c))))
}

/// Number of classes when the output holds one score vector per sample: exactly one axis
/// longer than 1 (the rule of the peer `compare.py`).
fn classifier_classes(shape: &[usize]) -> Option<usize> {
    let mut long = shape.iter().filter(|&&d| d > 1);
    match (long.next(), long.next()) {
        (Some(&classes), None) => Some(classes),
        _ => None,
    }
}

fn resolve_axis(axis: isize, rank: usize) -> Option<usize> {
    let a = if axis < 0 { rank as isize + axis } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank)
}

fn ctc(
    refs: &[&ArrayD<f32>],
    cands: &[&ArrayD<f32>],
    shape: &[usize],
    labels: Option<&Labels>,
    options: &CompareOptions,
    notes: &mut Vec<String>,
) -> Result<CtcComparison, VerifyError> {
    let classes = match shape {
        [1, _, c] if *c > 1 => *c,
        _ => {
            return Err(VerifyError::InvalidOption {
                what: format!(
                    "CTC needs an output of shape [1, T, classes], found {shape:?} (a pipeline's `verify.ctc` is for text recognizers: --set verify.ctc=false turns it off)"
                ),
            });
        }
    };
    let decode = |outs: &[&ArrayD<f32>]| outs.iter().map(|a| ctc_greedy_decode(&slice(a), classes)).collect::<Vec<_>>();
    let (r, c) = (decode(refs), decode(cands));
    let mut result = CtcComparison { sequence_agreement: sequence_agreement(&r, &c), reference_accuracy: None, candidate_accuracy: None };
    match (labels, &options.charset) {
        (Some(Labels::Text(labels)), Some(charset)) => {
            if charset.num_classes() != classes {
                return Err(VerifyError::InvalidOption {
                    what: format!(
                        "the charset gives {} classes (blank + symbols + space), the output has {classes}",
                        charset.num_classes()
                    ),
                });
            }
            let text = |seqs: &[Vec<usize>]| seqs.iter().map(|s| charset.decode(s)).collect::<Vec<_>>();
            result.reference_accuracy = Some(exact_string_accuracy(&text(&r), labels));
            result.candidate_accuracy = Some(exact_string_accuracy(&text(&c), labels));
        }
        (Some(Labels::Text(_)), None) => notes.push("CTC: no charset (model metadata `character`), strings not scored".into()),
        _ => {}
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    #[test]
    fn classifier_outputs_get_agreement_and_labels() {
        let names = vec!["prob".to_string()];
        let r = vec![vec![arr(&[1, 3], &[0.7, 0.2, 0.1])], vec![arr(&[1, 3], &[0.1, 0.3, 0.6])]];
        let c = vec![vec![arr(&[1, 3], &[0.6, 0.3, 0.1])], vec![arr(&[1, 3], &[0.1, 0.5, 0.4])]];
        let labels = Labels::Int(vec![0, 2]);
        let opts = CompareOptions { top_k: 2, ..CompareOptions::default() };
        let cmp = compare(&r, &c, &names, Some(&labels), &opts).unwrap();
        let o = &cmp.outputs[0];
        assert_eq!(o.top1_agreement, Some(Agreement::new(1, 2)));
        assert_eq!(o.topk_agreement, Some(Agreement::new(2, 2)));
        let acc = o.labeled_accuracy.as_ref().unwrap();
        assert_eq!(acc.reference, Agreement::new(2, 2));
        assert_eq!(acc.candidate, Agreement::new(1, 2));
        assert_eq!((acc.worst_class, acc.worst_class_drop), (2, 1.0));
        assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);
        assert!(o.fidelity.sqnr_db.is_finite());
        // Labels outside the classes are an error, not a silent 0% on both sides.
        for bad in [-7, 3] {
            let err = compare(&r, &c, &names, Some(&Labels::Int(vec![0, bad])), &opts).unwrap_err();
            assert!(err.to_string().contains(&format!("label {bad} is outside the 3 classes")), "{err}");
        }
    }

    #[test]
    fn ctc_strings_with_charset() {
        // 3 classes: blank, "a", space. Reference decodes "a", candidate decodes "a a".
        let names = vec!["probs".to_string()];
        let one_hot = |seq: &[usize]| {
            let v: Vec<f32> = seq.iter().flat_map(|&i| (0..3).map(move |k| if k == i { 1.0 } else { 0.0 })).collect();
            arr(&[1, seq.len(), 3], &v)
        };
        let r = vec![vec![one_hot(&[1, 1, 0, 0])]];
        let c = vec![vec![one_hot(&[1, 2, 1, 0])]];
        let labels = Labels::Text(vec!["a".into()]);
        let opts = CompareOptions { ctc: true, charset: Some(Charset::from_character_list("a")), ..CompareOptions::default() };
        let cmp = compare(&r, &c, &names, Some(&labels), &opts).unwrap();
        let ctc = cmp.outputs[0].ctc.as_ref().unwrap();
        assert_eq!(ctc.sequence_agreement, Agreement::new(0, 1));
        assert_eq!(ctc.reference_accuracy, Some(Agreement::new(1, 1)));
        assert_eq!(ctc.candidate_accuracy, Some(Agreement::new(0, 1)));
        // A charset of the wrong size is an error, not a silent mis-decoding.
        let bad = CompareOptions { charset: Some(Charset::from_character_list("a\nb")), ..opts };
        assert!(compare(&r, &c, &names, Some(&labels), &bad).is_err());
    }

    #[test]
    fn mask_argmax_and_mismatch() {
        let names = vec!["map".to_string()];
        let r = vec![vec![arr(&[1, 1, 2, 2], &[0.9, 0.1, 0.8, 0.0])]];
        let c = vec![vec![arr(&[1, 1, 2, 2], &[0.9, 0.5, 0.1, 0.2])]];
        let opts = CompareOptions { mask_threshold: Some(0.3), argmax_axis: Some(-1), ..CompareOptions::default() };
        let cmp = compare(&r, &c, &names, None, &opts).unwrap();
        let o = &cmp.outputs[0];
        let m = o.mask_iou.unwrap();
        assert_eq!((m.intersection, m.union), (1, 3));
        assert_eq!(o.argmax_agreement, Some(Agreement::new(1, 2)));
        assert_eq!(o.top1_agreement, None);
        let wrong = vec![vec![arr(&[1, 4], &[0.0; 4])]];
        assert!(matches!(compare(&r, &wrong, &names, None, &opts), Err(VerifyError::OutputMismatch { .. })));
    }

    #[test]
    fn median_of_even_and_infinite() {
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(&[f64::INFINITY, 5.0, f64::INFINITY]), f64::INFINITY);
        assert!(median(&[]).is_nan());
    }
}
