"""The lean runtime: importing the package must not need torch (docs/architecture.md, dependencies)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"blocked for the lean-runtime test: {name}")
            return None
    sys.meta_path.insert(0, _Block())
    """
)


# The lean install (pip install mfssd-deploy): no module of any extra, and a missing one fails the way a
# real absence does (ModuleNotFoundError with its name), which is what run_cli reads.
LEAN_BLOCKED = ("torch", "torchvision", "openvino", "onnx", "onnxslim", "onnxconverter_common", "pycocotools",
                "torch_pruning", "matplotlib", "tritonclient", "tensorrt", "pytriton")  # fmt: skip
BLOCK_EXTRAS = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class _BlockExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {LEAN_BLOCKED!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: lean install)", name=name)
            return None
    sys.meta_path.insert(0, _BlockExtras())
    """
)


def run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_lean(code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter where every optional dependency is missing."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRAS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_package_and_lean_modules_import_without_torch() -> None:
    r = run_without_torch(
        """
        import mfssd_deploy, mfssd_deploy.config, mfssd_deploy.geometry.priors, mfssd_deploy.fileio, mfssd_deploy.cli
        from mfssd_deploy.config import make_config
        from mfssd_deploy.geometry.priors import make_priors
        assert make_priors(make_config("mfssd_bn").priors).shape == (11620, 4)
        assert "torch" not in sys.modules
        print("ok", mfssd_deploy.__version__)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")


def test_torch_path_without_torch_names_the_extra() -> None:
    r = run_without_torch(
        """
        from mfssd_deploy.config import make_config
        from mfssd_deploy.errors import MissingExtraError
        from mfssd_deploy.geometry.priors import priors_tensor
        try:
            priors_tensor(make_config("mfssd_bn").priors)
        except MissingExtraError as e:
            print(e)
        """
    )
    assert r.returncode == 0, r.stderr
    msg = r.stdout.strip()
    assert "\n" not in msg
    assert 'pip install "mfssd-deploy[torch]"' in msg


def test_blocker_really_blocks_torch() -> None:
    # Guards the two tests above: if the blocker stopped working they would pass vacuously.
    r = run_without_torch("import torch")
    assert r.returncode != 0
    assert "blocked for the lean-runtime test" in r.stderr


def test_lean_blocker_blocks_every_extra_like_a_real_absence() -> None:
    # Guards tests/test_lean_cli.py the same way, for every optional module it claims to block.
    r = run_lean(
        f"""
        import importlib
        for name in {LEAN_BLOCKED!r}:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as e:
                assert e.name == name, e.name
            else:
                raise SystemExit(f"{{name}} imported")
        import numpy, cv2, onnxruntime, tqdm  # the lean install's own dependencies still import
        print("ok")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_bench_runs_an_end2end_model_without_torch(artifacts: dict, tmp_path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """mfssd-bench on a lean install (a Jetson or a small box): ONNX rows, blank parameters/GFLOPs."""
    out = tmp_path / "b.json"
    r = run_without_torch(
        f"""
        from mfssd_deploy.cli.bench import main
        code = main(["--fps", "--models", {str(artifacts["int8"])!r}, "--batch-sizes", "1,2", "--iters", "2", "-q",
                     "--no-memory", "--json", {str(out)!r}])
        assert code == 0 and "torch" not in sys.modules
        """
    )
    assert r.returncode == 0, r.stderr[-1500:]
    import json

    result = json.loads(out.read_text())
    (row1, row2) = result["rows"]
    assert row1["params"] is None and row1["images_per_s"] > 0 and row2["batch"] == 2

    # One rule for the pre + post target in every install (issue 13, 7a): this narrow model (width 0.125)
    # was PASS in a lean install, where GFLOPs are blank, and UNCHECKED in a full one, where they are not.
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.model_size import model_facts
    from mfssd_deploy.runtime.detector import Detector

    lean = next(t for t in result["targets"] if t["name"].startswith("pre + post"))
    assert lean["status"] == "UNCHECKED" and "narrow model" in lean["detail"], lean
    params, gflops = model_facts(Detector(artifacts["int8"]).config)  # what a full install adds to each row
    assert gflops / report.FULL_GFLOPS < 0.05  # independent of the estimate: it really is narrow
    full_rows = [{**r, "params": params, "gflops": gflops} for r in result["rows"]]
    full = next(t for t in report.targets(full_rows, [1, 2])[0] if t.name.startswith("pre + post"))
    assert (full.status, full.detail) == (lean["status"], lean["detail"])


def test_pre_post_target_judges_only_rows_known_to_be_full_size() -> None:
    """A row with neither a config estimate nor GFLOPs used to count as full-size (judged PASS/FAIL)."""
    from mfssd_deploy.bench import report

    row = {"group": "m.int8.end2end", "format": "onnx", "model": "m.int8.end2end.onnx", "weights": "as given",
           "device": "cpu", "batch": 8, "images_per_s": 170.0, "stages_ms": {"pre": 2.0, "infer": 42.0, "post": 0.3},
           "precision": "int8-qdq", "params": None, "gflops": None}  # fmt: skip
    unknown = next(t for t in report.targets([row], [8])[0] if t.name.startswith("pre + post"))
    assert unknown.status == "UNCHECKED" and "no config or GFLOPs" in unknown.detail
    full = next(t for t in report.targets([{**row, "compute_fraction": 0.6}], [8])[0] if t.name.startswith("pre +"))
    assert full.status == "FAIL" and "= 5.2%" in full.detail  # 2.3 of 44.3 ms


def test_compute_fraction_tracks_measured_gflops() -> None:
    """The torch-free estimate the rule uses, against GFLOPs measured by hooks on the torch model."""
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.fullsize_models import fullsize_config, pruned_config_like
    from mfssd_deploy.bench.model_size import model_facts
    from mfssd_deploy.checkpoint import read_checkpoint
    from mfssd_deploy.config import ModelConfig, make_config
    from mfssd_deploy.demo_assets import demo_model, pruned_demo_model

    demo, pruned = (ModelConfig.from_dict(read_checkpoint(m)["config"]) for m in (demo_model(), pruned_demo_model()))
    configs = [demo, pruned, fullsize_config(), pruned_config_like(demo, pruned, multiple=8),
               make_config("mfssd_bn", 4, width=0.125), make_config("mfssd_bn", 21, width=0.5)]  # fmt: skip
    for cfg in configs:
        measured = model_facts(cfg)[1] / report.FULL_GFLOPS
        estimate = report.compute_fraction(cfg)
        assert estimate == pytest.approx(measured, rel=0.3), (cfg.widths, estimate, measured)
        assert (estimate < 1 / 4) == (measured < 1 / 4)  # the same side of the narrow-model line
