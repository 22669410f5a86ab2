//! Bad input gets one clear message naming the file and the node or tensor, exit code 2, no panic.

use std::path::Path;
use std::process::Command;

use prost::Message;
use whittle_tests::fixtures;

fn whittle(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_whittle")).args(args).output().expect("run whittle");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "whittle panicked: {stderr}");
    (out.status.code().expect("exit code"), stderr)
}

/// Writes `bytes` to a file and runs `whittle inspect` on it; returns the code and stderr.
fn inspect_bytes(dir: &Path, file: &str, bytes: &[u8]) -> (i32, String) {
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("write fixture");
    whittle(&["inspect", path.to_str().expect("utf-8 path")])
}

fn assert_invalid(code: i32, stderr: &str, file: &str, needles: &[&str]) {
    assert_eq!(code, 2, "expected exit code 2, stderr: {stderr}");
    assert!(stderr.contains(file), "message should name the file '{file}': {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "message should mention '{n}': {stderr}");
    }
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "one error message: {stderr}");
}

#[test]
fn truncated_model() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    let (code, err) = inspect_bytes(dir.path(), "truncated.onnx", &full[..full.len() / 2]);
    assert_invalid(code, &err, "truncated.onnx", &["truncated or corrupt"]);
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed pseudo-random sequence (xorshift), so the test is reproducible.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let (code, err) = inspect_bytes(dir.path(), "random.onnx", &bytes);
    assert_invalid(code, &err, "random.onnx", &[]);
}

#[test]
fn protobuf_that_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "tensor.onnx", &fixtures::not_a_model_bytes());
    assert_invalid(code, &err, "tensor.onnx", &["not an ONNX model"]);
}

#[test]
fn cyclic_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "cycle.onnx", &fixtures::cyclic_model().encode_to_vec());
    assert_invalid(code, &err, "cycle.onnx", &["cycle", "a", "b"]);
}

#[test]
fn node_reading_a_tensor_nobody_produces() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "dangling.onnx", &fixtures::dangling_model().encode_to_vec());
    assert_invalid(code, &err, "dangling.onnx", &["'adder'", "'ghost'", "nobody produces"]);
}

#[test]
fn element_count_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "overflow.onnx", &fixtures::overflow_model().encode_to_vec());
    assert_invalid(code, &err, "overflow.onnx", &["'huge'", "overflows"]);
}

#[test]
fn unknown_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "dtype.onnx", &fixtures::unknown_dtype_model().encode_to_vec());
    assert_invalid(code, &err, "dtype.onnx", &["'strange'", "unknown data type code 99"]);
}

#[test]
fn missing_external_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = inspect_bytes(dir.path(), "external.onnx", &fixtures::missing_external_model().encode_to_vec());
    assert_invalid(code, &err, "external.onnx", &["'w'", "weights_missing.bin"]);
}

#[test]
fn missing_model_file() {
    let (code, err) = whittle(&["inspect", "/nonexistent/model.onnx"]);
    assert_invalid(code, &err, "/nonexistent/model.onnx", &["cannot read"]);
}

#[test]
fn usage_errors_have_their_own_code() {
    let (code, _) = whittle(&["inspect"]);
    assert_eq!(code, 64);
    let (code, _) = whittle(&["no-such-command"]);
    assert_eq!(code, 64);
    let (code, err) = whittle(&["inspect", "m.onnx", "--input", "x=1,0"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn convert_of_bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cycle.onnx");
    std::fs::write(&input, fixtures::cyclic_model().encode_to_vec()).unwrap();
    let out = dir.path().join("out.onnx");
    let (code, _) = whittle(&["convert", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code, 2);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("cycle.onnx")], "no partial output files");
}

/// External data may not leave the model's folder through symbolic links (to a file or through a
/// folder), and only regular files are read: a FIFO as model or data would block forever.
#[test]
fn external_data_cannot_escape_through_links_and_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), [7u8; 16]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.bin"), dir.path().join("w.bin")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
    for (name, location) in [("file_link.onnx", "w.bin"), ("dir_link.onnx", "sub/secret.bin")] {
        let (code, err) = inspect_bytes(dir.path(), name, &fixtures::external_model(location).encode_to_vec());
        assert_invalid(code, &err, name, &["outside the model's folder"]);
        // convert --inline-data must not copy the file into a model either.
        let out = dir.path().join(format!("{name}.inlined.onnx"));
        let (code, _) = whittle(&["convert", dir.path().join(name).to_str().unwrap(), out.to_str().unwrap(), "--inline-data"]);
        assert_eq!(code, 2);
        assert!(!out.exists());
    }
    // A link that stays inside the folder is fine.
    std::fs::write(dir.path().join("real.bin"), [0u8; 16]).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.bin"), dir.path().join("inside.bin")).unwrap();
    let (code, err) = inspect_bytes(dir.path(), "inside.onnx", &fixtures::external_model("inside.bin").encode_to_vec());
    assert_eq!(code, 0, "{err}");
    // FIFOs.
    let fifo = dir.path().join("fifo.onnx");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if made {
        let (code, err) = whittle(&["inspect", fifo.to_str().unwrap()]);
        assert_invalid(code, &err, "fifo.onnx", &["not a regular file"]);
        let data_fifo = dir.path().join("data.fifo");
        assert!(std::process::Command::new("mkfifo").arg(&data_fifo).status().unwrap().success());
        let (code, err) = inspect_bytes(dir.path(), "fifo_data.onnx", &fixtures::external_model("data.fifo").encode_to_vec());
        assert_invalid(code, &err, "fifo_data.onnx", &["not a regular file"]);
    }
}

/// Names holding escape sequences are printed escaped, in `inspect` and in error messages.
#[test]
fn control_characters_in_names_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = fixtures::relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].name = Some("evil\u{1b}[2J".into());
    g.node[0].output = vec!["y\u{1b}]0;title\u{7}".into()];
    g.output[0].name = Some("y\u{1b}]0;title\u{7}".into());
    let path = dir.path().join("evil.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_whittle")).args(["inspect", path.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\u{1b}"), "{out}");
    // An error naming the node: a dangling input.
    g_dangling(&mut m);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let (code, err) = whittle(&["inspect", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains('\u{1b}') && err.contains("evil\\u{1b}[2J"), "{err:?}");
}

fn g_dangling(m: &mut whittle_graph::onnx::ModelProto) {
    m.graph.as_mut().unwrap().node[0].input = vec!["nobody\u{1b}[1m".into()];
}
