//! `whittle inspect`, `dump`, `diff` and `convert` on the embedded model and the shared PP-OCR models.

use std::path::Path;
use std::process::Command;

use prost::Message;
use whittle_graph::onnx::ModelProto;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn whittle(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_whittle")).args(args).output().expect("run whittle");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> Run {
    let run = whittle(args);
    assert_eq!(run.code, 0, "whittle {args:?} failed: {}", run.stderr);
    run
}

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(bytes::Bytes::from(std::fs::read(path).unwrap())).unwrap()
}

/// (file, input spec, expected output shape) of the shared models.
const SHARED: [(&str, &str, &str); 3] = [
    ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "x=1,3,48,192", "[1,2]"),
    ("ch_PP-OCRv4_det_infer.onnx", "x=1,3,640,640", "[1,1,640,640]"),
    ("ch_PP-OCRv4_rec_infer.onnx", "x=1,3,48,320", "[1,40,6625]"),
];

#[test]
fn inspect_json_on_shared_models() {
    let Some(dir) = whittle_tests::shared_dir() else { return };
    for (file, input, out_shape) in SHARED {
        let path = dir.join("models").join(file);
        let run = ok(&["inspect", path.to_str().unwrap(), "--input", input, "--json"]);
        let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("inspect --json prints JSON");
        assert_eq!(json["outputs"][0]["shape"], out_shape, "{file}");
        let stats = &json["stats"];
        assert_eq!(stats["layers_with_unknown_macs"], 0, "{file}: every layer's MACs known");
        let layers = stats["layers"].as_array().unwrap();
        let sum: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
        assert_eq!(stats["total_macs"].as_u64().unwrap(), sum, "{file}: total is the sum of layers");
        assert!(sum > 0);
        assert!(stats["op_histogram"]["Constant"].as_u64().unwrap() > 100, "{file}: Constant-node weights are counted");
        assert!(stats["parameters"].as_u64().unwrap() > 100_000, "{file}: parameters in Constant nodes are counted");
        assert_eq!(json["heaviest_layers"].as_array().unwrap().len(), 10);
    }
}

#[test]
fn inspect_text_on_embedded_model() {
    let model = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let run = ok(&["inspect", model.to_str().unwrap(), "--input", "x=1,3,48,192"]);
    for needle in ["ir_version: 7", "ai.onnx 11", "heaviest layers:", "MACs:", "Conv 53"] {
        assert!(run.stdout.contains(needle), "missing '{needle}' in:\n{}", run.stdout);
    }
}

#[test]
fn dump_and_diff() {
    let model = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let m = model.to_str().unwrap();
    let dump = ok(&["dump", m]);
    assert!(dump.stdout.contains("Conv("), "{}", &dump.stdout[..500.min(dump.stdout.len())]);
    assert_eq!(ok(&["dump", m]).stdout, dump.stdout, "dump is deterministic");
    let same = ok(&["diff", m, m, "--exit-code"]);
    assert!(same.stdout.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.onnx");
    let mut proto = decode(&model);
    let relu = proto.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type.as_deref() == Some("Relu")).unwrap();
    relu.op_type = Some("Sigmoid".into());
    std::fs::write(&other, proto.encode_to_vec()).unwrap();
    let diff = whittle(&["diff", m, other.to_str().unwrap(), "--exit-code"]);
    assert_eq!(diff.code, 4, "{}", diff.stderr);
    assert!(diff.stdout.lines().any(|l| l.starts_with('-') && l.contains("Relu(")), "{}", diff.stdout);
    assert!(diff.stdout.lines().any(|l| l.starts_with('+') && l.contains("Sigmoid(")), "{}", diff.stdout);
}

#[test]
fn convert_round_trips_through_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut models = vec![whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx")];
    models.extend(whittle_tests::shared_models().unwrap_or_default());
    for src in models {
        let s = src.to_str().unwrap();
        let ext = dir.path().join("ext.onnx");
        let back = dir.path().join("back.onnx");
        ok(&["convert", s, ext.to_str().unwrap(), "--external-data"]);
        let data = dir.path().join("ext.onnx.data");
        assert!(data.is_file(), "external data file written");
        assert!(std::fs::metadata(&ext).unwrap().len() < std::fs::metadata(&src).unwrap().len() / 4, "weights moved out");
        // The external model means the same as the original...
        let diff = ok(&["diff", s, ext.to_str().unwrap(), "--exit-code"]);
        assert!(diff.stdout.is_empty(), "{}", diff.stdout);
        // ...and inlining it again gives the same model back: same text form (tensor contents by
        // hash). Tensors written in typed fields (float_data) come back as raw_data, as with
        // onnx's own external-data helpers, so the message is not compared field by field here.
        ok(&["convert", ext.to_str().unwrap(), back.to_str().unwrap(), "--inline-data"]);
        let diff = ok(&["diff", s, back.to_str().unwrap(), "--exit-code"]);
        assert!(diff.stdout.is_empty(), "{}", diff.stdout);
        assert_eq!(std::fs::metadata(&back).unwrap().len(), std::fs::metadata(&src).unwrap().len());
        // Plain convert is deterministic and lossless.
        let a = dir.path().join("a.onnx");
        let b = dir.path().join("b.onnx");
        ok(&["convert", s, a.to_str().unwrap()]);
        ok(&["convert", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "export is deterministic");
        assert!(decode(&a) == decode(&src));
    }
}
