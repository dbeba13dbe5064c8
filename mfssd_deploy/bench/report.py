"""Reading a benchmark run: the targets of docs/benchmarking.md as PASS/FAIL lines, ratios, table, CSV, plot."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import LAYOUT_SUFFIX, ONNX_PRECISIONS
from mfssd_deploy.bench.rows import BenchRow
from mfssd_deploy.config import BASE_WIDTHS, ModelConfig

FULL_GFLOPS = 79.0  # full-size 300x300 MFSSD-BN, 2 x 39.5 G multiply-adds (a fact of the model, not a target)
TORCHVISION = "torchvision ssd300_vgg16"
REFERENCE = "MFSSD-BN eager + reference NMS loop"
OPENVINO_PEER, NNCF_PEER = "openvino", "nncf"  # the OpenVINO peers' kinds (bench.openvino_peers)
RANDOM_WEIGHTS = "random (speed only)"  # bench.suite.RANDOM


@dataclass(frozen=True)
class Targets:
    """The acceptance targets of docs/benchmarking.md, as data: a run can be judged against other goals
    (another GPU, a stricter budget) without editing the report; the defaults are the project's."""

    speedup: float = 8.0  # CPU, batch 1: best full-size artifact within the accuracy budgets / torchvision ssd300_vgg16
    speedup_batched: float = 12.0  # the same at batch > 1
    gpu_speedup_vs_torchvision: float = 5.0  # the same ratio on a GPU (both on that GPU)
    vs_openvino_same_file: float = 1.0  # our Detector / OpenVINO's defaults on the very same file
    vs_openvino_nncf: float = 1.5  # / OpenVINO + NNCF INT8 on the unpruned full-size model
    int8_peak_fraction: float = 0.8  # best full-size INT8 row's GOP/s / the INT8 GEMM peak of the same run
    pre_post_share: float = 0.05  # pre + post of end-to-end time at batch 8
    int8_max_drop: float = 0.5  # mAP@0.5 points vs FP32 (FP16 engines are held to the same budget)
    pruned_max_drop: float = 1.0  # mAP@0.5 points vs unpruned
    pruned_min_reduction: float = 0.33  # fraction of parameters removed
    paper_gpu_fps: float = 79.5  # the paper's MFSSD, end to end on a GTX 1080 Ti, batch 1
    gpu_speedup: float = 5.0  # pruned INT8 TensorRT on a GTX 1080 Ti-class GPU / the paper's figure


@dataclass(frozen=True)
class Target:
    name: str
    status: str  # PASS | FAIL | UNCHECKED
    detail: str

    def line(self) -> str:
        return f"{self.status:9s} {self.name}: {self.detail}"


def variant(row: BenchRow) -> str:
    """The artifact kind and, for an ONNX file on the CPU, the runtime it ran in: "int8-e2e openvino"."""
    return f"{row['format']} {row['runtime']}" if row.get("runtime") else str(row["format"])


def label(row: BenchRow) -> str:
    if row["group"] == "peer":
        return str(row["model"])
    dev = "" if row.get("device", "cpu") == "cpu" else f" {row['device']}"
    rt = f" {row['runtime']}" if row.get("runtime") else ""
    tiled = f" tiled {row['tile']}" if row.get("tile") else ""
    if row.get("weights") == "as given":  # a file named on the command line
        return f"{row['model']}{rt}{dev}{tiled}"
    return f"{row['group']} {variant(row)}{dev}{tiled}"


def _acc(rows: Sequence[BenchRow], group: str, kind: str) -> float | None:
    """mAP@0.5 of a group's rows of one variant (or, for "fp32-e2e", its FP32 end2end file in any runtime
    at FP32 precision: the reference every reduced precision is held against)."""
    for r in rows:
        if r["group"] != group or r.get("map") is None:
            continue
        if variant(r) == kind or (kind == "fp32-e2e" and r["format"] == kind and r.get("precision") == "fp32"):
            return float(r["map"])
    return None


def _params(rows: Sequence[BenchRow], group: str) -> int | None:
    return next((int(p) for r in rows if r["group"] == group and (p := r.get("params"))), None)


