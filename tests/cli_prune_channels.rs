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

#[test]
fn a_sweep_measures_the_sensitivity_once_and_tables_every_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = whittle_tests::repo_root().join("pipelines/prune_channels.yaml");
    let o = whittle(&["sweep", &s(&pipeline), "--values", "0.1,0.3", "--set", "verify.latency_runs=2", "--out-dir", &s(dir.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = text(&o);
    assert!(stdout.contains("| ratio | gate | accuracy | SQNR dB |"), "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(csv.starts_with("steps.8.prune_channels.ratio,gate,accuracy,sqnr_db,parameters_ratio,macs_ratio"), "{csv}");
    let macs: Vec<f64> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    assert!(macs[1] < macs[0] && macs[0] < 1.0, "more channels pruned, fewer MACs: {csv}");
    for r in &rows {
        assert!(["passed", "failed"].contains(&r[1]), "{csv}");
        let (l, lo, hi): (f64, f64, f64) = (r[8].parse().unwrap(), r[9].parse().unwrap(), r[10].parse().unwrap());
        assert!(lo <= l && l <= hi, "latency with its interval: {csv}");
    }
    // The sensitivity table: measured by the first run, reused by the second.
    let notes = |ratio: &str| {
        let path = dir.path().join(format!("ch_ppocr_mobile_v2.0_cls_infer.ratio-{ratio}.report.json"));
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        report["steps"][7]["notes"].to_string()
    };
    assert!(notes("0.1").contains("ratios measured on"), "{}", notes("0.1"));
    assert!(notes("0.3").contains("reused from the saved table"), "{}", notes("0.3"));
    assert!(dir.path().join("step8.prune_channels.sensitivity.json").exists());
    let svg = std::fs::read_to_string(dir.path().join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 4, "{svg}");
    // A model is written only where its gate passed.
    for r in &rows {
        let model = dir.path().join(format!("ch_ppocr_mobile_v2.0_cls_infer.ratio-{}.onnx", r[0]));
        assert_eq!(model.exists(), r[1] == "passed", "{csv}");
    }
}

#[test]
fn a_sweep_without_a_ratio_to_vary_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = whittle_tests::repo_root().join("pipelines/cleanup.yaml");
    let o = whittle(&["sweep", &s(&pipeline), "--values", "0.1", "--out-dir", &s(dir.path())]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no step has a `ratio` or `sparsity` parameter"), "{}", text(&o));
    let pipeline = whittle_tests::repo_root().join("pipelines/prune_channels.yaml");
    let o = whittle(&["sweep", &s(&pipeline), "--values", "0.1", "--vary", "steps.8.prune_channels.ratoi", "--out-dir", &s(dir.path())]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("ratio"), "the closest valid key: {}", text(&o));
    assert!(!dir.path().join("sweep.csv").exists());
}

#[test]
fn the_ppocr_det_prune_pipeline_prunes_the_detector_by_sensitivity_with_the_refit() {
    let Some(shared) = whittle_tests::shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("det.pruned.onnx");
    let table = dir.path().join("det.sensitivity.json");
    let pipeline = whittle_tests::repo_root().join("pipelines/ppocr_det_prune.yaml");
    // Light in a debug build: 2 calibration pages, 2 grid points on 1 page, 2 evaluation pages.
    // The shipped thresholds are for the full data: here only the run and the export are judged.
    let o = whittle(&[
        "run",
        &s(&pipeline),
        "--set",
        "calibration.samples=2",
        "--set",
        "evaluation.samples=2",
        "--set",
        "steps.8.prune_channels.sensitivity_grid=[0.25, 0.5]",
        "--set",
        "steps.8.prune_channels.sensitivity_samples=1",
        "--set",
        &format!("steps.8.prune_channels.sensitivity_file={}", s(&table)),
        "--set",
        "verify.min_mask_iou=null",
        "--set",
        "verify.latency_runs=2",
        "--out",
        &s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = text(&o);
    assert!(stdout.contains("of the MACs of their layers") && stdout.contains("groups pruned, through:"), "{stdout}");
    assert!(table.exists() && table.with_extension("svg").exists());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
    let macs = |m: &str| report[m]["macs"].as_f64().unwrap();
    let ratio = macs("candidate") / macs("original");
    assert!(ratio < 0.85, "30% of the prunable layers' MACs: {ratio:.3}");
    if let Some(python) = whittle_tests::peer_python() {
        whittle_tests::full_check(&python, &out).unwrap();
        let model = shared.join("models/ch_PP-OCRv4_det_infer.onnx");
        whittle_tests::peer_compare(&python, &shared, &model, &out, &shared.join("data/ocr_det640_eval.npz"), &["--mask-threshold", "0.3"]);
    }
}
