"""Prior (default) boxes: a pure function of the PriorSpec, in numpy so the lean runtime has them."""

from __future__ import annotations

import functools
import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from mfssd_deploy.config import PriorSpec

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=16)
def _priors_cached(spec: PriorSpec) -> np.ndarray:
    out: list[list[float]] = []
    for k, f in enumerate(spec.feature_maps):
        f_k = spec.image_size / spec.steps[k]
        s_k = spec.min_sizes[k] / spec.image_size
        s_k_prime = math.sqrt(s_k * (spec.max_sizes[k] / spec.image_size))
        for i, j in itertools.product(range(f), repeat=2):
            cx = (j + 0.5) / f_k
            cy = (i + 0.5) / f_k
            out.append([cx, cy, s_k, s_k])
            out.append([cx, cy, s_k_prime, s_k_prime])
            for ar in spec.aspect_ratios[k]:
                r = math.sqrt(ar)
                out.append([cx, cy, s_k * r, s_k / r])
                out.append([cx, cy, s_k / r, s_k * r])
    priors = np.asarray(out, dtype=np.float32)
    if spec.clip:
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
