"""The lean runtime: importing the package must not need torch (ARCHITECTURE.md, dependencies)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_package_and_lean_modules_import_without_torch() -> None:
    r = run_without_torch(
        """
        import mfssd_deploy, mfssd_deploy.config, mfssd_deploy.priors, mfssd_deploy.fileio, mfssd_deploy.cli
        from mfssd_deploy.config import make_config
        from mfssd_deploy.priors import make_priors
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
        from mfssd_deploy.priors import priors_tensor
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


def test_bench_runs_an_end2end_model_without_torch(artifacts: dict, tmp_path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """mfssd-bench on a lean install (a Jetson or a small box): ONNX rows, blank parameters/GFLOPs."""
    out = tmp_path / "b.json"
    r = run_without_torch(
        f"""
        from mfssd_deploy.cli.bench import main
        code = main(["--fps", "--models", {str(artifacts["int8"])!r}, "--batch", "1,2", "--iters", "2", "-q",
                     "--no-memory", "--json", {str(out)!r}])
        assert code == 0 and "torch" not in sys.modules
        """
    )
    assert r.returncode == 0, r.stderr[-1500:]
    import json

    (row1, row2) = json.loads(out.read_text())["rows"]
    assert row1["params"] is None and row1["images_per_s"] > 0 and row2["batch"] == 2
