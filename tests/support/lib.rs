//! Shared helpers for the integration tests: locating the shared models and test data (through
//! [`whittle_testenv`], which decides when a missing one skips and when it fails), and running
//! passes through the real pass manager.

use std::path::PathBuf;

use whittle_graph::Model;
use whittle_runner::manager::{ManagerOptions, ManagerOutcome, StepError, StepRecord, run_steps};
use whittle_runner::pipeline::Step;

pub use whittle_testenv::{peer_python, repo_root, shared_dir};

/// The three PP-OCR models, or `None` with a printed reason when ../shared is missing (a failure
/// under CI).
pub fn shared_models() -> Option<Vec<PathBuf>> {
    let dir = shared_dir()?;
    Some(SHARED_MODELS.iter().map(|m| dir.join("models").join(m)).collect())
}

pub const SHARED_MODELS: [&str; 3] = ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"];

/// A file in `testdata/`.
pub fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata").join(name)
}

pub mod fixtures;
pub mod zoo;

/// Runs registered passes (default parameters) with the real pass manager: shape inference with
/// these input shapes before each step, validation and type checks after each.
pub fn run_passes(model: &mut Model, passes: &[&str], input_shapes: &[(String, Vec<i64>)]) -> Result<ManagerOutcome, StepError> {
    let steps: Vec<Step> =
        passes.iter().map(|p| Step::with_defaults(whittle_passes::lookup(p).unwrap_or_else(|| panic!("no pass named {p}")))).collect();
    let options = ManagerOptions { input_shapes: input_shapes.to_vec(), ..Default::default() };
    run_steps(model, &steps, &options, None, &mut |_, _| None)
}

/// Runs one registered pass with the real manager; panics on a step error.
pub fn run_pass(model: &mut Model, pass: &str, input_shapes: &[(String, Vec<i64>)]) -> StepRecord {
    let outcome = run_passes(model, &[pass], input_shapes).unwrap_or_else(|e| panic!("{e}"));
    outcome.steps.into_iter().next().expect("one step ran")
}

pub mod numeric {
    //! Built weights and the numeric check of a rewritten model against its original with tract.

    use whittle_graph::builder::GraphBuilder;
    use whittle_graph::{Model, Tensor, ValueId};
    use whittle_runner::data::{Distribution, InputSet};
    use whittle_runner::verify::{load_model, run_all};

