"""Tiled inference on large frames: accuracy and speed of the demo model, ours against SAHI on the same detector,
and native resolution (the whole frame at its own size, priors for the larger feature maps: no tiles).

Accuracy (COCO AP family, the project's evaluation: mfssd_deploy.evaluation.runner.evaluate) on the large-frame
small-object set (mfssd_deploy.data.synth.generate_large): the whole frame resized, our tiling (every backend
here, and the design choices: merge, metric, edge boxes, full-frame pass, overlap), and SAHI 0.12.8's
get_sliced_prediction driving the same Detector one slice at a time. Speed (images/s of 1920x1080 frames, one
frame per call, decoded beforehand): every configuration once per round, rounds interleaved, only while the
1-minute load average is at most --max-load (waits up to --wait seconds for a quiet machine, then measures
anyway and says so). Writes results.json, results.md and tile_grid.jpg into --out.

Native resolution: the demo model exported end2end (FP32, and INT8 calibrated on held-out frames of the same size,
generate_large seed 2) at each camera resolution of the set (1920x1080, 1280x720: one export per camera size, as a
deployment has), plus the .pt with Detector(input_size=...); every frame runs at its own size, one call per frame.
`--native-only` measures just these rows (and, in the same speed rounds, the tiled ORT rows they are compared with)
and merges them into an existing results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfssd_deploy import Detector, __version__
from mfssd_deploy.data.sources import open_dataset
from mfssd_deploy.data.synth import generate_large
from mfssd_deploy.demo_assets import DEMO_MODEL, DEMO_ONNX, DEMO_ONNX_INT8
from mfssd_deploy.evaluation.runner import evaluate
from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
from mfssd_deploy.geometry.tiling import Tiling, plan_crops, tile_grid
from mfssd_deploy.runtime.inputs import read_image

TILE = 300
OVERLAP = 0.2
DEFAULT = Tiling((TILE, TILE), OVERLAP)  # nms, ios 0.5, edge drop, full frame
SAHI_ALIKE = Tiling((TILE, TILE), OVERLAP, merge="nms", edge="merge")  # what SAHI can be configured to do
GREEDY = Tiling((TILE, TILE), OVERLAP, merge="greedy_nmm", edge="merge")  # SAHI's default algorithm
NATIVE_SIZES: tuple[tuple[int, int], ...] = ((1920, 1080), (1280, 720))  # the set's camera resolutions (W, H)
CALIB_SEED, CALIB_FRAMES = 2, 16  # INT8 calibration frames for the native exports: held out from the set (seed 1)


# ------------------------------------------------------------------------------------------------ SAHI peer


def sahi_model(detector: Detector, batched: bool = False) -> Any:
    """A sahi DetectionModel around our Detector: each slice (and the full frame) is one untiled Detector
    call; `batched`: SAHI's batch_size > 1 path hands a list of slices to one Detector call."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

    class MfssdDetectionModel(DetectionModel):  # type: ignore[misc]
        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model

        def perform_inference(self, image: np.ndarray) -> None:
            self._original_predictions = self.model.detect_arrays([image], tile=False)

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            if not batched:
                super().perform_batch_inference(images)
                return
            self._original_predictions = self.model.detect_arrays(list(images), tile=False)

        def _create_object_prediction_list_from_original_predictions(
            self, shift_amount_list: Any = None, full_shape_list: Any = None
        ) -> None:
            shifts = fix_shift_amount_list(shift_amount_list or [[0, 0]])
            shapes = fix_full_shape_list(full_shape_list)
            self._object_prediction_list_per_image = [
                [ObjectPrediction(bbox=b.tolist(), score=float(s), category_id=int(c),
                                  category_name=r.class_names[int(c)], shift_amount=shifts[k],
                                  full_shape=shapes[k] if shapes else None)
                 for b, s, c in zip(r.boxes, r.scores, r.labels, strict=True)]
                for k, r in enumerate(self._original_predictions)
            ]  # fmt: skip

    names = {str(i): n for i, n in enumerate(detector.class_names)}
    return MfssdDetectionModel(model=detector, confidence_threshold=detector.nms.conf_thresh,
                               category_mapping=names, device="cpu")  # fmt: skip


