"""The one metadata parser: what every reader (ONNX, engine sidecar, Triton) accepts and refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfssd_deploy.artifact_meta import ENGINE_PRECISIONS, parse_meta
from mfssd_deploy.backends.triton_backend import mfssd_meta
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.engine_meta import read_engine_meta
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_model


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
