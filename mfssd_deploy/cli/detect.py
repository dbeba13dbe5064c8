"""mfssd-detect: run a model on images, a folder, a glob, a video file or a camera.

Writes annotated images (or an annotated video) to --save-dir and every detection to a JSON file.
Annotated images mirror the source's sub-folders (relative to the source folder, or to the glob's
fixed prefix: imgs/**/*.jpg writes imgs/a/x.jpg to SAVE_DIR/a/x.jpg), so two inputs never share an
output. A save dir (or --json) that would overwrite a source file is refused before anything runs.
A file that cannot be read, or a video that ends before its announced frame count, is reported
and recorded in the JSON; the rest is processed and the exit code is 1. Ctrl-C stops early and
keeps what was written (the video is finalised over the frames seen), exit code 130.

Small objects in large frames: --tile 300 runs the model on overlapping 300x300 tiles at native
resolution (plus the whole frame resized) and merges the boxes; see "tiled inference" below.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.options import runtime_rule
from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    from mfssd_deploy.geometry.tiling import Tiling

TILE_HELP = """\
Every image is cut into overlapping tiles at native resolution (SAHI's grid: tiles every TILE - int(OVERLAP *
TILE) pixels, the last row and column shifted back to end on the border; an image no larger than a tile is
one tile), plus the whole frame resized (--no-full-frame skips it). All tiles of all images go through the
model in batches of --batch; their boxes come back in image pixels, merged per image and class."""


def add_tiling_arguments(ap: argparse.ArgumentParser) -> None:
    """--tile and its settings (mfssd-detect and mfssd-eval share them)."""
    from mfssd_deploy.geometry.tiling import DEFAULT_OVERLAP, EDGES, MERGES, METRICS

    g = ap.add_argument_group("tiled inference (small objects in large frames)", TILE_HELP)
    g.add_argument("--tile", metavar="N|WxH|model", help="tile size in pixels of the original image: 300, 320x240, "
                   "or 'model' (the model's input size); turns tiling on (default: off, each image is resized "
                   "whole to the model's input)")  # fmt: skip
    g.add_argument("--overlap", type=float, metavar="F", help="overlap of neighbouring tiles, a fraction of a tile "
                   f"in [0, 1) (default: {DEFAULT_OVERLAP})")  # fmt: skip
    g.add_argument("--no-full-frame", action="store_true", help="tiles only: no whole-frame pass (SAHI's standard "
                   "prediction, which finds objects larger than a tile)")  # fmt: skip
    g.add_argument("--merge", choices=MERGES, help="merging of boxes from overlapping tiles: nms keeps the best box "
                   "of each match; greedy_nmm (SAHI's GREEDYNMM) grows it into the union of its matches, which "
                   "also swallows low-score neighbours (default: nms, measured better)")  # fmt: skip
    g.add_argument("--merge-metric", choices=METRICS, help="when two boxes match: ios = intersection over the "
                   "smaller box, iou = intersection over union (default: ios)")  # fmt: skip
    g.add_argument("--merge-thresh", type=float, metavar="F", help="boxes match at metric >= F (default: 0.5)")
    g.add_argument("--edge", choices=EDGES, help="boxes touching a tile's inner edge: drop them (a neighbouring "
                   "tile holds an object narrower than the overlap whole, the full frame a larger one) or merge "
                   "them like any other, as SAHI does (default: drop)")  # fmt: skip


def tiling_from_args(args: argparse.Namespace, model_input: int | tuple[int, int]) -> Tiling | None:
    """The Tiling the tiling arguments ask for (None without --tile); bad values -> one-line MfssdError."""
    from dataclasses import replace

    from mfssd_deploy.geometry.tiling import Tiling

    settings = {"overlap": args.overlap, "merge": args.merge, "metric": args.merge_metric,
                "threshold": args.merge_thresh, "edge": args.edge}  # fmt: skip
    given = {k: v for k, v in settings.items() if v is not None}
    if args.tile is None:
        extra = [f"--{k}" for k in ("overlap", "merge", "merge-metric", "merge-thresh", "edge")
                 if getattr(args, k.replace("-", "_")) is not None]  # fmt: skip
        if args.no_full_frame:
            extra.append("--no-full-frame")
        if extra:
            verb = "sets" if len(extra) == 1 else "set"
            raise MfssdError(f"{', '.join(extra)} {verb} up tiled inference: add --tile N (e.g. --tile 300)")
        return None
    text = str(args.tile).strip().lower()
    try:
        if text == "model":
            size = (model_input, model_input) if isinstance(model_input, int) else model_input
        elif "x" in text:
            w, h = text.split("x")
            size = (int(w), int(h))
        else:
            size = (int(text), int(text))
    except ValueError:
        raise MfssdError(f"--tile {args.tile}: pass pixels, e.g. --tile 300, --tile 320x240 or --tile model") from None
    tiling = replace(Tiling(size), full_frame=not args.no_full_frame, **given)
    side = min(model_input) if isinstance(model_input, tuple) else model_input
    if min(size) * MAX_TILE_UPSCALE < side and not getattr(args, "_warned_tile", False):
        args._warned_tile = True  # tiling_from_args runs twice: before and after the model loads
        step = max(1, int(min(size) * (1 - tiling.overlap)))
        print(f"warning: --tile {args.tile} is upscaled {side / min(size):.0f}x to the model's {side}-pixel input, "
              f"and a 1000x1000 image alone makes about {(1000 // step + 1) ** 2:,} tiles; tiles near the model's "
              "input size (--tile model) are what tiling is for", file=sys.stderr)  # fmt: skip
    return tiling


MAX_TILE_UPSCALE = 4  # a tile enlarged more than this shows the model nothing it could not see whole


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", nargs="?", help="image, folder, glob ('imgs/**/*.jpg') or video file; a path that "
                    "exists is always read as a path. A bare number that is no existing path opens that camera "
                    "(kept for compatibility; prefer --camera N)")  # fmt: skip
    ap.add_argument("--camera", type=int, metavar="N", help="read camera N instead of a SOURCE (runs until Ctrl-C "
                    "or --max-frames)")  # fmt: skip
    ap.add_argument("--model", help=f".pt, .onnx or .engine (default: the bundled demo model); {runtime_rule()}")
    ap.add_argument("--save-dir", help="annotated output folder, new or empty: one that holds files or would "
                    "overwrite a source file is refused (default: runs/detect, or the first free runs/detect2, "
                    "runs/detect3, ...)")  # fmt: skip
    ap.add_argument("--no-save", action="store_true", help="do not write annotated images or video")
    ap.add_argument("--json", help="detections JSON (default: SAVE_DIR/detections.json; none with --no-save)")
    ap.add_argument("--conf", type=float, help="detection threshold: the JSON holds every detection scoring at "
                    "least this (default: the model's evaluation threshold, 0.01)")  # fmt: skip
    ap.add_argument("--draw-conf", type=float, default=0.25, help="only detections scoring at least this are drawn "
                    "(default: 0.25); the JSON is not filtered by it")  # fmt: skip
    ap.add_argument("--iou", type=float, help="NMS IoU (raw models and checkpoints only; default: the model's)")
    ap.add_argument("--max-det", type=int, help="detections per image (default: the model's)")
    ap.add_argument("--batch", type=int, help="images (or tiles) per inference call (default: 8; a TensorRT engine: "
                    "the largest batch of its profile)")  # fmt: skip
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--max-frames", type=int, help="stop after N frames (default: all; a camera runs until Ctrl-C)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tiling_arguments(ap)
    return ap


def _key(path: Path) -> str:
    """One spelling per file (symlinks and `..` resolved), to compare outputs with sources."""
    return os.path.normcase(str(path.resolve()))


def plan_outputs(files: Sequence[Path], root: Path, save_dir: Path) -> dict[str, Path]:
    """Each source file -> SAVE_DIR/<its path relative to root>: sub1/a.jpg and sub2/a.jpg stay apart.

    Refuses (MfssdError) a plan that would overwrite a source file or write two sources to one output.
    """
    from mfssd_deploy.runtime.inputs import IMAGE_SUFFIXES

    absolute = [Path(os.path.abspath(f)) for f in files]  # lexical: `a/../b` -> `b`, so nothing escapes
    base = Path(os.path.abspath(root))
    if not all(a.is_relative_to(base) for a in absolute):
        base = Path(os.path.commonpath([a.parent for a in absolute]))
    sources = {_key(f): f for f in files}
    plan: dict[str, Path] = {}
    taken: dict[str, Path] = {}
    for f, a in zip(files, absolute, strict=True):
        out = save_dir / a.relative_to(base)
        if out.suffix.lower() not in IMAGE_SUFFIXES:  # e.g. a glob matched x.gif: write x.gif.jpg
            out = out.with_name(out.name + ".jpg")
        key = _key(out)
        if key in sources:
            raise MfssdError(
                f"--save-dir {save_dir} would overwrite the source image {sources[key]} (outputs mirror the "
                f"source's sub-folders under the save dir): choose a --save-dir outside {root}"
            )
        if key in taken and _key(taken[key]) != _key(f):
            raise MfssdError(f"{taken[key]} and {f} would both be written to {out}: pass them as separate runs")
        taken[key] = f
        plan[str(f)] = out
    return plan


def _check_json(json_path: Path, source_keys: set[str], outputs: Sequence[Path]) -> None:
    key = _key(json_path)
    if key in source_keys:
        raise MfssdError(f"the detections JSON {json_path} is a source file: pass --json with another path")
    if key in {_key(o) for o in outputs}:
        raise MfssdError(f"the detections JSON {json_path} is also an annotated output: pass --json with another path")
    if json_path.is_dir():
        raise MfssdError(f"--json {json_path} is a folder: pass a file path such as {json_path / 'detections.json'}")


def _make_dir(save_dir: Path) -> None:
    if save_dir.exists() and not save_dir.is_dir():
        raise MfssdError(f"--save-dir {save_dir} is an existing file, not a folder: pass a folder path")
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MfssdError(f"cannot create --save-dir {save_dir}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _atomic_video(path: Path, fps: float, size: tuple[int, int]) -> Iterator[Any]:
    """A cv2.VideoWriter whose file appears at `path` only when the block ends without an error."""
    import cv2

    from mfssd_deploy.fileio import atomic_path

    with atomic_path(path) as tmp:
        part = tmp.with_name(tmp.name + path.suffix)  # VideoWriter picks the container from the suffix
        writer = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
        try:
            if not writer.isOpened():
                raise MfssdError(f"cannot write {path}: OpenCV has no mp4v video encoder here (use --no-save)")
            yield writer
            writer.release()
            os.replace(part, tmp)
        finally:
            writer.release()
            part.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if (args.source is None) == (args.camera is None):
        raise MfssdError("give a SOURCE (image, folder, glob, video) or --camera N, not both and not neither")
    if not 0 <= args.draw_conf <= 1:
        raise MfssdError(f"--draw-conf {args.draw_conf} is outside 0-1: pass a score such as 0.25")
    tiling_from_args(args, 300)  # bad tiling settings fail before anything is opened
    import cv2
    import numpy as np
    from tqdm import tqdm

    from mfssd_deploy.fileio import atomic_path, fresh_run_dir, refuse_nonempty, write_json
    from mfssd_deploy.runtime.detector import Detector
    from mfssd_deploy.runtime.results import Result
    from mfssd_deploy.runtime.streaming import open_frames

    source: str | int = args.camera if args.camera is not None else args.source
    src = open_frames(source)
    save = not args.no_save
    save_dir = Path(args.save_dir) if args.save_dir else fresh_run_dir("runs/detect")
    plan = plan_outputs(src.files, src.root or Path("."), save_dir) if save and src.kind == "images" else {}
    source_paths = list(src.files) if src.kind == "images" else [Path(args.source)] if src.kind == "video" else []
    source_keys = {_key(p) for p in source_paths}
    video_out = save_dir / f"{Path(src.name).stem}.mp4" if save and src.kind != "images" else None
    if video_out is not None and _key(video_out) in source_keys:
        raise MfssdError(f"--save-dir {save_dir} would overwrite the source video {args.source}: choose another")
    json_path = Path(args.json) if args.json else (save_dir / "detections.json" if save else None)
    if json_path is not None:
        _check_json(json_path, source_keys, [*plan.values(), *([video_out] if video_out else [])])
    if save and args.save_dir:  # after the checks above, which name the source a save dir would overwrite
        refuse_nonempty(save_dir, "--save-dir", "give a new or empty folder (earlier results are never mixed in)")
    if save:
        _make_dir(save_dir)

    det = Detector(args.model, device=args.device, conf=args.conf, iou=args.iou, max_det=args.max_det,
                   batch_size=args.batch)  # fmt: skip
    det.tiling = tiling_from_args(args, det.config.input_size)  # validated above; "model" needs the model
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    n_drawn = 0
    interrupted = False
    total = min(src.length, args.max_frames) if src.length and args.max_frames else src.length or args.max_frames
    bar = tqdm(total=total, desc=f"detect {src.name}", unit="img", disable=True if args.no_progress else None)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        frames = det.stream(source, batch=args.batch)
        stack.callback(getattr(frames, "close", lambda: None))  # stop the prefetch thread on break / Ctrl-C
        writer: Any = None

        def annotate(name: str, r: Result, image: np.ndarray) -> str | None:
            """Write the annotated copy of one image or video frame; what went wrong, if anything."""
            nonlocal writer, n_drawn
            n_drawn += int((r.scores >= args.draw_conf).sum())
            drawn = r.draw(image, min_score=args.draw_conf)
            if video_out is not None:
                if writer is None:
                    size = (drawn.shape[1], drawn.shape[0])
                    writer = stack.enter_context(_atomic_video(video_out, src.fps or 25.0, size))
                writer.write(drawn)
                return None
            out = plan.get(name)
            if out is None:  # appeared between the listing above and the one det.stream made
                return "appeared while running; detected, annotated copy not written"
            ok, buf = cv2.imencode(out.suffix, drawn)
            if not ok:
                return f"detected, but OpenCV cannot encode {out.suffix}: {out} not written"
            try:
                with atomic_path(out) as tmp:
                    tmp.write_bytes(buf.tobytes())
            except OSError as exc:
                raise MfssdError(f"cannot write {out}: {exc.strerror or exc}") from exc
            return None

        try:
            for frame in frames:
                if args.max_frames is not None and frame.index >= args.max_frames:
                    break
                bar.update(1)
                if frame.result is None or frame.image is None:
                    skipped.append(f"{frame.source}: {frame.error}")
                    bar.write(f"skipped {frame.source}: {frame.error}", file=sys.stderr)
                    continue
                r = frame.result
                problem = annotate(frame.source, r, frame.image) if save else None
                if problem:
                    skipped.append(f"{frame.source}: {problem}")
                    bar.write(f"skipped {frame.source}: {problem}", file=sys.stderr)
                records.append(r.to_dict())  # after its output: on Ctrl-C the JSON and the outputs agree
        except KeyboardInterrupt:  # a camera stops this way: keep and finalise what was seen
            interrupted = True
    if json_path is not None:
        write_json(json_path, {"model": str(det.path), "source": str(source), "conf": det.nms.conf_thresh,
                               "draw_conf": args.draw_conf, "interrupted": interrupted,
                               "tiling": det.tiling.to_dict() if det.tiling else None, "images": records,
                               "skipped": skipped})  # fmt: skip
    n_det = sum(len(r["detections"]) for r in records)
    where = "" if args.no_save else f", {n_drawn} drawn (score >= {args.draw_conf}); annotated output in {save_dir}"
    print(f"{len(records)} images, {n_det} detections (score >= {det.nms.conf_thresh}){where}"
          + (f"; JSON {json_path}" if json_path else ""))  # fmt: skip
    if interrupted:
        print(f"mfssd-detect: interrupted after {len(records)} images; outputs cover those", file=sys.stderr)
        return 130
    if skipped:
        print(f"mfssd-detect: {len(skipped)} input(s) skipped or incomplete; see above", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-detect", main))


if __name__ == "__main__":
    entry()
