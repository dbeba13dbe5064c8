"""One tritonserver process: start, readiness as Triton reports it, the reason it failed, drain and stop.

Every wait has a deadline. The log goes to a file, from which a failure is told in one line (a model
that failed to load and why, a stub that could not start). SIGTERM makes Triton refuse new requests,
finish the ones in flight (up to --exit-timeout-secs) and exit; `stop` sends it and kills only past
that time. On Linux the server gets SIGTERM if the process that started it dies, so a crashed or
killed mfssd-serve leaves no server holding its ports.

A server that dies without stopping (killed, crashed) can leave Python-backend stubs behind: one caught
mid-request waits on its shared memory for ever. The server runs in its own process group, and its
stubs' shared-memory regions carry a prefix of our own, so `cleanup` ends the stragglers of that group
and removes those regions, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.serving.bundled import BundledTriton, backend_dir, server_env

# Log lines that say why a start failed, most telling first (Triton's own "E..." lines include harmless
# ones on machines without a GPU, such as "CudaDriverHelper has not been initialized").
FAILURE_PATTERNS = (
    re.compile(r"failed to load '[^']+' version \d+: .*"),
    re.compile(r".*error while loading shared libraries: .*"),
    re.compile(r".*(MfssdError|Error|Exception): .*"),
    re.compile(r".*failed to (?:start|bind|listen).*", re.IGNORECASE),
    re.compile(r".*(?:Address already in use|already in use).*", re.IGNORECASE),
)


def in_flight_at_exit(log_text: str) -> int | None:
    """How many model versions still had inferences in flight at Triton's last count while stopping (None:
    it never counted, e.g. it was killed); 0 means a drain that timed out cut no request short."""
    found = re.findall(r"Found (\d+) model versions that have in-flight inferences", log_text)
    return int(found[-1]) if found else None


@dataclass(frozen=True)
class Endpoints:
    http_address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_address: str = "127.0.0.1"
    grpc_port: int = 8001
    metrics_port: int | None = None  # None: metrics off (Triton would otherwise listen on 8002)
    metrics_address: str | None = None  # None: the HTTP address

    def check(self) -> None:
        ports = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
            raise MfssdError(f"ports {ports}: need distinct ports in 1..65535 for HTTP, gRPC (and metrics)")

    def check_free(self) -> None:
        """Each port bindable now, before the server starts: another server on them would answer our
        readiness probe and make a doomed start look ready."""
        import socket

        for flag, address, port in (("--http-port", self.http_address, self.http_port),
                                    ("--grpc-port", self.grpc_address, self.grpc_port),
                                    ("--metrics-port", self.metrics_address or self.http_address,
                                     self.metrics_port)):  # fmt: skip
            if port is None:
                continue
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is free
                try:
                    s.bind((address or "0.0.0.0", port))
                except OSError as exc:
                    raise MfssdError(f"{address}:{port} is in use or not bindable ({exc.strerror}); stop the "
                                     f"other server or pass another {flag}") from None  # fmt: skip

    @staticmethod
    def _host(address: str) -> str:
        return "127.0.0.1" if address in ("0.0.0.0", "") else address

    @property
    def http_url(self) -> str:
        """host:port for tritonclient.http (a wildcard address is reached on loopback)."""
        return f"{self._host(self.http_address)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._host(self.grpc_address)}:{self.grpc_port}"

    def args(self) -> list[str]:
        out = [f"--http-address={self.http_address}", f"--http-port={self.http_port}",
               f"--grpc-address={self.grpc_address}", f"--grpc-port={self.grpc_port}"]  # fmt: skip
        if self.metrics_port is None:
            return [*out, "--allow-metrics=false"]
        metrics = self.metrics_address or self.http_address
        return [*out, "--allow-metrics=true", "--allow-gpu-metrics=false", f"--metrics-address={metrics}",
                f"--metrics-port={self.metrics_port}"]  # fmt: skip


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def failure_line(log_text: str) -> str | None:
    """The most telling line of a failed start, or None."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for pattern in FAILURE_PATTERNS:
        for line in lines:
            m = pattern.search(line)
            if m and "CudaDriverHelper" not in line:
                return re.sub(r"^[EWI]\d{4} [\d:.]+ \d+ \S+\] ", "", m.group(0))[:500]
    return None


@dataclass
class TritonProcess:
    bundled: BundledTriton
    repository: Path
    work: Path  # backends/ and the default log live here
    endpoints: Endpoints = field(default_factory=Endpoints)
    exit_timeout_s: int = 30  # how long Triton waits for in-flight requests when stopped
    log_path: Path | None = None
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    shm_prefix: str = field(default_factory=lambda: f"mfssd_{uuid.uuid4().hex[:12]}_")

    def command(self) -> list[str]:
        return [
            str(self.bundled.server),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir(self.bundled, self.work)}",
            *self.endpoints.args(),
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--log-verbose=0",
            *self.extra_args,
        ]

    @property
    def log_file(self) -> Path:
        return self.log_path or self.work / "tritonserver.log"

    def start(self) -> TritonProcess:
        self.endpoints.check()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=server_env(self.bundled), preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                start_new_session=True,  # its own process group: the stubs it starts can be found and ended
            )  # fmt: skip
        return self

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def why(self, default: str) -> str:
        return failure_line(self.log_text()) or default

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.endpoints.http_url}{path}", timeout=timeout) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""
        except (OSError, ValueError):
            return 0, b""

    def ready(self, models: Sequence[str] = ()) -> bool:
        """Triton's readiness: the server's, and each model's."""
        if self._get("/v2/health/ready")[0] != 200:
            return False
        return all(self._get(f"/v2/models/{m}/ready")[0] == 200 for m in models)

    def live(self) -> bool:
        return self._get("/v2/health/live")[0] == 200

    def metadata(self) -> dict[str, Any]:
        code, body = self._get("/v2")
        return json.loads(body) if code == 200 and body else {}

    def wait_ready(self, models: Sequence[str], timeout_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Until the server and `models` are ready; MfssdError (server stopped) if it exits or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop():
            code = self.proc.poll()
            if code is not None:
                raise MfssdError(f"tritonserver exited during start (code {code}): {self.why('see its log')}")
            if self.ready(models):
                return
            time.sleep(0.1)
        if stop():
            return
        self.stop(5)
        raise MfssdError(
            f"tritonserver was not ready within {timeout_s:.0f} s (--start-timeout): {self.why('no error in its log')}"
        )

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM (Triton drains in-flight requests), SIGKILL after `timeout_s`; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.exit_timeout_s + 10 if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, no drain (fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.cleanup()

    def cleanup(self) -> None:
        """After the server has exited: end what is left of its process group (stubs of a server that
        died), and remove its stubs' shared-memory regions."""
        if self.proc is None or self.proc.poll() is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group is the server's own (start_new_session)
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()
