"""Serving on the real Triton Inference Server that nvidia-pytriton ships (tritonserver + Python backend).

References: the local Detector on the same files (boxes and scores to 1e-4, same classes), and the server
itself (its health, readiness, configuration and statistics APIs). Every server is started on free
loopback ports, every wait has a deadline, and every server is stopped by the fixture or test that started
it. Without the [serve] extra the server tests are skipped, saying so; the runner tests need no server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.demo_assets import DEMO_MODEL, DEMO_ONNX, DEMO_ONNX_INT8, sample_images
from mfssd_deploy.runtime.results import Result

ROOT = Path(__file__).resolve().parents[1]
HAVE_SERVE = importlib.util.find_spec("pytriton") is not None
needs_server = pytest.mark.skipif(
    not HAVE_SERVE,
    reason='the [serve] extra (nvidia-pytriton: tritonserver) is not installed: pip install -e ".[serve]"',
)
PATHS = [str(p) for p in sample_images()]
FILES = [Path(p).read_bytes() for p in PATHS]
START_S = 120  # a server start (two models, their stubs) on a busy 2-core machine: ~3-8 s


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held together while chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def same_results(got: list[Result], ref: list[Result], tol: float = 1e-4) -> None:
    assert [len(r) for r in got] == [len(r) for r in ref] and sum(len(r) for r in ref) > 0
    for a, b in zip(got, ref, strict=True):
        assert a.image_shape == b.image_shape
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=tol)
        np.testing.assert_allclose(a.scores, b.scores, atol=tol)
        assert a.names == b.names


class Served:
    """One `mfssd-serve` process (the console script's code, run like a user runs it)."""

    def __init__(self, tmp: Path, *args: str, ports: list[int] | None = None) -> None:
        self.http, self.grpc = ports or free_ports(2)
        self.out, self.err = tmp / f"serve-{self.http}.out", tmp / f"serve-{self.http}.err"
        cmd = [sys.executable, "-m", "mfssd_deploy.cli.serve", *args, "--http-port", str(self.http),
               "--grpc-port", str(self.grpc), "--drain-timeout", "5", "--start-timeout", str(START_S)]  # fmt: skip
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=tmp)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_ready(self, timeout_s: float = START_S + 10) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.out.read_text()
            if "ready in" in text:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"mfssd-serve exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"mfssd-serve not ready in {timeout_s} s: {self.stderr()}")

    def tritonserver_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        (pid,) = [int(c) for c in children if "tritonserver" in Path(f"/proc/{c}/cmdline").read_text()]
        return pid

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def reference() -> list[Result]:
    return Detector(DEMO_ONNX)(PATHS)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not HAVE_SERVE:
        pytest.skip("the [serve] extra is not installed")
    s = Served(tmp_path_factory.mktemp("serve"), str(DEMO_ONNX), "--name", "demo", "--max-batch", "8",
               "--max-queue-delay-us", "5000")  # fmt: skip
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def tensor_results(url: str, protocol: str, model: str = "demo", images: list[Any] | None = None) -> list[Result]:
    """The tensor model through TritonBackend + Detector.from_backend (its connection closed after)."""
    from mfssd_deploy.runtime.backends.triton_backend import TritonBackend

    backend = TritonBackend(url, model, protocol, timeout_s=30)
    try:
        det = Detector.from_backend(backend, f"triton:{model}")
        assert det.layout == "end2end"
        return det(images or PATHS)
    finally:
        backend.client.close()


def image_client(served: Served, protocol: str, model: str = "demo_image") -> Any:
    from mfssd_deploy.serving.image_client import ImageModelClient

    return ImageModelClient(served.url if protocol == "http" else served.grpc_url, model, protocol, timeout_s=30)


# ---------------------------------------------------------------- the runners, without a server


