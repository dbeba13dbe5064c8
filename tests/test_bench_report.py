"""PASS/FAIL lines and ratios of a run, checked on hand-made rows whose answers are computed by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.bench import report


def row(group: str, fmt: str, batch: int, ips: float, *, map_: float | None = None, params: int = 100,
        stages: tuple[float, float, float] | None = (1.0, 98.0, 1.0), model: str = "m") -> dict[str, Any]:  # fmt: skip
    precision = "int8-qdq" if fmt.startswith("int8") else "fp32"
    return {"model": model, "group": group, "format": fmt, "precision": precision, "batch": batch,
            "images_per_s": ips, "latency_ms": {"mean": 1, "p50": 1, "p90": 1, "p99": 1}, "params": params,
            "stages_ms": dict(zip(("pre", "infer", "post"), stages, strict=True)) if stages else None,
            "map": map_, "aps": None, "weights": "trained" if group.startswith("demo") else report.RANDOM_WEIGHTS,
            "gflops": 1.0, "size_mb": 1.0, "memory_mb": 1.0}  # fmt: skip


def peers(batch: int, tv: float, ref: float) -> list[dict[str, Any]]:
    return [row("peer", "eager", batch, tv, model=report.TORCHVISION, stages=None),
            row("peer", "eager", batch, ref, model=report.REFERENCE, stages=None)]  # fmt: skip


def demo_rows(int8_map: float, pruned_map: float, pruned_params: int = 60, pruned_int8_drop: float = 0.001
              ) -> list[dict[str, Any]]:  # fmt: skip
    return [row("demo", "fp32-e2e", 1, 50, map_=0.860), row("demo", "int8-e2e", 1, 70, map_=int8_map),
            row("demo-pruned", "fp32-e2e", 1, 60, map_=pruned_map, params=pruned_params),
            row("demo-pruned", "int8-e2e", 1, 80, map_=pruned_map - pruned_int8_drop,
                params=pruned_params)]  # fmt: skip


def full_rows(batch: int) -> list[dict[str, Any]]:
    return [row("full", "fp32-e2e", batch, 6.0), row("full", "int8-e2e", batch, 13.0),
            row("full-pruned", "fp32-e2e", batch, 9.0), row("full-pruned", "int8-e2e", batch, 18.0,
                                                              stages=(2.0, 95.0, 4.0))]  # fmt: skip


def by_name(targets: list[report.Target], start: str) -> report.Target:
    return next(t for t in targets if t.name.startswith(start))


def test_budgets_pass_so_pruned_int8_is_the_best_and_ratios_are_exact() -> None:
    rows = demo_rows(0.857, 0.866) + full_rows(8) + peers(8, tv=1.5, ref=0.75)
    targets, ratios = report.targets(rows, [8])
    assert ratios["8"]["best"] == "full-pruned int8-e2e"
    assert ratios["8"]["vs_torchvision"] == pytest.approx(12.0) and ratios["8"]["vs_reference"] == pytest.approx(24.0)
    assert by_name(targets, "speed, batch 8 (best full-size artifact >= 12x").status == "PASS"  # batched: 12x
    assert by_name(targets, "INT8 accuracy (demo int8-e2e:").status == "PASS"  # 0.3 points
    assert by_name(targets, "pruned accuracy").status == "PASS"  # 40% fewer, +0.6 points
    share = by_name(targets, "pre + post")
    assert share.status == "FAIL" and "pre 2.0 + post 4.0 of 101.0" in share.detail and "5.9%" in share.detail


def test_failed_int8_budget_removes_int8_artifacts_from_the_speed_target() -> None:
    # INT8 drops 1.0 point on both demo models: no INT8 artifact may be the "best"
    rows = demo_rows(0.850, 0.866, pruned_int8_drop=0.010) + full_rows(1) + peers(1, tv=3.0, ref=1.0)
    targets, ratios = report.targets(rows, [1])
    assert by_name(targets, "INT8 accuracy (demo int8-e2e:").status == "FAIL"
    assert by_name(targets, "INT8 accuracy (demo-pruned int8-e2e:").status == "FAIL"
    assert ratios["1"]["best"] == "full-pruned fp32-e2e"  # pruned passed, INT8 did not
    assert ratios["1"]["vs_torchvision"] == pytest.approx(3.0)
    assert by_name(targets, "speed, batch 1").status == "FAIL"


def test_pruning_that_removes_too_little_fails_its_budget() -> None:
    targets, _ = report.targets(demo_rows(0.857, 0.866, pruned_params=80), [1])
    t = by_name(targets, "pruned accuracy")
    assert t.status == "FAIL" and "20.0% fewer" in t.detail


def test_without_accuracy_the_budgets_are_unchecked_and_the_speed_line_says_so() -> None:
    rows = full_rows(1) + peers(1, tv=2.0, ref=1.0)
    targets, ratios = report.targets(rows, [1])
    assert ratios["1"]["best"] == "full-pruned int8-e2e" and ratios["1"]["budget_unverified"]
    assert "add --val" in by_name(targets, "speed, batch 1").detail
    assert not any(t.name.startswith(("pruned accuracy", "INT8 accuracy")) for t in targets)  # no demo rows
    assert by_name(targets, "speed, batch 1").status == "PASS"  # 18 / 2 = 9x >= 8x
    # the demo models without --val: their budgets are listed, unchecked
    targets, _ = report.targets([{**r, "map": None} for r in demo_rows(0.857, 0.866)], [1])
    assert by_name(targets, "pruned accuracy").status == "UNCHECKED"
    assert by_name(targets, "INT8 accuracy (demo int8-e2e").status == "UNCHECKED"


def test_markdown_csv_and_plot(tmp_path: Path) -> None:
    rows = demo_rows(0.857, 0.866) + full_rows(1) + full_rows(8) + peers(1, 3.0, 1.0) + peers(8, 3.0, 1.0)
    md = report.markdown(rows).splitlines()
    assert len(md) == 2 + len(rows) and md[2].startswith("| demo fp32-e2e | 1 | 50.0 |")
    assert any(line.startswith("| full int8-e2e * | 8 | 13.0 |") for line in md)
    parsed = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
    assert len(parsed) == len(rows) and parsed[1]["map"] == "0.857" and parsed[1]["post_ms"] == "1.0"
    png = tmp_path / "b.png"
    report.plot(rows, png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fp16_engines_are_held_to_the_same_budget_as_int8() -> None:
    def fp16(group: str, ips: float, map_: float | None = None) -> dict[str, Any]:
        return {**row(group, "trt-fp16-e2e", 1, ips, map_=map_), "precision": "fp16"}

    # FP16 loses 1.0 point on the unpruned demo model and 0.1 on the pruned one
    rows = [*demo_rows(0.857, 0.866), fp16("demo", 90, 0.850), fp16("demo-pruned", 95, 0.865), *full_rows(1),
            fp16("full", 50.0), fp16("full-pruned", 40.0), *peers(1, tv=4.0, ref=1.0)]  # fmt: skip
    targets, ratios = report.targets(rows, [1])
    t = by_name(targets, "FP16 accuracy (demo trt-fp16-e2e:")
    assert t.status == "FAIL" and "FP32 0.8600 -> FP16 0.8500, drop +1.00 points" in t.detail
    assert by_name(targets, "FP16 accuracy (demo-pruned trt-fp16-e2e:").status == "PASS"
    assert ratios["1"]["best"] == "full-pruned trt-fp16-e2e"  # the faster unpruned FP16 row is out of budget
    assert ratios["1"]["vs_torchvision"] == pytest.approx(10.0)


def test_speed_ratios_pair_each_precision_with_fp32_and_each_pruned_row_with_unpruned() -> None:
    rows = full_rows(8) + peers(8, tv=3.0, ref=1.5)
    got = {(r["of"], r["vs"]): r["ratio"] for r in report.speed_ratios(rows)}
    assert got == pytest.approx({
        ("full int8-e2e", "full fp32-e2e"): 13 / 6, ("full-pruned fp32-e2e", "full fp32-e2e"): 9 / 6,
        ("full-pruned int8-e2e", "full-pruned fp32-e2e"): 18 / 9, ("full-pruned int8-e2e", "full int8-e2e"): 18 / 13,
    })  # fmt: skip
    table = report.ratios_markdown(report.speed_ratios(rows + full_rows(1)))
    assert "| full-pruned int8-e2e / full int8-e2e | 1.38x | 1.38x |" in table and "| batch 1 | batch 8 |" in table


def test_gpu_target_needs_a_pruned_int8_engine_within_budget() -> None:
    def engine(group: str, ips: float, map_: float | None = None) -> dict[str, Any]:
        return {**row(group, "trt-int8-e2e", 1, ips, map_=map_), "precision": "int8", "device": "cuda"}

    cpu_only = demo_rows(0.857, 0.866) + full_rows(1)
    t = report.gpu_target(cpu_only, report.accuracy_budgets(cpu_only)[1])
    assert t.status == "UNCHECKED" and "needs an NVIDIA GPU" in t.detail
    assert any(x.name.startswith("GPU, batch 1") for x in report.targets(cpu_only, [1])[0])

    def verdict(ips: float, pruned_engine_map: float) -> report.Target:
        rows = [*demo_rows(0.857, 0.866), engine("demo-pruned", 300, pruned_engine_map), *full_rows(1),
                engine("full-pruned", ips)]  # fmt: skip
        return report.gpu_target(rows, report.accuracy_budgets(rows)[1])

    assert verdict(400.0, 0.864).status == "PASS"  # 5 x 79.5 = 397.5; engine within 0.2 points
    assert verdict(390.0, 0.864).status == "FAIL"
    over = verdict(400.0, 0.850)  # the engine loses 1.6 points on the pruned demo model
    assert over.status == "FAIL" and "outside the accuracy budgets" in over.detail
    assert "full-pruned trt-int8-e2e cuda 400.0 img/s = 5.03x the paper" in verdict(400.0, 0.864).detail


def test_files_named_on_the_command_line_pair_by_model_name_and_layout() -> None:
    def given(model: str, precision: str, layout: str, ips: float) -> dict[str, Any]:
        return {**row(model, "x", 8, ips, model=model), "weights": "as given", "precision": precision,
                "layout": layout}  # fmt: skip

    rows = [given("m.pt", "fp32", "raw", 10.0), given("m.onnx", "fp32", "raw", 20.0),
            given("m.end2end.onnx", "fp32", "end2end", 25.0),
            given("m.int8.end2end.onnx", "int8-qdq", "end2end", 50.0),
            given("m.int8u8.end2end.onnx", "int8-qdq-u8", "end2end", 75.0),
            given("m.int8.onnx", "int8-qdq", "raw", 30.0),
            given("other.int8.end2end.onnx", "int8-qdq", "end2end", 99.0)]  # fmt: skip
    got = {(r["of"], r["vs"]): r["ratio"] for r in report.speed_ratios(rows)}
    assert got == pytest.approx({("m.int8.end2end.onnx", "m.end2end.onnx"): 2.0,
                                 ("m.int8u8.end2end.onnx", "m.end2end.onnx"): 3.0,
                                 ("m.int8.onnx", "m.onnx"): 1.5})  # fmt: skip


def test_gpu_artifacts_are_compared_with_gpu_peers_only() -> None:
    def on_gpu(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "device": "cuda"}

    cpu = demo_rows(0.857, 0.866) + full_rows(1) + peers(1, tv=2.0, ref=1.0)
    gpu = [on_gpu(r) for r in [row("full-pruned", "int8-e2e", 1, 300.0), *peers(1, tv=100.0, ref=20.0)]]
    targets, ratios = report.targets(cpu + gpu, [1])
    assert ratios["1"]["best"] == "full-pruned int8-e2e" and ratios["1"]["vs_torchvision"] == pytest.approx(9.0)
    assert ratios["cuda 1"]["best"] == "full-pruned int8-e2e cuda"
    assert ratios["cuda 1"]["vs_torchvision"] == pytest.approx(3.0)  # 300 / 100, not 300 / 2 (the CPU peer)
    assert ">= 5x" in by_name(targets, "speed on cuda, batch 1").name  # the GPU keeps its own goal
    assert by_name(targets, "speed, batch 1").status == "PASS"
    assert by_name(targets, "speed on cuda, batch 1").status == "FAIL"


def test_peers_run_on_every_device_of_the_run() -> None:
    from pathlib import Path

    from mfssd_deploy.bench.suite import peer_specs

    specs = peer_specs(Path("full.pt"), ["cpu", "cuda"])
    assert [(s["peer"], s["device"]) for s in specs] == [
        ("torchvision", "cpu"), ("reference", "cpu"), ("torchvision", "cuda"), ("reference", "cuda")]  # fmt: skip


def test_pre_post_share_is_a_full_size_figure() -> None:
    def given(gflops: float) -> dict[str, Any]:
        return {**row("m.int8.end2end", "onnx", 8, 170.0, stages=(2.0, 42.0, 0.3)), "gflops": gflops,
                "weights": "as given", "model": "m.int8.end2end.onnx"}  # fmt: skip

    narrow = by_name(report.targets([given(5.12)], [8])[0], "pre + post")
    assert narrow.status == "UNCHECKED" and "narrow model (5.1 GFLOPs vs 79 at full size)" in narrow.detail
    assert "(5.2%)" in narrow.detail  # still measured and shown
    full = by_name(report.targets([given(39.3)], [8])[0], "pre + post")  # a user's own full-size export
    assert full.status == "FAIL" and "= 5.2%" in full.detail


def ov(kind: str, batch: int, ips: float, of: str = "full-pruned int8-e2e") -> dict[str, Any]:
    r = row("peer", "openvino", batch, ips, model=f"OpenVINO {kind} ({of})", stages=None)
    return {**r, "peer": kind, "of": of}


def test_runtime_rows_are_labelled_budgeted_and_compared_per_runtime() -> None:
    """An ONNX file in two runtimes is two variants: each INT8/bf16 variant gets its own budget line, the
    FP32 reference is the f32 FP32 file, and a full-size row is admitted by its own variant's budget."""
    ort = {"runtime": "onnxruntime"}
    rows = [
        {**row("demo", "fp32-e2e", 1, 50, map_=0.860), **ort},
        {**row("demo", "fp32-e2e", 1, 55, map_=0.850), "runtime": "openvino-bf16", "precision": "bf16"},
        {**row("demo", "int8-e2e", 1, 70, map_=0.858), "runtime": "openvino"},
        {**row("full", "fp32-e2e", 1, 9.0), "runtime": "openvino-bf16", "precision": "bf16"},
        {**row("full", "int8-e2e", 1, 8.0), "runtime": "openvino"},
        *peers(1, tv=1.0, ref=0.5),
    ]
    assert report.label(rows[2]) == "demo int8-e2e openvino"
    targets, ratios = report.targets(rows, [1])
    bf16 = by_name(targets, "bf16 accuracy (demo fp32-e2e openvino-bf16:")
    assert bf16.status == "FAIL" and "drop +1.00 points" in bf16.detail
    assert by_name(targets, "INT8 accuracy (demo int8-e2e openvino:").status == "PASS"
    # the bf16 row is faster but outside its budget: the INT8 OpenVINO row is the best admitted one
    assert ratios["1"]["best"] == "full int8-e2e openvino" and ratios["1"]["vs_torchvision"] == pytest.approx(8.0)
    assert by_name(targets, "speed, batch 1 (best full-size artifact >= 8x").status == "PASS"