Budgets = dict[str, "bool | None"]  # "pruned", and "GROUP FORMAT" for each reduced-precision format of a demo group


def _reduced(precision: Any) -> bool:
    """Anything but FP32 (every INT8 flavour, FP16, the bf16 hint): what must stay within FP32's accuracy budget."""
    return str(precision) not in ("fp32", "", "None")


def _reduced_variants(rows: Sequence[BenchRow]) -> list[str]:
    return sorted({variant(r) for r in rows if _reduced(r.get("precision", "")) and r["group"] != "peer"})


def accuracy_budgets(rows: Sequence[BenchRow], goals: Targets | None = None) -> tuple[list[Target], Budgets]:
    """INT8 and pruning budgets on the trained demo models, and which full-size variants they admit."""
    goals = goals or Targets()
    targets: list[Target] = []
    ok: Budgets = {"pruned": None}
    present = {r["group"] for r in rows}
    for group in ("demo", "demo-pruned"):
        if group not in present:
            continue
        for fmt in _reduced_variants(rows):
            fp32, low = _acc(rows, group, "fp32-e2e"), _acc(rows, group, fmt)
            precision = next(str(r["precision"]) for r in rows if variant(r) == fmt)
            kind = {"fp16": "FP16", "bf16": "bf16"}.get(precision[:4], "INT8")
            name = f"{kind} accuracy ({group} {fmt}: mAP@0.5 drop <= {goals.int8_max_drop} points vs FP32)"
            if fp32 is None or low is None:
                ok[f"{group} {fmt}"] = None
                targets.append(Target(name, "UNCHECKED", "no accuracy in this run (add --val)"))
                continue
            drop = (fp32 - low) * 100
            ok[f"{group} {fmt}"] = drop <= goals.int8_max_drop
            targets.append(Target(name, "PASS" if drop <= goals.int8_max_drop else "FAIL",
                                  f"FP32 {fp32:.4f} -> {kind} {low:.4f}, drop {drop:+.2f} points"))  # fmt: skip
    name = (f"pruned accuracy (>= {goals.pruned_min_reduction:.0%} fewer parameters, mAP@0.5 drop <= "
            f"{goals.pruned_max_drop} points)")  # fmt: skip
    base, pruned = _acc(rows, "demo", "fp32-e2e"), _acc(rows, "demo-pruned", "fp32-e2e")
    pu, pp = _params(rows, "demo"), _params(rows, "demo-pruned")
    if not {"demo", "demo-pruned"} <= present:
        pass  # the pruning budget compares the two bundled models
    elif base is None or pruned is None or not pu or not pp:
        targets.append(Target(name, "UNCHECKED", "needs demo and demo-pruned with --val"))
    else:
        drop, fewer = (base - pruned) * 100, 1 - pp / pu
        ok["pruned"] = drop <= goals.pruned_max_drop and fewer >= goals.pruned_min_reduction
        targets.append(Target(name, "PASS" if ok["pruned"] else "FAIL",
                              f"{pu:,} -> {pp:,} parameters ({fewer:.1%} fewer), mAP@0.5 {base:.4f} -> {pruned:.4f} "
                              f"(drop {drop:+.2f} points)"))  # fmt: skip
    return targets, ok


def _eligible(row: BenchRow, ok: Budgets) -> bool | None:
    """Whether a full-size row's precision and pruning stay within the budgets measured on the demo:
    a pruned row needs the pruning budget; an INT8/FP16 row needs its format's budget on the matching demo."""
    pruned = row["group"] == "full-pruned"
    checks = [ok["pruned"]] if pruned else []
    if _reduced(row["precision"]):
        checks.append(ok.get(f"{'demo-pruned' if pruned else 'demo'} {variant(row)}"))
    if any(c is False for c in checks):
        return False
    return None if any(c is None for c in checks) else True


