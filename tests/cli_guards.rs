//! No input is ever destroyed: every path `whittle run` writes (model, its external data file,
//! report, dump folder) differs from every path it reads (model, pipeline, data files, image
//! folders), through symbolic and hard links and `..`; found before any work, exit 2, inputs
//! byte-identical afterwards, nothing written.

use std::path::{Path, PathBuf};
use std::process::Output;

use whittle_tests::cli::text;

fn whittle(args: &[&str]) -> Output {
    whittle_tests::cli::run(env!("CARGO_BIN_EXE_whittle"), args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A folder with a copy of the default model, its eval data and a pipeline reading both.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx"), &model).unwrap();
    let data = dir.path().join("e.npz");
    std::fs::copy(whittle_tests::testdata("cls_eval_small.npz"), &data).unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, "model: m.onnx\ninputs: {x: [1, 3, 48, 192]}\nevaluation: {npz: e.npz, samples: 2}\nsteps: [dead_code]\nverify: {latency_runs: 0}\n").unwrap();
    (dir, model, data, pipeline)
}

fn digest(paths: &[&Path]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn no_written_path_may_be_a_read_one() {
    let (dir, model, data, pipeline) = setup();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(&model, d.join("link.onnx")).unwrap();
    std::fs::hard_link(&model, d.join("hard.onnx")).unwrap();
    std::fs::create_dir(d.join("a_folder")).unwrap();
    let before = digest(&[&model, &data, &pipeline]);
    let out = s(&d.join("o.onnx"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--out".into(), out.clone(), "--report".into(), s(&model)], "input model"),
        (vec!["--out".into(), s(&data)], "evaluation data"),
        (vec!["--out".into(), s(&pipeline)], "pipeline"),
        (vec!["--out".into(), out.clone(), "--report".into(), s(&pipeline)], "pipeline"),
        (vec!["--out".into(), s(&d.join("link.onnx"))], "input model"),
        (vec!["--out".into(), s(&d.join("hard.onnx"))], "input model"),
        (vec!["--out".into(), s(&d.join("sub/../m.onnx"))], "input model"),
        (vec!["--out".into(), out.clone(), "--report".into(), s(&d.join("a_folder"))], "is a folder"),
        (vec!["--out".into(), out.clone(), "--report".into(), out.clone()], "report path is the output"),
        (vec!["--out".into(), out.clone(), "--dump-after-each".into(), s(&model)], "dump folder"),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["run".to_string(), s(&pipeline)];
        args.extend(extra.iter().cloned());
        let o = whittle(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(expect), "{extra:?}: {}", text(&o));
        assert_eq!(digest(&[&model, &data, &pipeline]), before, "{extra:?} changed an input");
        assert!(!d.join("o.onnx").exists(), "{extra:?} wrote the model");
    }
    // The output model's external data file (`OUT.data`) is a written path too: here a link
    // to the evaluation data.
    std::os::unix::fs::symlink(&data, d.join("w.onnx.data")).unwrap();
    let o = whittle(&["run", &s(&pipeline), "--out", &s(&d.join("w.onnx"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("external data file"), "{}", text(&o));
    assert_eq!(digest(&[&model, &data, &pipeline]), before);
}

#[test]
fn nothing_is_written_inside_an_image_folder_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("imgs");
    std::fs::create_dir(&images).unwrap();
    // One 2x2 PNG.
    let png = image_png();
    std::fs::write(images.join("a.png"), png).unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx"), &model).unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "model: m.onnx\ninputs: {x: [1, 3, 48, 192]}\nevaluation: {images: imgs}\nsteps: [dead_code]\nverify: {latency_runs: 0}\n",
    )
    .unwrap();
    let o = whittle(&["run", &s(&pipeline), "--out", &s(&images.join("out.onnx"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("evaluation data"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 1);
}

/// A valid 2x2 RGB PNG (zlib stored block).
fn image_png() -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend(crc(&body).to_be_bytes());
    }
    let raw: Vec<u8> = [0u8, 255, 0, 0, 0, 255, 0, 0u8, 0, 0, 255, 255, 255, 255].to_vec();
    let mut z = vec![0x78, 0x01, 1];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend(2u32.to_be_bytes());
    ihdr.extend(2u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The report gets the same ordinary permissions as the model.
#[test]
fn reports_and_models_get_the_same_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _, _, pipeline) = setup();
    let out = dir.path().join("o.onnx");
    let o = whittle(&["run", &s(&pipeline), "--out", &s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o644);
    assert_eq!(mode(&out.with_extension("report.json")), 0o644);
}
