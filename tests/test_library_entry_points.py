"""The library does what the commands do: run_bench(BenchRequest), run_export with engines and a Triton
repository, targets passed in as data; and the renamed options' old spellings still work, with a note."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.bench import report
from mfssd_deploy.bench.run import BenchRequest, format_text, run_bench, write_outputs
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.deploy import EngineOptions, TritonRepoOptions
from mfssd_deploy.exporters.pipeline import ExportRequest, run_export

from fake_tensorrt import make_fake_tensorrt


@pytest.fixture
def quick_peaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FP32 peak matmuls take seconds on two cores; these tests check the run's plumbing, not the peak."""
    from mfssd_deploy.bench import stats

    monkeypatch.setattr(stats, "fp32_peaks", lambda: {"torch": 100.0})
    monkeypatch.setattr(stats, "int8_peaks", lambda: {"onnxruntime Q/DQ MatMul": 300.0})


def test_run_bench_on_one_narrow_end2end_model(artifacts: dict, tmp_path: Path, quick_peaks: None) -> None:  # type: ignore[type-arg]
    goals = report.Targets(pre_post_share=0.5)
    req = BenchRequest(fps=True, models=(str(artifacts["e2e"]),), batch_sizes=(1,), iters=2, warmup=1, peers=False,
                       memory=False, cache=tmp_path / "cache", targets=goals)  # fmt: skip
    result = run_bench(req)
    (row,) = result["rows"]
    assert row["format"] == "fp32-e2e" and row["batch"] == 1 and row["iters"] == 2 and row["memory_mb"] is None
    assert result["settings"]["batches"] == [1] and result["env"]["peak_fp32_gflops"] == 100.0
    assert result["env"]["peak_int8_gops"] == 300.0
    share = next(t for t in result["targets"] if t["name"].startswith("pre + post"))
    assert share["name"] == "pre + post <= 50% of end-to-end at batch 1"  # the request's targets, not the defaults
    text = format_text(result)
    assert "## Targets" in text and "| m.end2end.onnx onnxruntime | 1 |" in text
    write_outputs(result, text, json=tmp_path / "b.json", markdown=tmp_path / "b.md")
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["format"] == "fp32-e2e"
    assert (tmp_path / "b.md").read_text() == text + "\n"


def test_run_bench_soak_reports_each_row_as_it_is_measured(artifacts: dict) -> None:  # type: ignore[type-arg]
    seen: list[dict[str, Any]] = []
    result = run_bench(BenchRequest(soak=4, models=(str(artifacts["int8"]),), batch_sizes=(1, 2)), seen.append)
    assert [s["batch"] for s in result["soak"]] == [1, 2] and seen == result["soak"]
    assert all(s["iterations"] == 4 for s in seen)


def test_run_bench_refuses_a_request_that_cannot_run() -> None:
    with pytest.raises(MfssdError, match="choose what to run"):
        run_bench(BenchRequest())
    with pytest.raises(MfssdError, match=r"--formats: unknown \['int4'\]"):
        run_bench(BenchRequest(fps=True, formats=("int4",)))


def test_targets_are_data() -> None:
    def row(group: str, fmt: str, ips: float, model: str = "m") -> dict[str, Any]:
        return {"model": model, "group": group, "format": fmt, "precision": "fp32", "batch": 1, "images_per_s": ips,
                "weights": report.RANDOM_WEIGHTS, "stages_ms": None}  # fmt: skip

    rows = [row("full", "fp32-e2e", 45.0), row("peer", "eager", 5.0, report.TORCHVISION),
            row("peer", "eager", 2.0, report.REFERENCE)]  # fmt: skip
    default = next(t for t in report.targets(rows, [1])[0] if t.name.startswith("speed"))
    strict = next(t for t in report.targets(rows, [1], report.Targets(speedup=10.0))[0] if t.name.startswith("speed"))
    assert default.status == "PASS" and ">= 8x torchvision" in default.name  # 9x
    assert strict.status == "FAIL" and ">= 10x torchvision" in strict.name
    assert report.Targets().paper_gpu_fps == 79.5 and report.Targets().speedup == 8.0


