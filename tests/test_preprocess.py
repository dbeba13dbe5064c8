from __future__ import annotations

import numpy as np
import pytest

from mfssd_deploy.runtime.preprocess import preprocess_batch


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_preprocess_equals_the_formula(color: str) -> None:
    """Against the naive HWC formula: resize (cv2 bilinear), reorder, (x/255 - mean) / std, CHW."""
    import cv2

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 90), (300, 300), (37, 410))]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = preprocess_batch(images, 64, mean, std, color)
    assert out.shape == (3, 3, 64, 64) and out.dtype == np.float32 and out.flags.c_contiguous
    for img, got in zip(images, out, strict=True):
        r = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        if color == "rgb":
            r = r[..., ::-1]
        ref = ((r / 255 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
        np.testing.assert_allclose(got, ref, atol=2e-6)
    # a reused output buffer of the right shape is filled in place
    buf = np.zeros((3, 3, 64, 64), np.float32)
    assert preprocess_batch(images, 64, mean, std, color, out=buf) is buf
    np.testing.assert_array_equal(buf, out)
