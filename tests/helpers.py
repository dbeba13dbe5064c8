"""Shared test helpers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.evaluation.voc import box_iou_np
from mfssd_deploy.runtime.results import Result


def same(a: list[Result], b: list[Result], iou: float = 0.99, tol: float = 1e-4) -> None:
    assert [len(r) for r in a] == [len(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        if not len(ra):
            continue
        ious = box_iou_np(ra.boxes.astype(np.float64), rb.boxes.astype(np.float64))
        for i in range(len(ra)):
            cand = np.nonzero(rb.labels == ra.labels[i])[0]
            j = cand[np.argmax(ious[i, cand])]
            assert ious[i, j] >= iou and abs(ra.scores[i] - rb.scores[j]) <= tol


def assert_thread_safe(det: Any, images: list[np.ndarray], threads: int = 8) -> None:
    """Concurrent calls from `threads` threads return exactly the serial results."""
    serial = [det(img)[0] for img in images[:threads]]
    got: dict[int, Result] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = det(images[i])[0]

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for i in range(threads):
        assert np.array_equal(got[i].boxes, serial[i].boxes) and np.array_equal(got[i].scores, serial[i].scores)


def make_engine(tmp: Path, onnx_path: Path, version: str = "10.3.0", batch: tuple[int, int] = (1, 8)) -> Path:
    import onnx

    from mfssd_deploy.exporters.onnx_export import read_metadata

    meta = read_metadata(onnx.load(onnx_path))
    engine = tmp / f"{onnx_path.stem}.engine"
    engine.write_bytes(b"ENGINE-" + version.encode())
    meta.update(tensorrt_version=version, gpu_name="Orin", compute_capability=[8, 7],
                profiles={"images": {"min": [batch[0], 3, 300, 300], "opt": [batch[1], 3, 300, 300],
                                     "max": [batch[1], 3, 300, 300]}})  # fmt: skip
    (tmp / f"{engine.name}.json").write_text(json.dumps(meta))
    return engine


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies u8 x s8 with VNNI or AMX (Linux: /proc/cpuinfo). Without it (AVX2 only) INT8
    kernels sum pairs in int16 and take other paths, which some tolerances must allow for."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: keep the tight tolerances
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
