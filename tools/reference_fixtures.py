"""Golden fixtures of the reference code bases' own forward passes, for tests/test_import_references.py.

ssd.pytorch and PytorchSSD are not packages, and their code is not copied into this repository: this
script takes a checkout of each (its path as an argument) at the pinned commit below, builds the
reference's own model class, loads a state_dict made from a seed with the reference's own key names
and shapes (seeded_state below, which the tests re-create bit for bit from the recorded manifest),
runs it on a seeded input, and writes the raw outputs. Nothing else of the reference is kept.

    python tools/reference_fixtures.py --ssd-pytorch ~/src/ssd.pytorch --pytorchssd ~/src/PytorchSSD
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SSD_PYTORCH_COMMIT = "5b0b77faa955c1917b0c710d770739ba8fbff9b7"
PYTORCHSSD_COMMIT = "320fe34f394f40aaa3b8a34d1ceed46e7ffecd46"
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "import"
SEED = 20261206


def seeded_state(manifest: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, np.ndarray]:
    """Values for every tensor in manifest order: He-scaled normal weights, small biases, L2Norm scales 20,
    BatchNorm statistics near identity. The tests import this function: both sides make the same arrays."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in manifest:
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            out[key] = (1.0 + 0.1 * rng.random(shape)).astype(np.float32)
        elif key.endswith("running_mean") or (key.endswith("bias") and len(shape) == 1):
            out[key] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        elif len(shape) == 1:  # L2Norm / BatchNorm scales
            scale = np.full(shape, 20.0) if "L2Norm" in key else 1.0 + 0.1 * rng.standard_normal(shape)
            out[key] = scale.astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return out


def seeded_input(seed: int, size: int = 300) -> np.ndarray:
    """A [1, 3, size, size] input in the range a mean-subtracted 8-bit image has."""
    return (np.random.default_rng(seed + 1).random((1, 3, size, size)) * 255 - 120).astype(np.float32)


def _commit(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def ssd_pytorch(path: Path, num_classes: int = 21) -> None:
    import torch

    if _commit(path) != SSD_PYTORCH_COMMIT:
        raise SystemExit(f"{path} is not at {SSD_PYTORCH_COMMIT}: git -C {path} checkout {SSD_PYTORCH_COMMIT}")
    import os
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="ssd-pytorch-home-"))  # its data/coco.py reads ~/data/coco/coco_labels.txt
    (home / "data" / "coco").mkdir(parents=True)
    shutil.copy(path / "data" / "coco_labels.txt", home / "data" / "coco" / "coco_labels.txt")
    os.environ["HOME"] = str(home)
    sys.path.insert(0, str(path))
    from ssd import build_ssd  # the reference's own model class

    model = build_ssd("train", 300, num_classes).eval()
    manifest = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    state = {k: torch.from_numpy(v) for k, v in seeded_state(manifest, SEED).items()}
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        loc, conf, priors = model(torch.from_numpy(seeded_input(SEED)))
    name = f"ssd_pytorch_{num_classes}"
    np.savez_compressed(OUT / f"{name}.npz", loc=loc.numpy(), conf=conf.numpy(), priors=priors.numpy())
    (OUT / f"{name}.json").write_text(json.dumps({
        "reference": "amdegroot/ssd.pytorch", "commit": SSD_PYTORCH_COMMIT,
        "model": f"build_ssd('train', 300, {num_classes})",
        "seed": SEED, "manifest": manifest, "torch": torch.__version__}, indent=1))  # fmt: skip
    print(f"wrote {name}: loc {tuple(loc.shape)}, conf {tuple(conf.shape)}")


def pytorchssd(path: Path, num_classes: int = 21) -> None:
    """FSSD_vgg.build_net(300, K), with the fusion's upsampling as modern PyTorch runs it (align_corners
    False) and as the 0.2-0.4 it was trained with did (True: set on its own nn.Upsample modules)."""
    import importlib.util

    import torch

    if _commit(path) != PYTORCHSSD_COMMIT:
        raise SystemExit(f"{path} is not at {PYTORCHSSD_COMMIT}: git -C {path} checkout {PYTORCHSSD_COMMIT}")
    sys.path.insert(0, str(path))
    spec = importlib.util.spec_from_file_location("models.FSSD_vgg", path / "models" / "FSSD_vgg.py")
    assert spec is not None and spec.loader is not None
    sys.modules.setdefault(
        "models",
        importlib.util.module_from_spec(  # only the two files FSSD_vgg needs
            importlib.util.spec_from_loader("models", loader=None, is_package=True)
        ),
    )  # type: ignore[arg-type]
    base = importlib.util.spec_from_file_location("models.base_models", path / "models" / "base_models.py")
    assert base is not None and base.loader is not None
    sys.modules["models.base_models"] = importlib.util.module_from_spec(base)
    base.loader.exec_module(sys.modules["models.base_models"])
    fssd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fssd)
    model = fssd.build_net(300, num_classes).eval()
    manifest = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    state = {k: torch.from_numpy(v) for k, v in seeded_state(manifest, SEED).items()}
    model.load_state_dict(state, strict=True)
    out = {}
    for ac in (False, True):
        for m in model.modules():
            if isinstance(m, torch.nn.Upsample):
                m.align_corners = ac
        with torch.no_grad():
            loc, conf = model(torch.from_numpy(seeded_input(SEED)))
        out[f"loc_ac{int(ac)}"], out[f"conf_ac{int(ac)}"] = loc.numpy(), conf.numpy()
    name = f"pytorchssd_fssd_{num_classes}"
    np.savez_compressed(OUT / f"{name}.npz", **out)
    (OUT / f"{name}.json").write_text(json.dumps({
        "reference": "lzx1413/PytorchSSD", "commit": PYTORCHSSD_COMMIT,
        "model": f"FSSD_vgg.build_net(300, {num_classes})",
        "seed": SEED, "manifest": manifest, "torch": torch.__version__}, indent=1))  # fmt: skip
    print(f"wrote {name}: loc {tuple(loc.shape)}, conf {tuple(conf.shape)}, both align_corners settings")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ssd-pytorch", type=Path, help=f"a checkout of amdegroot/ssd.pytorch at {SSD_PYTORCH_COMMIT}")
    ap.add_argument("--pytorchssd", type=Path, help=f"a checkout of lzx1413/PytorchSSD at {PYTORCHSSD_COMMIT}")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.ssd_pytorch:
        ssd_pytorch(args.ssd_pytorch, 21)
        ssd_pytorch(args.ssd_pytorch, 4)  # another class count: its COCO prior sizes
    if args.pytorchssd:
        pytorchssd(args.pytorchssd, 21)
    return 0


if __name__ == "__main__":
    sys.exit(main())
