"""Every console script in a lean install (no extras) works or names the extra to install in one line.

Each script runs in a fresh interpreter where every optional module is missing (test_lean_import's
blocker); its --help must not print "(default: None)" nor state a default twice.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

from mfssd_deploy.cli import COMMAND_EXTRAS, EXTRA_MODULES, MODULE_EXTRAS, run_cli
from mfssd_deploy.demo_assets import DEMO_ONNX, DEMO_ONNX_INT8, SAMPLES, sample_images

from test_lean_import import run_lean

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
# distribution name -> top-level module, where they differ
DIST_MODULE = {
    "onnxconverter-common": "onnxconverter_common",
    "torch-pruning": "torch_pruning",
    "nvidia-pytriton": "pytriton",
    "cuda-bindings": "cuda",
}


def _modules_of(extra: str) -> set[str]:
    """Top-level modules an extra of pyproject.toml installs, following mfssd-deploy[...] includes."""
    out: set[str] = set()
    for req in PYPROJECT["project"]["optional-dependencies"][extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)  # type: ignore[union-attr]
        if name == "mfssd-deploy":
            for inner in re.search(r"\[(.*?)\]", req).group(1).split(","):  # type: ignore[union-attr]
                out |= _modules_of(inner.strip())
        else:
            out.add(DIST_MODULE.get(name, name))
    return out


def test_extra_table_matches_pyproject() -> None:
    optional = set(PYPROJECT["project"]["optional-dependencies"])
    assert set(EXTRA_MODULES) == optional - {"gpu", "dev"}  # gpu: onnxruntime-gpu (same module); dev: tools
    for extra, modules in EXTRA_MODULES.items():
        assert set(modules) == _modules_of(extra), extra
    assert MODULE_EXTRAS["torch"] == "torch" and MODULE_EXTRAS["onnx"] == "export"
    assert MODULE_EXTRAS["pycocotools"] == "train" and MODULE_EXTRAS["tensorrt"] == "trt"
    assert set(COMMAND_EXTRAS) <= set(SCRIPTS)
    assert all(set(extras) <= set(EXTRA_MODULES) for extras in COMMAND_EXTRAS.values())


def test_run_cli_keeps_the_traceback_of_other_import_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a missing module of a known extra becomes one line; anything else is a bug to see in full."""

    def missing(name: str) -> Callable[[list[str] | None], int]:
        def main(argv: list[str] | None) -> int:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return main

    with pytest.raises(ModuleNotFoundError):
        run_cli("mfssd-x", missing("mfssd_deploy.nonexistent"))

    def wrong_version(argv: list[str] | None) -> int:
        raise ImportError("cannot import name 'x' from 'torch'", name="torch")

    with pytest.raises(ImportError, match="cannot import name"):
        run_cli("mfssd-x", wrong_version)
    with pytest.raises(ModuleNotFoundError):  # torch is installed here: a missing submodule is a bug
        run_cli("mfssd-x", missing("torch.nonexistent"))
    import mfssd_deploy.cli

    monkeypatch.setattr(mfssd_deploy.cli, "installed", lambda module: module != "torch")  # as if torch were absent
    assert run_cli("mfssd-x", missing("torch.nn")) == 2


def run_script(name: str, argv: list[str], cwd: Path) -> Any:
    module, func = SCRIPTS[name].split(":")
    return run_lean(
        f"""
        import os, sys
        os.chdir({str(cwd)!r})
        sys.argv = [{name!r}, *{argv!r}]
        from {module} import {func}
        {func}()
        """
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfssd_deploy.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, 0, 8, seed=1, show_progress=False)
    return root


# Scripts that need an extra: arguments, and the extra(s) the one line must name.
NEEDS_EXTRA: dict[str, tuple[list[str], str]] = {
    "mfssd-serve": (["--repository", "out/repo"], "serve"),
    "mfssd-demo": (["--workdir", "out", "--export-dir", "out/export"], "export,train"),
    "mfssd-train": (["--data", "DATA", "--out", "out"], "train"),
    "mfssd-export": (["--out-dir", "out"], "export"),
    "mfssd-prune": (["--ratio", "0.3", "--out", "out/p.pt"], "train"),
    "mfssd-bench": (["--fps", "--cache", "out/cache"], "export"),  # the default groups are exported first
    "mfssd-import": (["x.pt", "--out", "out/m.pt"], "torch"),
}
WORKS = ("mfssd-data", "mfssd-detect", "mfssd-eval")


