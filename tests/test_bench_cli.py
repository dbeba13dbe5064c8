"""mfssd-bench end to end on narrow artifacts (fast), and once on the bundled demo model with --val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.bench import main

CONTRACT = {"model", "backend", "precision", "layout", "batch", "images_per_s", "latency_ms", "stages_ms", "gflops",
            "params", "size_mb"}  # fmt: skip


def bench(argv: list[str]) -> int:
    return run_cli("mfssd-bench", main, argv)


def test_fps_on_given_artifacts_writes_every_output(artifacts: dict, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def,type-arg]
    out = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "md", "png")}
    code = bench(["--fps", "--models", f"{artifacts['e2e']},{artifacts['int8']},{artifacts['pt']}",
                  "--batch-sizes", "1,2", "--iters", "2", "--warmup", "1", "--no-peers",
                  "--cache", str(tmp_path / "cache"), "-q",
                  "--json", str(out["json"]), "--csv", str(out["csv"]), "--markdown", str(out["md"]),
                  "--plot", str(out["png"])])  # fmt: skip
    assert code == 0
    res = json.loads(out["json"].read_text())
    assert res["env"]["peak_fp32_gflops"] > 1 and res["env"]["cpu"]
    rows = res["rows"]
    assert len(rows) == 6 and all(set(r) >= CONTRACT for r in rows)
    assert {(r["format"], r["batch"]) for r in rows} == {
        (f, b) for f in ("fp32-e2e", "int8-e2e", "eager") for b in (1, 2)
    }
    assert all(r["iters"] == 2 and r["memory_mb"] is not None for r in rows)
    assert all(set(r["stages_ms"]) == {"pre", "infer", "post"} for r in rows)
    int8 = next(r for r in rows if r["format"] == "int8-e2e")
    assert int8["precision"] == "int8-qdq" and int8["layout"] == "end2end"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("synth-*"))  # no data needed
    printed = capsys.readouterr().out
    assert "## Targets" in printed and "of end-to-end at batch 2" in printed
    assert "speed, batch" not in printed and "INT8 accuracy" not in printed  # no full-size, peer or demo rows
    assert out["md"].read_text().strip() == printed.strip()
    assert len(out["csv"].read_text().splitlines()) == 7
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


def test_soak_reports_memory(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    j = tmp_path / "soak.json"
    argv = ["--soak", "30", "--models", str(artifacts["int8"]), "--batch-sizes", "1,2", "-q", "--json", str(j)]
    assert bench(argv) == 0
    soaks = json.loads(j.read_text())["soak"]
    assert [s["batch"] for s in soaks] == [1, 2]  # every batch size
    for s in soaks:
        assert s["iterations"] == 30 and len(s["curve"]) == 10
        assert abs(s["growth_second_half_mb"]) < 50


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "choose what to run: --fps"),
        (["--fps", "--models", "nope.onnx"], "not a group"),
        (["--fps", "--formats", "int4"], "unknown ['int4']"),
        (["--soak", "0"], "--soak 0"),
        (["--fps", "--images", "/nonexistent-dir"], "--images"),
        (["--fps", "--models", "ARTIFACT", "--val", "/nonexistent-dir", "--no-memory"], "dataset not found"),
        (["--fps", "--models", "ARTIFACT", "--val", "--val-images", "4", "--no-memory"], "class names differ"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, artifacts: dict, tmp_path: Path,
                                          capsys) -> None:  # type: ignore[no-untyped-def,type-arg]  # fmt: skip
    argv = [str(artifacts["e2e"]) if a == "ARTIFACT" else a for a in argv]  # a 3-class model vs the 6 synthetic shapes
    assert bench([*argv, "-q", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("mfssd-bench: error:")


@pytest.mark.slow
def test_demo_group_with_accuracy(tmp_path: Path) -> None:
    """The default path: the bundled model exported into the cache, accuracy on fresh synthetic images."""
    j = tmp_path / "b.json"
    cache = str(tmp_path / "cache")
    code = bench(["--fps", "--models", "demo", "--formats", "fp32-e2e,int8-e2e", "--batch-sizes", "2", "--iters", "2",
                  "--val", "--val-images", "24", "--cache", cache, "-q", "--json", str(j)])  # fmt: skip
    assert code == 0
    res = json.loads(j.read_text())
    fp32, int8 = sorted(res["rows"], key=lambda r: r["format"])
    assert fp32["group"] == "demo" and fp32["weights"] == "trained" and fp32["val"]["images"] == 24
    assert fp32["map"] > 0.6 and int8["map"] > 0.6  # the demo model scores 0.86 on 200 such images
    assert fp32["runtime"] == int8["runtime"] == "onnxruntime"  # MFSSD_ONNX_CPU_BACKEND pins the runtimes (conftest)
    int8_line = next(t for t in res["targets"] if t["name"].startswith("INT8 accuracy (demo int8-e2e onnxruntime:"))
    assert int8_line["status"] in ("PASS", "FAIL") and f"{fp32['map']:.4f}" in int8_line["detail"]
    assert len(list((tmp_path / "cache").glob("demo-*.int8.end2end.onnx"))) == 1


def test_tiled_bench_sends_every_tile_of_a_frame_through_the_backend(artifacts: dict, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]  # fmt: skip
    """--tile: each timed call on a frame runs its whole tile grid (tiling.tile_grid, the SAHI grid) plus the
    full-frame pass through the backend, in batches no larger than the row's batch size."""
    import cv2
    import numpy as np

    from mfssd_deploy.geometry.tiling import tile_grid
    from mfssd_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "f.png"), np.full((600, 900, 3), 127, np.uint8))
    calls: list[int] = []
    infer = OnnxRuntimeBackend.infer

    def spy(self: OnnxRuntimeBackend, x: np.ndarray) -> list[np.ndarray]:
        calls.append(int(x.shape[0]))
        return infer(self, x)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", spy)
    j = tmp_path / "b.json"
    code = bench(["--fps", "--models", str(artifacts["e2e"]), "--tile", "300", "--overlap", "0.2", "--images",
                  str(frames), "--batch-sizes", "8", "--iters", "1", "--warmup", "1", "--no-memory", "-q",
                  "--cache", str(tmp_path / "cache"), "--json", str(j)])  # fmt: skip
    assert code == 0
    (row,) = json.loads(j.read_text())["rows"]
    assert row["tile"] == "300 @0.2" and "tiled 300" in row["model"] + " tiled " + row["tile"]
    crops = len(tile_grid(900, 600, (300, 300), 0.2)) + 1  # the grid and the whole frame
    # the frame is cycled to fill a batch of 8 frames: 8 x crops tiles, in backend calls of 8
    per_call = [8] * (8 * crops // 8) + ([8 * crops % 8] if 8 * crops % 8 else [])
    assert len(calls) % len(per_call) == 0 and len(calls) >= 3 * len(per_call)  # load, warm-up, timed
    assert calls[: len(per_call)] == per_call


def test_overlap_without_tile_is_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench(["--fps", "--overlap", "0.3", "-q", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --tile N" in err[0]