def test_run_export_writes_engines_and_a_triton_repository(artifacts: dict, tmp_path: Path,  # type: ignore[type-arg]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The Python API alone (no CLI): ONNX, parser check, an engine (recording fake TensorRT), Triton."""
    from mfssd_deploy.exporters import tensorrt_build

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.3.0"))
    monkeypatch.setattr(tensorrt_build, "gpu_info", lambda: ("Orin", (8, 7)))
    repo = tmp_path / "repo"
    req = ExportRequest(model=artifacts["pt"], out_dir=tmp_path / "x", layouts=("end2end",),
                        parity_images=sorted(artifacts["imgs"].iterdir()), time_runs=0)  # fmt: skip
    engines = EngineOptions(precision="fp32", batch=(1, 4, 8), engines_dir=tmp_path / "e")
    rep = run_export(req, check_trt="10", engines=engines, triton=TritonRepoOptions(repo, batch=(1, 4, 8)))
    assert [Path(a["path"]).name for a in rep["artifacts"]] == ["m.end2end.onnx"]
    (check,) = rep["trt_check"].values()  # one file, checked against the TensorRT 10 parser
    assert list(rep["trt_check"]) == ["m.end2end.onnx"] and list(check.values()) == ["ok"]
    (engine,) = rep["engines"]
    assert Path(engine["path"]).parent == tmp_path / "e" and engine["precision"] == "fp32"
    assert sorted(rep["triton"]) == sorted(p.name for p in repo.iterdir()) and len(rep["triton"]) == 2
    onnx_model = repo / "m_end2end"
    assert (onnx_model / "1" / "model.onnx").is_file()
    config = (onnx_model / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in config and "preferred_batch_size: [ 4, 8 ]" in config
    (plan,) = [repo / n for n in rep["triton"] if n != "m_end2end"]
    assert (plan / "1" / "model.plan").read_bytes() == Path(engine["path"]).read_bytes()


def test_run_export_checks_the_request_before_any_work(tmp_path: Path) -> None:
    base = ExportRequest(model=tmp_path / "missing.pt", out_dir=tmp_path / "x")  # loading it would fail: not reached
    with pytest.raises(MfssdError, match="--int8-cpu is a variant of --int8"):
        run_export(ExportRequest(model=base.model, out_dir=base.out_dir, int8_cpu=True))
    with pytest.raises(MfssdError, match="builds from the Q/DQ model"):
        run_export(base, engines=EngineOptions(precision="int8"))
    with pytest.raises(MfssdError, match="leaves nothing to export"):
        run_export(ExportRequest(model=base.model, out_dir=base.out_dir, fp32=False))
    assert not base.out_dir.exists()


@pytest.mark.parametrize(
    ("module", "argv", "old", "new", "value"),
    [
        ("mfssd_deploy.cli.export", ["--batch", "1,4,8"], "--batch", "--batch-profile MIN,OPT,MAX", (1, 4, 8)),
        ("mfssd_deploy.cli.bench", ["--fps", "--batch", "1,2"], "--batch", "--batch-sizes N,N,...", [1, 2]),
    ],
)
def test_old_batch_spelling_still_works_with_a_one_line_note(
    module: str, argv: list[str], old: str, new: str, value: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    from mfssd_deploy.cli.options import engine_options

    parser = importlib.import_module(module).build_parser()
    args = parser.parse_args(argv)
    got = engine_options(args).batch if "export" in module else args.batch_sizes
    assert got == value
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{parser.prog}: note: {old} is deprecated: use {new}"]
    assert parser.parse_args(argv[:-2]) != args  # the default differs: the alias did set the new option
    assert re.search(rf"{old}\b(?!-)", parser.format_help()) is None  # hidden from --help


def test_old_bench_spelling_runs_end_to_end(artifacts: dict, tmp_path: Path, quick_peaks: None,  # type: ignore[type-arg]
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from mfssd_deploy.cli import run_cli
    from mfssd_deploy.cli.bench import main

    j = tmp_path / "b.json"
    code = run_cli("mfssd-bench", main, ["--fps", "--models", str(artifacts["e2e"]), "--batch", "2", "--iters", "2",
                                         "--no-peers", "--no-memory", "-q", "--json", str(j)])  # fmt: skip
    assert code == 0 and json.loads(j.read_text())["settings"]["batches"] == [2]
    assert "mfssd-bench: note: --batch is deprecated: use --batch-sizes N,N,..." in capsys.readouterr().err
