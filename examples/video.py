"""A video file or a camera to an annotated video with a live FPS overlay.

    python examples/video.py SOURCE [--out runs/video.mp4] [--model M] [--batch 4] [--max-frames N]

SOURCE is a video file or a camera index (0). det.stream decodes and pre-processes the next batch
in a background thread while the current batch runs, so reading the video overlaps inference. The
overlay shows the end-to-end frames per second over the last few batches (decoding, inference,
drawing and writing included).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque
from pathlib import Path

import cv2

from mfssd_deploy import Detector
from mfssd_deploy.errors import MfssdError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="video file, or camera index such as 0")
    ap.add_argument("--out", default="runs/video.mp4", help="annotated video to write (mp4)")
    ap.add_argument("--model", help=".pt, .onnx or .engine (default: the bundled demo checkpoint)")
    ap.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    ap.add_argument("--batch", type=int, default=4, help="frames per inference batch (default 4; 1 for lowest latency)")
    ap.add_argument("--max-frames", type=int, help="stop after N frames (a camera runs until Ctrl-C)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)

    det = Detector(args.model, device=args.device, conf=args.conf, batch_size=args.batch)
    source = int(args.source) if args.source.isdigit() else args.source
    fps_in = 30.0
    if isinstance(source, str):
        cap = cv2.VideoCapture(source)
        fps_in = cap.get(cv2.CAP_PROP_FPS) or 30.0
        cap.release()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.stem}.part.mp4")  # renamed onto --out only when the video is complete
    # FPS over a sliding window of a few batches: frames of one batch arrive together
    writer, fps, n, stamps = None, 0.0, 0, deque(maxlen=max(30, 3 * args.batch))
    try:
        for frame in det.stream(source, batch=args.batch):
            if args.max_frames is not None and frame.index >= args.max_frames:
                break
            if frame.result is None or frame.image is None:
                continue
            stamps.append(time.perf_counter())
            n += 1
            if len(stamps) > args.batch:
                fps = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-6)
            img = frame.result.draw(frame.image)
            cv2.putText(img, f"{fps:5.1f} FPS  {len(frame.result)} objects", (8, 24), cv2.FONT_HERSHEY_SIMPLEX,
                        0.7, (0, 255, 255), 2, cv2.LINE_AA)  # fmt: skip
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"mp4v"), fps_in, (w, h))
            writer.write(img)
    except KeyboardInterrupt:
        pass
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        part.unlink(missing_ok=True)
        raise MfssdError(f"no frame could be read from {args.source}")
    os.replace(part, out)
    print(f"{n} frames -> {out} (end-to-end FPS over the last {len(stamps)} frames {fps:.1f}; video {fps_in:.0f} FPS)")
    return 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input: one line, exit code 2

    raise SystemExit(run_cli("video.py", main))
