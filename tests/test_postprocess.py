"""Batched post-processing against a plain per-image, per-class greedy loop written here."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mfssd_deploy.config import NMSConfig
from mfssd_deploy.geometry.boxes import decode
from mfssd_deploy.geometry.postprocess import postprocess


def iou_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:2], b[:, :2])
    rb = np.minimum(a[2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def reference(loc, scores, priors, conf, iou, max_det, topk=None):  # type: ignore[no-untyped-def]
    """Original SSD semantics: per image, per foreground class, threshold, greedy NMS; then the top
    max_det overall. Candidates: the topk best (prior, class) scores of the image."""
    boxes_all = decode(loc, priors).numpy().astype(np.float64)
    out = []
    for b in range(loc.shape[0]):
        fg = scores[b, :, 1:].numpy()
        allowed = np.zeros(fg.shape, bool)
        order = np.argsort(-fg.ravel(), kind="stable")[:topk]
        allowed.ravel()[order] = True
        dets = []
        for c in range(1, scores.shape[2]):
            s = scores[b, :, c].numpy()
            idx = np.nonzero((s > conf) & allowed[:, c - 1])[0]
            idx = idx[np.argsort(-s[idx], kind="stable")]
            while idx.size:
                i = idx[0]
                dets.append((float(s[i]), c - 1, boxes_all[b, i]))
                rest = idx[1:]
                idx = rest[iou_one(boxes_all[b, i], boxes_all[b, rest]) <= iou]
        dets.sort(key=lambda d: -d[0])
        out.append(dets[:max_det])
    return out


def random_inputs(seed: int, batch: int, priors_n: int, classes: int, temp: float) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    cxcy = torch.rand(priors_n, 2, generator=g)
    wh = torch.rand(priors_n, 2, generator=g) * 0.4 + 0.02
    priors = torch.cat([cxcy, wh], 1)
    loc = torch.randn(batch, priors_n, 4, generator=g) * 0.5
    scores = (torch.randn(batch, priors_n, classes, generator=g) * temp).softmax(-1)
    return loc, scores, priors


def assert_same(got, ref, atol: float = 1e-5) -> None:  # type: ignore[no-untyped-def]
    assert [len(r) for r in ref] == got.num_dets[:, 0].tolist()
    for b, (boxes, scores, classes) in enumerate(got.to_list()):
        exp_scores = np.array([d[0] for d in ref[b]], dtype=np.float32)
        np.testing.assert_allclose(scores.numpy(), exp_scores, atol=atol)
        # Order of equal scores is arbitrary; compare as sets of (class, score, box).
        key_got = sorted(zip(classes.tolist(), scores.tolist(), boxes.tolist(), strict=True))
        key_ref = sorted((d[1], d[0], d[2].tolist()) for d in ref[b])
        for (c1, s1, b1), (c2, s2, b2) in zip(key_got, key_ref, strict=True):
            assert c1 == c2
            assert abs(s1 - s2) <= atol
            np.testing.assert_allclose(b1, b2, atol=1e-5)
    # Padding rows are zero.
    for b, n in enumerate(got.num_dets[:, 0].tolist()):
        assert got.scores[b, n:].eq(0).all() and got.boxes[b, n:].eq(0).all()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 4),
    priors_n=st.integers(1, 120),
    classes=st.integers(2, 6),
    temp=st.floats(0.5, 3.0),
    conf=st.sampled_from([0.01, 0.2, 0.5, 0.9]),
    iou=st.sampled_from([0.3, 0.45, 0.7]),
    max_det=st.sampled_from([1, 5, 200]),
    topk=st.sampled_from([None, 3, 40, 1000]),
)
def test_equals_reference_loop(seed, batch, priors_n, classes, temp, conf, iou, max_det, topk) -> None:  # type: ignore[no-untyped-def]
    loc, scores, priors = random_inputs(seed, batch, priors_n, classes, temp)
    # Equal float32 scores make the order at a cut (top-k, max_det) arbitrary in any implementation.
    fg = scores[..., 1:].numpy()
    assume(all(np.unique(fg[b]).size == fg[b].size for b in range(batch)))
    got = postprocess(loc, scores, priors, NMSConfig(conf, iou, max_det, topk or 2000), cap=topk is not None)
    assert got.boxes.shape == (batch, max_det, 4) and got.num_dets.dtype == torch.int32
    assert_same(got, reference(loc, scores, priors, conf, iou, max_det, topk))


def test_empty_images_and_differing_counts() -> None:
    loc, scores, priors = random_inputs(3, 3, 50, 4, 3.0)
    scores[1] = 0
    scores[1, :, 0] = 1  # image 1: only background -> no detection
    got = postprocess(loc, scores, priors, NMSConfig(conf_thresh=0.05, max_det=200))
    counts = got.num_dets[:, 0].tolist()
    assert counts[1] == 0 and counts[0] > 0 and counts[2] > 0
    assert_same(got, reference(loc, scores, priors, 0.05, 0.45, 200))


def test_no_detection_anywhere() -> None:
    loc, scores, priors = random_inputs(4, 2, 30, 3, 1.0)
    got = postprocess(loc, scores, priors, NMSConfig(conf_thresh=0.999))
    assert got.num_dets.sum() == 0 and got.boxes.shape == (2, 200, 4)
    assert got.to_list()[0][0].shape == (0, 4)


def test_defaults_and_logits_path() -> None:
    loc, scores, priors = random_inputs(5, 2, 80, 5, 2.0)
    logits = scores.log()
    a = postprocess(loc, logits, priors, logits=True)
    assert_same(a, reference(loc, scores, priors, 0.01, 0.45, 200), atol=1e-5)


def test_max_det_truncates_to_the_best() -> None:
    loc, scores, priors = random_inputs(6, 2, 200, 6, 4.0)
    full = postprocess(loc, scores, priors, NMSConfig(max_det=1000))
    top = postprocess(loc, scores, priors, NMSConfig(max_det=7))
    assert top.num_dets[:, 0].tolist() == [min(7, int(n)) for n in full.num_dets[:, 0]]
    torch.testing.assert_close(top.scores, full.scores[:, :7])


def test_nms_override_is_the_one_validation() -> None:
    import pytest

    from mfssd_deploy.errors import MfssdError

    base = NMSConfig()
    assert base.override(conf=0.3, max_det=5) == NMSConfig(0.3, 0.45, 5, 2000)
    assert base.override() == base
    for bad in ({"conf": 1.0}, {"conf": -0.1}, {"iou": 0.0}, {"max_det": 0}, {"max_det": 3000}):
        with pytest.raises(MfssdError, match="invalid NMS settings"):
            base.override(**bad)  # type: ignore[arg-type]


def test_scale_to_image_inverts_the_normalisation() -> None:
    from mfssd_deploy.runtime.preprocess import scale_to_image

    h, w = 480, 640
    px = np.array([[10, 20, 300, 400], [-5, -5, 700, 500]], np.float32)
    got = scale_to_image(px / np.array([w, h, w, h], np.float32), h, w)
    np.testing.assert_allclose(got[0], px[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, w, h])  # clipped to the image


def test_unpack_end2end_raises_conf_and_lowers_max_det() -> None:
    from mfssd_deploy.geometry.padded import unpack_end2end

    num = np.array([[3], [1]], np.int32)
    scores = np.array([[0.9, 0.5, 0.2, 0.0], [0.4, 0.0, 0.0, 0.0]], np.float32)
    boxes, classes = np.zeros((2, 4, 4), np.float32), np.zeros((2, 4), np.int32)
    n, *_ = unpack_end2end((num, boxes, scores, classes), NMSConfig(conf_thresh=0.3, max_det=1))
    assert n[:, 0].tolist() == [1, 1]
    n, *_ = unpack_end2end((num, boxes, scores, classes), NMSConfig(conf_thresh=0.45, max_det=4))
    assert n[:, 0].tolist() == [2, 0]
