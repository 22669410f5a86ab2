//! `whittle_runner::run_pipeline` used as a library (as a build script would): pipelines built
//! from text and from code, and the failure paths of the pass manager and the gate, with passes
//! that misbehave on purpose.

use std::path::Path;

use whittle_graph::{Model, Tensor};
use whittle_passes::pass::{Pass, PassContext, PassError, PassReport};
use whittle_runner::pipeline::Step;
use whittle_runner::{Overrides, Pipeline, RunError, RunOptions, RunStatus, run_pipeline};

fn model_path() -> String {
    whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx").display().to_string()
}

/// A small pipeline on the default model: 2 random samples, no latency runs.
fn pipeline(steps: &str, verify: &str, out: &Path) -> Pipeline {
    let text = format!(
        "model: {}\ninputs:\n  x: [1, 3, 48, 192]\nevaluation:\n  random: {{seed: 5}}\n  samples: 2\nsteps:\n{steps}verify:\n  latency_runs: 0\n{verify}",
        model_path()
    );
    let mut p = Pipeline::parse(&text, "test.yaml", Path::new(".")).expect("valid pipeline");
    p.apply(&Overrides { output: Some(out.to_path_buf()), ..Overrides::default() }).unwrap();
    p
}

#[test]
fn library_run_passes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let p = pipeline("  - remove_noops\n  - constant_folding\n  - dead_code\n", "  differential: true\n  min_sqnr_db: 80\n", &out);
    let o = run_pipeline(&p, &RunOptions::default()).expect("run");
    assert_eq!(o.status, RunStatus::Passed);
    assert_eq!(o.output_written.as_deref(), Some(out.as_path()));
    assert_eq!(o.report_written.as_deref(), Some(dir.path().join("m.report.json").as_path()));
    assert_eq!(o.report.steps.len(), 3);
    assert!(o.report.steps.iter().all(|s| s.differential.as_ref().is_some_and(|d| d.passed)));
    assert!(o.report.candidate.as_ref().unwrap().figures.nodes < o.report.original.figures.nodes);
    let text = whittle_runner::report::render_text(&o.report);
    assert!(text.contains("[PASSED]") && text.contains("constant_folding"), "{text}");
}

/// Scales the first large float constant by 1.01: claims to be exact, is not.
struct Perturb;
impl Pass for Perturb {
    fn run(&self, model: &mut Model, _: &PassContext) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let id = g
            .value_ids()
            .find(|&v| g.constant(v).is_some_and(|t| t.numel() > 100 && t.to_f32().is_ok()))
            .ok_or_else(|| PassError::new("no weight"))?;
        let t = g.constant(id).unwrap();
        let data: Vec<f32> = t.to_f32().unwrap().iter().map(|v| v * 1.01).collect();
        let new = Tensor::from_f32(t.name(), t.dims(), &data);
        g.set_constant(id, new);
        Ok(PassReport { applied: 1, ..PassReport::default() })
    }
}

/// Removes the first operation, leaving its readers dangling.
struct Break;
impl Pass for Break {
    fn run(&self, model: &mut Model, _: &PassContext) -> Result<PassReport, PassError> {
        let first = model.graph.topo_order().map_err(|_| PassError::new("cycle"))?[0];
        model.graph.remove_node(first);
        Ok(PassReport::default())
    }
}

/// Fails outright.
struct Refuse;
impl Pass for Refuse {
    fn run(&self, _: &mut Model, _: &PassContext) -> Result<PassReport, PassError> {
        Err(PassError::new("this model is not supported"))
    }
}

/// Renames every Conv to an op tract does not know: valid IR, but tract cannot run it.
struct Unknown;
impl Pass for Unknown {
    fn run(&self, model: &mut Model, _: &PassContext) -> Result<PassReport, PassError> {
        let ids: Vec<_> = model.graph.node_ids();
        for id in ids {
            if let Some(n) = model.graph.node_mut(id)
                && n.is("Relu")
            {
                n.residual.op_type = Some("WhittleNoSuchOp".into());
                n.residual.domain = Some("whittle.test".into());
            }
        }
        model.set_opset("whittle.test", 1);
        Ok(PassReport::default())
    }
}

fn custom(name: &'static str, pass: Box<dyn Pass>) -> Step {
    Step { name, exact: true, pass, params: serde_json::Value::Null }
}

fn with_steps(steps: Vec<Step>, verify: &str, out: &Path) -> Pipeline {
    let mut p = pipeline("  - remove_noops\n", verify, out);
    p.steps.extend(steps);
    p
}

