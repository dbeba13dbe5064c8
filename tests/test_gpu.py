"""On a CUDA GPU: the torch backend, the raw-layout decode + batched NMS and the stage timing, against the CPU.

Every test here is marked `gpu` and skips without CUDA (tools/gpu_check.sh runs them on a GPU machine).
The CPU results are the reference. cuDNN convolutions use TF32 by default on Ampere and newer GPUs
(10-bit mantissa): the exact comparisons switch it off; what users get (TF32 on) is compared by
detection agreement on the trained demo model instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mfssd_deploy.demo_assets import demo_model, sample_images
from mfssd_deploy.exporters.parity import agreement, match_detections
from mfssd_deploy.runtime.detector import Detector
from mfssd_deploy.runtime.results import Result

from helpers import same

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]


@pytest.fixture
def no_tf32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _samples() -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sample_images()]


def _fixture_images(artifacts: dict[str, Path]) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]


def _padded(results: list[Result], k: int = 200) -> tuple[np.ndarray, ...]:
    """Results back to the padded (num_dets, boxes, scores, classes) form parity.agreement reads."""
    n = len(results)
    num = np.array([[len(r)] for r in results], np.int32)
    boxes, scores, classes = np.zeros((n, k, 4), np.float32), np.zeros((n, k), np.float32), np.zeros((n, k), np.int32)
    for i, r in enumerate(results):
        boxes[i, : len(r)], scores[i, : len(r)], classes[i, : len(r)] = r.boxes, r.scores, r.labels
    return num, boxes, scores, classes


@pytest.mark.usefixtures("no_tf32")
def test_torch_backend_raw_outputs_on_cuda_equal_cpu(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.runtime.backends.torch_backend import TorchBackend

    cpu = Detector(artifacts["pt"])
    for n in (1, 4):
        x = cpu.preprocess(_fixture_images(artifacts)[:n])
        ref = [t.numpy() for t in cpu.backend.infer(x)]
        got = TorchBackend(artifacts["pt"], "cuda").infer(x)
        assert all(t.is_cuda for t in got)  # raw outputs stay on the GPU for the decode + NMS
        d = max(float(np.abs(g.cpu().numpy() - r).max()) for g, r in zip(got, ref, strict=True))
        assert d <= 1e-4, d


@pytest.mark.usefixtures("no_tf32")
def test_detector_on_cuda_equals_cpu(artifacts: dict[str, Path]) -> None:
    for model, imgs in ((demo_model(), _samples()), (artifacts["pt"], _fixture_images(artifacts))):
        got = Detector(model, device="cuda")(imgs)
        ref = Detector(model)(imgs)
        assert sum(len(r) for r in ref) > 0
        same(got, ref, iou=0.999, tol=1e-4)


def test_detector_on_cuda_with_tf32_agrees_with_cpu() -> None:
    """The default settings (TF32 convolutions where the GPU has them): the drawn detections agree."""
    imgs = _samples()
    a = agreement(_padded(Detector(demo_model(), device="cuda")(imgs)), _padded(Detector(demo_model())(imgs)))
    assert a["detections_fp32"] > 10 and a["f1"] >= 0.95, a


@pytest.mark.parametrize("model", ["demo", "fixture"])
def test_decode_and_batched_nms_on_cuda_equal_cpu(artifacts: dict[str, Path], model: str) -> None:
    """The same raw outputs through postprocess on the GPU and on the CPU: the same detections."""
    from mfssd_deploy.geometry.postprocess import postprocess
    from mfssd_deploy.geometry.priors import priors_tensor

    det = Detector(demo_model() if model == "demo" else artifacts["pt"])
    imgs = _samples() if model == "demo" else _fixture_images(artifacts)
    loc, scores = det.backend.infer(det.preprocess(imgs))
    cfg, n = det.config, det.nms
    outs = {}
    for dev in ("cpu", "cuda"):
        with torch.inference_mode():
            dets = postprocess(loc.to(dev), scores.to(dev), priors_tensor(cfg.priors, dev), n, cfg.priors.variances)
        assert all(t.device.type == dev for t in dets)  # the whole decode + NMS ran there
        outs[dev] = tuple(t.cpu().numpy() for t in dets)
    m = match_detections(outs["cuda"], outs["cpu"], iou_min=0.9999, score_tol=1e-6)
    assert m["ok"] and sum(m["counts"]) > 0, m


def test_cuda_stage_timing() -> None:
    """pre / infer / post are all timed, and infer waits for the GPU (it is not just the kernel launches)."""
    det = Detector(demo_model(), device="cuda", batch_size=4)
    imgs = _samples() * 2
    det(imgs)  # warm-up: cuDNN autotuning, CUDA context, priors on the GPU
    t0 = time.perf_counter()
    det(imgs)
    wall = (time.perf_counter() - t0) * 1000
    t = det.last_timing
    assert set(t) == {"pre", "infer", "post"} and all(v > 0 for v in t.values()), t
    assert sum(t.values()) <= wall * 1.01, (t, wall)
    # infer ends with torch.cuda.synchronize(): after it, nothing of that batch is still queued
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    x = det.preprocess(imgs[:4])
    start.record()
    t1 = time.perf_counter()
    det.backend.infer(x)
    host_ms = (time.perf_counter() - t1) * 1000
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) <= host_ms * 1.05 + 0.5, (start.elapsed_time(end), host_ms)
