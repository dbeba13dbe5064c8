"""A bounded load test of a served model, and what the server's statistics say about its batching.

`run_load`: N client threads, each with its own connection, send requests back to back for a fixed
time (and at most a fixed count), every request with a timeout; latencies and every failure are
recorded, nothing is retried. `model_stats` reads Triton's statistics API (inference_count: images,
execution_count: batched runs of the model, batch_stats: how many runs had each batch size), and
`batching` turns two readings into what happened in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfssd_deploy.errors import require


@dataclass
class LoadResult:
    clients: int
    seconds: float
    images_per_request: int
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    client_failures: list[int] = field(default_factory=list)  # per client thread
    client_ok: list[int] = field(default_factory=list)  # per client thread

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        ok = int(lat.size)
        pct = {f"p{q}_ms": round(float(np.percentile(lat, q)), 2) if ok else None for q in (50, 90, 99)}
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "images_per_request": self.images_per_request,
            "requests": ok + len(self.failures),
            "ok": ok,
            "failed": len(self.failures),
            "first_failures": self.failures[:5],
            "requests_per_s": round(ok / self.seconds, 2) if self.seconds else None,
            "images_per_s": round(ok * self.images_per_request / self.seconds, 2) if self.seconds else None,
            **pct,
            "max_ms": round(float(lat.max()), 2) if ok else None,
        }


def _client(protocol: str, url: str, timeout_s: float) -> Any:
    tc = require(f"tritonclient.{protocol}", "triton", "the load test")
    if protocol == "http":
        return tc, tc.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
    return tc, tc.InferenceServerClient(url)


def run_load(
    url: str,
    model: str,
    make_inputs: Callable[[Any], list[Any]],
    images_per_request: int,
    clients: int = 32,
    seconds: float = 20.0,
    protocol: str = "http",
    timeout_s: float = 30.0,
    max_requests: int | None = None,
    check: Callable[[Any], None] | None = None,
) -> LoadResult:
    """`clients` threads for `seconds` (and at most `max_requests` in all); `make_inputs(tc)` builds a
    request's inputs with the tritonclient module, `check(result)` may raise to count a wrong answer."""
    out = LoadResult(clients, 0.0, images_per_request, client_failures=[0] * clients, client_ok=[0] * clients)
    lock = threading.Lock()
    budget = [max_requests if max_requests is not None else 1 << 62]
    ready = threading.Semaphore(0)  # every client set up before the clock starts: all of them take part
    start = threading.Event()
    deadline = [0.0]

    def worker(k: int) -> None:
        try:
            tc, client = _client(protocol, url, timeout_s)
            inputs = make_inputs(tc)
        except Exception as exc:  # the client could not even be made
            with lock:
                out.failures.append(f"client setup: {type(exc).__name__}: {exc}")
                out.client_failures[k] += 1
            return
        finally:
            ready.release()
        kwargs = {"client_timeout": timeout_s} if protocol == "grpc" else {}
        start.wait(timeout_s)
        try:
            while time.perf_counter() < deadline[0]:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                t0 = time.perf_counter()
                try:
                    result = client.infer(model, inputs, **kwargs)
                    if check is not None:
                        check(result)
                except Exception as exc:
                    with lock:
                        out.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                        out.client_failures[k] += 1
                    continue
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    out.latencies_ms.append(ms)
                    out.client_ok[k] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for _ in threads:
        ready.acquire(timeout=timeout_s)
    t_start = time.perf_counter()
    deadline[0] = t_start + seconds
    start.set()
    for t in threads:
        t.join(seconds + 2 * timeout_s + 10)  # a request started just before the deadline may take its timeout
    out.seconds = time.perf_counter() - t_start
    if any(t.is_alive() for t in threads):
        out.failures.append("a client thread did not finish within its deadline")
    return out


def model_stats(url: str, model: str, protocol: str = "http", timeout_s: float = 10.0) -> dict[str, Any]:
    """Triton's statistics of `model`: inferences (images), executions (batched runs), runs per batch size."""
    _, client = _client(protocol, url, timeout_s)
    try:
        raw = client.get_inference_statistics(model, as_json=True) if protocol == "grpc" else \
            client.get_inference_statistics(model)  # fmt: skip
    finally:
        client.close()
    stats = raw["model_stats"][0]
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return {"inferences": int(stats.get("inference_count", 0)), "executions": int(stats.get("execution_count", 0)),
            "batch_runs": dict(sorted(batches.items()))}  # fmt: skip


def settled_stats(url: str, model: str, protocol: str = "http", at_least: int = 0, timeout_s: float = 10.0
                  ) -> dict[str, Any]:  # fmt: skip
    """model_stats once it counts `at_least` inferences and two readings 0.2 s apart agree: Triton records
    an execution's statistics after its responses are sent, so a reading right after the last answer can
    miss the last batch (give `at_least`: the count before the load plus the answers received)."""
    last = model_stats(url, model, protocol)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = model_stats(url, model, protocol)
        if now == last and now["inferences"] >= at_least:
            return now
        last = now
    return last


def batching(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the dynamic batcher did between two model_stats readings."""
    runs = {b: n - before["batch_runs"].get(b, 0) for b, n in after["batch_runs"].items()}
    runs = {b: n for b, n in runs.items() if n}
    inferences = after["inferences"] - before["inferences"]
    executions = after["executions"] - before["executions"]
    return {"inferences": inferences, "executions": executions,
            "images_per_execution": round(inferences / executions, 2) if executions else None,
            "batch_runs": runs, "largest_batch": max(runs, default=0)}  # fmt: skip
