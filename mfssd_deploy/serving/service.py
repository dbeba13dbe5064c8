"""`mfssd-serve`'s work: one artifact -> a python-kind repository -> a running, ready Triton -> a clean stop.

Checked before anything starts: the artifact loads here (missing or corrupt: one line, exit 2), the
batching and port settings. Then the repository (serving.repository.add_python, the same one
`mfssd-export --triton-backend python` writes) in a work folder, the bundled tritonserver on it, and
readiness as Triton reports it (server and both models), within --start-timeout. Running, it waits
for SIGTERM or SIGINT: Triton then refuses new requests, finishes those in flight (up to
--drain-timeout) and exits, and so do we (0). A server that dies under us ends the command with one
line and exit code 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.serving.bundled import find_bundled, libpython_dir
from mfssd_deploy.serving.contract import image_model_name
from mfssd_deploy.serving.json_cap import DEFAULT_CAP_MB, JsonCapProxy
from mfssd_deploy.serving.process import Endpoints, TritonProcess, in_flight_at_exit
from mfssd_deploy.serving.repository import PythonModelOptions, TritonOptions, add_python, artifact_meta, model_name

DEFAULT_MAX_BATCH = 16  # ONNX files and checkpoints have no batch profile; engines use theirs


@dataclass(frozen=True)
class ServeOptions:
    model: Path
    name: str | None = None
    device: str = "cpu"  # cpu | cuda
    gpus: tuple[int, ...] = ()
    instances: int = 1
    max_batch: int | None = None
    preferred: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    python: PythonModelOptions = field(default_factory=PythonModelOptions)
    endpoints: Endpoints = field(default_factory=Endpoints)
    repository: Path | None = None  # keep the repository there
    start_timeout_s: float = 120.0
    drain_timeout_s: int = 30
    log_file: Path | None = None
    json_cap_mb: float = DEFAULT_CAP_MB  # JSON inference bodies over this get 413 (serving.json_cap); 0: no guard


def batching(opts: ServeOptions, meta: dict[str, Any]) -> tuple[int, tuple[int, ...]]:
    """max_batch_size and preferred sizes: an engine's profile bounds both."""
    profile = meta.get("profiles", {}).get("images") if opts.model.suffix.lower() == ".engine" else None
    limit = int(profile["max"][0]) if profile else None
    max_batch = opts.max_batch or limit or DEFAULT_MAX_BATCH
    if limit is not None and max_batch > limit:
        raise MfssdError(f"--max-batch {max_batch}: {opts.model.name}'s batch profile ends at {limit}; "
                         "pass at most that, or rebuild the engine with mfssd-export --trt --batch")  # fmt: skip
    if max_batch < 1:
        raise MfssdError(f"--max-batch {max_batch}: need at least 1")
    preferred = opts.preferred or tuple(sorted({max(1, max_batch // 2), max_batch}))
    if any(not 1 <= p <= max_batch for p in preferred):
        raise MfssdError(f"--preferred {','.join(map(str, preferred))}: each must be in 1..{max_batch} (--max-batch)")
    return max_batch, preferred


class Stopper:
    """SIGTERM / SIGINT set a flag that the waits poll (no exception in the middle of a drain)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = self.signal or signum

    def __call__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _say(text: str) -> None:
    print(f"mfssd-serve: {text}", file=sys.stderr, flush=True)


def _keep_log(log: Path, given: Path | None) -> Path:
    """The server's log survives a crash: a --log-file stays where it is; the temporary one is copied out
    of the work folder (removed at exit) to a file of its own in the temp directory."""
    if given is not None:
        return given
    fd, kept = tempfile.mkstemp(prefix="mfssd-serve-crash-", suffix=".log")
    os.close(fd)
    with contextlib.suppress(OSError):
        shutil.copyfile(log, kept)
    return Path(kept)


def serve(opts: ServeOptions, on_ready: Callable[[str], None] = print) -> int:
    """Run the server until a signal; the exit code (0: stopped on request, 1: the server died)."""
    bundled = find_bundled()
    libpython_dir()  # the stub needs it: fail here, in one line, not in Triton's log
    meta = artifact_meta(opts.model)  # a missing or corrupt file stops here
    max_batch, preferred = batching(opts, meta)
    name = opts.name or model_name(opts.model)
    if opts.device not in ("cpu", "cuda"):
        raise MfssdError(f"--device {opts.device!r}: choose cpu or cuda")
    if opts.instances < 1 or opts.drain_timeout_s < 0 or opts.start_timeout_s <= 0 or opts.json_cap_mb < 0:
        raise MfssdError("need --instances >= 1, --drain-timeout >= 0, --start-timeout > 0 and --max-json-mb >= 0")
    opts.endpoints.check()
    opts.endpoints.check_free()  # a port in use: one line, exit 2, before anything can say "ready"
    if opts.repository is not None and opts.repository.exists() and any(opts.repository.iterdir()):
        raise MfssdError(f"--repository {opts.repository} is not empty (Triton would serve all it holds): "
                         "pass a new folder")  # fmt: skip
    triton = TritonOptions(kind="gpu" if opts.device == "cuda" else "cpu", instances=opts.instances,
                           max_batch=max_batch, preferred=preferred, max_queue_delay_us=opts.max_queue_delay_us,
                           gpus=opts.gpus)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="mfssd-serve-"))
    proc: TritonProcess | None = None
    proxy: JsonCapProxy | None = None
    try:
        repo = opts.repository or work / "repository"
        models = [d.name for d in add_python(repo, opts.model, triton, opts.python, name)]
        inner = opts.endpoints
        if opts.json_cap_mb > 0:  # Triton's HTTP on a loopback port, behind the guard on the user's port
            ep = opts.endpoints
            inner = replace(ep, http_address="127.0.0.1", http_port=_free_loopback_port(),
                            metrics_address=ep.metrics_address or ep.http_address)  # fmt: skip
            proxy = JsonCapProxy((ep.http_address, ep.http_port), ("127.0.0.1", inner.http_port),
                                 int(opts.json_cap_mb * 2**20)).start()  # fmt: skip
        proc = TritonProcess(bundled, repo, work, inner, opts.drain_timeout_s, opts.log_file)
        with Stopper() as stop:
            proc.start()
            t0 = time.monotonic()
            proc.wait_ready(models, opts.start_timeout_s, stop)
            if stop():
                _say("stopped before the server was ready")
                proc.stop()
                return 0
            version = proc.metadata().get("version", "?")
            image = f" and {image_model_name(name)} (encoded images)" if opts.python.image_model else ""
            on_ready(
                f"mfssd-serve: ready in {time.monotonic() - t0:.1f} s: {name} (tensors){image} serving "
                f"{opts.model.name} on Triton {version}, {opts.instances} instance(s) on {opts.device}, "
                f"max batch {max_batch}; HTTP {opts.endpoints.http_url}, gRPC {opts.endpoints.grpc_url}"
            )
            sys.stdout.flush()
            while not stop():
                code = proc.poll()
                if code is not None:
                    proc.cleanup()  # stubs it left behind, their shared memory
                    kept = _keep_log(proc.log_file, opts.log_file)
                    _say(f"error: tritonserver exited unexpectedly (code {code}): {proc.why('see its log')}; "
                         f"its log: {kept}")  # fmt: skip
                    return 1
                time.sleep(0.2)
            _say(f"{signal.Signals(stop.signal or signal.SIGTERM).name}: draining in-flight requests "
                 f"(up to {opts.drain_timeout_s} s), then stopping")  # fmt: skip
            code = proc.stop(opts.drain_timeout_s + 10)
            if code == 0:
                _say("stopped")
                return 0
            left = in_flight_at_exit(proc.log_text())
            if left == 0:  # Triton waited the whole timeout for idle client connections, then exited 1
                _say(f"stopped: no request was in flight; idle client connections were still open after "
                     f"{opts.drain_timeout_s} s (--drain-timeout)")  # fmt: skip
                return 0
            _say(f"error: the drain timed out after {opts.drain_timeout_s} s (--drain-timeout) with requests still "
                 f"in flight (tritonserver exit code {code})")  # fmt: skip
            return 1
    finally:
        if proc is not None:
            proc.kill()
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
