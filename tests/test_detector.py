"""The Detector over .pt, raw .onnx and end2end .onnx: same detections, inputs, errors, threads, lean runtime."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.errors import MfssdError

from helpers import assert_thread_safe, same
from test_lean_import import run_without_torch


def test_pt_raw_and_end2end_agree(artifacts: dict[str, Path]) -> None:
    paths = sorted(artifacts["imgs"].iterdir())
    results = {k: Detector(artifacts[k])([str(p) for p in paths]) for k in ("pt", "raw", "e2e")}
    assert sum(len(r) for r in results["pt"]) > 0
    same(results["pt"], results["raw"])
    same(results["pt"], results["e2e"])
    for r, p in zip(results["e2e"], paths, strict=True):
        h, w = cv2.imread(str(p)).shape[:2]
        assert r.image_shape == (h, w) and r.source == str(p)
        assert (r.boxes[:, 0::2] <= w).all() and (r.boxes[:, 1::2] <= h).all() and (r.boxes >= 0).all()
        assert np.all(np.diff(r.scores) <= 0)


def test_batching_does_not_change_results(artifacts: dict[str, Path]) -> None:
    imgs = [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]
    one = Detector(artifacts["e2e"], batch_size=1)(imgs)
    four = Detector(artifacts["e2e"], batch_size=4)(imgs)
    same(one, four, iou=0.999, tol=1e-5)


def test_inputs_gray_bgra_and_mixed_sizes(artifacts: dict[str, Path]) -> None:
    det = Detector(artifacts["e2e"])
    bgr = cv2.imread(str(sorted(artifacts["imgs"].iterdir())[0]))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    out = det([bgr, gray, gray[..., None], bgra, bgr[:100, :150]])
    assert len(out) == 5
    same([out[0]], [out[3]], iou=0.999, tol=1e-6)  # BGRA is BGR plus alpha
    assert out[4].image_shape == (100, 150)
    single = det(bgr)
    assert isinstance(single, list) and len(single) == 1


def test_conf_and_max_det_on_end2end_equal_raw(artifacts: dict[str, Path]) -> None:
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    same(Detector(artifacts["e2e"], conf=0.3, max_det=5)(paths), Detector(artifacts["raw"], conf=0.3, max_det=5)(paths))
    with pytest.raises(MfssdError, match=r"NMS at IoU 0\.45 inside the graph"):
        Detector(artifacts["e2e"], iou=0.6)
    with pytest.raises(MfssdError, match=r"below the 0\.01 baked"):
        Detector(artifacts["e2e"], conf=0.001)


def test_result_to_dict_and_draw(artifacts: dict[str, Path]) -> None:
    img = cv2.imread(str(sorted(artifacts["imgs"].iterdir())[1]))
    r = Detector(artifacts["e2e"], conf=0.05)(img)[0]
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["detections"]) == len(r) > 0
    assert set(d["detections"][0]) == {"box", "score", "label", "class"} and d["detections"][0]["class"] in "abc"
    drawn = r.draw(img)
    assert drawn.shape == img.shape and not np.array_equal(drawn, img)
    assert np.array_equal(img, cv2.imread(str(sorted(artifacts["imgs"].iterdir())[1])))  # input untouched


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("missing.jpg", "image not found"),
        ("text.jpg", "is not an image OpenCV can decode"),
        ("folder", "is not a file"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.full((10, 10, 3), np.nan), "dtype float64 (it contains NaN)"),
        (np.zeros((10, 10, 3), np.float32), "dtype float32"),
        (np.zeros((10, 10, 2), np.uint8), "is not an image"),
        ([], "no images given"),
        (42, "expected a path or a numpy array"),
    ],
)
def test_bad_input_is_one_line(artifacts: dict[str, Path], tmp_path: Path, bad: object, fragment: str) -> None:
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "folder").mkdir()
    if isinstance(bad, str):
        bad = str(tmp_path / bad)
    with pytest.raises(MfssdError) as exc:
        Detector(artifacts["e2e"])(bad)  # type: ignore[arg-type]
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_bad_models(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    with pytest.raises(MfssdError, match=r"unknown model type '\.h5'"):
        Detector(tmp_path / "m.h5")
    with pytest.raises(MfssdError, match="model not found"):
        Detector(tmp_path / "m.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(MfssdError, match="not a loadable ONNX model"):
        Detector(tmp_path / "bad.onnx")
    with pytest.raises(MfssdError, match=r"backend 'torch' cannot run a \.onnx"):
        Detector(artifacts["e2e"], backend="torch")
    with pytest.raises(MfssdError, match="no CUDA or TensorRT provider"):
        Detector(artifacts["e2e"], device="cuda")


def test_threads_match_serial(artifacts: dict[str, Path]) -> None:
    det = Detector(artifacts["e2e"])
    imgs = [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())] * 2
    assert_thread_safe(det, imgs)


def test_lean_runtime_runs_end2end_without_torch(artifacts: dict[str, Path]) -> None:
    img = sorted(artifacts["imgs"].iterdir())[0]
    r = run_without_torch(f"""
        from mfssd_deploy import Detector
        from mfssd_deploy.errors import MissingExtraError
        res = Detector({str(artifacts["e2e"])!r})({str(img)!r})
        print("dets", len(res[0]))
        for path in ({str(artifacts["raw"])!r}, {str(artifacts["pt"])!r}):
            try:
                Detector(path)
            except MissingExtraError as e:
                print("error", e)
        assert "torch" not in sys.modules
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    expected = len(Detector(artifacts["e2e"])(str(img))[0])
    assert lines[0] == f"dets {expected}"
    assert len(lines) == 3 and all('pip install "mfssd-deploy[torch]"' in ln for ln in lines[1:])


