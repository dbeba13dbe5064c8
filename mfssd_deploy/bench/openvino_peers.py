"""The OpenVINO peers: what a CPU user gets from OpenVINO without this SDK, timed beside our rows.

1. OpenVINO on our own best file (`core.compile_model(path, "CPU")`, OpenVINO's defaults): if our
   Detector is slower on the same file, the SDK leaves speed on the table.
2. OpenVINO + NNCF on the unpruned full-size model: the FP32 ONNX quantized by OpenVINO's own
   post-training tool (`nncf.quantize`, its default preset, 100 calibration images through our
   pre-processing) and run with OpenVINO's defaults: the CPU user's do-it-yourself path.

Both run the same pre-processing as our Detector (resize + normalise into NCHW float32) and call one
infer request per batch; OpenVINO's defaults on this CPU mean bf16 for float layers (a peer is timed
as it ships, not as we would configure it). Nothing here imports torch; NNCF does, when it runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.fileio import sha256_file
from mfssd_deploy.geometry import Geometry

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 100


class OpenVinoPeer:
    """An ONNX or OpenVINO IR file compiled with OpenVINO's defaults for the CPU, one request per call."""

    def __init__(self, path: Path, cfg: ModelConfig, threads: int = 0) -> None:
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": str(threads)} if threads else {}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.cfg = cfg

    @property
    def inference_precision(self) -> str:
        return str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = Geometry(self.cfg).preprocess(images)
        out = self.request.infer({0: x})
        return [np.asarray(v) for v in out.values()]


def file_meta(path: Path) -> dict[str, Any]:
    """An ONNX file's `mfssd` metadata, read off the file (no session, nothing compiled)."""
    from mfssd_deploy.artifacts import read_meta

    return read_meta(path)


def nncf_quantized(fp32_onnx: Path, calib_dir: Path, cache: Path, cfg: ModelConfig) -> Path:
    """`fp32_onnx` quantized by NNCF (default preset) into an OpenVINO IR in `cache`, made once per file
    and NNCF version; written to a temporary name and renamed (.bin before .xml: an .xml is whole)."""
    import nncf
    import openvino as ov

    from mfssd_deploy.runtime.inputs import list_images, read_image

    key = f"{sha256_file(fp32_onnx)[:10]}-nncf{nncf.__version__}"
    xml = cache / f"{fp32_onnx.name.removesuffix('.onnx')}.nncf-{key}.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    files = list_images(calib_dir, CALIBRATION_IMAGES)
    log.info("quantizing %s with NNCF %s on %d images (once; cached in %s)", fp32_onnx.name, nncf.__version__,
             len(files), cache)  # fmt: skip
    data = [Geometry(cfg).preprocess([read_image(f)]) for f in files]
    model = nncf.quantize(ov.Core().read_model(str(fp32_onnx)), nncf.Dataset(data), subset_size=len(data))
    with tempfile.TemporaryDirectory(dir=cache, prefix=".nncf-") as tmp:
        tmp_xml = Path(tmp) / xml.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp_xml, xml)
    return xml
