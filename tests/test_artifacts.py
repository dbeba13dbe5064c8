"""The one metadata parser: what every reader (ONNX, engine sidecar, Triton) accepts and refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from mfssd_deploy.artifacts import ENGINE_PRECISIONS, parse_meta
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_model
from mfssd_deploy.runtime.backends.triton_backend import mfssd_meta
from mfssd_deploy.runtime.engine_meta import read_engine_meta


def meta(**over: object) -> dict:
    cfg = build_model("mfssd_bn", 4, width=0.125, class_names=("a", "b", "c")).config
    return {"layout": "end2end", "precision": "fp32", "config": cfg.to_dict(), **over}


@pytest.mark.parametrize("precision", ENGINE_PRECISIONS)
def test_engine_sidecar_with_every_builder_precision_loads(tmp_path: Path, precision: str) -> None:
    engine = tmp_path / "m.end2end.int8.engine"
    engine.write_bytes(b"x")
    facts = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": [8, 7]}
    (tmp_path / f"{engine.name}.json").write_text(json.dumps(meta(precision=precision, **facts)))
    got = read_engine_meta(engine)
    assert got["precision"] == precision and ModelConfig.from_dict(got["config"]).num_classes == 4


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"layout": "sideways"}, "layout 'sideways'"),
        ({"precision": "int4"}, "precision 'int4'"),
        ({"config": {"variant": "x"}}, "model config is malformed"),
        ({"config": "text"}, "model config is malformed"),
    ],
)
def test_bad_metadata_is_refused_naming_the_source(bad: dict, words: str) -> None:
    with pytest.raises(MfssdError, match=words) as exc:
        parse_meta(meta(**bad), "the-file.onnx")
    assert str(exc.value).startswith("the-file.onnx: ") and "\n" not in str(exc.value)


def test_missing_keys_and_broken_json(tmp_path: Path) -> None:
    for key in ("layout", "config"):
        m = meta()
        del m[key]
        with pytest.raises(MfssdError, match=f"lacks '{key}'"):
            parse_meta(m, "x")
    with pytest.raises(MfssdError, match="not valid JSON"):
        parse_meta("{oops", "x")
    with pytest.raises(MfssdError, match=r"Triton model 'det'.*lacks 'config'"):
        mfssd_meta({"parameters": {"mfssd": {"string_value": json.dumps({"layout": "raw"})}}}, "det")


def test_exported_files_are_named_by_the_table(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.artifacts import KINDS, onnx_name
    from mfssd_deploy.exporters.onnx_export import read_metadata

    for key, kind in {"raw": "fp32-raw", "e2e": "fp32-e2e", "int8_raw": "int8-raw", "int8": "int8-e2e",
                      "fp16_raw": "fp16-raw", "fp16": "fp16-e2e"}.items():  # fmt: skip
        path = artifacts[key]
        m = read_metadata(onnx.load(path))
        assert path.name == "m" + KINDS[kind].suffix == onnx_name("m", m["precision"], m["layout"])
        assert (KINDS[kind].precision, KINDS[kind].layout) == (m["precision"], m["layout"])


def test_every_backend_meets_the_protocol(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.runtime.backends import Backend, make_backend

    for key in ("pt", "e2e", "raw"):
        b = make_backend(artifacts[key], None, "cpu", 4, {})
        assert isinstance(b, Backend) and b.thread_safe
        x = np.zeros((2, 3, 300, 300), np.float32)
        out = b.infer(x)
        if b.layout == "raw":  # softmax scores from every backend: rows sum to 1 (the torch one returned logits)
            assert np.allclose(np.asarray(out[1]).sum(-1), 1.0, atol=1e-5)


def test_registry_refuses_what_a_backend_cannot_load(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.runtime.backends import make_backend

    with pytest.raises(MfssdError, match=r"backend 'torch' cannot run a \.onnx file \(use 'onnxruntime'"):
        make_backend(artifacts["e2e"], "torch", "cpu", 1, {})
    with pytest.raises(MfssdError, match="backend 'nope': choose one of"):
        make_backend(artifacts["e2e"], "nope", "cpu", 1, {})


def test_detector_serialises_a_backend_that_is_not_thread_safe(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from mfssd_deploy.runtime.detector import Detector

    safe = OnnxRuntimeBackend(artifacts["e2e"])
    assert Detector.from_backend(safe, "x")._lock is None
    unsafe = OnnxRuntimeBackend(artifacts["e2e"])
    unsafe.thread_safe = False
    assert Detector.from_backend(unsafe, "x")._lock is not None


def test_artifact_meta_is_the_one_reader_and_writer() -> None:
    from mfssd_deploy.artifacts import ArtifactMeta
    from mfssd_deploy.exporters.onnx_export import make_metadata

    cfg = build_model("mfssd_bn", 4, width=0.125, class_names=("a", "b", "c")).config
    written = make_metadata(cfg, "end2end", "int8-qdq", "abc", opset=17, calibration={"method": "minmax"})
    typed = ArtifactMeta.parse(json.dumps(written), "m.onnx")
    assert (typed.layout, typed.precision, typed.source_sha256, typed.config) == ("end2end", "int8-qdq", "abc", cfg)
    assert typed.extra["opset"] == 17 and typed.to_dict() == written  # nothing lost or added on the way
    engine = {**written, "precision": "int8", "tensorrt_version": "10.3.0", "profiles": {"images": {"min": [1]}}}
    assert ArtifactMeta.parse(engine, "m.engine.json").to_dict() == engine
    with pytest.raises(MfssdError, match=r"m\.onnx: its 'mfssd' metadata lacks 'config'"):
        ArtifactMeta.parse({"layout": "raw"}, "m.onnx")


def test_read_meta_is_the_one_reader_and_agrees_with_onnx(tmp_path: Path) -> None:
    """artifacts.read_meta reads the property off the file's protobuf fields: the same dict as the onnx
    package's own parser gives, for every bundled file, in a process that imports neither onnx, ONNX
    Runtime, OpenVINO nor torch; a truncated file and a foreign one are refused in one line."""
    import subprocess
    import sys

    from mfssd_deploy.artifacts import kind_of, parse_meta, read_meta
    from mfssd_deploy.demo_assets import DEMO_ONNX, DEMO_ONNX_INT8

    for path in (DEMO_ONNX, DEMO_ONNX_INT8):
        ref = next(p.value for p in onnx.load(str(path)).metadata_props if p.key == "mfssd")
        assert read_meta(path) == parse_meta(ref, path.name)
        assert kind_of(path) == "onnx"
    code = ("import sys; from mfssd_deploy.artifacts import read_meta; from mfssd_deploy.demo_assets import DEMO_ONNX;"
            " m = read_meta(DEMO_ONNX); print(m['layout'], sorted({'onnx', 'onnxruntime', 'openvino', 'torch'}"
            " & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "end2end []", out
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(DEMO_ONNX.read_bytes()[:5000])
    with pytest.raises(MfssdError, match="not a readable ONNX file"):
        read_meta(cut)
    foreign = tmp_path / "foreign.onnx"
    m = onnx.load(str(DEMO_ONNX))
    del m.metadata_props[:]
    onnx.save(m, str(foreign))
    with pytest.raises(MfssdError, match="has no 'mfssd' metadata"):
        read_meta(foreign)
    with pytest.raises(MfssdError, match="not a model file"):
        kind_of(tmp_path / "x.tflite")