@dataclass(frozen=True)
class SahiSettings:
    postprocess: str = "NMS"  # NMS | GREEDYNMM
    metric: str = "IOS"
    force: bool = True  # False: SAHI's own switch to NMS/IOU when the model's threshold is below 0.1
    batch_size: int = 1


def sahi_predictor(detector: Detector, s: SahiSettings) -> Callable[[list[np.ndarray]], list[tuple]]:
    from sahi.predict import get_sliced_prediction

    model = sahi_model(detector, batched=s.batch_size > 1)

    def predict(images: list[np.ndarray]) -> list[tuple]:
        out = []
        for img in images:
            preds = get_sliced_prediction(img, model, TILE, TILE, OVERLAP, OVERLAP, perform_standard_pred=True,
                                          postprocess_type=s.postprocess, postprocess_match_metric=s.metric,
                                          postprocess_match_threshold=0.5, verbose=0, batch_size=s.batch_size,
                                          force_postprocess_type=s.force).object_prediction_list  # fmt: skip
            out.append((np.array([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4),
                        np.array([p.score.value for p in preds], np.float32),
                        np.array([p.category.id for p in preds], np.int64)))  # fmt: skip
        return out

    return predict


# ---------------------------------------------------------------------------------------------- detectors


def detectors(conf: float | None = None) -> dict[str, Detector]:
    out = {
        "torch .pt": Detector(DEMO_MODEL, conf=conf),
        "ORT FP32 end2end": Detector(DEMO_ONNX, backend="onnxruntime", conf=conf),
        "OpenVINO INT8 end2end": Detector(DEMO_ONNX_INT8, backend="openvino", conf=conf),
    }
    openvino = openvino_detector(conf)
    if openvino is not None:
        out["OpenVINO FP32 end2end"] = openvino
    return out


def openvino_detector(conf: float | None) -> Detector | None:
    """OpenVINO when its backend exists here (registered, or at least its module), else None."""
    try:
        return Detector(DEMO_ONNX, backend="openvino", conf=conf)
    except Exception:
        pass
    try:
        from mfssd_deploy.runtime.backends.openvino_backend import OpenVinoBackend

        return Detector.from_backend(OpenVinoBackend(DEMO_ONNX, "cpu"), DEMO_ONNX.name, conf=conf)
    except Exception as exc:
        print(f"OpenVINO row skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


# -------------------------------------------------------------------------------------- native resolution

Native = dict[tuple[int, int], Detector]  # one Detector per camera resolution (W, H)


def native_exports(work: Path) -> dict[tuple[int, int], dict[str, Path]]:
    """The demo model exported end2end at each NATIVE_SIZES (FP32 and INT8 Q/DQ) into `work`, reused when there.
    INT8 calibrates on CALIB_FRAMES held-out large frames of that size (the pipeline resizes each calibration image
    to the input size, so frames of the camera's own size are what a deployment would calibrate on)."""
    frames = work / "calib_frames"
    if not (frames / "annotations" / "val.json").is_file():
        generate_large(frames, CALIB_FRAMES, seed=CALIB_SEED, show_progress=False)
    coco = json.loads((frames / "annotations" / "val.json").read_text())
    out = {}
    for w, h in NATIVE_SIZES:
        name = f"demo_{w}x{h}"
        paths = {"fp32": work / f"{name}.end2end.onnx", "int8": work / f"{name}.int8.end2end.onnx"}
        if not all(p.is_file() for p in paths.values()):
            calib = work / f"calib_{w}x{h}"
            calib.mkdir(parents=True, exist_ok=True)
            for im in coco["images"]:
                if (im["width"], im["height"]) == (w, h):
                    shutil.copy(frames / "val" / im["file_name"], calib / im["file_name"])
            files = sorted(calib.glob("*.jpg"))
            if len(files) < 3:
                raise SystemExit(f"only {len(files)} calibration frames of {w}x{h}: raise CALIB_FRAMES")
            t0 = time.perf_counter()
            run_export(ExportRequest(model=DEMO_MODEL, out_dir=work, name=name, layouts=("end2end",), int8=True,
                                     calib=calib, calib_num=len(files), parity_images=files[:2], input_size=(w, h),
                                     time_runs=0))  # fmt: skip
            print(f"exported {name} (FP32 + INT8, {len(files)} calibration frames) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        out[(w, h)] = paths
    return out


def native_detectors(work: Path) -> dict[str, Native]:
    exports = native_exports(work)
    return {
        "torch .pt": {size: Detector(DEMO_MODEL, input_size=size) for size in NATIVE_SIZES},
        "ORT FP32 end2end": {size: Detector(exports[size]["fp32"]) for size in NATIVE_SIZES},
        "OpenVINO INT8 end2end": {size: Detector(exports[size]["int8"], backend="openvino") for size in NATIVE_SIZES},
    }


def native(dets: Native) -> Callable[[list[np.ndarray]], list[tuple]]:
    """Every frame whole, at its own size, through the model exported for that size (one call per frame)."""

    def predict(images: list[np.ndarray]) -> list[tuple]:
        out = []
        for img in images:
            det = dets.get((img.shape[1], img.shape[0]))
            if det is None:
                raise SystemExit(f"a {img.shape[1]}x{img.shape[0]} frame: no native model for it ({NATIVE_SIZES})")
            (r,) = det.detect_arrays([img], tile=False)
            out.append((r.boxes, r.scores, r.labels))
        return out

    return predict


def native_label() -> str:
    sizes = " / ".join(f"{w}x{h}" for w, h in NATIVE_SIZES)
    return f"native resolution: each frame whole at its own size ({sizes}), no tiles"


# ----------------------------------------------------------------------------------------------- accuracy


def ours(det: Detector, tiling: Tiling | None) -> Callable[[list[np.ndarray]], list[tuple]]:
    def predict(images: list[np.ndarray]) -> list[tuple]:
        return [(r.boxes, r.scores, r.labels) for r in det.detect_arrays(images, tile=tiling or False)]

    return predict


Plan = list[tuple[str, str, str, Callable[..., list[tuple]]]]  # (row, backend, key, predictor)


def native_plan(nat: dict[str, Native]) -> Plan:
    return [(native_label(), name, "native", native(d)) for name, d in nat.items()]


def accuracy_rows(source: Any, dets: dict[str, Detector], dets03: dict[str, Detector],
                  nat: dict[str, Native]) -> list[dict[str, Any]]:  # fmt: skip
    from dataclasses import replace

    fp32, int8, fp32_03 = dets["ORT FP32 end2end"], dets["OpenVINO INT8 end2end"], dets03["ORT FP32 end2end"]
    ort = "ORT FP32 end2end"
    plan: Plan = [
        ("whole frame resized to 300x300", ort, "untiled", ours(fp32, None)),
        ("whole frame resized to 300x300", "OpenVINO INT8 end2end", "untiled", ours(int8, None)),
        *native_plan(nat),
    ]
    plan += [("ours: tiled, defaults", name, "default", ours(det, DEFAULT)) for name, det in dets.items()]
    plan += [
        ("ours: NMS IoS 0.5, cut boxes merged (SAHI-alike)", ort, "sahi_alike", ours(fp32, SAHI_ALIKE)),
        ("ours: greedy NMM IoS 0.5, cut boxes merged (SAHI's default algorithm)", ort, "greedy", ours(fp32, GREEDY)),
        ("ours: greedy NMM IoS 0.5, cut boxes dropped", ort, "greedy_drop", ours(fp32, replace(GREEDY, edge="drop"))),
        ("ours: defaults, NMS IoU 0.5", ort, "iou", ours(fp32, replace(DEFAULT, metric="iou"))),
        ("ours: defaults, no full-frame pass", ort, "no_full", ours(fp32, replace(DEFAULT, full_frame=False))),
        ("ours: defaults, overlap 0.4", ort, "overlap_0.4", ours(fp32, replace(DEFAULT, overlap=0.4))),
        ("SAHI get_sliced_prediction: NMS IoS 0.5 (slices one by one)", ort, "sahi_nms",
         sahi_predictor(fp32, SahiSettings("NMS"))),
        ("SAHI get_sliced_prediction: GREEDYNMM IoS 0.5 (forced)", ort, "sahi_greedy",
         sahi_predictor(fp32, SahiSettings("GREEDYNMM"))),
        ("SAHI get_sliced_prediction, its defaults (GREEDYNMM IoS, switched to NMS IoU at conf < 0.1)", ort,
         "sahi_defaults", sahi_predictor(fp32, SahiSettings("GREEDYNMM", force=False))),
        ("at conf 0.3 -- whole frame resized", ort, "conf0.3_untiled", ours(fp32_03, None)),
        ("at conf 0.3 -- ours: defaults", ort, "conf0.3_default", ours(fp32_03, DEFAULT)),
        ("at conf 0.3 -- ours: greedy NMM IoS 0.5, cut boxes merged", ort, "conf0.3_greedy", ours(fp32_03, GREEDY)),
        ("at conf 0.3 -- SAHI: GREEDYNMM IoS 0.5 (its default at this threshold)", ort, "conf0.3_sahi_greedy",
         sahi_predictor(fp32_03, SahiSettings("GREEDYNMM", force=False))),
    ]  # fmt: skip
    return evaluate_plan(source, plan)


def evaluate_plan(source: Any, plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for label, backend, key, predict in plan:
        t0 = time.perf_counter()
        names = Detector(DEMO_MODEL).class_names  # every row runs the demo model or its exports
        res = evaluate(predict, source, class_names=names, batch_size=4, coco=True, progress=False)
        c = res["coco"]
        row = {"key": key, "row": label, "backend": backend, "AP": c["AP"], "AP50": c["AP50"], "AP75": c["AP75"],
               "APs": c["APs"], "APm": c["APm"], "APl": c["APl"], "voc07_map": res["voc07_map"],
               "eval_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        print(f"{label:90s} {backend:22s} AP {c['AP']:.4f} AP50 {c['AP50']:.4f} APs {c['APs']:.4f}", flush=True)
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------------- speed


def wait_for_quiet(max_load: float, budget: list[float]) -> float:
    """Wait (from the shared budget, seconds) until the 1-minute load average is <= max_load."""
    while True:
        load = os.getloadavg()[0]
        if load <= max_load or budget[0] <= 0:
            return load
        step = min(30.0, budget[0])
        print(f"load {load:.2f} > {max_load}: waiting {step:.0f} s (budget left {budget[0]:.0f} s)", flush=True)
        time.sleep(step)
        budget[0] -= step


def speed(frames: list[np.ndarray], dets: dict[str, Detector], dets03: dict[str, Detector], nat: dict[str, Native],
          rounds: int, max_load: float, wait_s: float) -> dict[str, Any]:  # fmt: skip
    fp32, int8 = "ORT FP32 end2end", "OpenVINO INT8 end2end"
    cfgs: dict[str, tuple[str, Callable[[list[np.ndarray]], list[tuple]]]] = {
        "untiled ORT FP32": (fp32, ours(dets[fp32], None)),
        "untiled OpenVINO INT8": (int8, ours(dets[int8], None)),
    }
    for name, det in dets.items():
        cfgs[f"ours {name}"] = (name, ours(det, DEFAULT))
        cfgs[f"SAHI {name}"] = (name, sahi_predictor(det, SahiSettings("NMS")))
    for name, path in (("torch .pt", DEMO_MODEL), (int8, DEMO_ONNX_INT8)):  # what batching itself buys
        backend = "openvino" if path == DEMO_ONNX_INT8 else None
        cfgs[f"ours {name}, batch 1"] = (name, ours(Detector(path, batch_size=1, backend=backend), DEFAULT))
    cfgs["SAHI OpenVINO INT8 end2end, batch 8"] = (int8, sahi_predictor(dets[int8], SahiSettings("NMS", batch_size=8)))
    cfgs["ours OpenVINO INT8 end2end @conf0.3"] = (int8, ours(dets03[int8], DEFAULT))
    sahi_03 = SahiSettings("GREEDYNMM", force=False)
    cfgs["SAHI OpenVINO INT8 end2end @conf0.3"] = (int8, sahi_predictor(dets03[int8], sahi_03))
    cfgs.update(native_cfgs(nat))
    times, loads = time_rounds(frames, cfgs, rounds, max_load, wait_s)
    pairs = [(f"ours {name}", f"SAHI {name}") for name in dets]
    pairs += [("ours torch .pt, batch 1", "SAHI torch .pt"),
              ("ours OpenVINO INT8 end2end", "SAHI OpenVINO INT8 end2end, batch 8"),
              ("ours OpenVINO INT8 end2end @conf0.3", "SAHI OpenVINO INT8 end2end @conf0.3"),
              ("ours torch .pt", "ours torch .pt, batch 1"),
              ("ours OpenVINO INT8 end2end", "ours OpenVINO INT8 end2end, batch 1"),
              ("ours ORT FP32 end2end", "untiled ORT FP32"),
              *native_pairs(nat),
              *[(f"native {name}", f"SAHI {name}") for name in nat if f"SAHI {name}" in cfgs]]  # fmt: skip
    return speed_result(frames, cfgs, times, loads, rounds, max_load, pairs)


def native_cfgs(nat: dict[str, Native]) -> dict[str, tuple[str, Callable[[list[np.ndarray]], list[tuple]]]]:
    return {f"native {name}": (name, native(d)) for name, d in nat.items()}


def native_pairs(nat: dict[str, Native]) -> list[tuple[str, str]]:
    return [(f"native {name}", f"ours {name}") for name in nat]


def native_speed(frames: list[np.ndarray], dets: dict[str, Detector], nat: dict[str, Native], rounds: int,
                 max_load: float, wait_s: float) -> dict[str, Any]:  # fmt: skip
    """The native rows' speed, with the tiled rows they replace timed in the same rounds (--native-only)."""
    cfgs = {f"ours {name}": (name, ours(dets[name], DEFAULT)) for name in nat if name in dets}
    cfgs.update(native_cfgs(nat))
    times, loads = time_rounds(frames, cfgs, rounds, max_load, wait_s)
    pairs = [p for p in native_pairs(nat) if p[1] in cfgs]
    return speed_result(frames, cfgs, times, loads, rounds, max_load, pairs)


def time_rounds(frames: list[np.ndarray], cfgs: dict[str, tuple[str, Callable[[list[np.ndarray]], list[tuple]]]],
                rounds: int, max_load: float, wait_s: float) -> tuple[dict[str, list[float]], list[float]]:  # fmt: skip
    """Seconds per round of each configuration over `frames` (one frame per call), rounds interleaved."""
    for _, fn in cfgs.values():  # warm-up: sessions, allocators, first-call costs
        fn(frames[:1])
    budget = [wait_s]
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    loads: list[float] = []
    for r in range(rounds):
        loads.append(wait_for_quiet(max_load, budget))
        order = list(cfgs) if r % 2 == 0 else list(reversed(cfgs))  # interleaved, both directions
        for key in order:
            fn = cfgs[key][1]
            t0 = time.perf_counter()
            for f in frames:  # one frame per call: the video case, and SAHI's unit
                fn([f])
            times[key].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{rounds} (load {loads[-1]:.2f}) done", flush=True)
    return times, loads


def speed_result(frames: list[np.ndarray], cfgs: dict[str, tuple[str, Any]], times: dict[str, list[float]],
                 loads: list[float], rounds: int, max_load: float,
                 pairs: list[tuple[str, str]]) -> dict[str, Any]:  # fmt: skip
    fps = {k: len(frames) / statistics.median(v) for k, v in times.items()}
    # a ratio > 1: the first is faster; the median of the per-round ratios (both timed in the same round)
    ratios = {f"{a} vs {b}": statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))
              for a, b in pairs}  # fmt: skip
    quiet = all(load <= max_load for load in loads)
    return {"frames": len(frames), "frame_size": [frames[0].shape[1], frames[0].shape[0]], "rounds": rounds,
            "seconds_per_round": times, "images_per_s": fps, "ratios": ratios, "load_1min_per_round": loads,
            "quiet": quiet, "max_load": max_load, "backend_of": {k: v[0] for k, v in cfgs.items()}}  # fmt: skip


# ------------------------------------------------------------------------------------------- report, picture


def picture(path: Path, frame: np.ndarray, det: Detector) -> None:
    """A 1080p frame with its tile grid (thin: tiles, thick: the first) and the tiled detections >= 0.3."""
    (r,) = det(frame, tile=DEFAULT)
    out = r.draw(frame, min_score=0.3)
    for k, (x0, y0, x1, y1) in enumerate(tile_grid(frame.shape[1], frame.shape[0], (TILE, TILE), OVERLAP).tolist()):
        colour = (255, 255, 255) if (k // 8 + k % 8) % 2 == 0 else (0, 0, 0)
        cv2.rectangle(out, (x0 + 1, y0 + 1), (x1 - 2, y1 - 2), colour, 1, cv2.LINE_AA)
    small = cv2.resize(out, (1280, 720), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 82])


def speed_lines(sp: dict[str, Any], intro: str, how: str) -> list[str]:
    """A speed result (speed_result) as its sentence, its images/s table and its ratio table."""
    loads = ", ".join(f"{v:.2f}" for v in sp["load_1min_per_round"])
    quiet = "" if sp["quiet"] else f" -- NOT QUIET (above {sp['max_load']}): trust the ratios over the rates"
    return [
        "",
        f"{intro}{sp['frames']} frames of {sp['frame_size'][0]}x{sp['frame_size'][1]}, {how}{sp['rounds']} "
        f"interleaved rounds (median); 1-minute load per round: {loads}{quiet}.",
        "",
        "| configuration | backend | img/s |",
        "|---|---|---:|",
        *(f"| {k} | {sp['backend_of'][k]} | {v:.2f} |" for k, v in sp["images_per_s"].items()),
        "",
        "| speed ratio: A vs B (> 1: A is faster; median of per-round ratios) | x |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in sp["ratios"].items()),
    ]


def markdown(res: dict[str, Any]) -> str:
    sp = res.get("speed")
    fps = sp["images_per_s"] if sp else {}

    def speed_of(row: dict[str, Any]) -> str:
        if row["key"] == "native":  # measured alone (--native-only) or with the rest
            rates = (res.get("native_speed") or sp or {}).get("images_per_s", {})
            key = f"native {row['backend']}"
            return f"{rates[key]:.2f}" if key in rates else ""
        name = {"default": f"ours {row['backend']}", "sahi_nms": f"SAHI {row['backend']}",
                "untiled": f"untiled {row['backend'].removesuffix(' end2end')}"}.get(row["key"], "")  # fmt: skip
        return f"{fps[name]:.2f}" if name in fps else ""

    d = res["data"]
    lines = [
        "# Tiled inference on large frames: the demo model, ours against SAHI",
        "",
        f"Data: {d['images']} synthetic frames ({d['sizes']}), {d['objects']} objects ({d['small_share']:.0%} small, "
        f"< 32^2 px), `generate_large(seed={d['seed']})`;"
        " the bundled demo model (trained on 300-400 px images with objects of these sizes). Tiles of "
        f"{TILE}x{TILE} px at overlap {OVERLAP} (40 tiles + the full frame = 41 crops per 1920x1080 frame, 6 calls "
        "at batch 8); evaluation threshold conf 0.01 unless the row says otherwise. Reproduce: "
        "`benchmarks/tiling/reproduce.sh`.",
        "",
        "| row | backend | AP | AP50 | APs | APm | APl | img/s (1080p) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in res["accuracy"]:
        lines.append(f"| {row['row']} | {row['backend']} | {row['AP']:.3f} | {row['AP50']:.3f} | {row['APs']:.3f} | "
                     f"{row['APm']:.3f} | {row['APl']:.3f} | {speed_of(row)} |")  # fmt: skip
    if sp:
        lines += speed_lines(sp, "Speed: ", "decoded beforehand, one frame per call, ")
    ns = res.get("native_speed")
    if ns:
        lines += speed_lines(ns, "Native-resolution speed, measured on its own (`run.py --native-only`) with the "
                             "tiled rows it replaces timed in the same rounds: ", "")  # fmt: skip
    lines += ["", *decisions(res["accuracy"]), *native_decision(res)]
    env = res["environment"]
    versions = ", ".join(f"{k} {env[k]}" for k in ("sahi", "onnxruntime", "torch", "openvino"))
    lines += ["", f"Machine: {env['cpu']}, {env['cores']} cores; Python {env['python']}, mfssd-deploy "
              f"{env['package']}, {versions}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def decisions(rows: list[dict[str, Any]]) -> list[str]:
    """The design choices the rows decide (ORT FP32 rows at conf 0.01 unless named)."""
    a = {r["key"]: r for r in rows if r["backend"] == "ORT FP32 end2end"}
    if not {"default", "greedy", "sahi_alike", "no_full", "iou", "overlap_0.4", "sahi_nms"} <= set(a):
        return []
    d, pts = a["default"], lambda x, y, k="AP": f"{100 * (x[k] - y[k]):+.1f}"
    c3 = {k: a[k] for k in ("conf0.3_default", "conf0.3_greedy") if k in a}
    at03 = f", and {pts(c3['conf0.3_default'], c3['conf0.3_greedy'])} AP at conf 0.3" if len(c3) == 2 else ""
    return [
        "What the rows decided (the defaults: NMS, IoS 0.5, cut boxes dropped, full frame, overlap 0.2):",
        "",
        f"- merge: NMS over greedy NMM (SAHI's GREEDYNMM, which grows a kept box into the union of the "
        f"low-score boxes it matches): {pts(a['sahi_alike'], a['greedy'])} AP with cut boxes kept{at03};",
        f"- boxes cut by an inner tile edge: dropped over merged, {pts(d, a['sahi_alike'])} AP, "
        f"{pts(d, a['sahi_alike'], 'APs')} APs, {pts(d, a['sahi_alike'], 'APl')} APl;",
        f"- full-frame pass: on, {pts(d, a['no_full'])} AP, {pts(d, a['no_full'], 'APl')} APl, for 1 crop in 41;",
        f"- metric: IoS kept, IoU differs by {pts(a['iou'], d)} AP (a tie);",
        f"- overlap: 0.4 gives {pts(a['overlap_0.4'], d)} AP for 1.5x the crops (61 against 41 per 1080p frame): "
        "0.2 stays the default;",
        f"- same settings as SAHI (NMS IoS 0.5, cut boxes kept): AP {a['sahi_alike']['AP']:.4f} ours, "
        f"{a['sahi_nms']['AP']:.4f} SAHI.",
    ]  # fmt: skip


def native_decision(res: dict[str, Any]) -> list[str]:
    """Native resolution against tiling, per backend measured: the default for large frames follows from it."""
    rows = res["accuracy"]
    nat = {r["backend"]: r for r in rows if r["key"] == "native"}
    tiled = {r["backend"]: r for r in rows if r["key"] == "default"}
    both = [b for b in nat if b in tiled]
    if not both:
        return []
    ratios = {**(res.get("speed") or {}).get("ratios", {}), **(res.get("native_speed") or {}).get("ratios", {})}
    out = ["", "Native resolution against tiling (tiled: the defaults above; same backend, same frames):", ""]
    for b in both:
        n, t = nat[b], tiled[b]
        x = ratios.get(f"native {b} vs ours {b}")
        speed_txt = f", {x:.1f}x the frames per second" if x is not None else ""
        out.append(f"- {b}: AP {n['AP']:.3f} against {t['AP']:.3f} ({100 * (n['AP'] - t['AP']):+.1f}), APs "
                   f"{n['APs']:.3f} against {t['APs']:.3f}, APl {n['APl']:.3f} against "
                   f"{t['APl']:.3f}{speed_txt};")  # fmt: skip
    fp32 = "ORT FP32 end2end"
    x = ratios.get(f"native {fp32} vs ours {fp32}")
    if fp32 in both and x is not None:
        d_ap = 100 * (nat[fp32]["AP"] - tiled[fp32]["AP"])
        wins = d_ap > -1.0 and x > 1.0  # within a point of tiling's AP and faster: native is the better trade
        native_wins = (f"Default for large frames from a fixed camera: native resolution ({d_ap:+.1f} AP, {x:.1f}x "
                       "the speed, no tile borders, one call per frame); tiling stays for frame sizes without an "
                       "export of their own.")  # fmt: skip
        tiling_wins = f"Default for large frames: tiling (native resolution: {d_ap:+.1f} AP at {x:.1f}x the speed)."
        out += ["", native_wins if wins else tiling_wins]
    return out


def environment() -> dict[str, Any]:
    import onnxruntime
    import sahi
    import torch

    try:
        import openvino

        ov = openvino.__version__
    except ImportError:
        ov = "not installed"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "package": __version__,
            "sahi": sahi.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "openvino": ov}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/tiling", help="where results.json, results.md, tile_grid.jpg go")
    ap.add_argument("--data", default="runs/tiling_data", help="the large-frame set (generated when missing)")
    ap.add_argument("--images", type=int, default=24, help="frames in the evaluation set")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed-frames", type=int, default=4, help="1920x1080 frames per speed round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    ap.add_argument("--max-load", type=float, default=1.5, help="time only while the 1-minute load is at most this")
    ap.add_argument("--wait", type=float, default=900, help="seconds to wait for a quiet machine, in all")
    ap.add_argument("--no-speed", action="store_true", help="accuracy only")
    ap.add_argument("--keep-accuracy", action="store_true", help="reuse the accuracy rows of an existing results.json")
    ap.add_argument("--native-only", action="store_true",
                    help="measure only the native-resolution rows (accuracy, and speed beside the tiled ORT rows in "
                         "the same rounds) and merge them into the existing results.json")  # fmt: skip
    ap.add_argument(
        "--native-dir",
        default="runs/tiling_native",
        help="where the native-resolution exports and their calibration frames go (reused when there)",
    )
    args = ap.parse_args(argv)
    logging.getLogger("sahi").setLevel(logging.ERROR)  # its switch to NMS/IOU is stated in the row's name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    if not (data / "annotations" / "val.json").is_file():
        generate_large(data, args.images, seed=args.seed)
    source = open_dataset(data, "val")
    coco = json.loads((data / "annotations" / "val.json").read_text())
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in coco["annotations"]])
    sizes = sorted({f"{im['width']}x{im['height']}" for im in coco["images"]})
    res: dict[str, Any] = {
        "data": {"images": len(coco["images"]), "sizes": ", ".join(sizes), "objects": len(areas),
                 "small_share": float((areas < 32**2).mean()), "seed": args.seed},
        "tiling_default": DEFAULT.to_dict(),
        "crops_per_1080p_frame": len(plan_crops([(1080, 1920)], DEFAULT)),
        "environment": environment(),
    }  # fmt: skip
    previous = out / "results.json"
    largest = max((r.width * r.height, r.width, r.height) for r in source.records)[1:]  # 1920x1080 in the set
    big = [r.path for r in source.records if (r.width, r.height) == largest][: args.speed_frames]
    frames = [read_image(p) for p in big]
    nat = native_detectors(Path(args.native_dir))
    if args.native_only:
        if not previous.is_file():
            raise SystemExit(f"--native-only merges into {previous}: run the whole benchmark once first")
        res = json.loads(previous.read_text())
        rows = [r for r in res["accuracy"] if r["key"] != "native"]
        new = evaluate_plan(source, native_plan(nat))
        at = max((i + 1 for i, r in enumerate(rows) if r["key"] == "untiled"), default=0)  # after the resized rows
        res["accuracy"] = rows[:at] + new + rows[at:]
        if not args.no_speed:
            ort = {"ORT FP32 end2end": Detector(DEMO_ONNX),
                   "OpenVINO INT8 end2end": Detector(DEMO_ONNX_INT8, backend="openvino")}  # fmt: skip
            res["native_speed"] = native_speed(frames, ort, nat, args.rounds, args.max_load, args.wait)
        write_results(out, res)
        return 0
    dets, dets03 = detectors(), detectors(conf=0.3)
    if args.keep_accuracy and previous.is_file():
        res["accuracy"] = json.loads(previous.read_text())["accuracy"]
    else:
        res["accuracy"] = accuracy_rows(source, dets, dets03, nat)
    picture(out / "tile_grid.jpg", frames[0], dets["ORT FP32 end2end"])
    if not args.no_speed:
        res["speed"] = speed(frames, dets, dets03, nat, args.rounds, args.max_load, args.wait)
    write_results(out, res)
    return 0


def write_results(out: Path, res: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "results.md").write_text(markdown(res))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
