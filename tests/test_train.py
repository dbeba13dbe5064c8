from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mfssd_deploy.checkpoint import load_model, read_checkpoint
from mfssd_deploy.cli.eval import main as eval_main
from mfssd_deploy.data.synth import generate
from mfssd_deploy.models import build_model
from mfssd_deploy.train.loop import TrainOptions, train
from mfssd_deploy.train.loss import multibox_loss
from mfssd_deploy.train.schedule import lr_factor
from mfssd_deploy.train.sparsity import add_l1_subgradient


def reference_loss(loc_p, conf_p, loc_t, conf_t):  # type: ignore[no-untyped-def]
    """Per image: smooth L1 over positives; CE over positives + the 3*npos hardest negatives."""
    total_l = total_c = 0.0
    npos_all = 0
    for b in range(loc_p.shape[0]):
        pos = conf_t[b] > 0
        npos = int(pos.sum())
        npos_all += npos
        total_l += F.smooth_l1_loss(loc_p[b][pos], loc_t[b][pos], reduction="sum")
        ce = F.cross_entropy(conf_p[b], conf_t[b], reduction="none")
        neg_ce = sorted(ce[~pos].tolist(), reverse=True)[: min(3 * npos, conf_p.shape[1] - 1)]
        total_c += ce[pos].sum() + sum(neg_ce)
    return total_l / npos_all, total_c / npos_all


def test_multibox_loss_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    loc_p, loc_t = torch.randn(3, 200, 4, generator=g), torch.randn(3, 200, 4, generator=g)
    conf_p = torch.randn(3, 200, 5, generator=g)
    conf_t = torch.zeros(3, 200, dtype=torch.long)
    conf_t[0, :7] = 2
    conf_t[1, 50:53] = 4
    conf_t[2, 199] = 1
    got = multibox_loss(loc_p, conf_p, loc_t, conf_t)
    ref = reference_loss(loc_p, conf_p, loc_t, conf_t)
    torch.testing.assert_close(got[0], torch.as_tensor(ref[0]))
    torch.testing.assert_close(got[1], torch.as_tensor(ref[1]).float())


def test_schedule_shape() -> None:
    total = 600  # paper: warmup 5/300 -> 10 steps; steps at 300, 400, 500
    assert lr_factor(0, total) == pytest.approx(0.001)
    assert lr_factor(5, total) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(10, total) == 1.0 and lr_factor(299, total) == 1.0
    assert lr_factor(300, total) == pytest.approx(0.1)
    assert lr_factor(450, total) == pytest.approx(0.01)
    assert lr_factor(599, total) == pytest.approx(0.001)


def test_sparsity_adds_sign_of_gamma() -> None:
    model = build_model("mfssd_bn", num_classes=3, width=0.125)
    bn = model.backbone.conv1_1.bn
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, bn.weight.numel()))
    bn.weight.grad = torch.zeros_like(bn.weight)
    add_l1_subgradient(model, 1e-2)
    torch.testing.assert_close(bn.weight.grad, 1e-2 * torch.sign(bn.weight.detach()))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    generate(out, 32, 6, seed=11, show_progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    summary = train(
        TrainOptions(
            data=str(tiny_data),
            out=str(out),
            width=0.125,
            epochs=6,
            batch=8,
            lr=0.05,
            workers=0,
            zoom_out=1.0,
            eval_every=6,
            progress=False,
            warmup=0.1,
        )
    )
    return out, summary


def test_short_training_lowers_loss_and_checkpoints_reload(tiny_run: tuple[Path, dict]) -> None:
    out, summary = tiny_run
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    assert "val" in summary["history"][-1] and "voc07_map" in summary["history"][-1]["val"]
    model = load_model(out / "best.pt")
    assert model.config.widths["conv1_1"] == 8 and model.config.class_names[0] == "circle"
    last = read_checkpoint(out / "last.pt")
    assert last["train_state"]["step"] == 24 and last["meta"]["epoch"] == 6
    assert (out / "log.jsonl").read_text().count("\n") == 6


def test_resume_continues_the_step_count(tiny_run: tuple[Path, dict], tiny_data: Path, tmp_path: Path) -> None:
    out, _ = tiny_run
    summary = train(
        TrainOptions(
            data=str(tiny_data),
            out=str(tmp_path),
            width=0.125,
            epochs=7,
            batch=8,
            lr=0.05,
            workers=0,
            zoom_out=1.0,
            val_split=None,
            progress=False,
            resume=str(out / "last.pt"),
        )
    )
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4, 5, 6, 7]
    assert read_checkpoint(tmp_path / "last.pt")["train_state"]["step"] == 28