def test_openvino_peer_targets_read_the_same_file_and_the_nncf_peer() -> None:
    rows = (demo_rows(0.857, 0.866) + full_rows(1) + peers(1, tv=2.0, ref=1.0)
            + [ov("openvino", 1, 20.0), ov("openvino", 1, 5.0, of="full-pruned int8u8-e2e"),
               ov("nncf", 1, 12.0, of="full fp32-e2e")])  # fmt: skip
    targets, ratios = report.targets(rows, [1])
    same = by_name(targets, "CPU, batch 1 (best full-size artifact >= 1x OpenVINO's defaults on the same file")
    # best: full-pruned int8-e2e at 18 img/s; its own file in bare OpenVINO runs 20 (the u8 peer is another file)
    assert same.status == "FAIL" and "18.00 img/s vs 20.00 = 0.90x" in same.detail
    nncf = by_name(targets, "CPU, batch 1 (best full-size artifact >= 1.5x OpenVINO + NNCF")
    assert nncf.status == "PASS" and ratios["1"]["vs_openvino_nncf"] == pytest.approx(1.5)
    assert ratios["1"]["vs_openvino_same_file"] == pytest.approx(0.9)


def test_int8_rows_are_read_against_the_int8_peak() -> None:
    from mfssd_deploy.bench.run import peak_for

    env = {"peak_fp32_gflops": 400.0, "peak_int8_gops": 1600.0}
    assert peak_for({"precision": "int8-qdq"}, env) == 1600.0 and peak_for({"precision": "fp32"}, env) == 400.0
    assert peak_for({"precision": "int8-qdq", "device": "cuda"}, {**env, "peak_fp32_gflops_gpu": 9e3}) == 9e3
    rows = full_rows(1) + peers(1, tv=1.0, ref=1.0)
    for r in rows:  # 79 GOP per image: 18 img/s = 1422 GOP/s
        r["gflops"] = 79.0
        r["achieved_gflops_per_s"] = 79.0 * r["images_per_s"]
        r["fraction_of_peak"] = r["achieved_gflops_per_s"] / peak_for(r, env)
    targets, ratios = report.targets(rows, [1])
    t = by_name(targets, "INT8 roofline, batch 1")
    assert t.status == "PASS" and "full-pruned int8-e2e 1422 GOP/s = 89%" in t.detail
    assert ratios["1"]["int8_peak_fraction"] == pytest.approx(1422 / 1600)


