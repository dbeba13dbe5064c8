"""Atomic writes and hashing: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mfssd_deploy.errors import MfssdError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_safe(obj: Any) -> Any:
    """NaN/inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomic, strict JSON (allow_nan=False after mapping NaN to null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n")
    return Path(path)


def fresh_run_dir(default: str | os.PathLike[str]) -> Path:
    """The default output folder of a run, or the first free numbered sibling (runs/train, runs/train2,
    runs/train3, ...), as other training tools do: a second run never writes into the first one's
    folder. "Free" means absent or empty."""
    base = Path(default)
    for n in range(1, 10_000):
        cand = base if n == 1 else base.with_name(f"{base.name}{n}")
        if not cand.exists() or (cand.is_dir() and not any(cand.iterdir())):
            return cand
    raise RuntimeError(f"no free run folder beside {base}")  # pragma: no cover


def refuse_nonempty(folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """An explicitly named output folder that already holds anything is refused, never mixed into."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise MfssdError(f"{what} {p} is an existing file, not a folder; {fix}")
    if p.is_dir() and any(p.iterdir()):
        raise MfssdError(f"{what} {p} already holds files (nothing is written over); {fix}")
