from __future__ import annotations

import numpy as np
import torch
import torchvision

from mfssd_deploy.bench.peers import EagerReferencePeer, TorchvisionSSDPeer, greedy_nms
from mfssd_deploy.models import build_model


def test_greedy_nms_equals_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        xy = torch.rand(150, 2, generator=g)
        boxes = torch.cat([xy, xy + torch.rand(150, 2, generator=g) * 0.3 + 0.01], 1)
        scores = torch.rand(150, generator=g)
        ref = torchvision.ops.nms(boxes, scores, 0.45)[:200]
        assert torch.equal(greedy_nms(boxes, scores, 0.45, top_k=1000), ref)


def test_peers_run_end_to_end() -> None:
    imgs = [np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8) for i in range(2)]
    eager = EagerReferencePeer(build_model("mfssd_bn", 4, width=0.125), conf=0.2)
    out = eager(imgs)
    assert len(out) == 2 and all(len(d) <= 200 for d in out)
    assert all(d[i][1] >= d[i + 1][1] for d in out for i in range(len(d) - 1))
    tv = TorchvisionSSDPeer()(imgs[:1])
    assert set(tv[0]) == {"boxes", "scores", "labels"}
