//! End to end on the real PP-OCR models in `/work/shared` (located from the crate directory);
//! each test is skipped, with the reason printed, when the shared folder is missing (a failure
//! under CI: see `whittle_testenv`).

use std::path::PathBuf;

use whittle_runner::data::{InputSet, Labels, Tensor};
use whittle_runner::verify::metrics::Charset;
use whittle_runner::verify::{CompareOptions, LatencyOptions, VerifyError, compare, compare_models, load_model, measure_latency, run_all};

fn shared() -> Option<PathBuf> {
    whittle_testenv::shared_dir()
}

fn cls_shape() -> Vec<(String, Vec<usize>)> {
    vec![("x".to_string(), vec![1, 3, 48, 192])]
}

fn cls_model_bytes(shared: &std::path::Path) -> Vec<u8> {
    std::fs::read(shared.join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap()
}

/// The first `n` cls eval samples, with their labels.
fn cls_eval(shared: &std::path::Path, n: usize) -> InputSet {
    let mut set = InputSet::from_npz(shared.join("data/ocr_cls_eval.npz")).unwrap();
    set.check_shapes(&cls_shape()).unwrap();
    set.take(n).unwrap()
}

#[test]
fn cls_model_against_itself_is_exact() {
    let Some(shared) = shared() else { return };
    let model = load_model(&cls_model_bytes(&shared), &cls_shape()).unwrap();
    assert_eq!(model.inputs()[0].name, "x");
    assert_eq!(model.output_names().len(), 1);
    let data = cls_eval(&shared, 20);
    let cmp = compare_models(&model, &model, &data, &CompareOptions::default()).unwrap();
    assert_eq!(cmp.samples, 20);
    assert!(cmp.overall.exact_match);
    assert_eq!(cmp.overall.sqnr_db, f64::INFINITY);
    let out = &cmp.outputs[0];
    assert_eq!(out.shape, vec![1, 2]);
    assert_eq!(out.top1_agreement.unwrap().rate, 1.0);
    assert_eq!(out.top_k, Some(2)); // k = 5 clamped to 2 classes
    let acc = out.labeled_accuracy.as_ref().unwrap();
    assert!(acc.reference.rate >= 0.9, "reference accuracy {}", acc.reference.rate);
    assert_eq!(acc.reference, acc.candidate);
    assert_eq!(acc.worst_class_drop, 0.0);
    // The report serializes; the infinite SQNR becomes null beside exact_match = true.
    let json = serde_json::to_value(&cmp).unwrap();
    assert!(json["overall"]["sqnr_db"].is_null());
    assert_eq!(json["overall"]["exact_match"], true);
}

/// Same inputs rotated by 180° (H and W reversed): the direction classifier should flip its
/// answer, and every metric has to show it.
fn rotate_180(set: &InputSet) -> InputSet {
    let x = set.input("x").unwrap();
    // [sample, 1, C, H, W] after check_shapes: flip H and W.
    let mut a = x.to_plain_array_view::<f32>().unwrap().to_owned();
    let rank = a.ndim();
    a.invert_axis(ndarray::Axis(rank - 2));
    a.invert_axis(ndarray::Axis(rank - 1));
    let a = a.as_standard_layout().into_owned();
    InputSet::new("rotated", vec![("x".into(), Tensor::from(a))], set.labels().cloned()).unwrap()
}

#[test]
fn perturbed_inputs_move_the_metrics() {
    let Some(shared) = shared() else { return };
    let model = load_model(&cls_model_bytes(&shared), &cls_shape()).unwrap();
    let data = cls_eval(&shared, 20);
    let clean = run_all(&model, &data).unwrap();

    // Mild perturbation: add uniform noise. Outputs change a little, predictions hardly.
    let noise = InputSet::random(&cls_shape(), 20, Default::default(), 5).unwrap();
    let x = data.input("x").unwrap().to_plain_array_view::<f32>().unwrap().to_owned();
    // Random samples are drawn one at a time: stack them along the sample axis.
    let samples: Vec<_> =
        (0..noise.len()).map(|i| noise.sample(i).unwrap().remove(0).1.to_plain_array_view::<f32>().unwrap().to_owned()).collect();
    let n = ndarray::stack(ndarray::Axis(0), &samples.iter().map(|a| a.view()).collect::<Vec<_>>()).unwrap();
    let noisy = InputSet::new("noisy", vec![("x".into(), Tensor::from(&x + &(n * 0.1f32)))], data.labels().cloned()).unwrap();
    let noisy_out = run_all(&model, &noisy).unwrap();
    let names = model.output_names();
    let mild = compare(&clean, &noisy_out, names, data.labels(), &CompareOptions::default()).unwrap();
    assert!(!mild.overall.exact_match);
    assert!(mild.overall.sqnr_db.is_finite(), "{}", mild.overall.sqnr_db);
    assert!(mild.overall.cosine_similarity < 1.0);
    assert!(mild.overall.max_abs_error > 0.0);

    // Strong perturbation: rotate by 180°.
    let rotated = run_all(&model, &rotate_180(&data)).unwrap();
    let strong = compare(&clean, &rotated, names, data.labels(), &CompareOptions::default()).unwrap();
    let out = &strong.outputs[0];
    assert!(strong.overall.sqnr_db < mild.overall.sqnr_db);
    assert!(strong.overall.sqnr_db < 10.0, "{}", strong.overall.sqnr_db);
    assert!(out.top1_agreement.unwrap().rate < 0.5, "{:?}", out.top1_agreement);
    let acc = out.labeled_accuracy.as_ref().unwrap();
    assert!(acc.candidate.rate < 0.5, "{acc:?}");
    assert!(acc.worst_class_drop > 0.5, "{acc:?}");
}

#[test]
fn latency_of_a_model_against_itself() {
    let Some(shared) = shared() else { return };
    let model = load_model(&cls_model_bytes(&shared), &cls_shape()).unwrap();
    let sample = cls_eval(&shared, 1).sample(0).unwrap();
    let opts = LatencyOptions { warmup: 1, runs: 8, ..LatencyOptions::default() };
    let report = measure_latency(&model, &model, &sample, &opts).unwrap();
    assert_eq!(report.original.runs, 8);
    assert!(report.original.min_ms > 0.0);
    assert!(report.original.min_ms <= report.original.median_ms);
    assert!(report.original.median_ms <= report.original.p90_ms);
    let r = &report.ratio;
    assert!(r.ci95_low <= r.median_ratio && r.median_ratio <= r.ci95_high, "{r:?}");
    assert!(r.median_ratio > 0.3 && r.median_ratio < 3.0, "{r:?}");
    let threads = LatencyOptions { threads: 2, ..opts };
    assert!(matches!(measure_latency(&model, &model, &sample, &threads), Err(VerifyError::Unsupported { .. })));
}

#[test]
fn load_errors_are_typed() {
    let Some(shared) = shared() else { return };
    let bytes = cls_model_bytes(&shared);
    assert!(matches!(load_model(&bytes, &[]), Err(VerifyError::MissingInputShape { .. })));
    let wrong_name = vec![("x".to_string(), vec![1, 3, 48, 192]), ("y".to_string(), vec![1])];
    assert!(matches!(load_model(&bytes, &wrong_name), Err(VerifyError::UnknownInput { .. })));
    let wrong_rank = vec![("x".to_string(), vec![1, 48, 192])];
    let err = load_model(&bytes, &wrong_rank).unwrap_err();
    assert!(matches!(err, VerifyError::InputShape { .. }), "{err}");
    // A sample of the wrong shape is refused before tract sees it.
    let model = load_model(&bytes, &cls_shape()).unwrap();
    let bad = vec![("x".to_string(), Tensor::zero::<f32>(&[1, 3, 48, 100]).unwrap())];
    assert!(matches!(model.run(&bad), Err(VerifyError::InputShape { .. })));
    // Float64 inputs are converted for a float32 model; integers are refused.
    let f64_input = vec![("x".to_string(), Tensor::zero::<f64>(&[1, 3, 48, 192]).unwrap())];
    assert_eq!(model.run(&f64_input).unwrap()[0].shape(), &[1, 2]);
    let i64_input = vec![("x".to_string(), Tensor::zero::<i64>(&[1, 3, 48, 192]).unwrap())];
    assert!(matches!(model.run(&i64_input), Err(VerifyError::InputDtype { .. })));
}

#[test]
fn rec_model_decodes_labels_with_its_charset() {
    let Some(shared) = shared() else { return };
    let bytes = std::fs::read(shared.join("models/ch_PP-OCRv4_rec_infer.onnx")).unwrap();
    let shape = vec![("x".to_string(), vec![1, 3, 48, 320])];
    let model = load_model(&bytes, &shape).unwrap();
    let charset = Charset::from_character_list(model.metadata("character").unwrap());
    let mut data = InputSet::from_npz(shared.join("data/ocr_rec_eval.npz")).unwrap().take(6).unwrap();
    data.check_shapes(&[("x".into(), vec![1, 3, 48, 320])]).unwrap();
    assert!(matches!(data.labels(), Some(Labels::Text(_))));
    let opts = CompareOptions { ctc: true, ..CompareOptions::default() };
    let cmp = compare_models(&model, &model, &data, &opts).unwrap();
    let out = &cmp.outputs[0];
    assert_eq!(out.shape[2], charset.num_classes());
    let ctc = out.ctc.as_ref().unwrap();
    assert_eq!(ctc.sequence_agreement.rate, 1.0);
    // The FP32 model reads every eval line exactly (shared/models/README.md).
    assert_eq!(ctc.reference_accuracy.unwrap().rate, 1.0, "{ctc:?}");
    assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);
}
