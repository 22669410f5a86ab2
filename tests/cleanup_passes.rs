//! The cleanup passes on the three PP-OCR models: node counts at least as low as onnx-simplifier's,
//! outputs unchanged (checked with tract on the shared evaluation data), the IR valid after every
//! step.

use whittle_graph::Model;
use whittle_runner::data::InputSet;
use whittle_runner::verify::{load_model, run_all};

const CLEANUP: [&str; 6] = ["opset_conversion", "remove_noops", "constant_folding", "fold_batchnorm", "fold_channelwise", "dead_code"];

/// Runs the cleanup steps with the real pass manager; returns (step, nodes after, applied).
fn cleanup(model: &mut Model, input: &(String, Vec<i64>)) -> Vec<(String, usize, usize)> {
    let outcome = whittle_tests::run_passes(model, &CLEANUP, std::slice::from_ref(input)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.steps.len(), CLEANUP.len());
    outcome.steps.iter().map(|s| (s.pass.clone(), s.after.nodes, s.applied)).collect()
}

/// Runs ../shared/peer/compare.py on the exported candidate: onnx.checker must accept it,
/// onnxruntime must load and run it, and its SQNR against the original must be at least 40 dB.
fn check_with_peer(python: &std::path::Path, shared: &std::path::Path, original: &std::path::Path, model: &Model, data: &str, ctc: bool) {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("cleaned.onnx");
    whittle_graph::save_model(model, &candidate, &Default::default()).unwrap();
    let mut cmd = std::process::Command::new(python);
    cmd.arg(shared.join("peer/compare.py")).arg(original).arg(&candidate);
    cmd.args(["--inputs", shared.join("data").join(data).to_str().unwrap(), "--runs", "0", "--min-sqnr", "40"]);
    if ctc {
        cmd.arg("--ctc");
    }
    let out = cmd.output().expect("run compare.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
    assert!(out.status.success(), "compare.py failed on {}:\n{stdout}\n{}", original.display(), String::from_utf8_lossy(&out.stderr));
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn cleanup_matches_onnx_simplifier_and_keeps_outputs() {
    let Some(shared) = whittle_tests::shared_dir() else { return };
    // (model, input shape, eval data, onnx-simplifier's node count, whittle's, as in the README)
    let cases = [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", vec![1, 3, 48, 192], "ocr_cls_eval.npz", 220, 180),
        ("ch_PP-OCRv4_det_infer.onnx", vec![1, 3, 640, 640], "ocr_det640_eval.npz", 494, 270),
        ("ch_PP-OCRv4_rec_infer.onnx", vec![1, 3, 48, 320], "ocr_rec_eval.npz", 568, 341),
    ];
    for (file, dims, data, simplifier_nodes, ours) in cases {
        let path = shared.join("models").join(file);
        let mut model = whittle_graph::load_model(&path).unwrap();
        let before = whittle_graph::stats::model_stats(&model).nodes;
        let counts = cleanup(&mut model, &("x".to_string(), dims.clone()));
        let after = counts.last().unwrap().1;
        eprintln!("{file}: {before} -> {after} nodes ({counts:?})");
        assert!(after <= simplifier_nodes, "{file}: {after} nodes, onnx-simplifier reaches {simplifier_nodes}");
        assert_eq!(after, ours, "{file}: the cleanup's node count changed (update the README's table if intended)");

        if let Some(python) = whittle_tests::peer_python() {
            check_with_peer(&python, &shared, &path, &model, data, file.contains("rec"));
        }

        let shapes = vec![("x".to_string(), dims.iter().map(|&d| d as usize).collect::<Vec<_>>())];
        let original = load_model(&std::fs::read(&path).unwrap(), &shapes).unwrap();
        let candidate = load_model(&whittle_graph::encode_for_runtime(&model), &shapes).unwrap();
        let inputs = InputSet::from_npz(shared.join("data").join(data)).unwrap().take(2).unwrap();
        let (a, b) = (run_all(&original, &inputs).unwrap(), run_all(&candidate, &inputs).unwrap());
        for (sa, sb) in a.iter().zip(&b) {
            for (oa, ob) in sa.iter().zip(sb) {
                assert_eq!(oa.shape(), ob.shape());
                let (ra, rb) = (oa.as_slice().unwrap(), ob.as_slice().unwrap());
                let err = ra.iter().zip(rb).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                let scale = max_abs(ra);
                eprintln!("{file}: max abs error {err:e} (output magnitude {scale})");
                assert!(err <= 1e-4 * scale, "{file}: max abs error {err} above 1e-4 x {scale}");
            }
        }
    }
}
