"""Checkpoints trained elsewhere, brought in as this project's own (mfssd-import).

One table, SOURCES: each source is a module with `detect(state_dict)`, `num_classes(state_dict)`,
`convert(state_dict, class_names) -> (ModelConfig, state_dict)` and `describe`. A new source is one
module and one entry. Files are read with torch.load(weights_only=True); the only object allowed
beyond tensors and containers is argparse.Namespace, which torchvision's reference train.py stores
under "args", and only to reach its "model" entry.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from mfssd_deploy.errors import MfssdError

SOURCES: dict[str, str] = {
    "torchvision": "mfssd_deploy.importers.torchvision_ssd",
    "ssd.pytorch": "mfssd_deploy.importers.ssd_pytorch",
    "pytorchssd": "mfssd_deploy.importers.pytorchssd",
}


def _module(name: str) -> Any:
    if name not in SOURCES:
        raise MfssdError(f"--from {name!r}: choose one of {', '.join(SOURCES)}")
    return importlib.import_module(SOURCES[name])


def load_state(path: Path) -> dict[str, Any]:
    """The state_dict in a file: a bare state_dict, or a training checkpoint's "model" / "state_dict"."""
    import torch

    if not path.is_file():
        raise MfssdError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise MfssdError(f"{path} is not a PyTorch zip checkpoint (a pre-1.6 file? re-save it with torch.save)")
    try:
        if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5: allowed for this load only
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            torch.serialization.add_safe_globals([argparse.Namespace])
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MfssdError(
            f"{path} holds pickled objects other than tensors (code could run on loading), refused; "
            "save its state_dict alone (torch.save(model.state_dict(), ...)) and import that"
        ) from None
    except Exception as exc:  # torch.load raises many types for a damaged file
        raise MfssdError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(hasattr(v, "shape") for v in obj.values()):
        raise MfssdError(f"{path} holds no state_dict (a dict of tensors, or a checkpoint with 'model')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def which(state: dict[str, Any]) -> str:
    """The source whose keys these are; a foreign file is named by what its keys look like."""
    for name in SOURCES:
        if _module(name).detect(state):
            return name
    sample = ", ".join(list(state)[:3])
    raise MfssdError(f"keys like {sample} are not from a supported SSD/FSSD code base ({', '.join(SOURCES)}); "
                     "pass --from if it is one of them")  # fmt: skip


def class_names(spec: str | None, source: str, state: dict[str, Any]) -> tuple[str, ...]:
    """--classes: 'voc', 'coco' (torchvision's 91-entry list), a file; default: class1..classN."""
    from mfssd_deploy.classes import read_class_list

    k = _module(source).num_classes(state) - 1
    if spec is None:
        return tuple(f"class{i}" for i in range(1, k + 1))
    names = _module(source).coco_names() if spec == "coco" else read_class_list(spec)
    if len(names) != k:
        raise MfssdError(f"--classes {spec} names {len(names)} classes but the head has {k}; give one name per class")
    return tuple(names)


def import_checkpoint(src: str | os.PathLike[str], out: str | os.PathLike[str], source: str | None = None,
                      classes: str | None = None, align_corners: str = "auto") -> dict[str, Any]:  # fmt: skip
    """Convert SRC into an ordinary checkpoint at OUT (new file, written atomically); returns provenance."""
    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.fileio import sha256_file
    from mfssd_deploy.models import build_from_config

    src_p, out_p = Path(src), Path(out)
    if out_p.exists():
        raise MfssdError(f"--out {out_p} already exists (nothing is written over); give a new file name")
    state = load_state(src_p)
    name = source or which(state)
    mod = _module(name)
    if not mod.detect(state):
        raise MfssdError(f"{src_p} does not look like a {name} checkpoint; its keys: {', '.join(list(state)[:3])}")
    names = class_names(classes, name, state)
    if hasattr(mod, "ALIGN_CORNERS_DEFAULT"):
        ac = mod.ALIGN_CORNERS_DEFAULT if align_corners == "auto" else align_corners == "true"
        cfg, ours = mod.convert(state, names, ac)
    elif align_corners != "auto":
        raise MfssdError(f"--upsample-align-corners applies to FSSD sources; {name} has no fusion upsampling")
    else:
        cfg, ours = mod.convert(state, names)
    model = build_from_config(cfg)
    model.load_state_dict(ours, strict=True)
    provenance = {"from": name, "source": str(src_p), "sha256": sha256_file(src_p),
                  "options": {"from": source, "classes": classes, "upsample_align_corners": align_corners}}  # fmt: skip
    save_checkpoint(out_p, model, config=cfg, meta={"imported": provenance})
    return provenance