def test_int8_rows_above_the_gemm_peak_leave_the_roofline_unchecked() -> None:
    """A measured peak the rows outrun is no ceiling: the target says so instead of passing."""
    rows = full_rows(1)
    for r in rows:
        r["achieved_gflops_per_s"] = 79.0 * r["images_per_s"]
        r["fraction_of_peak"] = r["achieved_gflops_per_s"] / (1000.0 if r["precision"].startswith("int8") else 400.0)
    t = by_name(report.targets(rows + peers(1, tv=1.0, ref=1.0), [1])[0], "INT8 roofline, batch 1")
    assert t.status == "UNCHECKED" and "142%" in t.detail and "not this CPU's INT8 ceiling" in t.detail


def test_bf16_ratios_pair_each_layout_with_its_own_fp32_file() -> None:
    rows = [{**row("full", fmt, 1, ips), "runtime": rt, "precision": prec}
            for fmt, rt, prec, ips in (("fp32-raw", "openvino", "fp32", 4.0),
                                       ("fp32-raw", "openvino-bf16", "bf16", 20.0),
                                       ("fp32-e2e", "openvino", "fp32", 5.0),
                                       ("fp32-e2e", "openvino-bf16", "bf16", 25.0))]  # fmt: skip
    got = {(r["of"], r["vs"]): r["ratio"] for r in report.speed_ratios(rows) if r["kind"] == "precision"}
    assert got == pytest.approx({("full fp32-raw openvino-bf16", "full fp32-raw openvino"): 5.0,
                                 ("full fp32-e2e openvino-bf16", "full fp32-e2e openvino"): 5.0})  # fmt: skip