def best_full(rows: Sequence[BenchRow], batch: int, ok: Budgets, device: str | None = None
              ) -> tuple[BenchRow | None, bool]:  # fmt: skip
    """The fastest full-size row admitted by the budgets (or, when they were not measured, the fastest),
    on `device` when given."""
    full = [r for r in rows if r["group"] in ("full", "full-pruned") and r["batch"] == batch
            and (device is None or r.get("device", "cpu") == device)]  # fmt: skip
    admitted = [r for r in full if _eligible(r, ok) is True]
    unknown = [r for r in full if _eligible(r, ok) is None]
    pool = admitted + unknown
    if not pool:
        return None, False
    best = max(pool, key=lambda r: r["images_per_s"])
    return best, best in unknown


def _peer(rows: Sequence[BenchRow], name: str, batch: int, device: str = "cpu") -> BenchRow | None:
    return next((r for r in rows if r["group"] == "peer" and r["model"] == name and r["batch"] == batch
                 and r.get("device", "cpu") == device), None)  # fmt: skip


def _openvino_peer(rows: Sequence[BenchRow], kind: str, batch: int, of: str | None = None
                   ) -> BenchRow | None:  # fmt: skip
    """An OpenVINO peer row (kind OPENVINO_PEER on file `of`, or NNCF_PEER) at `batch`."""
    return next((r for r in rows if r["group"] == "peer" and r.get("peer") == kind and r["batch"] == batch
                 and (of is None or r.get("of") == of)), None)  # fmt: skip


def compute_fraction(cfg: ModelConfig) -> float:
    """About how much of the full-size 300x300 model's multiply-adds an artifact has, from its config alone
    (every .pt, .onnx and .engine carries it; no torch needed): conv multiply-adds scale with input x
    output channels and with the image area, so channel-width fraction^2 x the area's fraction of 300x300."""
    from mfssd_deploy.config import input_wh_of

    base = BASE_WIDTHS[cfg.variant]
    widths = sum(cfg.widths.values()) / sum(base.values())
    w, h = input_wh_of(cfg.input_size)
    return float(widths**2 * (w * h) / 300**2)


def _full_size_fraction(row: BenchRow) -> tuple[float | None, str]:
    """The row's share of the full-size model's compute and how it is known. One rule in every install:
    the config's estimate whenever the row has it (the bench sets it with or without torch); measured
    GFLOPs only for rows without it (hand-made or older JSON)."""
    frac = row.get("compute_fraction")
    if frac is not None:
        return float(frac), f"channel widths and input size give ~{frac:.0%} of the full-size model's multiply-adds"
    g = row.get("gflops")
    if g:
        return float(g) / FULL_GFLOPS, f"{g:.1f} GFLOPs vs {FULL_GFLOPS:g} at full size"
    return None, ""


def share(row: BenchRow) -> float | None:
    st = row.get("stages_ms")
    if not st:
        return None
    total = st["pre"] + st["infer"] + st["post"]
    return (st["pre"] + st["post"]) / total if total > 0 else None


