from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Two cores: keep torch from oversubscribing when pytest runs beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# INT8 .onnx files would run in OpenVINO where it is installed (backends.default_backend); after OpenVINO
# has run, torch training in the same process crashed here, so this process keeps ONNX Runtime and the
# OpenVINO tests (the rule included) run in their own process (Makefile).
os.environ.setdefault("MFSSD_ONNX_CPU_BACKEND", "onnxruntime")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def trained_like_model() -> torch.nn.Module:
    """A narrow model whose outputs look like a trained one's: a few confident boxes per image."""
    from mfssd_deploy.models import build_model

    torch.manual_seed(0)
    m = build_model("mfssd_bn", 4, width=0.125, class_names=("a", "b", "c")).eval()
    with torch.no_grad():
        for conf in m.head.conf:
            conf.bias.view(-1, 4)[:, 0] += 1.0  # background-biased: most priors score low
    return m


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A narrow model exported once for the session: every layout and precision, plus its images."""
    tmp = tmp_path_factory.mktemp("det")
    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export

    ckpt = save_checkpoint(tmp / "m.pt", trained_like_model())
    imgs = tmp / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = (rng.random((200 + 40 * i, 300 - 20 * i, 3)) * 255).astype(np.uint8)
        cv2.circle(img, (80, 90), 25 + 5 * i, (0, 0, 255), -1)
        cv2.imwrite(str(imgs / f"{i}.jpg"), img)
    run_export(
        ExportRequest(
            model=ckpt, out_dir=tmp / "x", int8=True, fp16=True, calib=imgs, parity_images=sorted(imgs.iterdir())
        )
    )
    x = tmp / "x"
    return {"pt": ckpt, "raw": x / "m.onnx", "e2e": x / "m.end2end.onnx", "int8_raw": x / "m.int8.onnx",
            "int8": x / "m.int8.end2end.onnx", "fp16_raw": x / "m.fp16.onnx", "fp16": x / "m.fp16.end2end.onnx",
            "imgs": imgs}  # fmt: skip


@pytest.fixture(scope="session")
def video(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-frame mp4 of the session's images (320x240), shared by the streaming and mfssd-detect tests."""
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in sorted(artifacts["imgs"].iterdir())] * 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    for f in frames:
        writer.write(f)
    writer.release()
    return path
