//! `pipelines/prune_channels.yaml` from the command line: the embedded classifier pruned by
//! sensitivity with the least-squares refit, passing its gate, and the three PP-OCR models at 30% and 50% of their channels exported as
//! models that tract (the run's verification), `onnx.checker` and onnxruntime take, with the
//! declined groups listed; `whittle groups` on them.

use std::path::Path;
use std::process::Output;

use whittle_tests::cli::text;

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Parameters of a saved model.
fn parameters(model: &Path) -> u64 {
    whittle_graph::stats::model_stats(&whittle_graph::load_model(model).unwrap()).parameters
}

#[test]
fn the_prune_channels_pipeline_shrinks_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cls.pruned.onnx");
    let pipeline = whittle_tests::repo_root().join("pipelines/prune_channels.yaml");
    let o = whittle(&["run", &s(&pipeline), "--set", "verify.latency_runs=0", "--out", &s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = text(&o);
    assert!(stdout.contains("refit, output SNR") && stdout.contains("groups x 5 ratios measured on 4 calibration samples"), "{stdout}");
    assert!(stdout.contains("gate: PASS"), "{stdout}");
    assert!(stdout.contains("it normalizes over the channels"), "the Softmax head is declined with its reason: {stdout}");
    let original = parameters(&whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx"));
    assert!((parameters(&out) as f64) < 0.6 * original as f64, "{stdout}");
    if let Some(python) = whittle_tests::peer_python() {
        whittle_tests::full_check(&python, &out).unwrap();
    }
}

#[test]
fn every_ppocr_model_prunes_at_30_and_50_percent_to_models_the_runtimes_take() {
    let Some(shared) = whittle_tests::shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = whittle_tests::repo_root().join("pipelines/prune_channels.yaml");
    let models = [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "x=1,3,48,192", "ocr_cls_eval.npz", 1),
        ("ch_PP-OCRv4_det_infer.onnx", "x=1,3,640,640", "ocr_det640_eval.npz", 0),
        ("ch_PP-OCRv4_rec_infer.onnx", "x=1,3,48,320", "ocr_rec_eval.npz", 4),
    ];
    for (file, input, eval, declined) in models {
        let model = shared.join("models").join(file);
        let groups = whittle(&["groups", &s(&model), "--input", input, "--summary"]);
        assert_eq!(groups.status.code(), Some(0), "{file}: {}", text(&groups));
        for ratio in ["0.3", "0.5"] {
            let out = dir.path().join(file.replace(".onnx", &format!(".{ratio}.onnx")));
            // The same ratio in every group, no refit, random data: no accuracy thresholds.
            let ratio_set = format!("steps.8.prune_channels.ratio={ratio}");
            let extra = [
                "--calibration",
                "random:1",
                "--set",
                &ratio_set,
                "--set",
                "steps.8.prune_channels.scope=per_group",
                "--set",
                "steps.8.prune_channels.reconstruct=false",
                "--set",
                "verify.min_sqnr_db=null",
                "--set",
                "verify.max_accuracy_drop=null",
            ];
            let o = whittle_tests::cli::run_on_model(env!("CARGO_BIN_EXE_whittle"), &pipeline, &model, input, &extra, &out);
            assert_eq!(o.status.code(), Some(0), "{file} at {ratio}: {}", text(&o));
            let report: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
            let step = &report["steps"][7];
            assert_eq!(step["pass"], "prune_channels");
            assert_eq!(step["declined"].as_array().map(|d| d.len()), Some(declined), "{file}: {step}");
            assert!(step["applied"].as_u64().unwrap() >= 20, "{file}: {step}");
            let Some(python) = whittle_tests::peer_python() else { continue };
            whittle_tests::full_check(&python, &out).unwrap_or_else(|e| panic!("{file} at {ratio}: {e}"));
            whittle_tests::peer_compare(&python, &shared, &model, &out, &shared.join("data").join(eval), &[]);
        }
    }
}
