"""The export pipeline behind `mfssd-export`: every artifact checked before it is written.

checkpoint -> raw ONNX (simplified) -> [INT8 Q/DQ | FP16] -> [end2end] -> metadata -> checker ->
parity against PyTorch on real images -> atomic write. An FP32 artifact that fails parity is not
written and the export fails; so is an INT8 or FP16 artifact whose detections agree with FP32's
less than MIN_AGREEMENT (a broken calibration must never be written with exit 0). Then, when asked,
the steps of exporters.deploy: TensorRT parser check, engines, Triton model repository.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mfssd_deploy.artifacts import INPUT, ONNX_PRECISIONS, onnx_name
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.deploy import EngineOptions, TritonRepoOptions
from mfssd_deploy.exporters.limits import AGREEMENT_SCORE, MIN_AGREEMENT
from mfssd_deploy.fileio import atomic_path, sha256_file

log = logging.getLogger("mfssd_deploy.export")
# FP32 parity: max abs difference vs PyTorch of scores (in [0, 1]) and of loc, whose tolerance scales
# with its magnitude beyond 1 (an untrained model's offsets reach hundreds; float32 rounding is relative).
RAW_TOL = 1e-4


@dataclass
class ExportRequest:
    model: Path
    progress: bool = True  # progress bars (calibration)
    out_dir: Path = Path("export")
    name: str | None = None
    opset: int = 17
    layouts: tuple[str, ...] = ("raw", "end2end")
    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    pre_nms_topk: int | None = None
    fp32: bool = True
    int8: bool = False
    int8_cpu: bool = False  # also the u8-activation INT8 variant (ONNX Runtime CPU's fast path; not TensorRT)
    calib: Path | None = None
    calib_num: int = 200
    calib_method: str = "minmax"
    recalibrate: bool = False  # ignore a calibration cache even when it is valid
    keep_fp32: tuple[str, ...] = ()
    fp16: bool = False
    val: Path | None = None
    val_split: str = "val"
    val_images: int | None = None
    parity_images: Sequence[Path] = field(default_factory=list)
    simplify: bool = True
    min_agreement: float = MIN_AGREEMENT  # reduced precision vs FP32 detections (F1); 0 disables the check
    time_runs: int = 10  # ONNX Runtime CPU ms/image at batch 1, median of this many runs (0: skip)
    # (width, height): export for this input instead of the checkpoint's (native resolution: a fixed camera
    # size, with the priors of its feature maps in the metadata and the end2end graph); None: as trained
    input_size: tuple[int, int] | None = None


def _read_images(paths: Sequence[Path]) -> list[np.ndarray]:
    from mfssd_deploy.runtime.inputs import read_image

    images = []
    for p in paths:
        try:
            images.append(read_image(p))  # the Detector's reader: parity sees what inference sees
        except MfssdError as exc:
            raise MfssdError(f"parity image: {exc}") from None
    if not images:
        raise MfssdError("no parity images: pass --parity-images DIR")
    return images


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _nms_config(cfg: ModelConfig, req: ExportRequest) -> ModelConfig:
    nms = cfg.nms.override(req.conf, req.iou, req.max_det, req.pre_nms_topk)
    if nms.pre_nms_topk >= 3840:
        raise MfssdError(f"--pre-nms-topk {nms.pre_nms_topk}: TensorRT's TopK needs K < 3840")
    return replace(cfg, nms=nms)


def check_request(req: ExportRequest, engines: EngineOptions | None = None) -> ExportRequest:
    """The request as it will run, or one line saying why it cannot, before any work.

    FP16 engines need the FP16 ONNX on TensorRT 11 (8.x/10.x build them from the FP32 one), so a request
    for them writes it too; INT8 engines build from the Q/DQ ONNX, which only --int8 writes.
    """
    for p in ONNX_PRECISIONS.values():
        if p.requires and getattr(req, p.field) and not getattr(req, p.requires):
            flag, needs = (f"--{f.replace('_', '-')}" for f in (p.field, p.requires))
            raise MfssdError(f"{flag} is a variant of {needs}: add {needs}" + (" --calib DIR" if p.calibrated else ""))
    if engines is not None and engines.precision == "int8" and not req.int8:
        raise MfssdError("--trt --precision int8 builds from the Q/DQ model: add --int8 --calib DIR")
    if engines is not None and engines.precision == "fp16" and not req.fp16:
        req = replace(req, fp16=True)
    if not any(getattr(req, p.field) for p in ONNX_PRECISIONS.values()):
        others = " or ".join(
            f"--{p.field.replace('_', '-')}" for p in ONNX_PRECISIONS.values() if p.help and not p.requires
        )
        raise MfssdError(f"--no-fp32 leaves nothing to export: add {others}")
    if req.model.suffix.lower() in (".onnx", ".engine"):
        raise MfssdError(
            f"{req.model} is already a deployable model; run_export takes the .pt checkpoint it came from "
            "(run the file itself with mfssd-detect or Detector; build an engine from an .onnx with "
            "mfssd-export --trt --model FILE, or deploy(onnx_report(FILE), engines=...))"
        )
    if not 0 <= req.min_agreement <= 1:
        raise MfssdError(f"--min-agreement {req.min_agreement}: give a value in [0, 1] (0 disables the check)")
    return req


def run_export(
    req: ExportRequest,
    *,
    check_trt: str | None = None,
    engines: EngineOptions | None = None,
    triton: TritonRepoOptions | None = None,
) -> dict[str, Any]:
    """Write the requested ONNX artifacts, then (when asked) check them against TensorRT's parser, build
    engines and write a Triton repository (exporters.deploy); returns the report (paths, sizes, parity,
    accuracy, and "trt_check", "engines", "triton")."""
    t0 = time.time()
    req = check_request(req, engines)
    report = _export_onnx(req)
    report["seconds"] = time.time() - t0
    if check_trt or engines is not None or triton is not None:
        from mfssd_deploy.exporters.deploy import deploy

        deploy(report, check_trt=check_trt, engines=engines, triton=triton)
    return report


@dataclass
class _Reference:
    """What every artifact is compared with: PyTorch on the parity images, through the same pre-processing."""

    x: np.ndarray  # the pre-processed batch
    loc: np.ndarray
    scores: np.ndarray  # softmax, like the graphs
    detections: tuple[np.ndarray, ...]  # padded (num_dets, boxes, scores, classes) of postprocess
    images: int


def _export_onnx(req: ExportRequest) -> dict[str, Any]:
    """The ONNX part of the export, on a checked request: graphs, variants, and every file checked before it
    is written."""
    from mfssd_deploy.checkpoint import load_model
    from mfssd_deploy.models import config_of

    model = load_model(req.model)
    trained = config_of(model)
    if req.input_size is not None and req.input_size != trained.input_wh:
        # the same weights (fully convolutional); the priors and metadata of this size
        model = load_model(req.model, config=trained.at_input_size(*req.input_size))
    cfg = _nms_config(config_of(model), req)
    # another size gets another default name: a native-resolution export never overwrites the 300x300 files
    name = req.name or (req.model.stem if cfg.input_wh == trained.input_wh else f"{req.model.stem}_{_wh(cfg)}")
    sha = sha256_file(req.model)
    name = _own_stem(req.out_dir, name, sha, cfg, explicit=req.name is not None)
    raw = _raw_graph(model, req)
    ref = _pytorch_reference(model, cfg, _read_images(req.parity_images))
    calibration: dict[str, dict[str, Any]] = {}
    variants, calib_cache = _precision_variants(raw, cfg, name, req, calibration)
    artifacts = [
        _write_checked(base, precision, layout, cfg, name, sha, ref, req)
        for precision, base in variants
        for layout in req.layouts
    ]
    report: dict[str, Any] = {
        "model": str(req.model),
        "name": name,
        "opset": req.opset,
        "input_size": list(cfg.input_wh),
        "artifacts": artifacts,
        "parity_images": ref.images,
        "min_agreement": req.min_agreement,
        "nms": cfg.to_dict()["nms"],
    }
    if calib_cache is not None:
        report["calibration_cache"] = str(calib_cache)
        report["calibration"] = calibration
    if req.val is not None:
        report["accuracy"] = _accuracy(req, artifacts)
    return report


def _own_stem(out_dir: Path, name: str, sha: str, cfg: ModelConfig, explicit: bool) -> str:
    """A stem that no other model's files in out_dir use. Every training run's checkpoint is best.pt, so
    the checkpoint's stem alone would mix two models' exports under one name: files of another checkpoint
    (source sha256) or another input size under the default stem move this export to STEM-SHA8 (said on
    the console); an explicit --name that collides is refused. Re-exporting the same model rewrites its
    own files."""
    from mfssd_deploy.artifacts import read_meta

    def foreign(stem: str) -> Path | None:
        for f in sorted(out_dir.glob(f"{stem}.*onnx")):
            try:
                meta = read_meta(f)
            except MfssdError:  # unreadable or foreign: not ours to write over
                return f
            if meta.get("source_sha256") != sha or ModelConfig.from_dict(meta["config"]).input_wh != cfg.input_wh:
                return f
        return None

    other = foreign(name)
    if other is None:
        return name
    if explicit:
        raise MfssdError(f"--name {name}: {other} is another model's export (or another size); give another "
                         "--name or --out-dir (nothing is written over)")  # fmt: skip
    own = f"{name}-{sha[:8]}"
    if foreign(own) is not None:
        raise MfssdError(f"{out_dir} already holds other files named {own}.*; give --name or --out-dir")
    log.warning("%s already holds %s from another checkpoint or size: this export is named %s", out_dir,
                other.name, own)  # fmt: skip
    return own


def _wh(cfg: ModelConfig) -> str:
    return "x".join(str(v) for v in cfg.input_wh)


def _raw_graph(model: Any, req: ExportRequest) -> onnx.ModelProto:
    """The traced raw graph (images -> loc, scores), simplified: every variant starts from it."""
    from mfssd_deploy.exporters import onnx_export as ox

    raw = ox.export_raw(model, req.opset)
    return ox.simplify(raw) if req.simplify else raw


def _pytorch_reference(model: Any, cfg: ModelConfig, images: list[np.ndarray]) -> _Reference:
    import torch

    from mfssd_deploy.geometry import Geometry

    geo = Geometry(cfg)
    x = geo.preprocess(images)
    with torch.inference_mode():
        loc_t, conf_t = model(torch.from_numpy(x))
        scores_t = conf_t.softmax(-1)
        ref = geo.decode(loc_t, scores_t)
    return _Reference(x, loc_t.numpy(), scores_t.numpy(), tuple(t.numpy() for t in ref), len(images))


def _precision_variants(
    raw: onnx.ModelProto, cfg: ModelConfig, name: str, req: ExportRequest, calibration: dict[str, dict[str, Any]]
) -> tuple[list[tuple[str, onnx.ModelProto]], Path | None]:
    """(precision, raw graph) for each requested precision (artifacts.ONNX_PRECISIONS, in table order), and the
    first calibration cache; `calibration` receives each calibrated variant's status (reused or computed, and
    why)."""
    variants: list[tuple[str, onnx.ModelProto]] = []
    calib_cache = None
    for p in ONNX_PRECISIONS.values():
        if not getattr(req, p.field):
            continue
        if not p.builder:
            variants.append((p.name, raw))
            continue
        module, func = p.builder.split(":")
        build = getattr(importlib.import_module(f"mfssd_deploy.exporters.{module}"), func)
        status: dict[str, Any] = {}
        variants.append((p.name, build(raw, cfg, req, name, status)))
        cache = status.pop("cache", None)  # a calibrated builder's cache file, for the report
        if p.calibrated:
            calibration[p.name] = status
            calib_cache = calib_cache or cache
    return variants, calib_cache


def _write_checked(base: onnx.ModelProto, precision: str, layout: str, cfg: ModelConfig, name: str, sha: str,
                   ref: _Reference, req: ExportRequest) -> dict[str, Any]:  # fmt: skip
    """One artifact: layout, metadata, checker, parity against PyTorch, then the atomic write; returns its
    report entry. A file that fails its check is never written."""
    from mfssd_deploy.exporters import onnx_export as ox

    proto = base if layout == "raw" else ox.to_end2end(base, cfg)
    path = req.out_dir / onnx_name(name, precision, layout)
    calib = _calib_meta(req) if ONNX_PRECISIONS[precision].calibrated else None
    ox.set_metadata(proto, ox.make_metadata(cfg, layout, precision, sha, opset=req.opset, calibration=calib))
    ox.check(proto)
    session = _session(proto)
    outputs = session.run(None, {INPUT: ref.x})
    parity = _parity(layout, outputs, ref.loc, ref.scores, ref.detections)
    if precision == "fp32" and not parity["ok"]:
        raise MfssdError(f"parity failed for {path.name}: {_parity_line(parity)}; the file was not written")
    if precision != "fp32":
        parity["agreement"] = _agreement_gate(path, precision, _detections(layout, outputs, cfg), ref, req)
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
    return {
        "path": str(path),
        "layout": layout,
        "precision": precision,
        "size_mb": os.path.getsize(path) / 2**20,
        "parity": parity,
        "ort_cpu_ms": _time_ms(session, ref.x[:1], req.time_runs),
    }


def _agreement_gate(path: Path, precision: str, dets: tuple[np.ndarray, ...], ref: _Reference,
                    req: ExportRequest) -> dict[str, Any]:  # fmt: skip
    """A reduced-precision artifact's agreement with FP32's detections; below --min-agreement it is broken and
    is not written (a broken calibration must never leave with exit 0)."""
    from mfssd_deploy.exporters.parity import agreement

    agree = agreement(dets, ref.detections, AGREEMENT_SCORE)
    if agree["f1"] < req.min_agreement:
        fix = (
            "recalibrate (--recalibrate, more or more typical --calib images, --keep-fp32 first-conv,heads)"
            if ONNX_PRECISIONS[precision].calibrated
            else "keep FP32 for this model"
        )
        raise MfssdError(
            f"{path.name} is broken: its detections agree with FP32's at F1 {agree['f1']:.2f} "
            f"({agree['matched']} matched, {agree['detections']} vs {agree['detections_fp32']} boxes "
            f"scoring >= {AGREEMENT_SCORE} on {ref.images} parity images), below the bound "
            f"{req.min_agreement}; the file was not written: {fix}"
        )
    return agree


def _detections(layout: str, outputs: list[np.ndarray], cfg: ModelConfig) -> tuple[np.ndarray, ...]:
    """Padded (num_dets, boxes, scores, classes) of an artifact's outputs: raw ones decoded + NMS'd
    exactly as the reference was."""
    if layout != "raw":
        return tuple(outputs)
    import torch

    from mfssd_deploy.geometry.postprocess import postprocess
    from mfssd_deploy.geometry.priors import priors_tensor

    loc, scores = (torch.from_numpy(np.asarray(o)).float() for o in outputs[:2])
    det = postprocess(loc, scores, priors_tensor(cfg.priors), cfg.nms, cfg.priors.variances)
    return tuple(t.numpy() for t in det)


def _time_ms(session: Any, x: np.ndarray, runs: int) -> float | None:
    """Median ms of one batch-1 inference on ONNX Runtime CPU after two warm-up runs (a snapshot, not a benchmark)."""
    from mfssd_deploy.timing import time_calls

    if runs <= 0:
        return None
    return float(np.median(time_calls(lambda: session.run(None, {INPUT: x}), warmup=2, iters=runs))) * 1000


def _calib_meta(req: ExportRequest) -> dict[str, Any]:
    return {"method": req.calib_method, "images": req.calib_num, "keep_fp32": list(req.keep_fp32)}


def _parity(
    layout: str, outputs: list[np.ndarray], loc: np.ndarray, scores: np.ndarray, ref: tuple[np.ndarray, ...]
) -> dict[str, Any]:
    from mfssd_deploy.exporters.parity import match_detections

    if layout == "raw":
        d_loc = float(np.abs(outputs[0] - loc).max())
        d_scores = float(np.abs(outputs[1] - scores).max())
        loc_tol = RAW_TOL * max(1.0, float(np.abs(loc).max()))
        return {
            "loc_max_abs": d_loc,
            "scores_max_abs": d_scores,
            "loc_tolerance": loc_tol,
            "scores_tolerance": RAW_TOL,
            "ok": d_loc <= loc_tol and d_scores <= RAW_TOL,
        }
    return match_detections(tuple(outputs), ref)


def _parity_line(p: dict[str, Any]) -> str:
    if "loc_max_abs" in p:
        return (
            f"max |d loc| {p['loc_max_abs']:.2e} (tol {p['loc_tolerance']:.0e}), "
            f"max |d scores| {p['scores_max_abs']:.2e} (tol {p['scores_tolerance']:.0e})"
        )
    same = sum(a == b for a, b in zip(p["counts"], p["counts_ref"], strict=True))
    return (
        f"same detection count in {same}/{len(p['counts'])} images ({sum(p['counts'])} vs "
        f"{sum(p['counts_ref'])} in all), unmatched {p['unmatched']}, min IoU {p['min_iou']:.4f}, "
        f"max |d score| {p['max_score_diff']:.2e}"
    )


def format_report(report: dict[str, Any]) -> str:
    from mfssd_deploy.evaluation.result import headline

    lines = [
        f"| artifact | layout | precision | size MB | ORT CPU ms/img (b=1) | parity vs PyTorch "
        f"({report['parity_images']} images) |",
        "|---|---|---|---:|---:|---|",
    ]
    for a in report["artifacts"]:
        p = a["parity"]
        status = "ok" if p["ok"] else "FAIL"
        if "agreement" in p:  # reduced precision: exact parity is not expected, agreement with FP32 is
            g = p["agreement"]
            status = (
                f"{'exact' if p['ok'] else 'differs'}; detections (score >= {g['score_min']}) agree with FP32's "
                f"at F1 {g['f1']:.2f} (bound {report['min_agreement']})"
            )
        ms = "-" if a.get("ort_cpu_ms") is None else f"{a['ort_cpu_ms']:.1f}"
        lines.append(
            f"| {Path(a['path']).name} | {a['layout']} | {a['precision']} | {a['size_mb']:.2f} | {ms} | "
            f"{_parity_line(p)}: {status} |"
        )
    if any(a["precision"] == "int8-qdq" for a in report["artifacts"]):
        lines.append("The symmetric INT8 files are quantized for TensorRT (Conv inputs only): ONNX Runtime's CPU "
                     "kernels run them slower than FP32 (about half its speed here); OpenVINO runs them at full INT8 "
                     "speed (the default where installed), and --int8-cpu writes ONNX Runtime's own fast variant "
                     "(.int8u8).")  # fmt: skip
    acc = report.get("accuracy")
    if acc:
        for key, r in acc["results"].items():
            lines.append(f"{key}: {headline(r)}")
        for key, what in (("int8_map_drop_points", "INT8"), ("int8_u8_map_drop_points", "INT8 (uint8 activations)")):
            if key in acc:
                d = acc[key]
                verdict = "within" if d <= 0.5 else "OUTSIDE"
                lines.append(f"{what} mAP@0.5 drop: {d:+.2f} points ({verdict} the 0.5-point budget)")
    return "\n".join(lines)


def _accuracy(req: ExportRequest, artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    """mAP of the end2end (else raw) artifact of each precision through the same evaluation code."""
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate
    from mfssd_deploy.runtime.detector import Detector

    assert req.val is not None
    source = open_dataset(req.val, req.val_split)
    chosen: dict[str, dict[str, Any]] = {}
    for a in artifacts:
        if a["precision"] not in chosen or a["layout"] == "end2end":
            chosen[a["precision"]] = a
    results: dict[str, dict[str, Any]] = {}
    for precision, a in chosen.items():
        det = Detector(a["path"])
        res = evaluate(detector_predictor(det), source, class_names=det.class_names, max_images=req.val_images)
        results[f"{Path(a['path']).name}"] = {
            "voc07_map": res["voc07_map"],
            "coco": res["coco"],
            "precision": precision,
        }
    out: dict[str, Any] = {"data": str(req.val), "split": req.val_split, "results": results}
    by_prec = {v["precision"]: v["voc07_map"] for v in results.values()}
    if "fp32" in by_prec and "int8-qdq" in by_prec:
        out["int8_map_drop_points"] = 100 * (by_prec["fp32"] - by_prec["int8-qdq"])
    if "fp32" in by_prec and "int8-qdq-u8" in by_prec:
        out["int8_u8_map_drop_points"] = 100 * (by_prec["fp32"] - by_prec["int8-qdq-u8"])
    return out