def targets(rows: Sequence[BenchRow], batches: Sequence[int],
            goals: Targets | None = None) -> tuple[list[Target], dict[str, Any]]:  # fmt: skip
    """All PASS/FAIL lines (judged against `goals`, default the project's targets) and the ratios the
    closing note reports."""
    goals = goals or Targets()
    acc_targets, ok = accuracy_budgets(rows, goals)
    out: list[Target] = []
    ratios: dict[str, Any] = {}
    speed = any(r["group"] in ("full", "full-pruned", "peer") for r in rows)
    # like with like: each device's artifacts against the peers on that device (GPU vs GPU, CPU vs CPU)
    devices = sorted({r.get("device", "cpu") for r in rows if r["group"] == "peer"}) or ["cpu"]
    for dev, b in [(d, b) for d in devices for b in batches] if speed else ():
        best, unverified = best_full(rows, b, ok, dev)
        tv, ref = _peer(rows, TORCHVISION, b, dev), _peer(rows, REFERENCE, b, dev)
        on = "" if dev == "cpu" else f" on {dev}"
        goal = goals.gpu_speedup_vs_torchvision if dev != "cpu" else goals.speedup if b == 1 else goals.speedup_batched
        name = (f"speed{on}, batch {b} (best full-size artifact >= {goal:g}x torchvision ssd300_vgg16 "
                "images/s)")  # fmt: skip
        if best is None or tv is None:
            out.append(Target(name, "UNCHECKED", "needs the full/full-pruned models and --peers"))
            continue
        r_tv = best["images_per_s"] / tv["images_per_s"]
        r_ref = best["images_per_s"] / ref["images_per_s"] if ref else None
        key = str(b) if dev == "cpu" else f"{dev} {b}"  # "1", "8" on CPU (as before); "cuda 1" on a GPU
        ratios[key] = {"best": label(best), "images_per_s": best["images_per_s"], "vs_torchvision": r_tv,
                       "vs_reference": r_ref, "budget_unverified": unverified}  # fmt: skip
        detail = (f"{label(best)} {best['images_per_s']:.2f} img/s vs {tv['images_per_s']:.2f} = {r_tv:.2f}x"
                  + (f"; vs eager + reference NMS loop {ref['images_per_s']:.2f} img/s = {r_ref:.2f}x" if ref else "")
                  + (" (accuracy budgets not measured in this run: add --val)" if unverified else ""))  # fmt: skip
        out.append(Target(name, "PASS" if r_tv >= goal else "FAIL", detail))
        if dev == "cpu":
            out += _openvino_targets(rows, best, b, goals, ratios[key])
    big = 8 if 8 in batches else max(batches)
    best, _ = best_full(rows, big, ok)
    # the deployment path: the best full-size artifact, or (without full-size rows) our fastest row
    own = [r for r in rows if r["batch"] == big and r["group"] != "peer" and share(r) is not None]
    pick = (
        best
        if best is not None and share(best) is not None
        else max(own, key=lambda r: r["images_per_s"], default=None)
    )
    name = f"pre + post <= {goals.pre_post_share:.0%} of end-to-end at batch {big}"
    # pre/post cost the same per image at any width; a narrow model's inference does not: its share is
    # shown but judged only on a full-size artifact. A row whose size is unknown is not judged either.
    frac_full, size = _full_size_fraction(pick) if best is None and pick is not None else (1.0, "")
    if pick is None:
        out.append(Target(name, "UNCHECKED", "no row with stage times at this batch"))
    elif frac_full is None or frac_full < 1 / 4:
        what = (f"is a narrow model ({size})" if frac_full is not None
                else "has no config or GFLOPs in this run to tell whether it is full-size")  # fmt: skip
        why = (f"needs a full-size artifact: {label(pick)} {what}, whose pre + post share "
               f"({share(pick) or 0.0:.1%}) is not the deployment figure; add --models full-pruned")  # fmt: skip
        out.append(Target(name, "UNCHECKED", why))
    else:
        st, frac = pick["stages_ms"], share(pick) or 0.0
        assert st is not None  # share() is None without stages
        out.append(Target(name, "PASS" if frac <= goals.pre_post_share else "FAIL",
                          f"{label(pick)}: pre {st['pre']:.1f} + post {st['post']:.1f} of "
                          f"{st['pre'] + st['infer'] + st['post']:.1f} ms per batch = {frac:.1%}"))  # fmt: skip
    if any(r["group"] == "full-pruned" for r in rows):
        out.append(gpu_target(rows, ok, goals))
    return out + acc_targets, ratios


