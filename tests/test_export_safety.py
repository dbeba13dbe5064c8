"""A reduced-precision export is valid only for what produced it, and a broken one is never written.

Issue: the INT8 calibration cache was keyed by the output name only, so a second checkpoint exported
under the same name reused the first model's ranges, and reduced-precision parity was informational.
These tests run the bundled demo models (real detections above the display threshold).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.export import main as export_main
from mfssd_deploy.demo_assets import DEMO_MODEL, PRUNED_DEMO_MODEL
from mfssd_deploy.exporters.limits import MIN_AGREEMENT
from mfssd_deploy.fileio import sha256_file

_RUNS = itertools.count()


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfssd_deploy.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, 10, 1, seed=3, show_progress=False)
    return root / "train"


def export(model: Path, out: Path, calib: Path, *extra: str, name: str = "m") -> tuple[int, dict[str, Any]]:
    report = out.parent / f"report-{next(_RUNS)}.json"
    code = run_cli("mfssd-export", export_main, ["--model", str(model), "--name", name, "--out-dir", str(out),
                   "--end2end", "--int8", "--calib", str(calib), "--json", str(report), *extra])  # fmt: skip
    return code, (json.loads(report.read_text()) if report.is_file() else {})


def int8_file(out: Path) -> Path:
    return out / "m.int8.end2end.onnx"


def test_stale_cache_of_another_model_is_not_reused(calib: Path, tmp_path: Path) -> None:
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    assert export(DEMO_MODEL, shared, calib)[0] == 0
    before = {f.name: sha256_file(f) for f in shared.iterdir()}
    code, report = export(PRUNED_DEMO_MODEL, shared, calib)  # same --name, same folder, another checkpoint
    assert code == 2 and not report  # refused: the first model's files are not written over
    assert {f.name: sha256_file(f) for f in shared.iterdir()} == before
    for f in shared.glob("m.*onnx"):  # the user removes the exports and keeps the folder: only the cache is left
        f.unlink()
    code, report = export(PRUNED_DEMO_MODEL, shared, calib)
    assert code == 0
    status = report["calibration"]["int8-qdq"]
    assert status["calibration"] == "computed" and "another model" in status["reason"]
    assert export(PRUNED_DEMO_MODEL, fresh, calib)[0] == 0
    # The INT8 model equals the one a fresh folder gives: the first model's ranges played no part.
    assert sha256_file(int8_file(shared)) == sha256_file(int8_file(fresh))
    cache = json.loads((shared / "m.int8.calib.json").read_text())
    assert cache["key"]["count"] == 10 and len(cache["key"]["images"]) == 10


def test_cache_reused_only_for_the_same_inputs(calib: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    assert export(DEMO_MODEL, out, calib)[0] == 0
    first = sha256_file(int8_file(out))
    code, report = export(DEMO_MODEL, out, calib)
    assert code == 0 and report["calibration"]["int8-qdq"]["calibration"] == "reused"
    assert sha256_file(int8_file(out)) == first
    code, report = export(DEMO_MODEL, out, calib, "--recalibrate")
    assert code == 0 and report["calibration"]["int8-qdq"]["reason"] == "--recalibrate given"
    # Other calibration images (3 of the 10): recalibrated, and a different model. (One file fewer is a new
    # key too, but with minmax ranges it changes the model only if that image held some tensor's maximum.)
    other = tmp_path / "calib2"
    shutil.copytree(calib, other)
    for f in sorted(other.iterdir())[3:]:
        f.unlink()
    code, report = export(DEMO_MODEL, out, other)
    assert code == 0 and "other calibration images" in report["calibration"]["int8-qdq"]["reason"]
    assert sha256_file(int8_file(out)) != first
    # Another method: recalibrated (it was a ValueError traceback from onnxruntime).
    code, report = export(DEMO_MODEL, out, other, "--calib-method", "percentile")
    assert code == 0 and "another method (minmax)" in report["calibration"]["int8-qdq"]["reason"]


@pytest.mark.parametrize("model", [DEMO_MODEL, PRUNED_DEMO_MODEL], ids=["demo", "pruned"])
def test_healthy_reduced_precision_passes_with_margin(model: Path, calib: Path, tmp_path: Path) -> None:
    code, report = export(model, tmp_path / "x", calib, "--int8-cpu", "--fp16")
    assert code == 0
    reduced = [a for a in report["artifacts"] if a["precision"] != "fp32"]
    assert {a["precision"] for a in reduced} == {"int8-qdq", "int8-qdq-u8", "fp16"}
    for a in reduced:
        g = a["parity"]["agreement"]
        assert g["detections_fp32"] >= 20  # the check is not vacuous on these images
        assert g["f1"] >= MIN_AGREEMENT + 0.25, a["path"]


def test_wrong_calibration_is_not_written(calib: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert export(DEMO_MODEL, out, calib)[0] == 0
    int8_file(out).unlink()
    # A deliberately wrong calibration: every activation range shrunk 50x, under a key that matches.
    cache_path = out / "m.int8.calib.json"
    cache = json.loads(cache_path.read_text())
    for r in cache["ranges"]["data"].values():
        for end in ("lowest", "highest"):
            r[end]["data"] = [v / 50 for v in r[end]["data"]]
    cache_path.write_text(json.dumps(cache))
    capsys.readouterr()
    code, _ = export(DEMO_MODEL, out, calib)
    err = capsys.readouterr().err.strip()
    assert code == 2 and not int8_file(out).exists()
    assert len(err.splitlines()) == 1 and "m.int8.end2end.onnx is broken" in err and f"bound {MIN_AGREEMENT}" in err
    assert not list(out.glob(".*.tmp"))  # no half-written artifact either
    # The same bad ranges pass when the check is switched off on purpose (proves the check caught it).
    assert export(DEMO_MODEL, out, calib, "--min-agreement", "0")[0] == 0


def test_export_of_an_onnx_file_says_what_it_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx_file = tmp_path / "good.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    assert run_cli("mfssd-export", export_main, ["--model", str(onnx_file)]) == 2
    err = capsys.readouterr().err
    # an .onnx --model is an engine build from an earlier export (--trt): without --trt it says what it takes
    assert "already exported: add --trt" in err and "pass the .pt checkpoint" in err and "corrupt" not in err


def test_default_stems_of_two_checkpoints_named_alike_never_mix(calib: Path, tmp_path: Path) -> None:
    """Two runs' best.pt exported into one folder: the second gets a stem of its own (STEM-SHA8), and the
    first one's files are untouched (before: the second wrote over them under the same stem)."""
    out = tmp_path / "export"
    for run, src in (("a", DEMO_MODEL), ("b", PRUNED_DEMO_MODEL)):
        (tmp_path / run).mkdir()
        shutil.copy(src, tmp_path / run / "best.pt")
    code = run_cli("mfssd-export", export_main, ["--model", str(tmp_path / "a" / "best.pt"), "--out-dir", str(out),
                                                 "--end2end"])  # fmt: skip
    assert code == 0
    first = {f.name: sha256_file(f) for f in out.iterdir()}
    assert "best.end2end.onnx" in first
    code = run_cli("mfssd-export", export_main, ["--model", str(tmp_path / "b" / "best.pt"), "--out-dir", str(out),
                                                 "--end2end"])  # fmt: skip
    assert code == 0
    now = {f.name: sha256_file(f) for f in out.iterdir()}
    assert {k: now[k] for k in first} == first
    assert f"best-{sha256_file(PRUNED_DEMO_MODEL)[:8]}.end2end.onnx" in now