def test_provider_choice() -> None:
    from mfssd_deploy.runtime.backends.onnxruntime_backend import choose_providers

    cpu = choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], {}, None, {})
    assert [n for n, _ in cpu] == ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = choose_providers(
        "cuda", gpu, {"precision": "int8-qdq"}, "cache", {"CUDAExecutionProvider": {"device_id": 1}}
    )
    assert [n for n, _ in chosen] == gpu
    trt = chosen[0][1]
    assert trt["trt_int8_enable"] and not trt["trt_fp16_enable"] and trt["trt_engine_cache_path"] == "cache"
    assert chosen[1][1] == {"device_id": 1}
    assert "trt_profile_min_shapes" not in trt  # no batch given: the provider's own dynamic profile
    meta = {"precision": "fp32", "config": {"input_size": 300}}
    profiled = choose_providers("cuda", gpu, meta, None, {}, max_batch=8)[0][1]
    shapes = [profiled[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")]
    assert shapes == ["images:1x3x300x300", "images:8x3x300x300", "images:8x3x300x300"]
    cuda_only = choose_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], {}, None, {})
    assert [n for n, _ in cuda_only] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(MfssdError, match=r'pip install "mfssd-deploy\[gpu\]"'):
        choose_providers("cuda", ["CPUExecutionProvider"], {}, None, {})
    with pytest.raises(MfssdError, match="use 'cpu' or 'cuda'"):
        choose_providers("tpu", [], {}, None, {})
    with pytest.raises(MfssdError, match=r"GPUs and TensorRT do not run: on a GPU use the \.int8"):
        choose_providers("cuda", gpu, {"precision": "int8-qdq-u8"}, None, {})
    assert [n for n, _ in choose_providers("cpu", gpu, {"precision": "int8-qdq-u8"}, None, {})] == [
        "CPUExecutionProvider"
    ]


@pytest.mark.contract
def test_torch_backend_on_cuda_waits_for_the_gpu_inside_infer(artifacts: dict[str, Path]) -> None:
    """CUDA is asynchronous: the infer stage must end after the compute, not after the launches (no GPU here:
    a recording stand-in for torch's CUDA calls around the real model)."""
    import contextlib

    import torch

    from mfssd_deploy.checkpoint import load_model
    from mfssd_deploy.runtime.backends.torch_backend import TorchBackend

    calls: list[str] = []

    class Moved:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

        def pin_memory(self) -> Moved:
            calls.append("pin_memory")
            return self

        def to(self, device: str, non_blocking: bool = False) -> torch.Tensor:
            calls.append(f"to {device} non_blocking={non_blocking}")
            return self.t

    model = load_model(artifacts["pt"])

    def forward(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append("forward")
        return model(t)

    fake = type(
        "torch",
        (),
        {
            "inference_mode": staticmethod(contextlib.nullcontext),
            "from_numpy": staticmethod(lambda x: Moved(torch.from_numpy(x))),
            "cuda": type("cuda", (), {"synchronize": staticmethod(lambda: calls.append("sync"))}),
        },
    )
    backend = object.__new__(TorchBackend)
    backend.torch, backend.device, backend.model = fake, "cuda", forward
    loc, conf = backend.infer(np.zeros((2, 3, 300, 300), np.float32))
    assert calls == ["pin_memory", "to cuda non_blocking=True", "forward", "sync"]
    assert loc.shape[0] == conf.shape[0] == 2