def _openvino_targets(rows: Sequence[BenchRow], best: BenchRow, batch: int, goals: Targets,
                      ratio: dict[str, Any]) -> list[Target]:  # fmt: skip
    """Ours against OpenVINO (same file; NNCF on the unpruned model) and the INT8 roofline, at one batch size;
    `ratio` (the closing note's ratios for this batch) receives the figures."""
    out: list[Target] = []
    of = f"{best['group']} {best['format']}"
    ours = f"{label(best)} {best['images_per_s']:.2f} img/s"
    pairs = (
        ("vs_openvino_same_file", _openvino_peer(rows, OPENVINO_PEER, batch, of), goals.vs_openvino_same_file,
         "OpenVINO's defaults on the same file", f"no OpenVINO peer on {of} in this run (needs [openvino], --peers)"),
        ("vs_openvino_nncf", _openvino_peer(rows, NNCF_PEER, batch), goals.vs_openvino_nncf,
         "OpenVINO + NNCF INT8 on the unpruned model", 'no OpenVINO + NNCF peer (pip install "mfssd-deploy[bench]")'),
    )  # fmt: skip
    for key, peer, goal, what, missing in pairs:
        name = f"CPU, batch {batch} (best full-size artifact >= {goal:g}x {what})"
        if peer is None:
            out.append(Target(name, "UNCHECKED", missing))
            continue
        r = ratio[key] = best["images_per_s"] / peer["images_per_s"]
        detail = f"{ours} vs {peer['images_per_s']:.2f} = {r:.2f}x"
        out.append(Target(name, "PASS" if r >= goal else "FAIL", detail))
    int8 = [r for r in rows if r["group"] in ("full", "full-pruned") and r["batch"] == batch
            and str(r.get("precision")).startswith("int8") and r.get("device", "cpu") == "cpu"
            and r.get("fraction_of_peak") is not None]  # fmt: skip
    name = f"INT8 roofline, batch {batch} (best full-size INT8 row >= {goals.int8_peak_fraction:.0%} of the INT8 peak)"
    if not int8:
        out.append(Target(name, "UNCHECKED", "no full-size INT8 row read against an INT8 peak in this run"))
        return out
    top = max(int8, key=lambda r: r["fraction_of_peak"] or 0.0)
    frac = ratio["int8_peak_fraction"] = top["fraction_of_peak"] or 0.0
    detail = f"{label(top)} {top['achieved_gflops_per_s']:.0f} GOP/s = {frac:.0%}"
    if frac > 1:  # the rows outrun the GEMM: it is not this CPU's INT8 ceiling, so no fraction of it means much
        out.append(Target(name, "UNCHECKED", f"{detail} of the measured GEMM peak: the INT8 rows outrun it (e.g. "
                                             "convolutions on AMX), so it is not this CPU's INT8 ceiling"))  # fmt: skip
        return out
    out.append(Target(name, "PASS" if frac >= goals.int8_peak_fraction else "FAIL", detail))
    return out


def gpu_target(rows: Sequence[BenchRow], ok: Budgets, goals: Targets | None = None) -> Target:
    """The GPU target (docs/benchmarking.md): the full-size pruned INT8 TensorRT engine at batch 1 vs 5x the
    paper's FPS."""
    goals = goals or Targets()
    goal = goals.gpu_speedup * goals.paper_gpu_fps
    name = (f"GPU, batch 1 (pruned INT8 TensorRT on a GTX 1080 Ti-class GPU >= {goals.gpu_speedup:g}x the paper's "
            f"{goals.paper_gpu_fps} FPS = {goal:g} img/s)")  # fmt: skip
    engines = [r for r in rows if r["group"] == "full-pruned" and r["batch"] == 1 and r.get("device") == "cuda"
               and str(r["precision"]).startswith("int8") and r["format"] in ("trt-int8-e2e", "engine")]  # fmt: skip
    if not engines:
        return Target(name, "UNCHECKED", "no TensorRT engine of the full-size pruned model in this run "
                                         "(needs an NVIDIA GPU with TensorRT)")  # fmt: skip
    best = max(engines, key=lambda r: r["images_per_s"])
    eligible = _eligible(best, ok)
    fps = best["images_per_s"]
    detail = f"{label(best)} {fps:.1f} img/s = {fps / goals.paper_gpu_fps:.2f}x the paper"
    if eligible is False:
        return Target(name, "FAIL", detail + " (outside the accuracy budgets measured on the demo models)")
    status = "PASS" if best["images_per_s"] >= goal else "FAIL"
    return Target(name, status, detail + (" (accuracy budgets not measured in this run: add --val)" if eligible is None
                                          else ""))  # fmt: skip


def _base(row: BenchRow) -> str:
    """The runtime a row's FP32 counterpart ran in: its own, or for a hinted one (openvino-bf16) its backend's."""
    from mfssd_deploy.runtime.backends import base_runtime

    runtime = row.get("runtime")
    return base_runtime(runtime) if runtime else ""