#[test]
fn differential_check_stops_a_wrong_exact_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let p = with_steps(
        vec![custom("perturb", Box::new(Perturb)), custom("dead_code", whittle_passes::lookup("dead_code").unwrap().build_default())],
        "  differential: true\n",
        &out,
    );
    let o = run_pipeline(&p, &RunOptions::default()).expect("run");
    assert_eq!(o.status, RunStatus::Failed);
    assert!(!out.exists());
    let stop = o.report.stopped.as_ref().expect("stopped");
    assert_eq!((stop.index, stop.pass.as_str()), (2, "perturb"));
    assert_eq!(o.report.steps.len(), 2, "the step after the failing one does not run");
    let failure = o.report.gate.as_ref().unwrap().failure.clone().unwrap();
    assert!(failure.contains("after step 2 (perturb)") && failure.contains("differential tolerance"), "{failure}");
}

#[test]
fn without_differential_the_gate_catches_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let p = with_steps(vec![custom("perturb", Box::new(Perturb))], "  min_sqnr_db: 80\n", &out);
    let o = run_pipeline(&p, &RunOptions::default()).expect("run");
    assert_eq!(o.status, RunStatus::Failed);
    let check = &o.report.gate.as_ref().unwrap().checks[0];
    assert_eq!(check.name, "min_sqnr_db");
    assert!(check.margin < 0.0, "{check:?}");
    assert!(!out.exists());
    assert!(dir.path().join("m.report.json").exists());
}

#[test]
fn an_invalid_graph_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = with_steps(vec![custom("break", Box::new(Break))], "", &dir.path().join("m.onnx"));
    let Err(RunError::Step { error, report }) = run_pipeline(&p, &RunOptions::default()) else { panic!("expected a step error") };
    let msg = error.to_string();
    assert!(msg.starts_with("after step 2 (break): the graph is invalid"), "{msg}");
    assert_eq!(report.status, RunStatus::Error);
    assert_eq!(report.steps.len(), 1);
    assert!(!dir.path().join("m.onnx").exists());
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.report.json")).unwrap()).unwrap();
    assert_eq!(written["status"], "error");
}

#[test]
fn a_failing_pass_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = with_steps(vec![custom("refuse", Box::new(Refuse))], "", &dir.path().join("m.onnx"));
    let Err(RunError::Step { error, .. }) = run_pipeline(&p, &RunOptions::default()) else { panic!("expected a step error") };
    assert_eq!(error.to_string(), "in step 2 (refuse): the pass failed: this model is not supported");
}

#[test]
fn a_candidate_tract_cannot_run_fails_the_gate_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let p = with_steps(vec![custom("unknown_op", Box::new(Unknown))], "", &out);
    let o = run_pipeline(&p, &RunOptions::default()).expect("run");
    assert_eq!(o.status, RunStatus::Failed);
    let v = o.report.verification.as_ref().unwrap();
    assert!(v.error.as_deref().is_some_and(|e| e.contains("tract")), "{v:?}");
    assert!(!out.exists());
}

#[test]
fn a_pipeline_built_in_code() {
    let dir = tempfile::tempdir().unwrap();
    let steps = ["remove_noops", "constant_folding", "dead_code"].map(|n| Step::with_defaults(whittle_passes::lookup(n).unwrap())).into();
    let mut p = Pipeline::from_steps("in-code", steps);
    p.apply(&Overrides {
        model: Some(model_path().into()),
        inputs: vec![("x".into(), vec![1, 3, 48, 192])],
        evaluation: Some("random:9".into()),
        output: Some(dir.path().join("m.onnx")),
        ..Overrides::default()
    })
    .unwrap();
    p.verify.latency_runs = 0;
    p.verify.differential = true;
    let o = run_pipeline(&p, &RunOptions { stop_after: Some("constant_folding".into()), ..RunOptions::default() }).expect("run");
    assert_eq!(o.status, RunStatus::Passed);
    assert_eq!(o.report.steps.len(), 2);
    assert!(dir.path().join("m.onnx").exists());
}

#[test]
fn prepare_points_at_the_input_the_model_lacks() {
    let text = format!(
        "model: {}\ninputs:\n  x: [1, 3, 48, 192]\n  y: [1, 2]\nevaluation:\n  npz: no_such.npz\nsteps: [dead_code]\n",
        model_path()
    );
    let p = Pipeline::parse(&text, "multi.yaml", Path::new("/nonexistent")).unwrap();
    let e = p.prepare().unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "the data is checked only once the inputs are right: {e}");
    assert!(e.to_string().contains("multi.yaml:4:3: `y` is not an input"), "{e}");
}
