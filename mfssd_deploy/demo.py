"""`make demo`: the main job on the bundled demo model, end to end, in about two minutes on 2 CPU cores.

1. the paper's Table I analog for the four variants, and one timed MFSSD-BN forward pass;
2. a fresh synthetic validation set, and the demo model's VOC07 mAP and COCO AP / APs on it;
3. export to export/: raw FP32, end2end FP32 and end2end INT8 ONNX, with the parity and INT8
   accuracy lines;
4. the Detector on the bundled sample images with the INT8 end2end model: detections printed,
   annotated images written to demo_out/detect/;
5. a short `mfssd-bench --fps` over the exported artifacts and the checkpoint (batch 1 and 8).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.options import add_model_option, checkpoint_path


def model_table(num_classes: int = 21) -> list[dict[str, object]]:
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.config import make_config
    from mfssd_deploy.models import build_model

    rows = []
    for variant, label in (("ssd300", "SSD300"), ("fssd", "FSSD"), ("mfssd", "MFSSD"), ("mfssd_bn", "MFSSD-BN")):
        c = measure(build_model(variant, num_classes))
        priors = make_config(variant, num_classes).priors.num_priors
        rows.append({"model": label, "params": c.params, "size_mb": c.size_mb, "gmacs": c.gmacs, "priors": priors})
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    print("| model | parameters (21 classes) | size MB (FP32) | G multiply-adds | priors |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['size_mb']:.1f} | {r['gmacs']:.2f} | {r['priors']:,} |")


def time_forward(repeats: int = 3) -> list[float]:
    import torch

    from mfssd_deploy.models import build_model
    from mfssd_deploy.timing import time_calls

    model = build_model("mfssd_bn").eval()
    x = torch.randn(1, 3, 300, 300)
    with torch.inference_mode():  # one warm-up: the first call allocates and picks kernels
        return [s * 1000 for s in time_calls(lambda: model(x), warmup=1, iters=repeats)]


def demo_data(workdir: Path, val: int, calib: int) -> Path:
    """A fresh synthetic set (seed 1: images the demo model never saw in training or model selection)."""
    from mfssd_deploy.data.synth import generate

    root = workdir / "data"
    if not (root / "annotations" / "val.json").is_file():
        generate(root, calib, val, seed=1, show_progress=False)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="mfssd-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed MFSSD-BN forward passes (default 3)")
    add_model_option(ap)
    ap.add_argument("--workdir", default="demo_out", help="generated data and outputs (default demo_out/)")
    ap.add_argument("--export-dir", default="export", help="where the ONNX files go (default export/)")
    ap.add_argument("--val-images", type=int, default=200, help="synthetic validation images (default 200)")
    ap.add_argument("--table-only", action="store_true", help="stop after the model table and the timing")
    args = ap.parse_args(argv)
    from mfssd_deploy.errors import require

    # a lean install: say what to install before any work, not at step 3 (export) or 2 (COCO AP)
    needs = ("torch",) if args.table_only else ("torch", "onnx", "onnxslim", "pycocotools.cocoeval")
    for module in needs:
        require(module, "torch" if args.table_only else "export,train", "mfssd-demo")
    import torch

    print("== 1. MFSSD model family at 300x300 (the paper's Table I analog)")
    print_table(model_table())
    times = time_forward(args.repeats)
    print(
        f"\nMFSSD-BN forward, batch 1, PyTorch eager FP32 on CPU ({torch.get_num_threads()} threads): "
        f"median {statistics.median(times):.0f} ms over {len(times)} runs after 1 warm-up"
    )
    if args.table_only:
        return 0

    from mfssd_deploy.checkpoint import load_model
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.evaluation.result import headline
    from mfssd_deploy.evaluation.runner import evaluate, torch_predictor
    from mfssd_deploy.exporters.pipeline import ExportRequest, format_report, run_export
    from mfssd_deploy.models import config_of

    model_path = checkpoint_path(args)
    workdir = Path(args.workdir)
    data = demo_data(workdir, args.val_images, calib=100)
    source = open_dataset(data, "val")
    model = load_model(model_path)
    print(f"\n== 2. Demo model {model_path.name} on {len(source.records)} fresh synthetic validation images")
    res = evaluate(torch_predictor(model), source, class_names=config_of(model).class_names, progress=False)
    print(f"PyTorch: {headline(res)}")

    print(f"\n== 3. Export to {args.export_dir}/ (parity against PyTorch, INT8 accuracy on the same images)")
    report = run_export(
        ExportRequest(
            model=model_path,
            out_dir=Path(args.export_dir),
            int8=True,
            int8_cpu=True,
            calib=data / "train",
            calib_num=100,
            val=data,
            parity_images=sample_images(),
        )
    )
    print(format_report(report))

    from mfssd_deploy.runtime.detector import Detector

    int8 = next(a["path"] for a in report["artifacts"] if a["precision"] == "int8-qdq" and a["layout"] == "end2end")
    det = Detector(int8, conf=0.3)
    out_dir = workdir / "detect"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n== 4. Detector({Path(int8).name}, conf=0.3) on the bundled samples -> {out_dir}/")
    samples = sample_images()
    import cv2

    from mfssd_deploy.runtime.inputs import read_image

    for path, r in zip(samples, det([str(p) for p in samples]), strict=True):
        found = ", ".join(f"{n} {s:.2f}" for n, s in zip(r.names, r.scores, strict=True)) or "nothing"
        print(f"{path.name}: {len(r)} objects: {found}")
        cv2.imwrite(str(out_dir / path.name), r.draw(read_image(path)))
    t = det.last_timing
    print(
        f"stage times for {len(samples)} images (batch {det.batch_size}): pre {t['pre']:.1f} ms, "
        f"infer {t['infer']:.1f} ms, post {t['post']:.1f} ms"
    )

    from mfssd_deploy.bench.run import BenchRequest, format_text, run_bench

    print(
        "\n== 5. mfssd-bench --fps on these artifacts (short: 1 s per configuration and batch; the full-size model, "
        "the peers and the targets: mfssd-bench --fps --val)"
    )
    paths = [str(model_path)] + [a["path"] for a in report["artifacts"] if a["layout"] == "end2end"]
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)  # mfssd-bench -q
    result = run_bench(BenchRequest(fps=True, models=tuple(paths), batch_sizes=(1, 8), seconds=1, peers=False))
    print(format_text(result))
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-demo", main))


if __name__ == "__main__":
    entry()
