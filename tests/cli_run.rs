//! `whittle run` end to end on the embedded default model: the shipped pipelines, the gate,
//! deterministic output, up-to-date skipping, debugging aids, and the exported model checked by
//! onnx.checker and onnxruntime (`../shared/peer/compare.py`, skipped with a message when Python
//! or ../shared is missing). `whittle passes` too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use whittle_tests::cli::text;

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
}

fn pipeline(name: &str) -> String {
    whittle_tests::repo_root().join("pipelines").join(name).display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written")).expect("report is JSON")
}

/// Runs the shipped default pipeline (latency measured as the file says; the tests read its
/// figures' presence and form, never its values), writing the model and report into `dir`.
fn run_cleanup(dir: &Path, extra: &[&str]) -> (Output, PathBuf, PathBuf) {
    let out = dir.join("cls.onnx");
    let rep = dir.join("cls.report.json");
    let mut args = vec!["run".to_string(), pipeline("cleanup.yaml"), "--out".into(), s(&out), "--report".into(), s(&rep)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (whittle(&args), out, rep)
}

#[test]
fn default_pipeline_passes_and_writes_model_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out, rep) = run_cleanup(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for needle in ["[PASSED]", "opset_conversion", "fold_batchnorm", "latency median", "gate: PASS", "accuracy", "worst class", "per class"]
    {
        assert!(stdout.contains(needle), "summary lacks `{needle}`:\n{stdout}");
    }
    assert!(out.is_file());
    let r = report(&rep);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["status"], "passed");
    assert_eq!(r["files"]["output_written"], true);
    assert_eq!(r["steps"].as_array().unwrap().len(), 7);
    let nodes_before = r["original"]["nodes"].as_u64().unwrap();
    let nodes_after = r["candidate"]["nodes"].as_u64().unwrap();
    assert_eq!(nodes_before, 566);
    assert!(nodes_after <= 220, "cleanup should reach onnx-simplifier's 220 nodes, got {nodes_after}");
    for step in r["steps"].as_array().unwrap() {
        let d = &step["differential"];
        assert_eq!(d["passed"], true, "{step}");
        assert!(d["relative_max_error"].as_f64().unwrap() <= 1e-4, "{step}");
    }
    assert!(r["gate"]["checks"].as_array().unwrap().iter().all(|c| c["status"] == "passed"), "{}", r["gate"]);
    let acc = &r["verification"]["comparison"]["outputs"][0]["labeled_accuracy"];
    assert_eq!(acc["reference"], acc["candidate"]);
    assert!(r["verification"]["latency"]["ratio"]["median_ratio"].is_number());
    // The fingerprint is in the model's metadata and in the report.
    let model = whittle_graph::load_model(&out).unwrap();
    assert_eq!(model.metadata("whittle.fingerprint"), r["fingerprint"].as_str());
}

#[test]
fn output_bytes_are_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (o1, out1, _) = run_cleanup(a.path(), &[]);
    let (o2, out2, _) = run_cleanup(b.path(), &["--threads", "1"]);
    assert_eq!(o1.status.code(), Some(0), "{}", text(&o1));
    assert_eq!(o2.status.code(), Some(0), "{}", text(&o2));
    assert!(std::fs::read(out1).unwrap() == std::fs::read(out2).unwrap(), "same model, pipeline and data must give identical bytes");
}

#[test]
fn up_to_date_output_is_skipped_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out, rep) = run_cleanup(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bytes = std::fs::read(&out).unwrap();
    let modified = std::fs::metadata(&out).unwrap().modified().unwrap();
    let report_before = std::fs::read_to_string(&rep).unwrap();

    let (o, _, _) = run_cleanup(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"), "{}", text(&o));
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), modified, "a skipped run must not rewrite the model");
    assert_eq!(std::fs::read_to_string(&rep).unwrap(), report_before, "the report of the up-to-date output is kept");

    // Another setting gives another fingerprint: the run is redone.
    let (o, _, _) = run_cleanup(dir.path(), &["--stop-after", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("up to date"), "{}", text(&o));

    let (o, _, _) = run_cleanup(dir.path(), &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("[PASSED]"), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), bytes, "forced rerun of the same settings gives the same bytes");
    assert_eq!(report(&rep)["status"], "passed");
}

#[test]
fn gate_failure_exits_3_and_writes_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(pipeline("cleanup.yaml")).unwrap();
    // An impossible threshold: cleanup never halves the file.
    let yaml =
        yaml.replace("max_size_ratio: 1.0", "max_size_ratio: 0.5").replace("../", &format!("{}/", whittle_tests::repo_root().display()));
    let p = dir.path().join("impossible.yaml");
    std::fs::write(&p, yaml).unwrap();
    let out = dir.path().join("o.onnx");
    let rep = dir.path().join("o.report.json");
    let o = whittle(&["run", &s(&p), "--out", &s(&out), "--report", &s(&rep)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!out.exists(), "a failed gate must leave nothing at the output path");
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_size_ratio"), "{}", text(&o));
    let r = report(&rep);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["files"]["output_written"], false);
    let check = r["gate"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "max_size_ratio").unwrap().clone();
    assert_eq!(check["status"], "failed");
    assert!(check["margin"].as_f64().unwrap() < -0.3, "{check}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only the pipeline and the report: {leftovers:?}");
}

