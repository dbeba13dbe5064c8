from __future__ import annotations

from pathlib import Path

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


def test_torchvision_pair_holds_the_import_to_torchvision(tmp_path: Path) -> None:
    """mfssd-bench --models torchvision-import: the imported weights give torchvision's detections on the
    bundled samples (none is 300x300), and the check can fail: the same checkpoint resized in 8 bits
    (every other model's resize) is told apart."""
    from dataclasses import replace

    from mfssd_deploy.bench import suite
    from mfssd_deploy.bench.torchvision_pair import hold_to_peer, same_weights
    from mfssd_deploy.checkpoint import load_model, save_checkpoint
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.runtime.inputs import read_image

    images = [read_image(p) for p in sample_images()]
    assert all(img.shape[:2] != (300, 300) for img in images)
    _, ckpt = same_weights(tmp_path, images[0])
    model = load_model(ckpt)
    assert model.config.resize == "float"
    uint8 = save_checkpoint(tmp_path / "uint8.pt", model, config=replace(model.config, resize="uint8"))
    specs = [suite.detector_spec(p, "torchvision-import", "eager", "random", "cpu", 1) for p in (ckpt, uint8)]
    specs += suite.same_weights_peer_specs([suite.Model("torchvision-import", {}, "random")], tmp_path)
    runners = [suite.build_runner(s, with_facts=False) for s in specs]
    hold_to_peer(runners, images)
    ours, resized_in_8_bits = (r.facts["vs_torchvision"] for r in runners[:2])
    assert ours["same"] and ours["detections"] == ours["detections_torchvision"] >= 5 * len(images), ours
    assert ours["min_iou"] >= 0.999 and ours["max_score_diff"] <= 1e-4
    assert not resized_in_8_bits["same"], resized_in_8_bits
