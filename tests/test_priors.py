"""Priors against an independent, vectorised computation of the formula in docs/model.md."""

from __future__ import annotations

import numpy as np
import pytest

from mfssd_deploy.config import FSSD_PRIORS, SSD300_PRIORS, PriorSpec
from mfssd_deploy.geometry.priors import make_priors, priors_tensor


def reference(spec: PriorSpec) -> np.ndarray:
    levels = []
    for k, f in enumerate(spec.feature_maps):
        f_k = spec.image_size / spec.steps[k]
        s = spec.min_sizes[k] / spec.image_size
        sp = np.sqrt(s * spec.max_sizes[k] / spec.image_size)
        shapes = [(s, s), (sp, sp)]
        for ar in spec.aspect_ratios[k]:
            shapes += [(s * np.sqrt(ar), s / np.sqrt(ar)), (s / np.sqrt(ar), s * np.sqrt(ar))]
        ii, jj = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
        cx = ((jj + 0.5) / f_k).reshape(-1, 1, 1)
        cy = ((ii + 0.5) / f_k).reshape(-1, 1, 1)
        wh = np.asarray(shapes)[None]  # [1, n, 2]
        n = wh.shape[1]
        block = np.concatenate(
            [
                np.broadcast_to(cx, (f * f, n, 1)),
                np.broadcast_to(cy, (f * f, n, 1)),
                np.broadcast_to(wh, (f * f, n, 2)),
            ],
            axis=2,
        )
        levels.append(block.reshape(-1, 4))
    return np.clip(np.concatenate(levels), 0, 1)


@pytest.mark.parametrize(("spec", "count"), [(SSD300_PRIORS, 8732), (FSSD_PRIORS, 11620)])
def test_priors_match_formula(spec: PriorSpec, count: int) -> None:
    got = make_priors(spec)
    assert got.shape == (count, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference(spec), rtol=0, atol=1e-7)


def test_hand_computed_first_and_last_priors() -> None:
    p = make_priors(FSSD_PRIORS)
    c = 0.5 / 37.5  # 300 / step 8
    np.testing.assert_allclose(p[0], [c, c, 0.1, 0.1], atol=1e-7)
    s1 = np.sqrt(30 / 300 * 60 / 300)
    np.testing.assert_allclose(p[1], [c, c, s1, s1], atol=1e-7)
    np.testing.assert_allclose(p[2], [c, c, 0.1 * np.sqrt(2), 0.1 / np.sqrt(2)], atol=1e-7)
    # Last level: one location at the centre, s = 264/300; the ar-2 boxes clip at 1.
    np.testing.assert_allclose(p[-4], [0.5, 0.5, 0.88, 0.88], atol=1e-7)
    np.testing.assert_allclose(p[-1], [0.5, 0.5, min(1, 0.88 / np.sqrt(2)), min(1, 0.88 * np.sqrt(2))], atol=1e-7)


def test_priors_are_read_only_and_torch_view_matches() -> None:
    p = make_priors(FSSD_PRIORS)
    with pytest.raises(ValueError):
        p[0, 0] = 1.0
    np.testing.assert_array_equal(priors_tensor(FSSD_PRIORS).numpy(), p)