#[test]
fn stop_after_and_dump_after_each() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump");
    let (o, _, rep) = run_cleanup(dir.path(), &["--stop-after", "constant_folding", "--dump-after-each", &s(&dump)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut files: Vec<String> = std::fs::read_dir(&dump).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00-original.txt",
            "01-initializers_as_constants.txt",
            "02-opset_conversion.txt",
            "03-remove_noops.txt",
            "04-constant_folding.txt"
        ]
    );
    let first = std::fs::read_to_string(dump.join("00-original.txt")).unwrap();
    assert!(first.contains("opset_import: ai.onnx=11") && first.contains("BatchNormalization"), "{first}");
    let converted = std::fs::read_to_string(dump.join("02-opset_conversion.txt")).unwrap();
    assert!(converted.contains("opset_import: ai.onnx=13"), "{converted}");
    let r = report(&rep);
    assert_eq!(r["stopped"]["index"], 4);
    assert_eq!(r["stopped"]["reason"], "requested");
    assert_eq!(r["steps"].as_array().unwrap().len(), 4);
}

#[test]
fn json_flag_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(&dir.path().join("m.onnx"));
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--json", "--stop-after", "1", "--out", &out, "--eval", "random:3"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON report");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["evaluation"]["labels"], serde_json::Value::Null);
    // --out alone moves the report beside the output.
    assert!(dir.path().join("m.report.json").is_file());
}

/// Every shipped pipeline parses, and runs on its model: the default one always, the PP-OCR
/// ones when ../shared is present (the detector on 2 of its 16 evaluation pages, to keep the test
/// quick: a copy of the file with `samples: 2`).
#[test]
fn every_shipped_pipeline_runs() {
    let dir = whittle_tests::repo_root().join("pipelines");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.contains(&"cleanup.yaml".to_string()), "{names:?}");
    let shared = whittle_tests::shared_dir();
    let python = whittle_tests::peer_python();
    for name in &names {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.onnx");
        let mut args = ["run".to_string(), pipeline(name), "--out".into(), s(&out), "--report".into(), s(&tmp.path().join("r.json"))];
        if name.starts_with("ppocr_") && (name.ends_with("_int8.yaml") || name.ends_with("_separable.yaml")) && shared.is_some() {
            // Run on the real data, judged by onnxruntime too: cli_quantize.rs, cli_separable.rs.
            continue;
        }
        if name.starts_with("ppocr_") && shared.is_none() {
            // shared_dir() printed why (and fails the test under CI).
            // Still parsed and checked up to the missing model.
            let o = whittle(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
            assert!(!String::from_utf8_lossy(&o.stderr).contains("unknown"), "{name}: {}", text(&o));
            continue;
        }
        if name == "ppocr_det.yaml"
            && let Some(shared) = &shared
        {
            let yaml = std::fs::read_to_string(dir.join(name)).unwrap().replace("../../shared", &s(shared));
            let yaml = yaml.replace("ocr_det640_eval.npz\n", "ocr_det640_eval.npz\n  samples: 2\n");
            assert!(yaml.contains("samples: 2"), "the det pipeline changed shape: update this test");
            let copy = tmp.path().join(name);
            std::fs::write(&copy, yaml).unwrap();
            args[1] = s(&copy);
        }
        let o = whittle(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        assert!(out.is_file(), "{name}: no output");
        // What a shipped pipeline exports passes the ONNX checker's full check.
        if let Some(python) = &python {
            whittle_tests::full_check(python, &out).unwrap_or_else(|e| panic!("{name}: full_check: {e}"));
        }
    }
}

#[test]
fn exported_model_passes_onnx_checker_and_runs_in_onnxruntime() {
    let Some(python) = whittle_tests::peer_python() else { return };
    let Some(shared) = whittle_tests::shared_dir() else { return };
    let compare = shared.join("peer/compare.py");
    assert!(compare.is_file(), "{} is missing from ../shared", compare.display());
    let dir = tempfile::tempdir().unwrap();
    let (o, out, _) = run_cleanup(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let original = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let data = whittle_tests::testdata("cls_eval_small.npz");
    let r = Command::new(&python)
        .args([
            s(&compare),
            s(&original),
            s(&out),
            "--inputs".into(),
            s(&data),
            "--runs".into(),
            "0".into(),
            "--min-sqnr".into(),
            "60".into(),
        ])
        .output()
        .expect("run compare.py");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "compare.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("compare: sqnr_db="), "{last}");
    assert!(stdout.contains("\"checker\": \"pass\""), "{stdout}");
    assert!(last.contains("top1_agree=1.0000"), "{last}");
}

#[test]
fn passes_lists_every_pass() {
    let o = whittle(&["passes"]);
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for p in whittle_passes::PASSES.iter().map(|p| p.name) {
        assert!(stdout.contains(p), "{p} missing:\n{stdout}");
    }
    assert!(stdout.contains("target"), "parameters are listed:\n{stdout}");
    let md = whittle(&["passes", "--markdown"]);
    let table = String::from_utf8_lossy(&md.stdout);
    assert!(table.starts_with("| pass |"));
    // The README's table is this output, not a stale copy.
    let readme = std::fs::read_to_string(whittle_tests::repo_root().join("README.md")).unwrap();
    assert!(readme.contains(table.trim_end()), "README.md's passes table differs from `whittle passes --markdown`: regenerate it");
    let json = whittle(&["passes", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), whittle_passes::PASSES.len());
}