def test_every_console_script_is_covered() -> None:
    assert set(NEEDS_EXTRA) | set(WORKS) == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(NEEDS_EXTRA))
def test_lean_script_names_the_extra_in_one_line(name: str, synth: Path, tmp_path: Path) -> None:
    argv, extra = NEEDS_EXTRA[name]
    r = run_script(name, [str(synth) if a == "DATA" else a for a in argv], tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line, r.stderr
    assert line.startswith(f"{name}: error: ") and f'pip install "mfssd-deploy[{extra}]"' in line, line
    assert not (tmp_path / "out").exists()  # it failed before doing any work (no data, export or checkpoint)


def test_lean_detect_runs_the_bundled_onnx_by_default(tmp_path: Path) -> None:
    from mfssd_deploy.runtime.detector import Detector

    r = run_script("mfssd-detect", [str(SAMPLES), "--save-dir", "d", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((tmp_path / "d" / "detections.json").read_text())
    assert out["model"] == str(DEMO_ONNX)
    expected = Detector(DEMO_ONNX)([str(p) for p in sample_images()])  # the same file, in this (full) install
    assert [len(im["detections"]) for im in out["images"]] == [len(e) for e in expected]
    assert sum(len(e) for e in expected) > 0
    assert sorted(p.name for p in (tmp_path / "d").glob("*.jpg")) == [p.name for p in sample_images()]


def test_lean_eval_scores_an_onnx_model_without_pycocotools(synth: Path, tmp_path: Path) -> None:
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate
    from mfssd_deploy.runtime.detector import Detector

    r = run_script("mfssd-eval", ["--model", str(DEMO_ONNX_INT8), "--data", str(synth), "--json", "e.json",
                                  "--no-progress"], tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert 'COCO AP skipped: pycocotools is not installed (pip install "mfssd-deploy[train]")' in r.stderr
    res = json.loads((tmp_path / "e.json").read_text())
    assert "coco" not in res and res["images"] == 8
    det = Detector(DEMO_ONNX_INT8)
    names = det.class_names
    ref = evaluate(detector_predictor(det), open_dataset(synth), class_names=names, coco=False, progress=False)
    assert res["voc07_map"] == pytest.approx(ref["voc07_map"], abs=1e-9) and res["voc07_map"] > 0.5


def test_lean_data_writes_the_synthetic_set(tmp_path: Path) -> None:
    r = run_script("mfssd-data", ["synth", "--out", "s", "--train", "2", "--val", "1", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ann = json.loads((tmp_path / "s" / "annotations" / "val.json").read_text())
    assert len(ann["images"]) == 1 and (tmp_path / "s" / "val" / ann["images"][0]["file_name"]).is_file()


def _parsers(name: str, monkeypatch: pytest.MonkeyPatch) -> list[argparse.ArgumentParser]:
    """The parser a script builds (and its sub-commands'), caught at parse_args without running anything."""
    import importlib

    class Parsed(Exception):
        pass

    found: list[argparse.ArgumentParser] = []

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        found.append(self)
        raise Parsed

    module, _ = SCRIPTS[name].split(":")
    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", catch)
        with pytest.raises(Parsed):
            importlib.import_module(module).main([])
    out = list(found)
    for p in found:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += list(action.choices.values())
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_states_each_default_once_and_never_none(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for parser in _parsers(name, monkeypatch):
        text = parser.format_help()
        assert "(default: None)" not in text, f"{parser.prog}\n{text}"
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help and action.help is not argparse.SUPPRESS:
                line = " ".join(formatter._expand_help(action).split())
                assert line.lower().count("default") <= 1, f"{parser.prog} {action.option_strings}: {line}"


def test_bundled_defaults_differ_only_where_torch_is_missing() -> None:
    from mfssd_deploy.demo_assets import DEMO_MODEL, default_model

    assert default_model() == DEMO_MODEL  # this (full) install: the checkpoint, every option works on it
    r = run_lean("from mfssd_deploy.demo_assets import default_model; print(default_model())")
    assert r.returncode == 0 and r.stdout.strip() == str(DEMO_ONNX), r.stderr
