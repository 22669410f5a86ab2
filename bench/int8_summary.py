"""Summary table of bench/int8_vs_ort.sh (Markdown on stdout)."""
import json
import os
import sys

out = sys.argv[1]
models = {"cls": "ch_ppocr_mobile_v2.0_cls_infer", "det": "ch_PP-OCRv4_det_infer", "rec": "ch_PP-OCRv4_rec_infer"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def time_rss(path):
    # GNU time's last line ("Command exited with non-zero status N" may come first: the timing
    # run without the fallback fails a gate the fallback is there to meet).
    try:
        secs, kb = open(path).read().strip().splitlines()[-1].split()
        return float(secs), int(kb) / 1024
    except (OSError, ValueError):
        return float("nan"), float("nan")


def task(c):
    if "ctc_cand_acc" in c:
        return f"strings {c['ctc_ref_acc']:.3f} -> {c['ctc_cand_acc']:.3f}"
    first = next(iter(c.get("per_output", {}).values()), {})
    for k, v in first.items():
        if k.startswith("mask_iou"):
            return f"text-mask IoU {v:.4f}"
    if "cand_acc" in first:
        return f"accuracy {first['ref_acc']:.3f} -> {first['cand_acc']:.3f}"
    return ""


print("| model | quantizer | checker | SQNR dB | task metric | size ratio | ORT latency vs FP32 (1 thread) | quantization wall s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|")
for m, name in models.items():
    w_report = load(os.path.join(out, f"{m}_whittle_nofb.json")) or {}
    step = next((s for s in w_report.get("steps", []) if s.get("pass") == "quantize_static"), {})
    w_time = step.get("wall_ms", float("nan")) / 1000
    _, w_rss = time_rss(os.path.join(out, f"{m}.whittle_nofb.time"))
    base = load(os.path.join(out, f"ort_{m}", f"{name}_baseline.json")) or {"variants": {}}
    _, o_rss = time_rss(os.path.join(out, f"{m}.ort.time"))
    rows = [("whittle", os.path.join(out, f"{m}_whittle.onnx"), w_time, w_rss)]
    for v in ("minmax", "percentile"):
        q = base["variants"].get(f"qdq_{v}", {}).get("quant_wall_s", float("nan"))
        rows.append((f"onnxruntime {v}", os.path.join(out, f"ort_{m}", f"{name}_qdq_{v}.onnx"), q, o_rss))
    for label, path, secs, rss in rows:
        c = load(path + ".compare.json")
        if c is None:
            print(f"| {m} | {label} | failed or missing | | | | | {secs:.1f} | {rss:.0f} |")
            continue
        lat = c.get("latency_ms_1t", {})
        ratio = f"{lat['ratio']:.2f} ({lat['cand']:.1f} / {lat['ref']:.1f} ms)" if lat else "not measured"
        print(f"| {m} | {label} | {c.get('checker', '?')} | {c.get('sqnr_db', float('nan')):.1f} | {task(c)} | "
              f"{c.get('size_ratio', float('nan')):.3f} | {ratio} | {secs:.1f} | {rss:.0f} |")
for n in (32, 128):
    s, r = time_rss(os.path.join(out, f"rec.samples{n}.time"))
    print(f"\nrec calibrated on {n} samples: whole run {s:.1f} s, peak RSS {r:.0f} MB", end="")
print()
