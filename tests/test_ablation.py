"""The ablation protocol end to end at toy size: every run trains, evaluates, resumes and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_protocol_trains_evaluates_and_reports(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, str(ROOT / "benchmarks/ablation/run.py"), "--variants", "ssd300_11620,mfssd_bn_111",
           "--seeds", "0", "--width", "0.125", "--epochs", "1", "--batch", "4", "--train-images", "8",
           "--val-images", "4", "--max-steps", "2", "--runs", str(runs), "--out", str(out), "--lr", "0.01",
           "--large-frames", "1"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    res = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in res["runs"]] == [("ssd300_11620", 0), ("mfssd_bn_111", 0)]
    for r in res["runs"]:
        assert 0 <= r["map50"] <= 1 and r["APs"] is not None and r["params"] < r["params_full_width"]
        assert set(r["per_class"]) == {"circle", "ring", "triangle", "square", "star", "cross"}
        assert r["lr"] == 0.01 and r["clip_grad_norm"] == 35.0 and 0 <= r["large"]["map50"] <= 1
    from mfssd_deploy.models import build_model

    # the same architecture at width 1 for the data's 6 classes (the paper's 21-class counts: tests/test_models.py)
    full = build_model("ssd300_11620", 7)
    assert res["runs"][0]["params_full_width"] == sum(p.numel() for p in full.parameters())
    report = (out / "report.md").read_text()
    assert "| SSD300 (11,620 priors) |" in report and "| MFSSD-BN 1:1:1 (ablation) |" in report
    assert (out / "plot.png").stat().st_size > 1000
    # A second call trains nothing (finished runs are kept): it only re-reads their metrics.
    stamp = (runs / "mfssd_bn_111-s0" / "last.pt").stat().st_mtime_ns
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert (runs / "mfssd_bn_111-s0" / "last.pt").stat().st_mtime_ns == stamp
    bad = subprocess.run([*cmd[:2], "--variants", "yolo"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown variants ['yolo']" in bad.stderr
    # The recorded comparison is never replaced by part of it: fewer variants, or --report from a RUNS
    # folder that lacks a run, is refused before anything is trained or written.
    recorded = {f: (out / f).read_bytes() for f in ("results.json", "report.md", "plot.png")}
    fewer = [*cmd]
    fewer[fewer.index("--variants") + 1] = "mfssd_bn_111"
    part = subprocess.run(fewer, capture_output=True, text=True, timeout=60)
    assert part.returncode == 2 and "would leave out (ssd300_11620 seed 0)" in part.stderr
    elsewhere = [*cmd, "--report"]
    elsewhere[elsewhere.index("--runs") + 1] = str(tmp_path / "empty")
    empty = subprocess.run(elsewhere, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "mfssd_bn_111 seed 0, ssd300_11620 seed 0" in empty.stderr
    assert {f: (out / f).read_bytes() for f in recorded} == recorded
    assert not list(out.glob(".*.tmp"))


def test_probe_rule_takes_the_largest_finite_rung() -> None:
    """The protocol's LR rule, as the runner reads it from probe.json."""
    sys.path.insert(0, str(ROOT / "benchmarks/ablation"))
    try:
        from protocol import LADDER, chosen_lr
    finally:
        sys.path.pop(0)
    probes = [{"variant": "ssd300_11620", "clip": None, "lr": 0.025, "finite": False},
              {"variant": "ssd300_11620", "clip": None, "lr": 0.0125, "finite": True, "losses": [20.0, 9.0]},
              {"variant": "ssd300_11620", "clip": 35.0, "lr": 0.025, "finite": True, "losses": [55.7, 531.1]},
              {"variant": "ssd300_11620", "clip": 35.0, "lr": 0.0125, "finite": True, "losses": [30.0, 12.0]},
              {"variant": "fssd", "clip": None, "lr": 0.025, "finite": False}]  # fmt: skip
    assert LADDER[0] == 0.025 and list(LADDER) == sorted(LADDER, reverse=True)
    assert chosen_lr(probes, "ssd300_11620", None) == 0.0125
    assert chosen_lr(probes, "ssd300_11620", 35.0) == 0.0125  # finite at 0.025 but climbing tenfold: unstable
    assert chosen_lr(probes, "fssd", None) is None
