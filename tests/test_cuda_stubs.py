"""The cuda-bindings stubs mypy reads (typings/cuda/bindings) are the installed package's API, regenerated here.

cuda.bindings.runtime is compiled (no .pyi, no py.typed); tools/cuda_bindings_stubs.py writes stubs from the
signatures and "Returns" sections Cython embeds in its docstrings. If this fails, the package changed: run
`python tools/cuda_bindings_stubs.py` and type-check again. The fake of tests/fake_cuda.py must offer every
name the stubs declare, with the real enum values, or the contract tests would run against another API.
"""

from __future__ import annotations

import enum
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "typings" / "cuda" / "bindings"


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("cuda_bindings_stubs", ROOT / "tools" / "cuda_bindings_stubs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cuda_bindings_stubs"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_installed_cuda_bindings() -> None:
    bindings = pytest.importorskip("cuda.bindings")
    header = (STUBS / "runtime.pyi").read_text().splitlines()[0]
    if f"cuda-bindings {bindings.__version__}:" not in header:
        pytest.skip(f"stubs are from another cuda-bindings ({header}); installed {bindings.__version__}")
    assert _tool().generate() == {n: (STUBS / n).read_text() for n in ("__init__.pyi", "runtime.pyi")}


def test_the_fake_has_the_real_names_and_values() -> None:
    from cuda.bindings import runtime as real

    from fake_cuda import FakeCuda

    fake = FakeCuda().module
    for name in _tool().NAMES:
        assert hasattr(fake, name), name
        obj = getattr(real, name)
        if isinstance(obj, int):
            assert getattr(fake, name) == obj, name
    for enum_name in ("cudaError_t", "cudaMemcpyKind"):
        fake_enum = getattr(fake, enum_name)
        assert issubclass(fake_enum, enum.IntEnum)
        for member in fake_enum:
            assert int(getattr(getattr(real, enum_name), member.name)) == member.value, (enum_name, member.name)
