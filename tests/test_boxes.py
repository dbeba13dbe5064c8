from __future__ import annotations

import math

import torch
import torchvision

from mfssd_deploy.config import FSSD_PRIORS
from mfssd_deploy.geometry.boxes import box_iou, cxcywh_to_xyxy, decode, encode, match, xyxy_to_cxcywh
from mfssd_deploy.geometry.priors import priors_tensor


def random_xyxy(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 0.8
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.01
    return torch.cat([xy, xy + wh], 1)


def test_iou_matches_torchvision_and_batches() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = random_xyxy(30, g), random_xyxy(40, g)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))
    batched = box_iou(torch.stack([a, a.flip(0)]), torch.stack([b, b]))
    torch.testing.assert_close(batched[1], torchvision.ops.box_iou(a.flip(0), b))


def test_decode_by_hand() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -2.0, math.log(2) / 0.2, 0.0]])
    # cx = 0.5 + 1*0.1*0.2 = 0.52; cy = 0.5 - 2*0.1*0.4 = 0.42; w = 0.2*2 = 0.4; h = 0.4
    torch.testing.assert_close(decode(loc, prior), torch.tensor([[0.32, 0.22, 0.72, 0.62]]))


def test_encode_inverts_decode_batched() -> None:
    g = torch.Generator().manual_seed(1)
    priors = priors_tensor(FSSD_PRIORS)
    keep = (priors[:, 2:] > 0).all(1)
    priors = priors[keep]
    loc = torch.randn(3, priors.shape[0], 4, generator=g)
    torch.testing.assert_close(encode(decode(loc, priors), priors), loc, atol=2e-4, rtol=1e-4)
    boxes = random_xyxy(10, g)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)


def test_match_forces_best_prior_and_thresholds() -> None:
    priors = torch.tensor(
        [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.45, 0.45]]
    )
    # GT 0 overlaps prior 0 (IoU 1) and prior 3 (IoU 0.81); GT 1 is tiny: best prior 2, IoU < 0.5.
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.49, 0.49, 0.51, 0.51]])
    loc_t, conf_t = match([gt], [torch.tensor([3, 5])], priors)
    assert conf_t.tolist() == [[3, 0, 5, 3]]
    torch.testing.assert_close(loc_t[0, 2], encode(gt[1:2], priors[2:3])[0])
    torch.testing.assert_close(decode(loc_t[0, 0:1], priors[0:1]), gt[0:1])


def test_match_later_gt_wins_a_shared_best_prior() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.05, 0.05]])
    gts = torch.tensor([[0.3, 0.3, 0.7, 0.7], [0.31, 0.31, 0.69, 0.69]])  # both pick prior 0
    _, conf_t = match([gts], [torch.tensor([1, 2])], priors)
    assert conf_t[0, 0] == 2


def reference_match(gt: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Per-image loops, as in the original ssd.pytorch `match`."""
    iou = torchvision.ops.box_iou(gt, cxcywh_to_xyxy(priors))
    conf = torch.zeros(priors.shape[0], dtype=torch.long)
    for p in range(priors.shape[0]):
        best = int(iou[:, p].argmax())
        conf[p] = labels[best] if iou[best, p] >= 0.5 else 0
    for g in range(gt.shape[0]):
        conf[int(iou[g].argmax())] = labels[g]
    return conf


def test_batched_match_equals_per_image_reference() -> None:
    g = torch.Generator().manual_seed(2)
    priors = priors_tensor(FSSD_PRIORS)[-300:]  # the coarse levels keep the loop fast
    sizes = [3, 0, 7, 1]
    gts = [random_xyxy(n, g) for n in sizes]
    labels = [torch.randint(1, 21, (n,), generator=g) for n in sizes]
    _, conf_t = match(gts, labels, priors)
    assert conf_t.shape == (4, 300)
    assert conf_t[1].eq(0).all()
    for i in range(4):
        if sizes[i]:
            assert torch.equal(conf_t[i], reference_match(gts[i], labels[i], priors))
            best = torchvision.ops.box_iou(gts[i], cxcywh_to_xyxy(priors)).argmax(1)
            assert (conf_t[i, best] > 0).all()  # every GT's best prior is positive, whatever its IoU
