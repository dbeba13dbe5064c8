"""The tritonserver that nvidia-pytriton ships, and what it needs to run our Python-backend models here.

The wheel carries a real Triton Inference Server (`pytriton/tritonserver/bin/tritonserver`), its Python
backend (`backends/python/libtriton_python.so`) and one backend stub per Python version
(`python_backend_stubs/3.X/triton_python_backend_stub`). Triton looks for the stub beside the backend,
so a backend folder is assembled in a work folder (links to the wheel's files, a copy of this Python's
stub). The stub needs:

* the interpreter's shared libpython (`sysconfig.get_config_var("LIBDIR")`) on LD_LIBRARY_PATH, or it
  fails with "error while loading shared libraries: libpython3.X.so.1.0" (or picks up the system's
  libpython of another build), and the wheel's own libraries (libcudart...) beside it;
* this interpreter first on PATH: the stub's embedded Python finds its prefix (and a virtualenv's
  site-packages, where mfssd_deploy is) from the `python3` it finds there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from mfssd_deploy.errors import MfssdError, MissingExtraError

SERVE_INSTALL = 'pip install "mfssd-deploy[serve]"'


@dataclass(frozen=True)
class BundledTriton:
    server: Path  # the tritonserver binary
    python_backend: Path  # the folder with libtriton_python.so
    stub: Path  # the Python-backend stub for this interpreter's version
    libs: Path  # the wheel's shared libraries


def find_bundled(purpose: str = "mfssd-serve") -> BundledTriton:
    """The wheel's files, or a one-line error naming the install command (or the missing piece)."""
    try:
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"{purpose} needs pytriton (nvidia-pytriton, which ships tritonserver), which is not installed: "
            f"{SERVE_INSTALL}"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = BundledTriton(
        server=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent.parent / "nvidia_pytriton.libs",
    )
    if not found.server.is_file() or not (found.python_backend / "libtriton_python.so").is_file():
        raise MfssdError(f"nvidia-pytriton at {root.parent} has no tritonserver binary: reinstall it ({SERVE_INSTALL})")
    if not found.stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").glob("*"))
        raise MfssdError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} (it has {', '.join(have)}): "
            "run mfssd-serve with one of those Python versions"
        )
    return found


def libpython_dir() -> Path:
    """The folder of this interpreter's shared libpython, which the stub links against."""
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir or not name.endswith((".so", ".so.1.0")) or not (Path(libdir) / name).exists():
        raise MfssdError(
            f"this Python ({sys.executable}) has no shared libpython ({libdir}/{name or 'libpython*.so'}), which "
            "Triton's Python-backend stub needs: use a Python built with --enable-shared (Debian's, pyenv's with "
            'PYTHON_CONFIGURE_OPTS="--enable-shared", conda\'s)'
        )
    return Path(libdir)


def backend_dir(bundled: BundledTriton, work: Path) -> Path:
    """WORK/backends/python: the wheel's Python backend with this Python's stub beside it."""
    python = work / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in bundled.python_backend.iterdir():
        if item.is_file() and not (python / item.name).exists():
            os.symlink(item, python / item.name)
    stub = python / "triton_python_backend_stub"
    if not stub.exists():
        shutil.copy2(bundled.stub, stub)  # a copy: the stub finds its libraries relative to itself or via the env
    return work / "backends"


def server_env(bundled: BundledTriton, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of tritonserver and its stubs: libpython and the wheel's libraries on
    LD_LIBRARY_PATH, this interpreter's folder first on PATH."""
    env = dict(os.environ if base is None else base)
    paths = [str(libpython_dir()), str(bundled.libs)]
    if env.get("LD_LIBRARY_PATH"):
        paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
