"""mfssd-serve: serve an artifact on Triton Inference Server (the tritonserver that nvidia-pytriton ships).

Two models per artifact (mfssd_deploy/serving/contract.py): NAME takes pre-processed tensors and returns
the end2end outputs (TritonBackend / Detector.from_backend read it like a local model), NAME_image takes
encoded images and returns detections in pixels with class names. HTTP and gRPC on loopback by default;
dynamic batching; N instances; SIGTERM drains in-flight requests and stops. docs/serving.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mfssd_deploy.cli import HelpFormatter, run_cli
from mfssd_deploy.errors import MfssdError


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MfssdError(f"{flag} {text!r}: give comma-separated integers, e.g. 4,8") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mfssd-serve", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("model", nargs="?", help="a .onnx, .engine or .pt file (default: the bundled demo model)")
    ap.add_argument("--name", help="Triton model name (default: from the file name); the image model is NAME_image")
    ap.add_argument("--backend", default="", help="Detector backend, e.g. openvino (default: the file's own)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="model instances on the CPU or GPUs")
    ap.add_argument("--gpus", default="", help="with --device cuda: GPU indices, e.g. 0,1 (default: all)")
    ap.add_argument("--instances", type=int, default=1, help="model instances of each model (per GPU on cuda)")
    ap.add_argument("--max-batch", type=int, help="max_batch_size (default: an engine's profile maximum, else 16)")
    ap.add_argument("--preferred", default="", help="dynamic batching: preferred batch sizes, e.g. 8,16 (default: "
                    "half the max batch and the max batch)")  # fmt: skip
    ap.add_argument("--max-queue-delay-us", type=int, default=2000,
                    help="dynamic batching: how long a request may wait for a batch to fill")  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per instance (0: its default)")
    ap.add_argument("--max-image-mb", type=float, default=20.0, help="the image model refuses larger encoded images")
    ap.add_argument("--no-image-model", action="store_true", help="serve the tensor model only")
    ap.add_argument("--max-json-mb", type=float, default=8.0,
                    help="HTTP inference requests whose JSON part is larger get 413 before reaching Triton (one "
                         "300x300 image as JSON is 5.3 MB); binary tensors of any size pass; 0: no guard")  # fmt: skip
    net = ap.add_argument_group("endpoints (loopback unless told otherwise)")
    net.add_argument("--http-address", default="127.0.0.1", help="HTTP bind address (0.0.0.0: every interface)")
    net.add_argument("--http-port", type=int, default=8000, help="HTTP port")
    net.add_argument("--grpc-address", default="127.0.0.1", help="gRPC bind address")
    net.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    net.add_argument("--metrics-port", type=int, help="Prometheus metrics on this port, at the HTTP address "
                     "(off unless given)")  # fmt: skip
    ap.add_argument("--repository", help="write the model repository into this new folder and keep it "
                    "(default: a temporary folder, removed at exit)")  # fmt: skip
    ap.add_argument("--start-timeout", type=float, default=120.0, help="seconds to wait for the server to be ready")
    ap.add_argument("--drain-timeout", type=int, default=30, help="on SIGTERM, seconds in-flight requests may take")
    ap.add_argument("--log-file", help="keep Triton's log in this file (default: a temporary one)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mfssd_deploy.serving.bundled import find_bundled

    find_bundled()  # without [serve]: one line naming the extra, before any work
    from mfssd_deploy.demo_assets import default_model
    from mfssd_deploy.serving.process import Endpoints
    from mfssd_deploy.serving.repository import PythonModelOptions
    from mfssd_deploy.serving.service import ServeOptions, serve

    opts = ServeOptions(
        model=Path(args.model) if args.model else default_model(),
        name=args.name,
        device=args.device,
        gpus=_ints(args.gpus, "--gpus"),
        instances=args.instances,
        max_batch=args.max_batch,
        preferred=_ints(args.preferred, "--preferred"),
        max_queue_delay_us=args.max_queue_delay_us,
        python=PythonModelOptions(args.backend, args.threads, args.max_image_mb, not args.no_image_model),
        endpoints=Endpoints(args.http_address, args.http_port, args.grpc_address, args.grpc_port, args.metrics_port),
        repository=Path(args.repository) if args.repository else None,
        start_timeout_s=args.start_timeout,
        drain_timeout_s=args.drain_timeout,
        log_file=Path(args.log_file) if args.log_file else None,
        json_cap_mb=args.max_json_mb,
    )
    return serve(opts)


def entry() -> None:
    raise SystemExit(run_cli("mfssd-serve", main))


if __name__ == "__main__":
    entry()
