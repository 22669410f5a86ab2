//! The malformed-pipeline corpus (`tests/pipelines_bad/`, with bad data files in
//! `tests/data_bad/`): each file gives its clear error at `FILE:LINE:COLUMN`, exit code 2, and
//! writes nothing.
//!
//! Each corpus file starts with comments saying what to expect:
//! `# expect: TEXT` (repeatable; every TEXT must appear in the error) and `# at: LINE:COLUMN`
//! (`any` when the YAML parser decides). Flag errors (`--input`, `--stop-after`, `--eval`) are
//! tested below the corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus_dir() -> PathBuf {
    whittle_tests::repo_root().join("tests/pipelines_bad")
}

/// Runs `whittle run` with outputs redirected into `out_dir`; returns (code, stderr).
fn run(pipeline: &Path, out_dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = out_dir.join("out.onnx");
    let report = out_dir.join("report.json");
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string()];
    if !std::fs::read_to_string(pipeline).unwrap_or_default().contains("export:") {
        args.extend(["--out".into(), out.display().to_string(), "--report".into(), report.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_whittle")).args(&args).output().expect("run whittle");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "whittle panicked: {stderr}");
    (o.status.code().expect("exit code"), stderr)
}

fn header(text: &str, key: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix(&format!("# {key}: ")).map(str::to_string)).collect()
}

#[test]
fn every_malformed_pipeline_gives_its_error() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read corpus file");
        let expects = header(&text, "expect");
        let at = header(&text, "at");
        assert!(!expects.is_empty() && at.len() == 1, "{}: needs `# expect:` and one `# at:` line", file.display());
        let tmp = tempfile::tempdir().expect("tempdir");
        let (code, stderr) = run(file, tmp.path(), &[]);
        let name = file.file_name().expect("file name").to_string_lossy().into_owned();
        let mut problems = Vec::new();
        if code != 2 {
            problems.push(format!("exit code {code}, expected 2"));
        }
        let first = stderr.lines().next().unwrap_or("");
        if !first.starts_with("error: ") || !first.contains(&format!("{name}:")) {
            problems.push("the first line should be `error: FILE:...`".into());
        }
        if at[0] != "any" && !first.contains(&format!("{name}:{}:", at[0])) {
            problems.push(format!("expected the position {name}:{}", at[0]));
        }
        for e in &expects {
            if !stderr.contains(e.as_str()) {
                problems.push(format!("missing `{e}`"));
            }
        }
        let written: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
        if !written.is_empty() {
            problems.push(format!("wrote {} file(s)", written.len()));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n    stderr: {}", problems.join("; "), stderr.trim().replace('\n', "\n            ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus files failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

/// A valid pipeline from the corpus folder's point of view, for the flag tests.
fn valid_pipeline(dir: &Path) -> PathBuf {
    let path = dir.join("ok.yaml");
    let model = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let text = format!(
        "model: {}\ninputs:\n  x: [1, 3, 48, 192]\nevaluation:\n  random: {{seed: 1}}\n  samples: 2\nsteps:\n  - remove_noops\n  - dead_code\nverify:\n  latency_runs: 0\n",
        model.display()
    );
    std::fs::write(&path, text).expect("write pipeline");
    path
}

#[test]
fn bad_flags_name_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let p = valid_pipeline(tmp.path());
    let cases: &[(&[&str], &[&str])] = &[
        (&["--input", "y=1,3,48,192"], &["--input y=1,3,48,192", "`y` is not an input of the model"]),
        (&["--input", "x=1,3,48"], &["--input x=1,3,48", "rank 3"]),
        (&["--stop-after", "dead_cod"], &["--stop-after dead_cod", "no step `dead_cod`", "did you mean `dead_code`"]),
        (&["--stop-after", "7"], &["--stop-after 7", "no step `7`"]),
        (&["--eval", "data.bin"], &["--eval data.bin", ".npz or .npy"]),
        (&["--eval", "random:x"], &["--eval random:x", "seed"]),
        (&["--eval", "no_such.npz"], &["--eval no_such.npz", "no such file"]),
        (&["--model", "no_such.onnx"], &["--model no_such.onnx", "cannot read"]),
    ];
    for (flags, expects) in cases {
        let (code, stderr) = run(&p, out.path(), flags);
        assert_eq!(code, 2, "{flags:?}: {stderr}");
        for e in *expects {
            assert!(stderr.contains(e), "{flags:?}: missing `{e}` in: {stderr}");
        }
        assert_eq!(std::fs::read_dir(out.path()).expect("out").count(), 0, "{flags:?} wrote files");
    }
}

#[test]
fn a_missing_pipeline_file_is_invalid_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = run(&tmp.path().join("nope.yaml"), tmp.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nope.yaml") && stderr.contains("cannot read the pipeline"), "{stderr}");
}
