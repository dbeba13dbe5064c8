"""Prior (default) boxes: a pure function of the PriorSpec, in numpy so the lean runtime has them.

Priors are defined in pixels of the network input (min/max sizes, steps) and normalised per axis: for a
W x H input, cell (i, j) of a layer with steps (sx, sy) has its centre at ((j + 0.5) sx / W, (i + 0.5) sy / H)
and a prior of min_size px is min_size / W wide and min_size / H high, so a box is as many pixels wide and
high at every input size and shape (native-resolution inference: ModelConfig.at_input_size). At 300x300 the
arithmetic is the reference code's, operation for operation, so today's priors come out bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from mfssd_deploy.config import PriorSpec

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=16)
def _priors_cached(spec: PriorSpec) -> np.ndarray:
    width, height = spec.size_wh
    levels: list[np.ndarray] = []
    for k in range(len(spec.feature_maps)):
        fh, fw = spec.grid(k)
        sx, sy = spec.step_xy(k)
        f_kx, f_ky = width / sx, height / sy  # the reference's f_k = image_size / step, per axis
        s_w, s_h = spec.min_sizes[k] / width, spec.min_sizes[k] / height
        p_w = math.sqrt(s_w * (spec.max_sizes[k] / width))
        p_h = math.sqrt(s_h * (spec.max_sizes[k] / height))
        shapes = [(s_w, s_h), (p_w, p_h)]
        for ar in spec.aspect_ratios[k]:
            r = math.sqrt(ar)
            shapes += [(s_w * r, s_h / r), (s_w / r, s_h * r)]
        wh = np.asarray(shapes, dtype=np.float64)  # [n, 2], in the heads' order per location
        level = np.empty((fh, fw, len(shapes), 4), dtype=np.float64)  # row-major over (i, j): the heads' order
        level[..., 0] = ((np.arange(fw) + 0.5) / f_kx)[None, :, None]
        level[..., 1] = ((np.arange(fh) + 0.5) / f_ky)[:, None, None]
        level[..., 2:] = wh[None, None]
        levels.append(level.reshape(-1, 4))
    priors = np.concatenate(levels).astype(np.float32)
    if spec.clip == "wh":
        np.clip(priors[:, 2:], 0.0, 1.0, out=priors[:, 2:])
    elif spec.clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    priors.setflags(write=False)
    return priors


def make_priors(spec: PriorSpec) -> np.ndarray:
    """Priors [P, 4] as (cx, cy, w, h) in [0, 1], in the order the heads emit them (read-only)."""
    return _priors_cached(spec)


def priors_tensor(spec: PriorSpec, device: str | torch.device = "cpu") -> torch.Tensor:
    """The same priors as a torch tensor on `device`."""
    from mfssd_deploy.errors import require_torch

    torch = require_torch("torch priors")
    return torch.tensor(make_priors(spec), device=device)
