"""Send images to Triton Inference Server and draw the detections (HTTP or gRPC).

Serve a model on this machine with mfssd-serve (the tritonserver that nvidia-pytriton ships), or a
repository written by mfssd-export in NVIDIA's container (docs/serving.md), then point this client at it:

    pip install "mfssd-deploy[serve]"
    mfssd-serve mfssd_deploy/assets/demo/mfssd_bn_w025_synth.end2end.onnx --name demo
    python examples/triton_client.py IMAGE... --model demo [--grpc] [--url HOST:PORT]    # tensors: local pre/post
    python examples/triton_client.py IMAGE... --model demo_image --image-model [--grpc]  # files: no local work

The tensor model's 'mfssd' parameter (the ONNX metadata) gives the input size, normalisation, classes and
layout, so the client pre-processes and post-processes exactly like a local Detector. The image model
(--image-model) takes the files' bytes and returns boxes in each image's pixels with class names: the
client only reads files and draws. Either way the server batches requests from all clients (dynamic
batching). Every request has a deadline (--timeout): a server that is down or dies gives one line, not a hang.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2


def make_detector(url: str, model: str, grpc: bool, conf: float | None, client: object = None,
                  timeout_s: float = 60.0):  # type: ignore[no-untyped-def]  # fmt: skip
    """A Detector whose inference runs on the Triton server (client: injected in tests)."""
    from mfssd_deploy import Detector
    from mfssd_deploy.runtime.backends.triton_backend import TritonBackend

    backend = TritonBackend(url, model, "grpc" if grpc else "http", client=client, timeout_s=timeout_s)
    return Detector.from_backend(backend, f"triton:{model}", conf=conf)


def detect_on_server(url: str, model: str, grpc: bool, images: list[str], conf: float, timeout_s: float):  # type: ignore[no-untyped-def]
    """The image model: the files' bytes go to the server, Results (pixels, class names) come back."""
    from mfssd_deploy.errors import MfssdError
    from mfssd_deploy.serving.image_client import ImageModelClient

    client = ImageModelClient(url, model, "grpc" if grpc else "http", timeout_s=timeout_s)
    try:
        results = client.detect(images)
    except MfssdError:
        raise
    except Exception as exc:  # tritonclient's InferenceServerException: the server's message
        raise MfssdError(f"Triton model {model!r} at {url}: {exc}") from exc
    finally:
        client.close()
    for r in results:  # the server returns what passes the model's own threshold; apply ours
        keep = r.scores >= conf
        r.boxes, r.scores, r.labels = r.boxes[keep], r.scores[keep], r.labels[keep]
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files")
    ap.add_argument("--model", required=True, help="model name on the server (mfssd-serve: NAME or NAME_image)")
    ap.add_argument(
        "--image-model",
        action="store_true",
        help="MODEL takes encoded images (mfssd-serve's NAME_image): no local pre/post-processing",
    )
    ap.add_argument("--url", help="server address (default localhost:8000 for HTTP, localhost:8001 for gRPC)")
    ap.add_argument("--grpc", action="store_true", help="use gRPC instead of HTTP")
    ap.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds each request may take (default 60)")
    ap.add_argument("--out", default="runs/triton", help="folder for the annotated images")
    args = ap.parse_args(argv)

    from mfssd_deploy.runtime.inputs import read_image

    url = args.url or ("localhost:8001" if args.grpc else "localhost:8000")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.image_model:
        results = detect_on_server(url, args.model, args.grpc, args.images, args.conf, args.timeout)
        timing = None
    else:
        det = make_detector(url, args.model, args.grpc, args.conf, timeout_s=args.timeout)
        results, timing = det(args.images), det.last_timing
    for path, r in zip(args.images, results, strict=True):
        print(f"{Path(path).name}: {len(r)} objects: "
              + (", ".join(f"{n} {s:.2f}" for n, s in zip(r.names, r.scores, strict=True)) or "nothing"))  # fmt: skip
        cv2.imwrite(str(out / Path(path).name), r.draw(read_image(path)))  # the Detector's reader
    if timing is not None:
        print(f"pre {timing['pre']:.1f} ms, request + server {timing['infer']:.1f} ms, post {timing['post']:.1f} ms "
              f"-> {out}/")  # fmt: skip
    else:
        print(f"decoding, inference and post-processing on the server -> {out}/")
    return 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input (server down, unknown model): one line, exit code 2

    raise SystemExit(run_cli("triton_client.py", main))