def test_runners_answer_good_requests_beside_bad_ones(reference: list[Result]) -> None:
    from mfssd_deploy.serving.images import image_rows
    from mfssd_deploy.serving.runners import ImageRunner, TensorRunner, end2end_outputs

    det = Detector(DEMO_ONNX, batch_size=8)
    x = det.preprocess([cv2.imread(p) for p in PATHS])
    tensor = TensorRunner(det, 8)
    bad = np.full_like(x[:1], np.nan)
    replies = tensor.run([{"images": x[:2]}, {"images": bad}, {"images": x[:, :, :10]}, {"images": x[2:]}, {}])
    assert [r.error is None for r in replies] == [True, False, False, True, False]
    assert "NaN" in str(replies[1].error) and "shape" in str(replies[2].error) and "no input" in str(replies[4].error)
    want = end2end_outputs(det, x)
    got = [np.concatenate([replies[0].outputs[n], replies[3].outputs[n]]) for n in replies[0].outputs]  # type: ignore[index]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    images = ImageRunner(det, 8, 10**6)
    rows, lengths = image_rows(FILES)
    replies = images.run([{"image": rows, "image_length": lengths}, {"image": rows[:1, :7]},
                          {"image": rows[:1], "image_length": np.array([[10**7]], np.int32)},
                          {"image": rows[:1], "image_length": np.array([[0]], np.int32)}])  # fmt: skip
    assert replies[0].error is None and "not an image" in str(replies[1].error)
    assert "outside" in str(replies[2].error) and "empty" in str(replies[3].error)
    out = replies[0].outputs
    assert out is not None
    from mfssd_deploy.serving.image_client import documents, to_results

    same_results(to_results(out, det.class_names, PATHS), reference)
    docs = documents(out)
    assert [[d["class"] for d in doc["detections"]] for doc in docs] == [r.names for r in reference]


# ---------------------------------------------------------------- mfssd-serve: results, health, example


@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tensor_and_image_models_equal_the_local_detector(served: Served, reference: list[Result],
                                                          protocol: str) -> None:  # fmt: skip
    url = served.url if protocol == "http" else served.grpc_url
    same_results(tensor_results(url, protocol), reference)
    client = image_client(served, protocol)
    try:
        same_results(client.detect(PATHS), reference)  # boxes in each image's pixels, names from the server
        from mfssd_deploy.serving.image_client import documents

        docs = documents(client.infer(FILES))
    finally:
        client.close()
    for doc, r in zip(docs, reference, strict=True):
        assert [d["class"] for d in doc["detections"]] == r.names
        assert doc["image_size"] == {"height": r.image_shape[0], "width": r.image_shape[1]}
        np.testing.assert_allclose([d["box"] for d in doc["detections"]], r.boxes, atol=0.006)  # rounded to 0.01


@needs_server
def test_health_readiness_and_configuration_as_triton_reports_them(served: Served) -> None:
    import tritonclient.grpc as tg
    import tritonclient.http as th

    http = th.InferenceServerClient(served.url, network_timeout=10)
    grpc = tg.InferenceServerClient(served.grpc_url)
    try:
        assert http.is_server_live() and http.is_server_ready() and grpc.is_server_ready()
        assert http.is_model_ready("demo") and grpc.is_model_ready("demo_image")
        assert not http.is_model_ready("nonexistent")
        assert http.get_server_metadata()["version"].startswith("2.")
        for name in ("demo", "demo_image"):
            cfg = http.get_model_config(name)
            assert cfg["backend"] == "python" and cfg["max_batch_size"] == 8
            assert cfg["dynamic_batching"]["preferred_batch_size"] == [4, 8]
            assert cfg["instance_group"][0]["kind"] == "KIND_CPU" and cfg["instance_group"][0]["count"] == 1
            meta = json.loads(cfg["parameters"]["mfssd"]["string_value"])
            assert meta["layout"] == "end2end" and meta["artifact_layout"] == "end2end"
    finally:
        http.close()
        grpc.close()
    from mfssd_deploy.serving.process import Endpoints

    assert "--allow-metrics=false" in Endpoints().args()  # Triton's metrics (0.0.0.0:8002) stay off unless asked
    assert "--metrics-address=127.0.0.1" in Endpoints(metrics_port=9000).args()


