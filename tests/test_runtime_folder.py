"""The runtime folder is the deployment boundary: no module-level import of torch, onnx, tensorrt or CUDA.

Walks every module under mfssd_deploy/runtime/ (the AST, not an import: a lazy import inside a function
is how an optional backend gets its runtime) and fails on a top-level import of a heavy package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mfssd_deploy

RUNTIME = Path(mfssd_deploy.__file__).parent / "runtime"
FORBIDDEN = {"torch", "torchvision", "onnx", "onnxslim", "tensorrt", "cuda", "pycuda", "pycocotools"}


def _module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in tree.body:  # only statements at module level (a function body is lazy)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try | ast.With) else [node]:
            if isinstance(sub, ast.Import):
                found += [(sub.lineno, a.name) for a in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                found.append((sub.lineno, sub.module))
    return found


def test_runtime_modules_import_no_heavy_package_at_module_level() -> None:
    files = sorted(RUNTIME.rglob("*.py"))
    assert {f.name for f in files} >= {"detector.py", "inputs.py", "preprocess.py", "results.py", "streaming.py",
                                       "engine_meta.py", "onnxruntime_backend.py", "tensorrt_backend.py"}  # fmt: skip
    bad = []
    for f in files:
        for line, name in _module_level_imports(ast.parse(f.read_text())):
            if name.split(".")[0] in FORBIDDEN:
                bad.append(f"{f.relative_to(RUNTIME)}:{line} imports {name}")
            elif name.startswith("mfssd_deploy.") and not name.startswith("mfssd_deploy.runtime"):
                # what the runtime may lean on outside its folder: the shared contract, no torch either
                top = name.split(".")[1]
                assert top in {
                    "artifacts",
                    "config",
                    "errors",
                    "fileio",
                    "geometry",
                    "padded",
                    "tiling",
                    "demo_assets",
                }, f"{f.relative_to(RUNTIME)}:{line} imports {name}, outside the runtime and the contract"
    assert not bad, bad


def test_the_walker_sees_a_module_level_import(tmp_path: Path) -> None:
    tree = ast.parse("import os\nimport torch\ntry:\n    import onnx\nexcept ImportError:\n    pass\n"
                     "def f():\n    import tensorrt\n")  # fmt: skip
    assert [n for _, n in _module_level_imports(tree)] == ["os", "torch", "onnx"]
