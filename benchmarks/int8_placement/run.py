"""INT8 Q/DQ placement of the s8 (TensorRT) file, measured on the demo models: accuracy vs FP32 and CPU speed.

Placements (the symmetric int8 recipe of mfssd_deploy.exporters.quantize, everything else equal):
  outputs   every Conv / MaxPool / Resize output quantized (the recipe before issue 19 item 3)
  pooled    Conv inputs only (Conv outputs excluded), MaxPool and Resize keep their own Q/DQ
  inputs    Conv inputs only, nothing else (TensorRT's placement guidance; the shipped recipe)
Each is calibrated on the same 100 images, exported end2end, scored on the same held-out synthetic
set (mAP@0.5, COCO AP/APs) and timed in ONNX Runtime and OpenVINO (f32 hint), batch 1 and 8, in
interleaved rounds. Run from the repository root on an idle machine: benchmarks/int8_placement/reproduce.sh
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

PLACEMENTS = {
    "outputs": (("Conv", "MaxPool", "Resize"), ()),
    "pooled": (("Conv", "MaxPool", "Resize"), ("Conv",)),
    "inputs": (("Conv",), ("Conv",)),
}


def export(model: Path, out: Path, calib: Path, placement: str) -> Path:
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.exporters import quantize
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export

    quantize.QUANT_OPS_S8, quantize.EXCLUDE_OUTPUTS_S8 = PLACEMENTS[placement]
    name = f"{model.stem}.{placement}"
    path = out / f"{name}.int8.end2end.onnx"
    if not path.is_file():
        run_export(ExportRequest(model=model, out_dir=out, name=name, layouts=("end2end",), int8=True, calib=calib,
                                 calib_num=100, parity_images=sample_images(), time_runs=0))  # fmt: skip
    return path


def accuracy(path: Path, val: Path, backend: str) -> dict[str, float]:
    from mfssd_deploy import Detector
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate

    det = Detector(path, backend=backend)
    res = evaluate(detector_predictor(det), open_dataset(val, "val"), class_names=det.class_names, progress=False)
    return {"map50": round(res["voc07_map"], 4), "AP": round(res["coco"]["AP"], 4), "APs": round(res["coco"]["APs"], 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/mfssd-int8-placement", help="exports and data (default %(default)s)")
    ap.add_argument("--val-images", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/int8_placement/results.json")
    args = ap.parse_args()

    from mfssd_deploy.data.synth import generate
    from mfssd_deploy.demo_assets import DEMO_MODEL, PRUNED_DEMO_MODEL, sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
    from mfssd_deploy.runtime.backends import make_backend
    from mfssd_deploy.timing import time_calls

    work = Path(args.work)
    data = work / f"synth-seed1-100-{args.val_images}"
    if not (data / "annotations" / "val.json").is_file():
        generate(data, 100, args.val_images, seed=1, show_progress=False)
    models = {"demo": DEMO_MODEL, "demo-pruned": PRUNED_DEMO_MODEL}
    rows: list[dict[str, object]] = []
    files: dict[tuple[str, str], Path] = {}
    for key, pt in models.items():
        fp32 = work / f"{pt.stem}.end2end.onnx"
        if not fp32.is_file():
            run_export(ExportRequest(model=pt, out_dir=work, layouts=("end2end",), parity_images=sample_images(),
                                     time_runs=0))  # fmt: skip
        files[(key, "fp32")] = fp32
        for placement in PLACEMENTS:
            files[(key, placement)] = export(pt, work, data / "train", placement)
    for (key, what), path in files.items():
        for backend in ("onnxruntime", "openvino"):
            acc = accuracy(path, data, backend)
            rows.append({"model": key, "file": what, "backend": backend, **acc})
            print(json.dumps(rows[-1]), flush=True)
    rng = np.random.default_rng(0)
    x = {b: rng.standard_normal((b, 3, 300, 300)).astype(np.float32) for b in (1, 8)}
    runners = {(k, w, be, b): make_backend(p, be, "cpu", b, {})
               for (k, w), p in files.items() for be in ("onnxruntime", "openvino") for b in (1, 8)}  # fmt: skip
    times: dict[tuple[str, str, str, int], list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for k, backend in runners.items():
            call = functools.partial(backend.infer, x[k[3]])
            t = time_calls(call, warmup=1 if r else 3, iters=None, seconds=1.0)
            times[k].append(statistics.median(t) * 1000)
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    speed = [{"model": k[0], "file": k[1], "backend": k[2], "batch": k[3], "ms": round(statistics.median(v), 2)}
             for k, v in times.items()]  # fmt: skip
    result = {"accuracy": rows, "speed": speed, "val_images": args.val_images, "rounds": args.rounds}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:  # type: ignore[type-arg]
    acc = {(r["model"], r["file"], r["backend"]): r for r in result["accuracy"]}
    ms = {(r["model"], r["file"], r["backend"], r["batch"]): r["ms"] for r in result["speed"]}
    lines = [
        "# INT8 Q/DQ placement of the symmetric (TensorRT) file, measured on the demo models",
        "",
        f"Accuracy on {result['val_images']} held-out synthetic images (seed 1); speed: ms per batch, median of "
        f"{result['rounds']} interleaved rounds of 1 s each, 2 CPU threads; OpenVINO with the f32 hint. "
        "Placements: `outputs` = every Conv/MaxPool/Resize output quantized (before); `pooled` = Conv inputs, "
        "MaxPool/Resize keep their pairs; `inputs` = Conv inputs only (TensorRT's guidance, shipped).",
        "",
        "| model | file | runtime | mAP@0.5 | drop vs FP32 (points) | AP | APs | ms b1 | ms b8 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, file, backend), r in acc.items():
        ref = acc[(model, "fp32", backend)]["map50"]
        lines.append(f"| {model} | {file} | {backend} | {r['map50']:.4f} | {(ref - r['map50']) * 100:+.2f} | "
                     f"{r['AP']:.4f} | {r['APs']:.4f} | {ms.get((model, file, backend, 1), float('nan')):.1f} | "
                     f"{ms.get((model, file, backend, 8), float('nan')):.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
