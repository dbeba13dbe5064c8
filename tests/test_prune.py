"""Network slimming: exactness on zeroed channels, ratio and parameter targets, pruned checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mfssd_deploy.checkpoint import load_model, read_checkpoint, save_checkpoint
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_model
from mfssd_deploy.prune import prune_model, widths_of


def randomised(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model("mfssd_bn", 5, width=0.125).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def test_pruning_zeroed_channels_is_exact() -> None:
    """Channels whose BN gamma AND beta are 0 output exactly 0: removing them changes nothing."""
    m = randomised()
    zeroed = 0
    with torch.no_grad():
        for name, n in (("conv2_1", 3), ("conv3_3", 5), ("conv4_3", 6), ("conv5_3", 4), ("pyr1", 7), ("pyr3", 3)):
            block = getattr(m.backbone, name, None) or m.pyramid[name]
            block.bn.weight[:n] = 0
            block.bn.bias[:n] = 0
            zeroed += n
        # A fusion branch channel and its slot in the concat BN: the group BNScaleImportance scores together.
        m.fuse_b.bn.weight[:2] = 0
        m.fuse_b.bn.bias[:2] = 0
        a = m.fuse_a.conv.out_channels
        m.fuse_bn.weight[a : a + 2] = 0
        m.fuse_bn.bias[a : a + 2] = 0
        zeroed += 2
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        ref = m(x)
    total = sum(c for k, c in widths_of(m).items() if k not in ("fc6", "fc7"))
    result = prune_model(m, ratio=zeroed / total)
    before, after = widths_of(m), widths_of(result.model)
    assert after["conv2_1"] == before["conv2_1"] - 3 and after["pyr1"] == before["pyr1"] - 7
    assert after["fuse_b"] == before["fuse_b"] - 2 and after["fc6"] == before["fc6"]
    with torch.no_grad():
        got = result.model(x)
    for r, g in zip(ref, got, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)


def test_ratio_and_target_params() -> None:
    m = randomised(1)
    r = prune_model(m, ratio=0.3)
    assert r.params_after < r.params_before and r.model.head.conf[0].out_channels == m.head.conf[0].out_channels
    target = int(m_params(m) * 0.6)
    t = prune_model(m, target_params=target)
    assert t.params_after <= target and t.params_after > 0.5 * m_params(m)  # close to the target, not far below
    with torch.no_grad():
        loc, conf = t.model(torch.randn(1, 3, 300, 300))
    assert loc.shape == (1, 11620, 4) and conf.shape == (1, 11620, 5)
    with pytest.raises(MfssdError, match="exactly one"):
        prune_model(m)
    with pytest.raises(MfssdError, match="no BatchNorm scales"):
        prune_model(build_model("ssd300", 5, width=0.125), ratio=0.2)


def test_round_to_keeps_channel_multiples() -> None:
    m = randomised(1)
    r = prune_model(m, ratio=0.3, round_to=8)
    widths = widths_of(r.model)
    assert all(w % 8 == 0 for w in widths.values()) and widths != widths_of(m) and r.round_to == 8
    exact = prune_model(m, ratio=0.3)
    assert any(w % 8 for w in widths_of(exact.model).values())  # without rounding, odd widths appear
    with torch.no_grad():
        assert r.model(torch.randn(1, 3, 300, 300))[0].shape == (1, 11620, 4)
    with pytest.raises(MfssdError, match="--round-to 0"):
        prune_model(m, ratio=0.3, round_to=0)


def m_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_pruned_checkpoint_reloads_weights_only(tmp_path: Path) -> None:
    r = prune_model(randomised(2), ratio=0.4)
    path = save_checkpoint(tmp_path / "p.pt", r.model, pruning={"channel_ratio": r.ratio})
    raw = torch.load(path, weights_only=True)
    assert raw["pruning"]["channel_ratio"] == pytest.approx(0.4)
    back = load_model(path)
    assert widths_of(back) == widths_of(r.model)
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[1], r.model(x)[1], rtol=0, atol=0)
    assert read_checkpoint(path)["config"]["widths"] == widths_of(r.model)


def test_prune_cli_table_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mfssd_deploy.cli.prune import main

    src = save_checkpoint(tmp_path / "m.pt", randomised(3))
    out = tmp_path / "p.pt"
    assert main([str(src), "--ratio", "0.25", "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "| parameters |" in text and "| G multiply-adds |" in text and "CPU ms/image" in text
    ck = read_checkpoint(out)
    assert ck["pruning"]["params_after"] < ck["pruning"]["params_before"]
    assert ck["pruning"]["widths_before"]["conv1_1"] == 8 and ck["meta"]["pruned_from"] == str(src)
    # the command's default keeps widths at multiples of 8; --round-to 1 is the paper's exact order
    assert ck["pruning"]["round_to"] == 8 and all(w % 8 == 0 for w in ck["config"]["widths"].values())
    exact = tmp_path / "exact.pt"
    assert main([str(src), "--ratio", "0.25", "--round-to", "1", "--out", str(exact)]) == 0
    reference = prune_model(load_model(src), ratio=0.25)
    assert read_checkpoint(exact)["pruning"]["round_to"] is None
    assert read_checkpoint(exact)["config"]["widths"] == widths_of(reference.model)


@pytest.mark.slow
def test_accuracy_aware_search_reports_each_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mfssd_deploy.cli.prune import main
    from mfssd_deploy.data.synth import generate

    data = tmp_path / "d"
    generate(data, 16, 6, seed=5, show_progress=False)
    names = ("circle", "ring", "triangle", "square", "star", "cross")
    src = save_checkpoint(tmp_path / "m.pt", build_model("mfssd_bn", 7, width=0.125, class_names=names))
    code = main([str(src), "--max-map-drop", "100", "--val", str(data), "--out", str(tmp_path / "p.pt"),
                 "--search-steps", "2", "--search-epochs", "1"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "step 1: ratio 0.450" in text and "step 2: ratio 0.675" in text  # both within a 100-point budget
    assert read_checkpoint(tmp_path / "p.pt")["pruning"]["channel_ratio"] == pytest.approx(0.675)
