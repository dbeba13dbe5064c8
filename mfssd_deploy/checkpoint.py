"""Checkpoints in the contract format: plain dicts of tensors and JSON types, loaded weights_only.

{"format": "mfssd-checkpoint/1", "config": {...}, "state_dict": {...}, "pruning": ..., "meta": {...}}
A model file can never run code: nothing pickled but tensors and built-in containers.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.fileio import atomic_path

FORMAT = "mfssd-checkpoint/1"
# A config that an older reader would misread (today: upsample_align_corners, resize 'float') is written as format /2,
# which such a reader refuses; this reader reads both.
FORMAT_2 = "mfssd-checkpoint/2"


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    config: ModelConfig | None = None,
    meta: dict[str, Any] | None = None,
    pruning: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write atomically (temporary file + rename). `config` defaults to `model.config`; `extra` adds
    top-level entries (tensors and plain types only), e.g. the optimizer state for resuming."""
    cfg = config if config is not None else model.config
    if not isinstance(cfg, ModelConfig):
        raise TypeError("save_checkpoint needs a ModelConfig (model.config or config=)")
    payload: dict[str, Any] = {
        "format": FORMAT_2 if cfg.upsample_align_corners or cfg.resize != "uint8" else FORMAT,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if pruning is not None:
        payload["pruning"] = pruning
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict, validated; a one-line MfssdError for anything that is not one."""
    p = Path(path)
    if not p.is_file():
        from mfssd_deploy.demo_assets import ASSETS

        bundled = ASSETS / "demo" / p.name
        where = f"the bundled file of that name is {bundled}" if bundled.is_file() else "check the path"
        raise MfssdError(f"checkpoint not found: {p} ({where}, or omit --model for the bundled demo model)")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise MfssdError(f"{p} is not a readable PyTorch checkpoint (corrupt or truncated); re-download or re-train it")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MfssdError(
            f"{p} holds objects other than tensors and plain containers (pickled code), refused for safety; "
            "load it in a trusted environment and re-save it with mfssd_deploy.checkpoint.save_checkpoint"
        ) from exc
    except Exception as exc:  # torch.load raises many types for a damaged file (KeyError, EOFError, ...)
        raise MfssdError(
            f"{p} is not a readable PyTorch checkpoint (corrupt or truncated: {type(exc).__name__}); "
            "re-download or re-train it"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, FORMAT_2):
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise MfssdError(
            f"{p} is not an mfssd checkpoint (format {found!r}, expected {FORMAT!r}); "
            "a bare state_dict can be wrapped with mfssd_deploy.checkpoint.save_checkpoint"
        )
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise MfssdError(f"{p} is an mfssd checkpoint without a valid {key!r} entry (corrupt file)")
    return ckpt


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load whose error names the first mismatching layer, both shapes and the likely cause."""
    own = model.state_dict()
    for key, want in own.items():
        if key not in state_dict:
            raise MfssdError(f"{source} has no tensor for layer {key}: it is for another model variant")
        got = state_dict[key]
        if tuple(got.shape) != tuple(want.shape):
            cause = (
                "it was trained for another class count"
                if key.startswith("head.conf")
                else "it has other channel widths (another --width, or a pruned model)"
            )
            raise MfssdError(
                f"{source}: layer {key} has shape {list(got.shape)} "
                f"but the model expects {list(want.shape)}: "
                f"{cause}; build the model from the checkpoint's own config (load_model without config=)"
            )
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected:
        raise MfssdError(f"{source} has layer {unexpected[0]} that the model lacks: it is for another model variant")
    model.load_state_dict(state_dict, strict=True)


def load_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    config: ModelConfig | None = None,
) -> nn.Module:
    """Rebuild the model from the checkpoint's config (or from `config`, checked against it), eval mode."""
    from mfssd_deploy.models import build_from_config

    ckpt = read_checkpoint(path)
    cfg = config if config is not None else ModelConfig.from_dict(ckpt["config"])
    model = build_from_config(cfg)
    load_state(model, ckpt["state_dict"], source=str(path))
    return model.to(device).eval()