    /// Deterministic pseudo-random weights in [-1, 1).
    pub fn weights(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// An f32 initializer of these dims with [`weights`].
    pub fn constant(b: &mut GraphBuilder, name: &str, dims: &[i64], seed: u64) -> ValueId {
        let n = dims.iter().product::<i64>() as usize;
        b.constant(name, Tensor::from_f32(name, dims, &weights(n, seed)))
    }

    /// Every output of both models on three random normal samples, run by tract.
    pub fn outputs(a: &Model, b: &Model, input: (&str, &[i64])) -> Vec<(ndarray::ArrayD<f32>, ndarray::ArrayD<f32>)> {
        let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect::<Vec<_>>())];
        let ra = load_model(&whittle_graph::encode_for_runtime(a), &shapes).unwrap();
        let rb = load_model(&whittle_graph::encode_for_runtime(b), &shapes).unwrap();
        let data = InputSet::random(&shapes, 3, Distribution::Normal { mean: 0.0, std: 1.0 }, 7).unwrap();
        let (oa, ob) = (run_all(&ra, &data).unwrap(), run_all(&rb, &data).unwrap());
        oa.into_iter().zip(ob).flat_map(|(sa, sb)| sa.into_iter().zip(sb)).collect()
    }

    /// Signal-to-noise ratio (dB) of `b`'s outputs against `a`'s over every output of every
    /// sample of `data`, run by tract.
    pub fn sqnr_db(a: &Model, b: &Model, input: (&str, &[i64]), data: &InputSet) -> f64 {
        let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect::<Vec<_>>())];
        let run = |m: &Model| run_all(&load_model(&whittle_graph::encode_for_runtime(m), &shapes).unwrap(), data).unwrap();
        let (oa, ob) = (run(a), run(b));
        let (mut signal, mut noise) = (0f64, 0f64);
        for (sa, sb) in oa.iter().zip(&ob) {
            for (x, y) in sa.iter().zip(sb) {
                signal += x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
                noise += x.iter().zip(y.iter()).map(|(p, q)| ((p - q) as f64).powi(2)).sum::<f64>();
            }
        }
        10.0 * (signal / noise.max(1e-300)).log10()
    }

    /// A VGG-style stack: `x[1, widths[0], side, side]` -> 3×3 Convs (pads 1) through the
    /// `widths`, with Relus between them. `structured`: each input channel's filters span 3
    /// kernels (+ noise 40 dB below), the low-rank structure trained filters have to a degree;
    /// else plain random weights. `head: Some(n)`: then GlobalAveragePool, Flatten and a Gemm to
    /// `n` outputs whose weight has rank 4.
    pub fn vgg_stack(widths: &[usize], side: i64, structured: bool, head: Option<usize>) -> Model {
        use whittle_graph::DataType;
        use whittle_graph::builder::attr_ints;
        let mut b = GraphBuilder::new(13);
        let mut h: ValueId = b.input("x", DataType::Float, &[1, widths[0] as i64, side, side]);
        for (l, pair) in widths.windows(2).enumerate() {
            let (c_in, c_out) = (pair[0], pair[1]);
            let w: Vec<f32> = if structured {
                let (mix, basis, noise) = (
                    weights(c_out * c_in * 3, 10 + l as u64),
                    weights(c_in * 3 * 9, 20 + l as u64),
                    weights(c_out * c_in * 9, 30 + l as u64),
                );
                (0..c_out * c_in * 9)
                    .map(|e| {
                        let (o, i, k) = (e / (c_in * 9), (e / 9) % c_in, e % 9);
                        let low: f32 = (0..3).map(|r| mix[(o * c_in + i) * 3 + r] * basis[(i * 3 + r) * 9 + k]).sum();
                        low + 0.005 * noise[e]
                    })
                    .collect()
            } else {
                weights(c_out * c_in * 9, 40 + l as u64)
            };
            let scale = (2.0 / (c_in * 9) as f32).sqrt();
            let w: Vec<f32> = w.iter().map(|v| v * scale).collect();
            let wv = b.constant(&format!("w{l}"), Tensor::from_f32("", &[c_out as i64, c_in as i64, 3, 3], &w));
            let bias = constant(&mut b, &format!("b{l}"), &[c_out as i64], 50 + l as u64);
            let c = b.node("Conv", &[h, wv, bias], &[&format!("conv{l}")], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
            h = if l + 2 < widths.len() || head.is_some() { b.node("Relu", &[c], &[&format!("relu{l}")], vec![])[0] } else { c };
        }
        if let Some(n) = head {
            let k = *widths.last().expect("at least one width");
            let pooled = b.node("GlobalAveragePool", &[h], &["pooled"], vec![])[0];
            let flat = b.node("Flatten", &[pooled], &["flat"], vec![])[0];
            let (left, right) = (weights(k * 4, 60), weights(4 * n, 61));
            let w: Vec<f32> = (0..k * n).map(|e| (0..4).map(|r| left[(e / n) * 4 + r] * right[r * n + e % n]).sum()).collect();
            let wv = b.constant("head_w", Tensor::from_f32("", &[k as i64, n as i64], &w));
            let bias = constant(&mut b, "head_b", &[n as i64], 62);
            h = b.node("Gemm", &[flat, wv, bias], &["logits"], vec![])[0];
        }
        // Declared like an exporter would (the builder leaves unknown shapes undeclared).
        let dims = match head {
            Some(n) => vec![1, n as i64],
            None => vec![1, *widths.last().expect("at least one width") as i64, side, side],
        };
        b.graph_mut().value_mut(h).shape = Some(whittle_graph::Shape::from_dims(&dims));
        b.output(h);
        b.finish()
    }

    /// Both models give the same outputs (to `tol` of the output magnitude) on random inputs.
    pub fn assert_same_outputs(a: &Model, b: &Model, input: (&str, &[i64]), tol: f32) {
        for (x, y) in outputs(a, b, input) {
            assert_eq!(x.shape(), y.shape());
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let err = x.iter().zip(y.iter()).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(err <= tol * scale, "max abs error {err} above {tol} x {scale}");
        }
    }
}

