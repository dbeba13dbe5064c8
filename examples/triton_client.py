"""Send images to Triton Inference Server and draw the detections (HTTP or gRPC).

Serve a repository written by mfssd-export, then point this client at one of its models:

    mfssd-export --int8 --calib DIR --end2end --triton triton_repo       # or --triton-device cpu
    docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -v $PWD/triton_repo:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models
    python examples/triton_client.py IMAGE... --model mfssd_bn_w025_synth_int8_end2end [--grpc] [--url HOST:PORT]

The model's 'mfssd' parameter (the ONNX metadata) gives the input size, normalisation, classes and
layout, so the client pre-processes and post-processes exactly like a local Detector; the server
batches requests from all clients (dynamic batching) and runs them on its GPUs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2


def make_detector(url: str, model: str, grpc: bool, conf: float | None, client: object = None):  # type: ignore[no-untyped-def]
    """A Detector whose inference runs on the Triton server (client: injected in tests)."""
    from mfssd_deploy import Detector
    from mfssd_deploy.backends.triton_backend import TritonBackend

    backend = TritonBackend(url, model, "grpc" if grpc else "http", client=client)
    return Detector.from_backend(backend, f"triton:{model}", conf=conf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files")
    ap.add_argument("--model", required=True, help="model name in the Triton repository")
    ap.add_argument("--url", help="server address (default localhost:8000 for HTTP, localhost:8001 for gRPC)")
    ap.add_argument("--grpc", action="store_true", help="use gRPC instead of HTTP")
    ap.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    ap.add_argument("--out", default="runs/triton", help="folder for the annotated images")
    args = ap.parse_args(argv)

    from mfssd_deploy.inputs import read_image

    url = args.url or ("localhost:8001" if args.grpc else "localhost:8000")
    det = make_detector(url, args.model, args.grpc, args.conf)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, r in zip(args.images, det(args.images), strict=True):
        print(f"{Path(path).name}: {len(r)} objects: "
              + (", ".join(f"{n} {s:.2f}" for n, s in zip(r.names, r.scores, strict=True)) or "nothing"))  # fmt: skip
        cv2.imwrite(str(out / Path(path).name), r.draw(read_image(path)))  # the Detector's reader
    t = det.last_timing
    print(f"pre {t['pre']:.1f} ms, request + server {t['infer']:.1f} ms, post {t['post']:.1f} ms -> {out}/")
    return 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input (server down, unknown model): one line, exit code 2

    raise SystemExit(run_cli("triton_client.py", main))
