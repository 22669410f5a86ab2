//! Every shipped pipeline serves any model from the command line (issue: pipelines for any
//! model): `--model` with other input names, `--set`, inputs of any shape (a VAD with an If, a
//! scalar and a recurrent state), old-converter models (IR 3, initializers as inputs, opset 9
//! with Upsample, ConstantOfShape weights), checked by the gate, and by `onnx.checker` with
//! `full_check` where the peer tools are installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;

use whittle_tests::cli::text;

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
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

/// A small CNN whose input is named `input` (not `x`), with a BatchNormalization to fold.
fn renamed_input_model(dir: &Path) -> PathBuf {
    use whittle_graph::builder::{GraphBuilder, attr_ints};
    use whittle_graph::{DataType, Tensor};
    let mut b = GraphBuilder::new(13);
    let x = b.input("input", DataType::Float, &[1, 3, 12, 12]);
    let w = whittle_tests::numeric::constant(&mut b, "w", &[4, 3, 3, 3], 1);
    let c = b.node("Conv", &[x, w], &["conv"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let [sc, bias, mean] = [2, 3, 4].map(|k| whittle_tests::numeric::constant(&mut b, &format!("bn{k}"), &[4], k));
    let var = b.constant("var", Tensor::from_f32("var", &[4], &[0.5, 1.0, 1.5, 2.0]));
    let bn = b.node("BatchNormalization", &[c, sc, bias, mean, var], &["bn"], vec![])[0];
    let y = b.node("Relu", &[bn], &["features"], vec![])[0];
    // Declared like an exporter would (the builder leaves unknown shapes undeclared).
    b.graph_mut().value_mut(y).shape = Some(whittle_graph::Shape::from_dims(&[1, 4, 12, 12]));
    b.output(y);
    let path = dir.join("renamed.onnx");
    whittle_graph::save_model(&b.finish(), &path, &Default::default()).unwrap();
    path
}

/// onnxruntime, which runs the original's old operators itself, gives the same outputs for the
/// original and the cleaned model (../shared/peer/compare.py, SQNR >= 100 dB on 4 samples of the
/// single input `input` of shape `shape`).
fn assert_onnxruntime_agrees(original: &Path, cleaned: &Path, input: &str, shape: &[usize]) {
    let (Some(python), Some(shared)) = (whittle_tests::peer_python(), whittle_tests::shared_dir()) else { return };
    let data = cleaned.with_extension("data.npz");
    let dims: Vec<usize> = std::iter::once(4).chain(shape.iter().copied()).collect();
    let n = dims.iter().product();
    let x = ndarray::ArrayD::from_shape_vec(dims, whittle_tests::numeric::weights(n, 9)).unwrap();
    whittle_tests::write_npz(&data, &[(input, x)], &[]);
    let o = Command::new(&python)
        .arg(shared.join("peer/compare.py"))
        .args([s(original), s(cleaned), "--inputs".into(), s(&data), "--runs".into(), "0".into(), "--min-sqnr".into(), "100".into()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: onnxruntime disagrees: {}", original.display(), text(&o));
}

fn grep_ctc(pipeline_name: &str) -> bool {
    std::fs::read_to_string(whittle_tests::repo_root().join("pipelines").join(pipeline_name)).unwrap().contains("ctc: true")
}

fn shipped_pipelines() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(whittle_tests::repo_root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Runs a pipeline on a model; asserts exit 0, an exact result, no growth, and full_check.
fn assert_cleans(pipeline_name: &str, model: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let report = out.with_extension("report.json");
    let mut args = vec!["run".to_string(), pipeline(pipeline_name), "--model".into(), s(model), "--out".into(), s(out)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let o = whittle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{pipeline_name} on {}: {}", model.display(), text(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // Encoded sizes: the written file also carries whittle's fingerprint (about 100 bytes of
    // metadata, for the up-to-date check), which is not the model.
    let size = |m: &str| r[m]["encoded_bytes"].as_u64().unwrap_or_else(|| panic!("no {m}.encoded_bytes in {}", r[m]));
    let (before, after) = (size("original"), size("candidate"));
    assert!(after <= before, "{pipeline_name} on {}: the model grew from {before} to {after} bytes", model.display());
    if let Some(python) = whittle_tests::peer_python() {
        whittle_tests::full_check(&python, out).unwrap_or_else(|e| panic!("{pipeline_name} on {}: full_check: {e}", model.display()));
    }
    r
}

/// An INT8 pipeline on another model, with random calibration data: every step runs and the
/// quantizer rewrites the model; the gate gives its verdict (on a model this small the QDQ
/// bookkeeping may outweigh the int8 weights, so a size threshold may refuse it: exit 3, never 2).
fn assert_quantizes(pipeline_name: &str, model: &Path, out: &Path) {
    let report = out.with_extension("report.json");
    let mut args = vec!["run", "--calibration", "random"];
    let (p, m, o) = (pipeline(pipeline_name), s(model), s(out));
    args.extend([p.as_str(), "--model", &m, "--out", &o]);
    if grep_ctc(pipeline_name) {
        args.extend(["--set", "verify.ctc=false"]);
    }
    let run = whittle(&args);
    assert!(matches!(run.status.code(), Some(0) | Some(3)), "{pipeline_name}: {}", text(&run));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["inputs"][0]["name"], "input", "{pipeline_name}");
    let quantizer = r["steps"].as_array().unwrap().iter().find(|s| s["pass"].as_str().unwrap_or("").starts_with("quantize_")).unwrap();
    // This model is one Conv: the dynamic quantizer (MatMul/Gemm only) rightly has nothing to do.
    let applied = quantizer["applied"].as_u64().unwrap();
    if quantizer["pass"] == "quantize_dynamic" {
        assert_eq!(applied, 0, "{pipeline_name}: {quantizer}");
    } else {
        assert!(applied >= 1, "{pipeline_name}: {quantizer}");
    }
}

/// The 2:4 pipeline on another model: its sensitivity measurement needs calibration data, so
/// without any the run stops with the flag to give (exit 2, nothing written); with random data
/// every step runs and the one Conv (3 input channels, not a multiple of 4) is declined, said why.
fn assert_prunes_2_4(pipeline_name: &str, model: &Path, out: &Path) {
    let (p, m, o) = (pipeline(pipeline_name), s(model), s(out));
    let run = whittle(&["run", &p, "--model", &m, "--out", &o]);
    assert_eq!(run.status.code(), Some(2), "{pipeline_name}: {}", text(&run));
    assert!(text(&run).contains("--calibration FILE") && !out.exists(), "{pipeline_name}: {}", text(&run));
    let step = "steps.8.prune_magnitude.min_size=0";
    let run = whittle(&["run", "--calibration", "random", &p, "--model", &m, "--set", step, "--out", &o]);
    assert_eq!(run.status.code(), Some(0), "{pipeline_name}: {}", text(&run));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
    assert_eq!(r["inputs"][0]["name"], "input", "{pipeline_name}");
    let prune = r["steps"].as_array().unwrap().iter().find(|s| s["pass"] == "prune_magnitude").unwrap();
    assert!(prune["declined"].to_string().contains("3 elements, not a multiple of 4"), "{prune}");
}

/// A separable pipeline on another model, with random calibration data (its refit needs some):
/// every step runs and the rewrite gives each Conv a verdict; the gate judges the lossy result
/// (exit 0 or 3, never 2).
fn assert_separates(pipeline_name: &str, model: &Path, out: &Path) {
    let (p, m, o) = (pipeline(pipeline_name), s(model), s(out));
    let run = whittle(&["run", "--calibration", "random", &p, "--model", &m, "--out", &o]);
    assert!(matches!(run.status.code(), Some(0) | Some(3)), "{pipeline_name}: {}", text(&run));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
    assert_eq!(r["inputs"][0]["name"], "input", "{pipeline_name}");
    let step = r["steps"].as_array().unwrap().iter().find(|s| s["pass"] == "separable_conv").expect("a separable_conv step");
    let verdicts = step["applied"].as_u64().unwrap() + step["declined"].as_array().map_or(0, |d| d.len() as u64);
    assert_eq!(verdicts, 1, "{pipeline_name}: the model's one Conv is rewritten or declined: {step}");
}

/// A channel-pruning pipeline with a latency threshold on a one-Conv model: its channels are the
/// model's output, so nothing is pruned and the pass says why; the unchanged model may fail the
/// latency threshold (exit 3), never the input (2).
fn assert_prunes_channels(pipeline_name: &str, model: &Path, out: &Path) {
    let (p, m, o) = (pipeline(pipeline_name), s(model), s(out));
    let run = whittle(&["run", &p, "--model", &m, "--out", &o]);
    assert!(matches!(run.status.code(), Some(0) | Some(3)), "{pipeline_name}: {}", text(&run));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
    assert_eq!(r["inputs"][0]["name"], "input", "{pipeline_name}");
    let step = r["steps"].as_array().unwrap().iter().find(|s| s["pass"] == "prune_channels").unwrap();
    assert!(step["notes"].to_string().contains("reach the model's inputs or outputs"), "{pipeline_name}: {step}");
}

#[test]
fn every_shipped_pipeline_serves_a_model_with_other_input_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = renamed_input_model(dir.path());
    for name in shipped_pipelines() {
        let out = dir.path().join(format!("{name}.onnx"));
        if name.contains("int8") {
            assert_quantizes(&name, &model, &out);
            continue;
        }
        // The recognizer's pipeline asks for CTC metrics, which need a [1, T, classes] output:
        // a task setting, turned off for this model from the command line.
        if name.contains("separable") {
            assert_separates(&name, &model, &out);
            continue;
        }
        if name == "sparse_2_4.yaml" {
            assert_prunes_2_4(&name, &model, &out);
            continue;
        }
        if name == "ppocr_det_prune.yaml" {
            assert_prunes_channels(&name, &model, &out);
            continue;
        }
        let extra: &[&str] = if grep_ctc(&name) { &["--set", "verify.ctc=false"] } else { &[] };
        let r = assert_cleans(&name, &model, &out, extra);
        // The file's own inputs and data no longer apply: random samples for `input`.
        assert_eq!(r["inputs"][0]["name"], "input", "{name}");
        assert!(r["notes"].to_string().contains("random"), "{name}: {}", r["notes"]);
        assert!(r["candidate"]["op_histogram"].get("BatchNormalization").is_none(), "{name}: BN not folded");
    }
}

#[test]
fn the_cleaned_default_model_passes_full_check() {
    // The PP-OCR classifier with pinned input shapes used to keep its stale output declaration.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cls.onnx");
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--out", &s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let Some(python) = whittle_tests::peer_python() else { return };
    whittle_tests::full_check(&python, &out).unwrap();
}

#[test]
fn zoo_models_from_old_converters_get_through_the_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    for (opset, mode) in [(7, "nearest"), (8, "nearest"), (9, "nearest"), (9, "linear")] {
        let model = write(dir.path(), &format!("zoo{opset}{mode}.onnx"), &whittle_tests::zoo::zoo_model_with(opset, mode));
        let out = dir.path().join(format!("zoo{opset}{mode}.clean.onnx"));
        let r = assert_cleans("cleanup.yaml", &model, &out, &[]);
        let notes = r["notes"].to_string() + &r["steps"].to_string();
        assert!(notes.contains("initializers were also graph inputs"), "opset {opset}: {notes}");
        let hist = &r["candidate"]["op_histogram"];
        assert!(hist.get("BatchNormalization").is_none(), "opset {opset}: BN not folded: {hist}");
        assert!(hist.get("Upsample").is_none() && hist.get("Resize").is_some(), "opset {opset}: {hist}");
        assert_eq!(r["gate"]["passed"], true);
        // The large ConstantOfShape weight stays compact (one node, not 576 stored floats).
        if opset == 9 {
            assert!(hist.get("ConstantOfShape").is_some(), "opset 9: {hist}");
        }
        // onnxruntime runs the original opset-7/9 Upsample itself: the converted model must agree.
        assert_onnxruntime_agrees(&model, &out, "data", &[1, 3, 16, 16]);
    }
}

#[test]
fn a_voice_activity_detector_gets_through_the_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "vad.onnx", &whittle_tests::zoo::vad_model());
    // Random data (sr rounds to 0 or 1: the 8 kHz branch), then real-looking data at 16 kHz.
    let r = assert_cleans("cleanup.yaml", &model, &dir.path().join("vad.random.onnx"), &[]);
    // The weights inside the If branches are parameters too: 2 x 512 x 128, plus sr16k, axes, half.
    assert_eq!(r["original"]["parameters"], 2 * 512 * 128 + 3, "{}", r["original"]);
    assert_eq!(
        r["inputs"].to_string(),
        r#"[{"name":"input","shape":[1,512]},{"name":"state","shape":[2,1,128]},{"name":"sr","shape":[]}]"#
    );
    let data = dir.path().join("vad.npz");
    let n = 6;
    let input = ndarray::ArrayD::from_shape_vec(vec![n, 1, 512], whittle_tests::numeric::weights(n * 512, 3)).unwrap();
    let state = ndarray::ArrayD::from_shape_vec(vec![n, 2, 1, 128], whittle_tests::numeric::weights(n * 256, 4)).unwrap();
    let sr = ndarray::ArrayD::from_shape_vec(vec![n], vec![16000i64; n]).unwrap();
    whittle_tests::write_npz(&data, &[("input", input), ("state", state)], &[("sr", sr)]);
    let r = assert_cleans("cleanup.yaml", &model, &dir.path().join("vad.onnx.out"), &["--eval", &s(&data)]);
    assert_eq!(r["evaluation"]["samples"], n);
    // Short names for every value but the interface and what the If branches read; the gate
    // checks the outputs after the step, full_check the subgraphs' references.
    let stripped = dir.path().join("vad.stripped.onnx");
    let r = assert_cleans("cleanup.yaml", &model, &stripped, &["--eval", &s(&data), "--set", "steps=[strip_names]"]);
    assert!(r["steps"][0]["applied"].as_u64().unwrap() >= 2, "{}", r["steps"][0]);
    let proto = whittle_graph::onnx::ModelProto::decode(std::fs::read(&stripped).unwrap().as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    assert!(graph.node.iter().all(|n| n.name.as_deref().unwrap_or("").is_empty()), "node names dropped");
    assert!(graph.node.iter().any(|n| n.output.iter().any(|o| o == "stateN")), "outputs keep their names");
    // A scalar input takes a shape flag too.
    let o = whittle(&[
        "run",
        &pipeline("cleanup.yaml"),
        "--model",
        &s(&model),
        "--out",
        &s(&dir.path().join("v2.onnx")),
        "--input",
        "sr=scalar",
        "--input",
        "state=2,1,128",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn model_without_out_writes_beside_nothing_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let model = renamed_input_model(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_whittle"))
        .current_dir(&work)
        .args(["run", &pipeline("cleanup.yaml"), "--model", &s(&model)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(work.join("out/renamed.cleanup.onnx").is_file(), "{}", text(&o));
    assert!(work.join("out/renamed.cleanup.report.json").is_file());
    // The pipeline's own export path was not touched by this run.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ch_ppocr_mobile_v2.0_cls.cleanup.onnx"));
}

#[test]
fn a_symbolic_dimension_without_a_value_is_named_with_the_flag_to_give() {
    use whittle_graph::builder::GraphBuilder;
    use whittle_graph::{DataType, Dim, Shape};
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("audio", DataType::Float, Shape(vec![Dim::Sym("batch".into()), Dim::Known(2), Dim::Sym("time".into())]));
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.graph_mut().value_mut(y).shape = Some(Shape(vec![Dim::Sym("batch".into()), Dim::Known(2), Dim::Sym("time".into())]));
    b.output(y);
    let path = dir.path().join("sym.onnx");
    whittle_graph::save_model(&b.finish(), &path, &Default::default()).unwrap();
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--model", &s(&path), "--out", &s(&dir.path().join("o.onnx"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`batch`") && err.contains("`time`") && err.contains("--input audio=1,2,<time>"), "{err}");
    let o = whittle(&[
        "run",
        &pipeline("cleanup.yaml"),
        "--model",
        &s(&path),
        "--out",
        &s(&dir.path().join("o.onnx")),
        "--input",
        "audio=1,2,50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn set_overrides_nested_keys_and_step_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    let report = dir.path().join("o.report.json");
    // A step parameter (constant_folding is step 4) and a nested verify key.
    let o = whittle(&[
        "run",
        &pipeline("cleanup.yaml"),
        "--out",
        &s(&out),
        "--set",
        "steps.4.constant_folding.max_growth_bytes=65536",
        "--set",
        "verify.latency_runs=0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["steps"][3]["pass"], "constant_folding");
    assert_eq!(r["steps"][3]["params"]["max_growth_bytes"], 65536);
    assert!(r["verification"]["latency"].is_null(), "{}", r["verification"]);
    // A threshold that cannot be met: the gate fails (exit 3), so the override was applied.
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--out", &s(&out), "--force", "--set", "verify.max_size_ratio=0.1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn a_misspelt_set_key_exits_2_with_the_closest_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    for (set, closest) in [
        ("verify.min_sqnr=70", "min_sqnr_db"),
        ("steps.4.constant_folding.max_growth_byte=1", "max_growth_bytes"),
        ("verfiy.min_sqnr_db=1", "verify"),
    ] {
        let o = whittle(&["run", &pipeline("cleanup.yaml"), "--out", &s(&out), "--set", set]);
        assert_eq!(o.status.code(), Some(2), "{set}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("(from --set {set})")) && err.contains(&format!("did you mean `{closest}`")), "{set}: {err}");
        assert!(!out.exists());
    }
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--out", &s(&out), "--set", "steps.40.dead_code=1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("list of"), "{}", text(&o));
}

#[test]
fn the_generic_cleanup_serves_the_shared_models() {
    let Some(shared) = whittle_tests::shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (model, input, data) in [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "x=1,3,48,192", "ocr_cls_eval.npz"),
        ("ch_PP-OCRv4_rec_infer.onnx", "x=1,3,48,320", "ocr_rec_eval.npz"),
    ] {
        let path = shared.join("models").join(model);
        let out = dir.path().join(model);
        let r = assert_cleans("cleanup.yaml", &path, &out, &["--input", input, "--eval", &s(&shared.join("data").join(data))]);
        assert_eq!(r["gate"]["passed"], true, "{model}");
        assert!(r["evaluation"]["source"].to_string().contains(data), "{model}: {}", r["evaluation"]);
    }
}

/// Slice/TopK (attributes before opset 10), Pad/Clip (before 11) and opset-10 Resize converted
/// to opset 13, judged by onnxruntime, which runs the old operators themselves (tract lacks
/// TopK-1, so its reference there is the converted model).
#[test]
fn attributes_that_became_inputs_convert_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // tract's own opset-10 Resize rounds `nearest` half-up, where ONNX (its reference and
    // onnxruntime) floors: there the gate refuses a conversion that onnxruntime confirms. Known,
    // and recorded here so a change in either shows.
    let dir2 = tempfile::tempdir().unwrap();
    let model = write(dir2.path(), "old10nearest.onnx", &whittle_tests::zoo::old_ops_model(10, "nearest"));
    let o = whittle(&[
        "run",
        &pipeline("cleanup.yaml"),
        "--model",
        &s(&model),
        "--out",
        &s(&dir2.path().join("o.onnx")),
        "--set",
        "verify.max_size_ratio=1.8",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("after step 2 (opset_conversion)"), "{}", text(&o));
    for (opset, mode) in [(9, "nearest"), (10, "linear")] {
        let model = write(dir.path(), &format!("old{opset}{mode}.onnx"), &whittle_tests::zoo::old_ops_model(opset, mode));
        let out = dir.path().join(format!("old{opset}{mode}.clean.onnx"));
        // Attribute values become initializers (some 50 bytes each), which this weightless
        // model has nothing to win back from: allow it to grow.
        let o =
            whittle(&["run", &pipeline("cleanup.yaml"), "--model", &s(&model), "--out", &s(&out), "--set", "verify.max_size_ratio=1.8"]);
        assert_eq!(o.status.code(), Some(0), "opset {opset} {mode}: {}", text(&o));
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("report.json")).unwrap()).unwrap();
        if let Some(python) = whittle_tests::peer_python() {
            whittle_tests::full_check(&python, &out).unwrap_or_else(|e| panic!("opset {opset} {mode}: full_check: {e}"));
        }
        let conversion = &r["steps"][1];
        assert_eq!(conversion["pass"], "opset_conversion");
        assert!(conversion["applied"].as_u64().unwrap() >= if opset < 10 { 4 } else { 3 }, "{conversion}");
        assert_onnxruntime_agrees(&model, &out, "x", &[1, 4, 6, 6]);
    }
}

/// BatchNormalization with spatial=0 has no opset-9 form: refused, naming the node and why.
#[test]
fn a_refused_conversion_names_the_op_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = whittle_tests::zoo::zoo_model(8);
    let bn = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type.as_deref() == Some("BatchNormalization")).unwrap();
    bn.attribute.retain(|a| a.name.as_deref() != Some("spatial"));
    bn.attribute.push(whittle_graph::onnx::AttributeProto {
        name: Some("spatial".into()),
        r#type: Some(whittle_graph::onnx::attribute_proto::AttributeType::Int as i32),
        i: Some(0),
        ..Default::default()
    });
    let model = write(dir.path(), "spatial0.onnx", &m);
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--model", &s(&model), "--out", &s(&dir.path().join("o.onnx"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("cannot convert opset 8 to 13: bn1 (BatchNormalization): spatial=0"), "{all}");
}

/// A model with an operator opset_conversion has no rule for is invalid input (exit 2, the op
/// named), not a failure of whittle (exit 1).
#[test]
fn an_op_without_a_conversion_rule_is_invalid_input() {
    use whittle_tests::fixtures::{f32_info, model, node};
    let dir = tempfile::tempdir().unwrap();
    let mut n = node("ThresholdedRelu", "thr", &["x"], &["y"]);
    n.attribute.push(whittle_graph::onnx::AttributeProto {
        name: Some("alpha".into()),
        r#type: Some(whittle_graph::onnx::attribute_proto::AttributeType::Float as i32),
        f: Some(0.5),
        ..Default::default()
    });
    let mut m = model(whittle_graph::onnx::GraphProto {
        name: Some("g".into()),
        node: vec![n],
        input: vec![f32_info("x", &[1, 4])],
        output: vec![f32_info("y", &[1, 4])],
        ..Default::default()
    });
    m.opset_import[0].version = Some(10);
    let path = write(dir.path(), "norule.onnx", &m);
    let o = whittle(&["run", &pipeline("cleanup.yaml"), "--model", &s(&path), "--out", &s(&dir.path().join("o.onnx"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("thr (ThresholdedRelu): no conversion rule"), "{}", text(&o));
}
