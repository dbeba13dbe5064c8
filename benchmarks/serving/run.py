"""The serving load figure: mfssd-serve's image model under 32 concurrent clients, against the local Detector.

For each configuration: start `mfssd-serve` (a real tritonserver) on free loopback ports, run N clients
back to back for S seconds (every request one JPEG, every request with a timeout, every answer checked),
read Triton's statistics before and after (executions vs inferences, runs per batch size), stop the
server. The reference is the Detector in this one process on the same files (decode + detect, batch 8
and batch 1). Writes results.json and results.md beside this file (atomic writes). Run once per change,
on an otherwise idle machine: the clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mfssd_deploy import Detector  # noqa: E402
from mfssd_deploy.demo_assets import DEMO_ONNX, sample_images  # noqa: E402
from mfssd_deploy.fileio import write_json  # noqa: E402
from mfssd_deploy.serving.images import decode_image, image_rows  # noqa: E402
from mfssd_deploy.serving.load import batching, model_stats, run_load, settled_stats  # noqa: E402

FILES = [p.read_bytes() for p in sample_images()]
CONFIGS = [  # (label, protocol, mfssd-serve arguments)
    ("1 instance, HTTP", "http", ["--instances", "1"]),
    ("1 instance, gRPC", "grpc", ["--instances", "1"]),
    ("2 instances x 1 thread, HTTP", "http", ["--instances", "2", "--threads", "1"]),
]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


LOCAL = [(1, True), (8, True), (16, True), (16, False)]  # (batch, ONNX Runtime spin-waiting): False is the server's


def local_images_per_s(model: Path, batch: int, spinning: bool, seconds: float) -> dict[str, Any]:
    """The Detector in this process: decode the JPEG bytes and detect, `batch` images a call."""
    det = Detector(model, batch_size=batch, spinning=spinning)
    files = (FILES * (batch // len(FILES) + 1))[:batch]
    det.detect_arrays([decode_image(np.frombuffer(f, np.uint8), "f", 1 << 30) for f in files])  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        det.detect_arrays([decode_image(np.frombuffer(f, np.uint8), "f", 1 << 30) for f in files])
        n += len(files)
    return {"batch": batch, "spinning": spinning, "images_per_s": round(n / (time.perf_counter() - t0), 2)}


def serve(model: Path, args: list[str], work: Path) -> tuple[subprocess.Popen[str], int, int, str]:
    http, grpc = free_ports(2)
    cmd = [sys.executable, "-m", "mfssd_deploy.cli.serve", str(model), "--name", "bench", "--http-port", str(http),
           "--grpc-port", str(grpc), "--max-batch", "16", "--drain-timeout", "5", *args]  # fmt: skip
    with open(work / f"serve-{http}.err", "w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the ready line (mfssd-serve exits with one line if it cannot start)
    if "ready in" not in line:
        proc.wait(30)
        raise SystemExit(f"mfssd-serve did not start: {(work / f'serve-{http}.err').read_text()}")
    print(line.strip(), flush=True)
    version = re.search(r"on Triton (\S+),", line)
    return proc, http, grpc, version.group(1) if version else "?"


def one_config(model: Path, label: str, protocol: str, args: list[str], clients: int, seconds: float,
               work: Path, want: dict[tuple[int, int], int]) -> dict[str, Any]:  # fmt: skip
    proc, http, grpc, version = serve(model, args, work)
    url = f"127.0.0.1:{http if protocol == 'http' else grpc}"
    counter = iter(range(10**9))

    def make_inputs(tc: Any) -> list[Any]:
        rows, lengths = image_rows([FILES[next(counter) % len(FILES)]])
        out = []
        for name, array, dtype in (("image", rows, "UINT8"), ("image_length", lengths, "INT32")):
            inp = tc.InferInput(name, list(array.shape), dtype)
            inp.set_data_from_numpy(array)
            out.append(inp)
        return out

    def check(result: Any) -> None:
        h, w = (int(v) for v in result.as_numpy("image_size")[0])
        if int(result.as_numpy("num_dets")[0, 0]) != want[(h, w)]:
            raise AssertionError("a wrong answer")

    try:
        before = model_stats(f"127.0.0.1:{http}", "bench_image")
        load = run_load(url, "bench_image", make_inputs, 1, clients=clients, seconds=seconds, protocol=protocol,
                        timeout_s=30, check=check)  # fmt: skip
        done = before["inferences"] + len(load.latencies_ms)
        stats = batching(before, settled_stats(f"127.0.0.1:{http}", "bench_image", at_least=done))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    row = {"config": label, "protocol": protocol, "serve_args": args, "triton": version, **load.summary(),
           "batching": stats}  # fmt: skip
    print(row, flush=True)
    return row


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Serving load: mfssd-serve's image model under concurrent clients",
        "",
        f"Machine: {res['machine']['cpus']} CPU cores ({res['machine']['processor'] or res['machine']['platform']}), "
        f"load average (1, 5, 15 min) before the run {res['machine']['load_before']}, after it "
        f"{res['machine']['load_after']}. Triton {res['triton']}, model "
        f"`{res['model']}`, {res['clients']} clients for {res['seconds']} s each, one JPEG (288x352 to 400x300) per "
        "request, every answer checked against the local Detector's detection count. Measured once; reproduce "
        "with `benchmarks/serving/reproduce.sh`.",
        "",
        "| configuration | requests/s | images/s | p50 ms | p90 ms | p99 ms | failed | executions / inferences "
        "| images per execution | runs per batch size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["server"]:
        b = r["batching"]
        runs = ", ".join(f"{k}: {v}" for k, v in b["batch_runs"].items())
        lines.append(f"| {r['config']} | {r['requests_per_s']} | {r['images_per_s']} | {r['p50_ms']} | {r['p90_ms']} "
                     f"| {r['p99_ms']} | {r['failed']} of {r['requests']} | {b['executions']} / {b['inferences']} "
                     f"| {b['images_per_execution']} | {runs} |")  # fmt: skip
    lines += ["", "| local Detector, one process (decode + detect) | images/s before the server runs | after |",
              "|---|---|---|"]  # fmt: skip
    lines += [f"| batch {r['batch']}{'' if r['spinning'] else ', no spin-waiting (as on the server)'} "
              f"| {r['images_per_s']} | {r['images_per_s_after']} |" for r in res["local"]]  # fmt: skip
    best = max(r["images_per_s"] for r in res["server"])
    local = max(max(r["images_per_s"], r["images_per_s_after"]) for r in res["local"])
    lines += [
        "",
        f"Best served throughput {best} images/s against {local} images/s for the local Detector in one "
        f"process at its best setting: {best / local:.2f}x on this machine. {res['cost_note']}",
    ]
    if res["machine"]["load_after"][0] > 1.5:
        lines += ["", f"Caveat: other work started on this shared machine during the run (1-minute load average "
                  f"{res['machine']['load_after'][0]} at the end, against {res['machine']['load_before'][0]} at the "
                  "start), so the configurations measured later and the local 'after' column ran with fewer free "
                  "cores; the first configuration and the 'before' column are the like-for-like pair."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO_ONNX), help="artifact to serve (default: the bundled FP32 end2end)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--local-seconds", type=float, default=10.0)
    ap.add_argument("--out", default=str(Path(__file__).parent))
    ap.add_argument("--markdown-only", action="store_true", help="re-render results.md from results.json")
    args = ap.parse_args()
    if args.markdown_only:
        import json

        from mfssd_deploy.fileio import atomic_path

        res = json.loads((Path(args.out) / "results.json").read_text())
        with atomic_path(Path(args.out) / "results.md") as tmp_md:
            tmp_md.write_text(markdown(res))
        return 0
    model = Path(args.model)
    load_before = os.getloadavg()
    local = [local_images_per_s(model, b, spin, args.local_seconds) for b, spin in LOCAL]
    print("local, before", local, flush=True)
    ref = Detector(model)([str(p) for p in sample_images()])
    want = {r.image_shape: len(r) for r in ref}
    with tempfile.TemporaryDirectory() as tmp:
        server = [one_config(model, label, protocol, extra, args.clients, args.seconds, Path(tmp), want)
                  for label, protocol, extra in CONFIGS]  # fmt: skip
    after = [local_images_per_s(model, b, spin, args.local_seconds) for b, spin in LOCAL]  # drift check
    print("local, after", after, flush=True)
    for row, again in zip(local, after, strict=True):
        row["images_per_s_after"] = again["images_per_s"]
    import importlib.metadata

    res = {
        "model": model.name,
        "clients": args.clients,
        "seconds": args.seconds,
        "triton": f"{server[0]['triton']} (nvidia-pytriton {importlib.metadata.version('nvidia-pytriton')})",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "load_before": [round(v, 2) for v in load_before],
            "load_after": [round(v, 2) for v in os.getloadavg()],
        },
        "local": local,
        "server": server,
        "cost_note": "What serving costs here, on top of the model: the HTTP/gRPC round trip, Triton's queue "
        "and scheduler, the copies of every tensor through shared memory into the Python-backend stub and back, "
        "the JSON of the detections, and the 32 client threads themselves, which share the 2 cores with the "
        "server. The latencies are mostly queueing: 32 clients wait for batches of up to 16 images.",
    }
    out = Path(args.out)
    write_json(out / "results.json", res)
    from mfssd_deploy.fileio import atomic_path

    with atomic_path(out / "results.md") as tmp_md:
        tmp_md.write_text(markdown(res))
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