def test_a_bad_cpu_backend_variable_is_one_line_for_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    from mfssd_deploy.bench import suite
    from mfssd_deploy.errors import MfssdError

    monkeypatch.setenv("MFSSD_ONNX_CPU_BACKEND", "tflite")
    with pytest.raises(MfssdError, match="set it to onnxruntime or openvino"):
        suite.default_cpu_runtimes()
    monkeypatch.setenv("MFSSD_ONNX_CPU_BACKEND", "openvino")
    monkeypatch.setattr(suite, "installed_cpu_runtimes", lambda: ("onnxruntime",))
    with pytest.raises(MfssdError, match=r'OpenVINO is not installed: pip install "mfssd-deploy\[openvino\]"'):
        suite.default_cpu_runtimes()
    monkeypatch.setenv("MFSSD_ONNX_CPU_BACKEND", "onnxruntime")
    assert suite.default_cpu_runtimes() == ("onnxruntime",)


def test_given_files_pair_with_fp32_in_the_same_runtime() -> None:
    """NAME.int8.end2end.onnx in ONNX Runtime against NAME.end2end.onnx in ONNX Runtime, never in OpenVINO."""

    def given(model: str, precision: str, runtime: str, ips: float) -> dict[str, Any]:
        r = row("x", "fp32-e2e", 1, ips, model=model)
        return {**r, "precision": precision, "layout": "end2end", "weights": "as given", "runtime": runtime}

    rows = [given("m.end2end.onnx", "fp32", "onnxruntime", 10.0), given("m.end2end.onnx", "fp32", "openvino", 20.0),
            given("m.end2end.onnx", "bf16", "openvino-bf16", 60.0),
            given("m.int8.end2end.onnx", "int8-qdq", "onnxruntime", 5.0),
            given("m.int8.end2end.onnx", "int8-qdq", "openvino", 80.0)]  # fmt: skip
    got = {(r["of"], r["vs"]): r["ratio"] for r in report.speed_ratios(rows) if r["kind"] == "precision"}
    assert got[("m.int8.end2end.onnx onnxruntime", "m.end2end.onnx onnxruntime")] == pytest.approx(0.5)
    assert got[("m.int8.end2end.onnx openvino", "m.end2end.onnx openvino")] == pytest.approx(4.0)
    assert got[("m.end2end.onnx openvino-bf16", "m.end2end.onnx openvino")] == pytest.approx(3.0)
