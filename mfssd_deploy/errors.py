"""User-facing errors: one line that names the problem and the fix; CLIs print them without traceback."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


class MfssdError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class MissingSplit(MfssdError):
    """A dataset has no such split (train, val, test): what a tool reading every split may skip, unlike
    an error in a split that exists."""


class MissingExtraError(MfssdError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""


def installed(module: str) -> bool:
    """Whether an optional dependency can be imported, without importing it (an import hook that refuses
    it, as the lean-install tests use, counts as not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f'{purpose} needs {module.split(".")[0]}, which is not installed: pip install "mfssd-deploy[{extra}]"'
        ) from exc


def require_torch(purpose: str = "this feature") -> ModuleType:
    return require("torch", "torch", purpose)