def speed_ratios(rows: Sequence[BenchRow]) -> list[dict[str, Any]]:
    """The other ratios of docs/benchmarking.md, each within one device and batch: INT8/FP16 vs FP32 of the same model,
    and pruned vs unpruned in the same format."""
    key = {(r["group"], variant(r), r.get("device", "cpu"), r["batch"]): r for r in rows if r["group"] != "peer"}
    out = []
    for (group, kind, dev, b), r in key.items():
        pairs = []
        runtime = _base(r)  # bf16 is held against FP32 in the same backend
        layout = r["format"] if r["format"].startswith("fp32") else "fp32-e2e"  # bf16 raw against FP32 raw
        fp32_kind = f"{layout} {runtime}" if runtime else layout
        if _reduced(r["precision"]) and (base := key.get((group, fp32_kind, dev, b))):
            pairs.append(("precision", base))
        other = runtime not in ("", "onnxruntime") and r["format"] == "int8-e2e"  # same file, another runtime
        if other and (base := key.get((group, "int8-e2e onnxruntime", dev, b))):
            pairs.append(("runtime", base))
        if group in ("demo-pruned", "full-pruned") and (base := key.get((group.removesuffix("-pruned"), kind, dev, b))):
            pairs.append(("pruning", base))
        for kind, base in pairs:
            out.append({"kind": kind, "batch": b, "device": dev, "of": label(r), "vs": label(base),
                        "ratio": r["images_per_s"] / base["images_per_s"]})  # fmt: skip
    # files named on the command line: NAME.int8.end2end.onnx pairs with NAME.end2end.onnx (same layout)
    # (in the same runtime: bf16 against the FP32 file in OpenVINO f32, INT8 in ONNX Runtime against FP32 there)
    given = [r for r in rows if r.get("weights") == "as given"]
    fp32 = {(_stem(r["model"]), r.get("layout"), r.get("device", "cpu"), r["batch"], r.get("runtime") or ""): r
            for r in given if r.get("precision") == "fp32" and not str(r["model"]).endswith(".pt")}  # fmt: skip
    for r in given:
        runtime = _base(r)
        base = fp32.get((_stem(r["model"]), r.get("layout"), r.get("device", "cpu"), r["batch"], runtime))
        if _reduced(r.get("precision")) and base is not None:
            out.append({"kind": "precision", "batch": r["batch"], "device": r.get("device", "cpu"), "of": label(r),
                        "vs": label(base), "ratio": r["images_per_s"] / base["images_per_s"]})  # fmt: skip
    return out


# The parts exported files add to a model's name (artifacts.ONNX_PRECISIONS and LAYOUT_SUFFIX; "raw": engines).
NAME_PARTS = {"raw", *(x.strip(".") for x in (*LAYOUT_SUFFIX.values(), *(p.suffix for p in ONNX_PRECISIONS.values())))}
NAME_PARTS.discard("")


def _stem(filename: str) -> str:
    """The model name of an exported file: NAME.int8u8.end2end.onnx -> NAME."""
    parts = filename.split(".")
    return ".".join(p for p in parts[:-1] if p not in NAME_PARTS) or filename


