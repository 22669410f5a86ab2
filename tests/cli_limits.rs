//! Runs that end early end cleanly: a time limit (`--timeout`) gives exit 3 and a report saying
//! what finished; SIGINT/SIGTERM remove the temporary files of an unfinished write; a run whose
//! memory estimate is above the limit is refused with exit 2 before anything is allocated.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use whittle_tests::cli::text;
use whittle_tests::fixtures::{f32_info, model, node};

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A folder with a copy of the default model, its eval data and a pipeline reading both.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx"), dir.path().join("m.onnx")).unwrap();
    std::fs::copy(whittle_tests::testdata("cls_eval_small.npz"), dir.path().join("e.npz")).unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, "model: m.onnx\ninputs: {x: [1, 3, 48, 192]}\nevaluation: {npz: e.npz, samples: 2}\nsteps: [remove_noops, dead_code]\nverify: {latency_runs: 0, differential: true}\n").unwrap();
    (dir, pipeline)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn timeout_ends_the_run_failed_with_a_report_of_what_finished() {
    let (dir, pipeline) = setup();
    let (out, rep) = (dir.path().join("o.onnx"), dir.path().join("o.json"));
    let o = whittle(&["run", &s(&pipeline), "--out", &s(&out), "--report", &s(&rep), "--timeout", "0.001"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!out.exists(), "nothing is exported after a timeout");
    let r = report(&rep);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["timed_out"]["limit_seconds"], 0.001);
    let during = r["timed_out"]["during"].as_str().unwrap();
    assert!(!during.is_empty(), "{r}");
    let failure = r["gate"]["failure"].as_str().unwrap();
    assert!(failure.contains("time limit") && failure.contains("phases run: prepare"), "{failure}");
    assert_eq!(r["gate"]["checks"].as_array().unwrap().len(), 0, "no threshold is judged on nothing: {r}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("time limit"), "{}", text(&o));

    // A generous limit changes nothing: the run passes and its report has no timeout.
    let o = whittle(&["run", &s(&pipeline), "--out", &s(&out), "--report", &s(&rep), "--timeout", "3600"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&rep);
    assert!(r["timed_out"].is_null());
    let phases: Vec<&str> = r["timings"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    for phase in ["prepare", "tract_load_original", "run_original", "steps", "differential", "run_candidate", "write"] {
        assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
    }
    // The candidate is the model the last differential check loaded: tract loads it once.
    assert!(!phases.contains(&"tract_load_candidate"), "{phases:?}");

    for bad in ["0", "-1", "nan", "soon"] {
        let o = whittle(&["run", &s(&pipeline), "--timeout", bad]);
        assert_eq!(o.status.code(), Some(64), "--timeout {bad}: {}", text(&o));
    }
}

/// A model with one 48 MiB weight: its export takes long enough to be interrupted.
fn big_model(path: &Path) {
    const N: i64 = 12 << 20;
    let mut w = whittle_tests::fixtures::f32_tensor("w", &[N], &[]);
    w.raw_data = Some(vec![0u8; N as usize * 4].into());
    let graph = whittle_graph::onnx::GraphProto {
        name: Some("big".into()),
        node: vec![node("Add", "add", &["x", "w"], &["y"])],
        input: vec![f32_info("x", &[N])],
        output: vec![f32_info("y", &[N])],
        initializer: vec![w],
        ..Default::default()
    };
    std::fs::write(path, model(graph).encode_to_vec()).unwrap();
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whittle-tmp"))
        .collect()
}

#[test]
fn sigterm_and_sigint_remove_unfinished_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.onnx");
    big_model(&input);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        // Catch the write in progress: poll for its temporary file, then signal. A run that
        // finished before it was seen is retried.
        let mut caught = false;
        for _attempt in 0..10 {
            for f in std::fs::read_dir(&out_dir).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
            let mut child = Command::new(env!("CARGO_BIN_EXE_whittle"))
                .args(["convert", &s(&input), &s(&out_dir.join("o.onnx"))])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let start = Instant::now();
            let mut seen = Vec::new();
            while seen.is_empty() && start.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
                seen = temp_files(&out_dir);
            }
            if seen.is_empty() {
                child.wait().unwrap();
                continue;
            }
            assert!(seen[0].starts_with(".o.onnx."), "recognizable name: {seen:?}");
            let killed = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
            assert!(killed.success());
            let o = child.wait_with_output().unwrap();
            if o.status.code() == Some(0) {
                continue; // finished between the poll and the signal
            }
            assert_eq!(o.status.code(), Some(code), "SIG{signal}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(String::from_utf8_lossy(&o.stderr).contains("temporary file(s) removed"), "{}", String::from_utf8_lossy(&o.stderr));
            let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "SIG{signal} left {left:?}");
            caught = true;
            break;
        }
        assert!(caught, "never caught the export of a 48 MiB model in progress");
    }
}

