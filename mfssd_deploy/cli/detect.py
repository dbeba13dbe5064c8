"""mfssd-detect: run a model on images, a folder, a glob, a video file or a camera.

Writes annotated images (or an annotated video) to --save-dir and every detection to a JSON file.
A file that cannot be read is reported and skipped; the rest is processed and the exit code is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from mfssd_deploy.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", help="image, folder, glob ('imgs/*.jpg'), video file, or camera index (0)")
    ap.add_argument("--model", help=".pt, .onnx or .engine (default: the bundled demo model)")
    ap.add_argument("--save-dir", default="runs/detect", help="annotated output folder (default runs/detect)")
    ap.add_argument("--no-save", action="store_true", help="do not write annotated images or video")
    ap.add_argument("--json", help="detections JSON (default: SAVE_DIR/detections.json)")
    ap.add_argument("--conf", type=float, help="score threshold (default: the model's, 0.01; 0.3 is good for display)")
    ap.add_argument("--iou", type=float, help="NMS IoU (raw models and checkpoints only)")
    ap.add_argument("--max-det", type=int, help="detections per image")
    ap.add_argument("--batch", type=int, default=8, help="images per inference batch (default 8)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--max-frames", type=int, help="stop after N frames (cameras run until interrupted)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import cv2
    from tqdm import tqdm

    from mfssd_deploy.detector import Detector
    from mfssd_deploy.fileio import atomic_path, write_json
    from mfssd_deploy.streaming import open_source

    det = Detector(args.model, device=args.device, conf=args.conf, iou=args.iou, max_det=args.max_det,
                   batch_size=args.batch)  # fmt: skip
    src = open_source(args.source)
    save_dir = Path(args.save_dir)
    if not args.no_save:
        save_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    writer = None
    video_tmp = None
    total = min(src.length, args.max_frames) if src.length and args.max_frames else src.length or args.max_frames
    bar = tqdm(total=total, desc=f"detect {src.name}", unit="img", disable=True if args.no_progress else None)
    try:
        for frame in det.stream(args.source if src.kind != "camera" else int(args.source), batch=args.batch):
            if args.max_frames is not None and frame.index >= args.max_frames:
                break
            bar.update(1)
            if frame.result is None or frame.image is None:
                skipped.append(f"{frame.source}: {frame.error}")
                bar.write(f"skipped {frame.source}: {frame.error}")
                continue
            records.append(frame.result.to_dict())
            if args.no_save:
                continue
            drawn = frame.result.draw(frame.image)
            if src.kind == "images":
                out = save_dir / Path(frame.source).name
                ok, buf = cv2.imencode(out.suffix if out.suffix else ".jpg", drawn)
                if ok:
                    with atomic_path(out) as tmp:
                        tmp.write_bytes(buf.tobytes())
            else:
                if writer is None:
                    video_tmp = save_dir / f".{Path(src.name).stem}.part.mp4"
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter.fourcc(*"mp4v"), src.fps or 25.0, (w, h))
                writer.write(drawn)
    finally:
        bar.close()
        if writer is not None and video_tmp is not None:
            writer.release()
            video_tmp.replace(save_dir / f"{Path(src.name).stem}.mp4")
    json_path = Path(args.json) if args.json else (None if args.no_save else save_dir / "detections.json")
    if json_path is not None:
        write_json(json_path, {"model": str(det.path), "source": str(args.source), "images": records,
                               "skipped": skipped})  # fmt: skip
    n_det = sum(len(r["detections"]) for r in records)
    where = "" if args.no_save else f"; annotated output in {save_dir}"
    print(f"{len(records)} images, {n_det} detections{where}" + (f"; JSON {json_path}" if json_path else ""))
    if skipped:
        print(f"mfssd-detect: {len(skipped)} input(s) skipped (unreadable); see above", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-detect", main))


if __name__ == "__main__":
    entry()
