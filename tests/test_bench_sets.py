"""The bench's timing sets (bench.sets): every ratio the report computes is between two rows of one set,
and no set holds more than two models' worth of one artifact family (the memory bound)."""

from __future__ import annotations

from pathlib import Path

from mfssd_deploy.bench import report
from mfssd_deploy.bench.run import artifact_specs
from mfssd_deploy.bench.sets import is_target_peer, timing_sets
from mfssd_deploy.bench.suite import FORMATS, Model

RUNTIMES = ("onnxruntime", "openvino", "openvino-bf16")


def _specs() -> list[dict]:  # type: ignore[type-arg]
    groups = ("demo", "demo-pruned", "full", "full-pruned", "torchvision-import")
    models = [Model(g, {f: Path(f"{g}.{f}.onnx" if f != "eager" else f"{g}.pt") for f in FORMATS}, "random")
              for g in groups]  # fmt: skip
    specs = artifact_specs(models, list(FORMATS), ["cpu"], 8, 0, False, RUNTIMES)
    specs += [{"kind": "peer", "peer": p, "device": "cpu"} for p in ("torchvision", "openvino", "nncf")]
    specs += [{"kind": "peer", "peer": "torchvision-same-weights", "device": "cpu"}]
    return specs


def _row(spec: dict, batch: int) -> dict:  # type: ignore[type-arg]
    precision = {"int8-e2e": "int8", "int8u8-e2e": "int8u8"}.get(spec["format"], "fp32")
    if spec.get("runtime") == "openvino-bf16":
        precision = "bf16"
    return {**spec, "batch": batch, "precision": precision, "images_per_s": 1.0, "model": spec["path"]}


def test_every_ratio_is_between_rows_of_one_set() -> None:
    specs = _specs()
    sets = timing_sets(specs)
    detectors = [i for i, s in enumerate(specs) if s["kind"] == "detector"]
    assert sorted({i for idx in sets for i in idx} - {i for i, s in enumerate(specs) if s["kind"] == "peer"}) == \
        detectors  # fmt: skip
    rows = [_row(specs[i], b) for i in detectors for b in (1, 8)]
    ratios = report.speed_ratios(rows)  # the report's own rule for which rows a ratio compares
    kinds = {r["kind"] for r in ratios}
    assert kinds == {"precision", "runtime", "pruning"} and len(ratios) > 60
    label_sets = [{report.label(_row(specs[i], 1)) for i in idx if specs[i]["kind"] == "detector"} for idx in sets]
    for r in ratios:
        assert any(r["of"] in s and r["vs"] in s for s in label_sets), r


def test_sets_stay_small_and_the_peers_are_where_they_belong() -> None:
    specs = _specs()
    sets = timing_sets(specs)
    assert max(len(idx) for idx in sets) <= 4 + 1  # two models x 2 artifacts (+ the same-weights peer)
    assert not any(is_target_peer(specs[i]) for idx in sets for i in idx)  # timed beside the best row instead
    tv = next(i for i, s in enumerate(specs) if s.get("peer") == "torchvision-same-weights")
    with_tv = [idx for idx in sets if tv in idx]
    assert with_tv and all(any(specs[i].get("group") == "torchvision-import" for i in idx) for idx in with_tv)
    groups = {specs[i]["group"] for idx in with_tv for i in idx if specs[i]["kind"] == "detector"}
    assert groups == {"torchvision-import"}
    # every torchvision-import row shares a set with the peer
    assert all(any(i in idx for idx in with_tv) for i, s in enumerate(specs) if s.get("group") == "torchvision-import")