def ratios_markdown(ratios: Sequence[dict[str, Any]]) -> str:
    """One line per pair, one column per batch size."""
    batches = sorted({r["batch"] for r in ratios})
    pairs = list(dict.fromkeys((r["kind"], r["of"], r["vs"]) for r in ratios))
    lines = ["| speed ratio (same run) | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---:|" * len(batches)]  # fmt: skip
    for kind, of, vs in pairs:
        cells = [next((f"{r['ratio']:.2f}x" for r in ratios if (r["kind"], r["of"], r["vs"], r["batch"]) ==
                       (kind, of, vs, b)), "") for b in batches]  # fmt: skip
        lines.append(f"| {of} / {vs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _memory(row: BenchRow) -> str:
    """Host peak RSS, and on a GPU the device memory the configuration holds: "303 + 512 GPU"."""
    gpu = row.get("gpu_memory_mb")
    return _fmt(row.get("memory_mb"), ".0f") + (f" + {gpu:.0f} GPU" if gpu is not None else "")


def markdown(rows: Sequence[BenchRow]) -> str:
    head = ("| configuration | batch | img/s | mean | p50 | p90 | p99 | pre | infer | post | params | GFLOPs "
            "| GFLOP/s (% peak) | MB | mem MB | mAP@0.5 | APs | APt (8-16 px) |")  # fmt: skip
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat, st = r["latency_ms"], r.get("stages_ms") or {}
        frac = r.get("fraction_of_peak")
        roof = f"{r['achieved_gflops_per_s']:.0f} ({frac:.0%})" if frac else _fmt(r.get("achieved_gflops_per_s"), ".0f")
        lines.append(
            f"| {label(r)}{' *' if r.get('weights') == RANDOM_WEIGHTS and r['group'] != 'peer' else ''} | {r['batch']} "
            f"| {r['images_per_s']:.1f} | {lat['mean']:.1f} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} "
            f"| {_fmt(st.get('pre'), '.1f')} | {_fmt(st.get('infer'), '.1f')} | {_fmt(st.get('post'), '.1f')} "
            f"| {_fmt(r.get('params'), ',')} | {_fmt(r.get('gflops'), '.2f')} | {roof} "
            f"| {_fmt(r.get('size_mb'), '.1f')} "
            f"| {_memory(r)} | {_fmt(r.get('map'), '.4f')} | {_fmt(r.get('aps'), '.4f')} "
            f"| {_fmt((r.get('aitod') or {}).get('APt'), '.4f')} |"
        )
    return "\n".join(lines)


CSV_FIELDS = ("group", "format", "model", "device", "backend", "precision", "layout", "weights", "batch",
              "images_per_s", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "pre_ms", "infer_ms", "post_ms", "params",
              "gflops", "achieved_gflops_per_s", "fraction_of_peak", "size_mb", "memory_mb", "gpu_memory_mb", "map",
              "aps")  # fmt: skip


def to_csv(rows: Sequence[BenchRow]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        flat = dict(r)
        flat.update({f"{k}_ms": v for k, v in r["latency_ms"].items()})
        flat.update({f"{k}_ms": v for k, v in (r.get("stages_ms") or {}).items()})
        w.writerow(flat)
    return buf.getvalue()


def plot(rows: Sequence[BenchRow], path: Path, title: str) -> None:
    """Left: images/s per configuration and batch. Right: stage times per image at the largest batch."""
    from mfssd_deploy.errors import require

    require("matplotlib", "train", "the benchmark plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mfssd_deploy.fileio import atomic_path

    labels = list(dict.fromkeys(label(r) for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.42 * len(labels) + 2.2), sharey=True)
    y = np.arange(len(labels))
    h = 0.8 / len(batches)
    for i, b in enumerate(batches):
        vals = [next((r["images_per_s"] for r in rows if label(r) == lab and r["batch"] == b), 0.0) for lab in labels]
        ax1.barh(y + i * h, vals, h, label=f"batch {b}")
    ax1.set_xscale("log")
    ax1.set_xlabel("images/s (log scale; higher is better)")
    ax1.set_yticks(y + h * (len(batches) - 1) / 2, labels)
    ax1.invert_yaxis()
    ax1.legend(loc="lower right")
    big = max(batches)
    left = np.zeros(len(labels))
    for stage, colour in (("pre", "tab:orange"), ("infer", "tab:blue"), ("post", "tab:green")):
        vals = []
        for lab in labels:
            r = next((r for r in rows if label(r) == lab and r["batch"] == big), None)
            st = r.get("stages_ms") if r else None
            if st:
                vals.append(st[stage] / big)
            elif r and stage == "infer":  # peers: end to end only
                vals.append(r["latency_ms"]["p50"] / big)
            else:
                vals.append(0.0)
        ax2.barh(y + h * (len(batches) - 1) / 2, vals, 0.6, left=left, color=colour, label=stage)
        left += np.array(vals)
    ax2.set_xlabel(f"ms per image at batch {big}, stacked pre / infer / post (peers: end to end)")
    ax2.legend(loc="center right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