@needs_server
@pytest.mark.parametrize("mode", ["tensor-http", "image-grpc"])
def test_example_client_against_the_real_server(served: Served, mode: str, tmp_path: Path) -> None:
    args = (["--model", "demo", "--url", served.url] if mode == "tensor-http"
            else ["--model", "demo_image", "--image-model", "--grpc", "--url", served.grpc_url])  # fmt: skip
    cmd = [sys.executable, str(ROOT / "examples" / "triton_client.py"), *PATHS, *args, "--out", str(tmp_path / "d")]
    proc = subprocess.run([*cmd, "--timeout", "30"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = Detector(DEMO_ONNX, conf=0.3)(PATHS)
    for p, r in zip(PATHS, local, strict=True):
        assert f"{Path(p).name}: {len(r)} objects" in proc.stdout
        assert cv2.imread(str(tmp_path / "d" / Path(p).name)).shape[:2] == r.image_shape


# ---------------------------------------------------------------- malformed requests


def _raw(served: Served, protocol: str, model: str, tensors: list[tuple[str, np.ndarray, str]]) -> Any:
    import tritonclient.grpc as tg
    import tritonclient.http as th

    tc = th if protocol == "http" else tg
    client = (th.InferenceServerClient(served.url, network_timeout=30) if protocol == "http"
              else tg.InferenceServerClient(served.grpc_url))  # fmt: skip
    inputs = []
    for name, array, dtype in tensors:
        inp = tc.InferInput(name, list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    try:
        return client.infer(model, inputs, **({"client_timeout": 30} if protocol == "grpc" else {}))
    finally:
        client.close()


def _big_png() -> bytes:
    """A 50 MB image: noise, PNG without compression."""
    noise = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    ok, enc = cv2.imencode(".png", noise, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    assert ok and enc.size > 50e6
    return enc.tobytes()


def _files(files: list[bytes]) -> list[tuple[str, np.ndarray, str]]:
    from mfssd_deploy.serving.images import image_rows

    rows, lengths = image_rows(files)
    return [("image", rows, "UINT8"), ("image_length", lengths, "INT32")]


MALFORMED: dict[str, tuple[str, Callable[[], list[tuple[str, np.ndarray, str]]], str]] = {
    # name: (model, inputs, what the error must say)
    "tensor wrong dtype": ("demo", lambda: [("images", np.zeros((1, 3, 300, 300)), "FP64")], "expects 'FP32'"),
    "tensor wrong shape": ("demo", lambda: [("images", np.zeros((1, 3, 200, 200), np.float32), "FP32")],
                           "unexpected shape"),
    "tensor batch over max": ("demo", lambda: [("images", np.zeros((9, 3, 300, 300), np.float32), "FP32")],
                              "must be <= 8"),
    "tensor empty batch": ("demo", lambda: [("images", np.zeros((0, 3, 300, 300), np.float32), "FP32")],
                           "empty batch"),
    "tensor NaN": ("demo", lambda: [("images", np.full((1, 3, 300, 300), np.nan, np.float32), "FP32")], "NaN"),
    "image not an image": ("demo_image", lambda: _files([b"GIF89a, or rather not an image at all"]),
                           "not an image OpenCV can decode"),
    "image empty file": ("demo_image", lambda: _files([b""]), "is empty (0 bytes)"),
    "image 50 MB": ("demo_image", lambda: _files([_big_png()]), "over the server's 20.0 MB limit"),
    "image wrong dtype": ("demo_image", lambda: [("image", np.zeros((1, 16), np.float32), "FP32")],
                          "expects 'UINT8'"),
    "image length past the row": ("demo_image", lambda: [*_files(FILES[:1])[:1],
                                  ("image_length", np.array([[10**6]], np.int32), "INT32")], "outside"),
    "image batch over max": ("demo_image", lambda: _files(FILES * 3), "must be <= 8"),
    # Triton drops a zero batch axis before the model sees the request: [0, W] reaches it as [W], so a narrow
    # empty batch gets our message and a wide one Triton's Python backend's (the width taken for a batch size)
    "image empty batch": ("demo_image", lambda: [("image", np.zeros((0, 4), np.uint8), "UINT8")], "empty batch"),
    "image empty batch, wide": ("demo_image", lambda: [("image", np.zeros((0, 16), np.uint8), "UINT8")],
                                "max allowed is 8"),
}  # fmt: skip


@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_an_error_naming_the_problem_and_good_ones_still_answer(
    served: Served, reference: list[Result], protocol: str
) -> None:
    from tritonclient.utils import InferenceServerException

    outcomes = {}
    for case, (model, inputs, says) in MALFORMED.items():
        with pytest.raises(InferenceServerException) as err:
            _raw(served, protocol, model, inputs())
        assert says in str(err.value), (case, str(err.value))
        if case != "image empty batch, wide":  # the client's fault: 400 / INVALID_ARGUMENT (that one: Triton's 500)
            assert str(err.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), (case, err.value.status())
        good = _raw(served, protocol, "demo_image", _files(FILES[:2]))  # the server still answers, correctly
        assert good.as_numpy("num_dets")[:, 0].tolist() == [len(r) for r in reference[:2]], case
        outcomes[case] = str(err.value)[:120]
    assert len(outcomes) == len(MALFORMED) == 13
    print(json.dumps(outcomes, indent=1))  # the closing note counts these (pytest -s shows them)


# ---------------------------------------------------------------- load


@needs_server
def test_a_short_load_of_32_clients_is_batched_and_fails_nothing(served: Served, reference: list[Result]) -> None:
    """CI-sized (32 clients, 4 s); the measured figure (>= 20 s) is benchmarks/serving/."""
    from mfssd_deploy.serving.images import image_rows
    from mfssd_deploy.serving.load import batching, model_stats, run_load, settled_stats

    counter = iter(range(10**9))
    lock = threading.Lock()
    expected = {}

    def make_inputs(tc: Any) -> list[Any]:
        with lock:
            i = next(counter) % len(FILES)
        rows, lengths = image_rows([FILES[i]])
        inputs = []
        for name, array, dtype in (("image", rows, "UINT8"), ("image_length", lengths, "INT32")):
            inp = tc.InferInput(name, list(array.shape), dtype)
            inp.set_data_from_numpy(array)
            inputs.append(inp)
        expected[int(rows.size)] = len(reference[i])
        return inputs

    def check(result: Any) -> None:  # a whole, right answer, or it counts as a failure
        size = result.as_numpy("image_size")[0].tolist()
        i = [list(r.image_shape) for r in reference].index(size)
        assert int(result.as_numpy("num_dets")[0, 0]) == len(reference[i])
        assert result.as_numpy("pixel_boxes").shape == (1, 200, 4)

    before = model_stats(served.url, "demo_image")
    load = run_load(served.url, "demo_image", make_inputs, 1, clients=32, seconds=4, timeout_s=30, check=check)
    summary = load.summary()
    stats = batching(before, settled_stats(served.url, "demo_image", at_least=before["inferences"] + summary["ok"]))
    print(json.dumps({"load": summary, "batching": stats}))
    assert summary["failed"] == 0, summary["first_failures"]
    assert all(n > 0 for n in load.client_ok), load.client_ok  # all 32 clients took part
    assert stats["inferences"] == summary["ok"], (stats, summary)  # the server counted every answer, no more
    assert stats["executions"] < stats["inferences"] and stats["largest_batch"] > 1, stats  # dynamic batching


# ---------------------------------------------------------------- the python-kind repository in a plain tritonserver


@needs_server
def test_the_exported_python_repository_loads_in_tritonserver(tmp_path: Path) -> None:
    from mfssd_deploy.errors import MfssdError
    from mfssd_deploy.serving.bundled import find_bundled
    from mfssd_deploy.serving.image_client import ImageModelClient
    from mfssd_deploy.serving.process import Endpoints, TritonProcess
    from mfssd_deploy.serving.repository import TritonOptions, write_repository

    repo = tmp_path / "repo"
    opts = TritonOptions(kind="cpu", max_batch=4, preferred=(2, 4), max_queue_delay_us=1000)
    names = write_repository(repo, [DEMO_ONNX_INT8], [], opts, kind="python")
    assert names == ["mfssd_bn_w025_synth_int8_end2end", "mfssd_bn_w025_synth_int8_end2end_image"]
    http, grpc = free_ports(2)
    server = TritonProcess(find_bundled(), repo, tmp_path / "work", Endpoints("127.0.0.1", http, "127.0.0.1", grpc),
                           exit_timeout_s=3)  # fmt: skip
    try:
        server.start().wait_ready(names, START_S)
        ref = Detector(DEMO_ONNX_INT8)(PATHS)
        same_results(tensor_results(f"127.0.0.1:{grpc}", "grpc", names[0]), ref)
        client = ImageModelClient(f"127.0.0.1:{http}", names[1], timeout_s=30)
        same_results(client.detect(PATHS), ref)
        client.close()
    finally:
        assert server.stop(20) == 0
    # the same repository with its model file damaged: Triton's load fails, and the reason is one line
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    (broken / names[0] / "1" / DEMO_ONNX_INT8.name).write_bytes(b"not an onnx file")
    server = TritonProcess(find_bundled(), broken, tmp_path / "work2", Endpoints("127.0.0.1", http, "127.0.0.1", grpc))
    try:
        with pytest.raises(MfssdError, match=rf"failed to load '{names[0]}'.*not a loadable ONNX model"):
            server.start().wait_ready(names, START_S)
    finally:
        server.kill()


# ---------------------------------------------------------------- starts that fail


@needs_server
def test_a_bad_start_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.end2end.onnx"
    corrupt.write_bytes(DEMO_ONNX.read_bytes()[:5000])  # truncated
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = {
        "missing model": ([str(tmp_path / "missing.onnx")], "model not found"),
        "corrupt model": ([str(corrupt)], "is not a readable ONNX file"),
        "model fails inside the server": ([str(DEMO_ONNX), "--backend", "bogus"], "failed to load"),
        "port in use": ([str(DEMO_ONNX), "--http-port", str(busy.getsockname()[1])], "already in use"),
    }
    try:
        for case, (args, says) in cases.items():
            http, grpc = free_ports(2)
            ports = ["--grpc-port", str(grpc)] + ([] if "--http-port" in args else ["--http-port", str(http)])
            proc = subprocess.run([sys.executable, "-m", "mfssd_deploy.cli.serve", *args, *ports, "--start-timeout",
                                   "60"], capture_output=True, text=True, timeout=120)  # fmt: skip
            line = proc.stderr.strip()
            assert proc.returncode == 2, (case, proc.stderr)
            assert "\n" not in line and "Traceback" not in line, (case, line)
            assert line.startswith("mfssd-serve: error: ") and says in line, (case, line)
    finally:
        busy.close()


# ---------------------------------------------------------------- a server killed mid-load, a restart, a drain


@needs_server
def test_a_server_killed_mid_load_fails_every_client_in_time_and_a_restart_serves(tmp_path: Path) -> None:
    from mfssd_deploy.serving.images import image_rows
    from mfssd_deploy.serving.load import model_stats, run_load

    first = Served(tmp_path, str(DEMO_ONNX), "--name", "demo")
    try:
        first.wait_ready()
        rows, lengths = image_rows(FILES[:1])

        def make_inputs(tc: Any) -> list[Any]:
            a, b = tc.InferInput("image", list(rows.shape), "UINT8"), tc.InferInput("image_length", [1, 1], "INT32")
            a.set_data_from_numpy(rows)
            b.set_data_from_numpy(lengths)
            return [a, b]

        want = len(Detector(DEMO_ONNX)(PATHS[:1])[0])

        def check(result: Any) -> None:  # a partial or damaged answer would fail here, and count as a failure
            assert int(result.as_numpy("num_dets")[0, 0]) == want
            assert json.loads(bytes(result.as_numpy("detections")[0]))["image_size"]["height"] > 0

        results: list[Any] = []
        load = threading.Thread(target=lambda: results.append(run_load(first.url, "demo_image", make_inputs, 1,
                                clients=16, seconds=4, timeout_s=5, check=check)))  # fmt: skip
        load.start()
        deadline = time.monotonic() + 60  # kill it mid-load: once it has answered some of the clients
        while model_stats(first.url, "demo_image")["inferences"] < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        server = first.tritonserver_pid()
        os.kill(server, signal.SIGKILL)
        load.join(40)
        assert not load.is_alive()
        (res,) = results
        assert first.proc.wait(20) == 1  # mfssd-serve saw its server die: one line, exit 1
        assert "tritonserver exited unexpectedly" in first.stderr()
        with pytest.raises(ProcessLookupError):  # and ended the stubs it left (the server's process group)
            os.killpg(server, 0)
    finally:
        first.kill()
    summary = res.summary()
    assert summary["ok"] > 0 and all(ms < 5000 for ms in res.latencies_ms)  # it served before the kill
    assert all(n > 0 for n in res.client_failures), res.client_failures  # every client got an error...
    assert res.seconds < 4 + 5 + 5 and "did not finish" not in " ".join(res.failures)  # ...within its timeout
    assert not any("AssertionError" in f for f in res.failures)  # nothing partial was taken as a result

    # a restart on the same ports, now serving the checkpoint (raw layout: decoded and NMS'd on the server with
    # torch, answered in the end2end layout), the tensor model alone
    second = Served(tmp_path, str(DEMO_MODEL), "--name", "demo", "--no-image-model", ports=[first.http, first.grpc])
    try:
        second.wait_ready()
        same_results(tensor_results(second.url, "http"), Detector(DEMO_MODEL)(PATHS))

        # SIGTERM while requests are in the server: they are answered, new ones refused, exit 0
        done: list[Any] = []

        def one() -> None:
            try:
                done.append(len(tensor_results(second.url, "http")))
            except Exception as exc:
                done.append(exc)

        before = model_stats(second.url, "demo")["executions"]
        inflight = [threading.Thread(target=one) for _ in range(3)]
        for t in inflight:
            t.start()
        deadline = time.monotonic() + 30  # the first of them has run: all three are in Triton by then
        while model_stats(second.url, "demo")["executions"] == before and time.monotonic() < deadline:
            time.sleep(0.02)
        second.proc.send_signal(signal.SIGTERM)
        for t in inflight:
            t.join(60)
        assert done == [4, 4, 4], done
        assert second.proc.wait(30) == 0, second.stderr()
        assert "draining in-flight requests" in second.stderr()
        from mfssd_deploy.errors import MfssdError

        with pytest.raises(MfssdError, match="cannot read model"):  # refused: nothing listens any more
            tensor_results(second.url, "http")
    finally:
        second.stop()


# ---------------------------------------------------------------- the JSON cap (serving.json_cap)


def test_json_part_is_what_triton_would_parse() -> None:
    from mfssd_deploy.serving.json_cap import json_part

    infer = "/v2/models/demo/infer"
    assert json_part("POST", infer, {"Content-Length": "123"}) == 123
    assert json_part("POST", "/v2/models/demo/versions/1/infer", {"Content-Length": "5"}) == 5
    # a binary request: only its JSON header is parsed, whatever the tensors weigh
    assert json_part("POST", infer, {"Content-Length": str(10**9), "Inference-Header-Content-Length": "200"}) == 200
    assert json_part("POST", infer, {}) is None  # chunked: counted as it comes
    assert json_part("GET", "/v2/models/demo", {"Content-Length": str(10**9)}) is None
    assert json_part("POST", "/v2/repository/index", {"Content-Length": str(10**9)}) is None


@needs_server
def test_json_requests_over_the_cap_get_413_and_the_server_keeps_serving(served: Served) -> None:
    """8 MB default: one image as JSON (5.3 MB) is answered like its binary twin; a batch of 4 as JSON
    (21 MB) or a chunked JSON body over the cap gets 413 naming binary data; binary batches pass."""
    import http.client

    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    def infer(x: np.ndarray, binary: bool) -> Any:
        client = th.InferenceServerClient(served.url, network_timeout=60)
        inp = th.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        try:
            return client.infer("demo", [inp])
        finally:
            client.close()

    one = Detector(DEMO_ONNX).preprocess([cv2.imread(PATHS[0])])
    four = np.concatenate([one] * 4)
    a, b = infer(one, binary=False), infer(one, binary=True)
    assert a.as_numpy("num_dets").tolist() == b.as_numpy("num_dets").tolist() and a.as_numpy("num_dets")[0, 0] > 0
    np.testing.assert_allclose(a.as_numpy("det_boxes"), b.as_numpy("det_boxes"), atol=1e-5)
    with pytest.raises(InferenceServerException) as err:
        infer(four, binary=False)
    assert str(err.value.status()) == "413" and "binary_data=True" in str(err.value), str(err.value)
    conn = http.client.HTTPConnection(served.url, timeout=60)
    conn.putrequest("POST", "/v2/models/demo/infer")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b" " * (1 << 20)
    for _ in range(9):  # 9 MB of JSON whitespace, no Content-Length
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413 and b"over this server's 8 MB limit" in resp.read()
    conn.close()
    assert infer(four, binary=True).as_numpy("num_dets").shape == (4, 1)  # binary of any size, and still up