/// `../shared/peer/compare.py original candidate --inputs data --runs 0 extra...`: asserts that it
/// succeeds, that onnx.checker passes the candidate and onnxruntime loads it; returns its stdout.
pub fn peer_compare(
    python: &std::path::Path,
    shared: &std::path::Path,
    original: &std::path::Path,
    candidate: &std::path::Path,
    data: &std::path::Path,
    extra: &[&str],
) -> String {
    let c = std::process::Command::new(python)
        .arg(shared.join("peer/compare.py"))
        .arg(original)
        .arg(candidate)
        .arg("--inputs")
        .arg(data)
        .args(["--runs", "0"])
        .args(extra)
        .output()
        .expect("run compare.py");
    let stdout = String::from_utf8_lossy(&c.stdout).into_owned();
    let who = candidate.display();
    assert!(c.status.success(), "{who}: compare.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&c.stderr));
    assert!(stdout.contains("\"checker\": \"pass\"") && stdout.contains("\"ort_load\": \"ok\""), "{who}: {stdout}");
    stdout
}

/// `onnx.checker.check_model(model, full_check=True)` with the peer Python; `Err` with its message.
pub fn full_check(python: &std::path::Path, model: &std::path::Path) -> Result<(), String> {
    let script = "import sys, onnx\nonnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)";
    let o = std::process::Command::new(python).args(["-c", script]).arg(model).output().map_err(|e| e.to_string())?;
    if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
}

/// Writes an `.npz` of f32 and i64 arrays (axis 0 = sample), for data files made in tests.
pub fn write_npz(path: &std::path::Path, f32s: &[(&str, ndarray::ArrayD<f32>)], i64s: &[(&str, ndarray::ArrayD<i64>)]) {
    write_npz_with(ndarray_npy::NpzWriter::new(std::fs::File::create(path).expect("create npz")), f32s, i64s);
}

/// [`write_npz`], deflated (as `np.savez_compressed` writes).
pub fn write_npz_compressed(path: &std::path::Path, f32s: &[(&str, ndarray::ArrayD<f32>)]) {
    write_npz_with(ndarray_npy::NpzWriter::new_compressed(std::fs::File::create(path).expect("create npz")), f32s, &[]);
}

fn write_npz_with(
    mut w: ndarray_npy::NpzWriter<std::fs::File>,
    f32s: &[(&str, ndarray::ArrayD<f32>)],
    i64s: &[(&str, ndarray::ArrayD<i64>)],
) {
    for (name, a) in f32s {
        w.add_array(*name, a).expect("write array");
    }
    for (name, a) in i64s {
        w.add_array(*name, a).expect("write array");
    }
    w.finish().expect("finish npz");
}

pub mod cli {
    //! Running the `whittle` binary from a test of the cli crate (which alone knows its path,
    //! `env!("CARGO_BIN_EXE_whittle")`).

    use std::process::{Command, Output};

    /// Runs `bin` with `args`; fails the test if it panicked.
    pub fn run(bin: &str, args: &[&str]) -> Output {
        let o = Command::new(bin).args(args).output().expect("run whittle");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "whittle panicked: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// `whittle run PIPELINE --model MODEL --input INPUT --eval random:1 EXTRA... --set
    /// verify.latency_runs=0 --out OUT`: a shipped pipeline on another model, judged on seeded
    /// random samples, without latency runs.
    pub fn run_on_model(
        bin: &str,
        pipeline: &std::path::Path,
        model: &std::path::Path,
        input: &str,
        extra: &[&str],
        out: &std::path::Path,
    ) -> Output {
        let (pipeline, model, out) = (pipeline.display().to_string(), model.display().to_string(), out.display().to_string());
        let mut args = vec!["run", &pipeline, "--model", &model, "--input", input, "--eval", "random:1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--set", "verify.latency_runs=0", "--out", &out]);
        run(bin, &args)
    }

    /// Stdout and stderr, for assertion messages.
    pub fn text(o: &Output) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }
}