def test_finetune_keeps_a_pruned_structure(tiny_data: Path, tmp_path: Path) -> None:
    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.config import BASE_WIDTHS

    widths = {k: max(3, v // 9) for k, v in BASE_WIDTHS["mfssd_bn"].items()}  # arbitrary, not multiples of 8
    names = ("circle", "ring", "triangle", "square", "star", "cross")
    pruned = build_model("mfssd_bn", num_classes=7, widths=widths, class_names=names)
    save_checkpoint(tmp_path / "pruned.pt", pruned)
    train(
        TrainOptions(
            data=str(tiny_data),
            out=str(tmp_path / "ft"),
            epochs=1,
            batch=8,
            workers=0,
            val_split=None,
            progress=False,
            finetune=str(tmp_path / "pruned.pt"),
            max_steps=2,
        )
    )
    assert load_model(tmp_path / "ft" / "last.pt").config.widths == widths


def test_eval_cli_writes_contract_json(
    tiny_run: tuple[Path, dict], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = tiny_run
    js = tmp_path / "eval.json"
    assert (
        eval_main(["--model", str(out / "best.pt"), "--data", str(tiny_data), "--json", str(js), "--no-progress"]) == 0
    )
    res = json.loads(js.read_text())
    assert set(res) >= {"voc07_map", "coco", "per_class"}
    assert set(res["coco"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert "mAP@0.5 VOC07 11-point" in capsys.readouterr().out


def test_eval_cli_class_mismatch(tiny_data: Path, tmp_path: Path) -> None:
    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.cli import run_cli

    save_checkpoint(tmp_path / "voc.pt", build_model("mfssd_bn", 21, width=0.125))
    code = run_cli("mfssd-eval", eval_main, ["--model", str(tmp_path / "voc.pt"), "--data", str(tiny_data)])
    assert code == 2


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    """The same script under torchrun: DDP + DistributedSampler with the gloo backend."""
    import socket

    with socket.socket() as s:  # a free port, so parallel runs on one machine do not collide
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        "-m",
        "mfssd_deploy.cli.train",
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path),
        "--width",
        "0.125",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--workers",
        "0",
        "--val-split",
        "",
        "--no-progress",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = read_checkpoint(tmp_path / "last.pt")
    assert ck["train_state"]["step"] == 4  # 32 images / global batch 8; each rank ran 4 steps of 4


def test_finetune_carries_the_pruning_record(tiny_data: Path, tmp_path: Path) -> None:
    from mfssd_deploy.checkpoint import save_checkpoint

    names = ("circle", "ring", "triangle", "square", "star", "cross")
    src = save_checkpoint(tmp_path / "p.pt", build_model("mfssd_bn", 7, width=0.125, class_names=names),
                          pruning={"channel_ratio": 0.3})  # fmt: skip
    train(TrainOptions(data=str(tiny_data), out=str(tmp_path / "ft"), epochs=1, batch=8, workers=0, val_split=None,
                       progress=False, finetune=str(src), max_steps=1))  # fmt: skip
    assert read_checkpoint(tmp_path / "ft" / "last.pt")["pruning"] == {"channel_ratio": 0.3}