/// x [1] + ConstantOfShape([4e15]): 16 PB of weights in a few hundred bytes of file.
fn constant_of_shape_bomb(path: &Path) {
    let shape = whittle_tests::fixtures::i64_tensor("shape", &[1], &[4_000_000_000_000_000]);
    let graph = whittle_graph::onnx::GraphProto {
        name: Some("bomb".into()),
        node: vec![node("ConstantOfShape", "big", &["shape"], &["c"]), node("Add", "add", &["x", "c"], &["y"])],
        input: vec![f32_info("x", &[1])],
        output: vec![f32_info("y", &[4_000_000_000_000_000])],
        initializer: vec![shape],
        ..Default::default()
    };
    std::fs::write(path, model(graph).encode_to_vec()).unwrap();
}

#[test]
fn runs_too_big_for_memory_are_refused_with_exit_2_before_starting() {
    let (dir, pipeline) = setup();
    let d = dir.path();
    let out = d.join("o.onnx");
    let refused = |o: &Output, expect: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        for e in expect {
            assert!(err.contains(e), "`{e}` missing: {}", text(o));
        }
        assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{}", text(o));
        assert!(!out.exists());
    };

    // A 100000 x 100000 image: 120 GB per activation, found from the shapes alone.
    let o = whittle(&["run", &s(&pipeline), "--input", "x=1,3,100000,100000", "--eval", "random", "--out", &s(&out)]);
    refused(&o, &["memory limit", "activations", "--max-memory"]);

    // A million random samples cost nothing to hold (drawn one at a time), but their outputs are
    // kept for the comparison: 16 MB here, above a 4 MiB limit.
    let many = d.join("many.yaml");
    std::fs::write(&many, "model: m.onnx\ninputs: {x: [1, 3, 48, 192]}\nevaluation: {random: {}, samples: 1000000}\nsteps: [dead_code]\n")
        .unwrap();
    let o = whittle(&["run", &s(&many), "--out", &s(&out), "--max-memory", "4M"]);
    refused(&o, &["outputs kept 15.3 MiB", "--max-memory 4.0 MiB"]);

    // An npz of zeros: 11 MB of samples compressed to a few kilobytes, refused unread.
    let bomb = d.join("bomb.npz");
    whittle_tests::write_npz_compressed(&bomb, &[("x", ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[100, 3, 48, 192])))]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 200_000);
    let o = whittle(&["run", &s(&pipeline), "--eval", &s(&bomb), "--out", &s(&out), "--max-memory", "4M"]);
    refused(&o, &["bomb.npz", "decodes to 10.5 MiB"]);

    // A ConstantOfShape of 4e15 elements: refused from the estimate, before tract sees it.
    let cos = d.join("cos.onnx");
    constant_of_shape_bomb(&cos);
    let o = whittle(&["run", &s(&pipeline), "--model", &s(&cos), "--input", "x=1", "--eval", "random", "--out", &s(&out)]);
    refused(&o, &["memory limit", "PiB", "activations"]);

    for bad in ["0", "12Q", "much"] {
        let o = whittle(&["run", &s(&pipeline), "--max-memory", bad]);
        assert_eq!(o.status.code(), Some(64), "--max-memory {bad}: {}", text(&o));
    }
    let o = whittle(&["run", &s(&pipeline), "--threads", "100000"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
}
