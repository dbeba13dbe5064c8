"""Console scripts. Each `main` goes through `run_cli`: user errors become one line and exit code 2.

A missing optional dependency becomes one line too: in the lean install (numpy, OpenCV, ONNX Runtime)
a command that needs torch or onnx names the extra to install instead of ending in a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mfssd_deploy.errors import MfssdError, installed
from mfssd_deploy.runtime.backends import REGISTRY as BACKENDS

# What each extra of pyproject.toml's [project.optional-dependencies] installs, as top-level modules
# (with the extras it includes; tests/test_lean_cli.py checks this table against pyproject.toml). A backend's
# extra and module come from its registry entry (runtime.backends.REGISTRY); the rest are listed here.
_TOOL_EXTRAS: dict[str, set[str]] = {
    "torch": {"torchvision"},
    "export": {"torch", "torchvision", "onnx", "onnxslim", "onnxconverter_common"},
    "train": {"torch", "torchvision", "pycocotools", "torch_pruning", "matplotlib"},
    "trt": {"torch", "torchvision"},
    "trt-lean": {"cuda", "onnx", "tensorrt"},  # cuda-bindings installs the module cuda
    "triton": {"tritonclient"},
    "bench": {"openvino", "nncf"},
    "serve": {"pytriton", "aiohttp"},
}
for _entry in BACKENDS.values():
    if _entry.extra and _entry.module_needed:
        _TOOL_EXTRAS.setdefault(_entry.extra, set()).add(_entry.module_needed)
EXTRA_MODULES: dict[str, frozenset[str]] = {e: frozenset(mods) for e, mods in _TOOL_EXTRAS.items()}
# Extras for one deployment path, which its own errors name (the lean TensorRT path: tensorrt_cuda.INSTALL):
# offered for a missing module only when no other extra installs it (onnx stays [export], tensorrt [trt]).
PATH_EXTRAS = ("trt-lean",)
# A missing module -> the smallest extra that installs it.
MODULE_EXTRAS: dict[str, str] = {
    m: min(
        (e for e, mods in EXTRA_MODULES.items() if m in mods and e not in PATH_EXTRAS),
        key=lambda e: len(EXTRA_MODULES[e]),
        default=PATH_EXTRAS[0],
    )
    for mods in EXTRA_MODULES.values()
    for m in mods
}
# What a whole command needs: naming only the first missing module's extra would send the user round
# the loop once per extra (mfssd-export without torch needs onnx next).
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "mfssd-export": ("export",),
    "mfssd-train": ("train",),
    "mfssd-prune": ("train",),
    "mfssd-demo": ("export", "train"),
    "mfssd-bench": ("export",),
    "mfssd-serve": ("serve",),
    "mfssd-import": ("torch",),
}


def pip_extra(extras: tuple[str, ...]) -> str:
    return f'pip install "mfssd-deploy[{",".join(extras)}]"'


def missing_extra_message(prog: str, exc: ModuleNotFoundError) -> str | None:
    """One line for a missing optional module, or None: another module, or a submodule of an installed
    one (torch.foo while torch imports), is a bug whose traceback must be seen."""
    top = (exc.name or "").split(".")[0]
    extra = MODULE_EXTRAS.get(top)
    if extra is None or installed(top):
        return None
    wanted = COMMAND_EXTRAS.get(prog, ())
    extras = wanted if any(top in EXTRA_MODULES[e] for e in wanted) else (extra,)
    return f"{prog} needs {top}, which is not installed: {pip_extra(extras)}"


def run_cli(prog: str, main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    try:
        code = main(argv)
    except MfssdError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # not other ImportErrors: "cannot import name" is a version problem
        message = missing_extra_message(prog, exc)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it says something: not for None or False (an unset option, a
    flag) and not where the help text already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower():
            return text
        return super()._get_help_string(action) or text
