//! The shipped separable pipelines from the command line: the generic one on a VGG-style model
//! built in code (separable convolutions and a low-rank head), the PP-OCR det one on the real
//! model with its result judged by `onnx.checker` and onnxruntime.

use std::path::Path;
use std::process::Output;

use whittle_tests::cli::text;

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn step<'r>(r: &'r serde_json::Value, pass: &str) -> &'r serde_json::Value {
    r["steps"].as_array().unwrap().iter().find(|s| s["pass"] == pass).unwrap_or_else(|| panic!("no {pass} step"))
}

#[test]
fn the_generic_separable_pipeline_serves_any_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("vgg.onnx");
    let vgg = whittle_tests::numeric::vgg_stack(&[8, 32, 32], 16, true, Some(24));
    whittle_graph::save_model(&vgg, &model, &Default::default()).unwrap();
    let out = dir.path().join("vgg.separable.onnx");
    let pipeline = whittle_tests::repo_root().join("pipelines/separable.yaml");
    // Random data for this model; the per-layer timing (machine-dependent) and the latency
    // threshold are off here: the refit and both rewrites are what is tested.
    let o = whittle(&[
        "run",
        &s(&pipeline),
        "--model",
        &s(&model),
        "--calibration",
        "random:1",
        "--eval",
        "random:2",
        "--set",
        "steps.8.separable_conv.latency_check=false",
        "--set",
        "verify.max_latency_ratio=null",
        "--out",
        &s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&out.with_extension("report.json"));
    let (sep, low) = (step(&r, "separable_conv"), step(&r, "low_rank"));
    assert_eq!(sep["applied"], 2, "{sep}");
    assert_eq!(low["applied"], 1, "{low}");
    assert!(sep["changes"].to_string().contains("refit output SNR"), "{sep}");
    assert!(low["changes"].to_string().contains("rank 4 of 24"), "{low}");
    let macs = |m: &str| r[m]["macs"].as_u64().unwrap();
    assert!(macs("candidate") * 2 < macs("original"), "{} -> {}", macs("original"), macs("candidate"));
    assert_eq!(r["gate"]["passed"], true, "{}", r["gate"]);
    if let Some(python) = whittle_tests::peer_python() {
        whittle_tests::full_check(&python, &out).unwrap();
    }
}

#[test]
fn the_det_separable_pipeline_exports_a_model_onnxruntime_runs() {
    let Some(shared) = whittle_tests::shared_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = whittle_tests::repo_root().join("pipelines/ppocr_det_separable.yaml");
    let yaml = std::fs::read_to_string(&pipeline).unwrap().replace("../../shared", &s(&shared));
    // Four calibration pages for the refit (the shipped file uses all 16) and no per-layer
    // timing, so that layers are rewritten whatever this machine measures.
    let yaml = yaml.replace("ocr_det640_calib.npz\n", "ocr_det640_calib.npz\n  samples: 4\n");
    assert!(yaml.contains("samples: 4") && yaml.contains("latency_check: true"), "the det pipeline changed shape: update this test");
    let yaml = yaml.replace("latency_check: true", "latency_check: false");
    let copy = tmp.path().join("det.yaml");
    std::fs::write(&copy, yaml).unwrap();
    let out = tmp.path().join("det.onnx");
    let o = whittle(&["run", &s(&copy), "--set", "verify.max_latency_ratio=null", "--set", "verify.latency_runs=0", "--out", &s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&out.with_extension("report.json"));
    let sep = step(&r, "separable_conv");
    assert!(sep["applied"].as_u64().unwrap() >= 5, "{sep}");
    let Some(python) = whittle_tests::peer_python() else { return };
    whittle_tests::full_check(&python, &out).unwrap();
    let det = shared.join("models/ch_PP-OCRv4_det_infer.onnx");
    let stdout =
        whittle_tests::peer_compare(&python, &shared, &det, &out, &shared.join("data/ocr_det640_eval.npz"), &["--mask-threshold", "0.3"]);
    let last = stdout.lines().last().unwrap_or("");
    let iou: f64 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mask_iou@0.3="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mask IoU in {last}"));
    assert!(iou >= 0.9, "text-mask IoU in onnxruntime {iou}: {last}");
}
