"""Tiled inference against independent references: SAHI's own grid (get_slice_bboxes), SAHI's merges
(GreedyNMMPostprocess, NMSPostprocess), a plain merge loop written here, a detector whose answer is known
(a red-pixel finder), and SAHI's get_sliced_prediction driving the same Detector one slice at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sahi.models.base import DetectionModel
from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
from sahi.predict import get_sliced_prediction
from sahi.prediction import ObjectPrediction
from sahi.slicing import get_slice_bboxes
from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

from mfssd_deploy import Detector
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.detect import main as detect_main
from mfssd_deploy.cli.eval import main as eval_main
from mfssd_deploy.data.synth import LARGE_FRAME_SIZES, LARGE_FRAMES, SynthSpec, generate, generate_large, make_image
from mfssd_deploy.demo_assets import DEMO_MODEL, DEMO_ONNX
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.geometry.tiling import Tiling, map_to_image, merge, merge_torch, plan_crops, tile_grid
from mfssd_deploy.runtime.results import Result

from helpers import same
from test_lean_import import run_without_torch

# Small "large frames": tiles and a full frame each, at the demo model's object sizes, so the
# end-to-end tests run in seconds.
SMALL_FRAMES = SynthSpec(objects_per_image=(12, 20), image_sizes=((640, 480), (560, 420)),
                         size_mix=LARGE_FRAMES.size_mix, clutter=3.0)  # fmt: skip


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [make_image(5, "val", i, SMALL_FRAMES)[0] for i in range(2)]


@pytest.fixture(scope="module")
def onnx_det() -> Detector:
    return Detector(DEMO_ONNX)


# ----------------------------------------------------------------------------------------------- grid


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tw=st.integers(1, 400), th=st.integers(1, 400), overlap=st.floats(0, 0.9))
def test_grid_equals_sahi_get_slice_bboxes(data: st.DataObject, tw: int, th: int, overlap: float) -> None:
    w = data.draw(st.integers(1, 6 * tw + 7))  # edge tiles, exact fits and tiles larger than the image
    h = data.draw(st.integers(1, 6 * th + 7))
    ours = tile_grid(w, h, (tw, th), overlap)
    assert ours.tolist() == get_slice_bboxes(h, w, th, tw, False, overlap, overlap)
    assert (ours[:, 2] <= w).all() and (ours[:, 3] <= h).all() and (ours >= 0).all()


def test_grid_of_a_1080p_frame_and_of_small_images() -> None:
    grid = tile_grid(1920, 1080, (300, 300), 0.2)
    assert len(grid) == 40 and grid[7].tolist() == [1620, 0, 1920, 300] and grid[-1].tolist() == [1620, 780, 1920, 1080]
    assert tile_grid(200, 150, (300, 300), 0.2).tolist() == [[0, 0, 200, 150]]  # larger than the image: one tile
    assert tile_grid(300, 300, (300, 300), 0.2).tolist() == [[0, 0, 300, 300]]
    crops = plan_crops([(1080, 1920), (150, 200)], Tiling((300, 300)))
    assert len(crops) == 41 + 1  # 40 tiles + the full frame; the small image: one tile, no full frame
    assert crops[40].tolist() == [0, 0, 0, 1920, 1080, 1920, 1080]
    assert crops[41].tolist() == [1, 0, 0, 200, 150, 200, 150]
    assert len(plan_crops([(1080, 1920)], Tiling((300, 300), full_frame=False))) == 40


# ---------------------------------------------------------------------------------------------- merge


def _boxes(draw: Any, n: int, grid: bool) -> np.ndarray:
    """Boxes on a coarse grid (ties, touching and identical boxes, exact thresholds) or anywhere."""
    # No subnormal floats: a box 1e-44 px wide (found by hypothesis) has an area that torch (SAHI) and numpy
    # round differently below float32's normal range; pixel boxes never get there (their ulp is >= 1e-4 px at
    # real coordinates, and clipping gives exact zeros).
    coord = st.integers(0, 12).map(lambda v: v * 10.0) if grid else st.floats(0, 200, width=32, allow_subnormal=False)
    side = st.integers(0, 6).map(lambda v: v * 10.0) if grid else st.floats(0, 80, width=32, allow_subnormal=False)
    rows = [draw(st.tuples(coord, coord, side, side)) for _ in range(n)]
    b = np.array([[x, y, x + w, y + h] for x, y, w, h in rows], np.float32).reshape(-1, 4)
    return b


@st.composite
def detections(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 40))
    b = _boxes(draw, n, draw(st.booleans()))
    score = st.sampled_from([0.2, 0.5, 0.9]) if draw(st.booleans()) else st.floats(0.0625, 1, width=32)
    s = np.array([draw(score) for _ in range(n)], np.float32)
    lab = np.array([draw(st.integers(0, 2)) for _ in range(n)], np.int64)
    return b, s, lab


def _sorted(b: np.ndarray, s: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, ...]:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    o = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], lab, -np.asarray(s, np.float64)))
    return b[o], np.asarray(s, np.float64)[o], np.asarray(lab)[o]


def _sahi_merge(b: np.ndarray, s: np.ndarray, lab: np.ndarray, method: str, metric: str, thr: float) -> tuple:
    preds = [ObjectPrediction(bbox=bb.tolist(), score=float(ss), category_id=int(ll), category_name=str(ll))
             for bb, ss, ll in zip(b, s, lab, strict=True)]  # fmt: skip
    post = (GreedyNMMPostprocess if method == "greedy_nmm" else NMSPostprocess)(thr, metric.upper(), False)
    out = post(preds) if len(preds) > 1 else preds  # get_sliced_prediction merges only lists of 2 or more
    return _sorted(np.array([p.bbox.to_xyxy() for p in out]), np.array([p.score.value for p in out]),
                   np.array([p.category.id for p in out]))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(dets=detections(), method=st.sampled_from(["greedy_nmm", "nms"]), metric=st.sampled_from(["ios", "iou"]),
       thr=st.sampled_from([0.5, 0.3, 0.45, 0.8, 1.0]))  # fmt: skip
def test_merge_equals_sahi(dets: tuple[np.ndarray, ...], method: str, metric: str, thr: float) -> None:
    b, s, lab = dets
    ours = _sorted(*merge(b, s, lab, method, metric, thr))
    ref = _sahi_merge(b, s, lab, method, metric, thr)
    for o, r in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(o, r)


def _overlap32(u: np.ndarray, v: np.ndarray, metric: str) -> np.float32:
    f = np.float32
    iw = max(f(0), min(u[2], v[2]) - max(u[0], v[0]))
    ih = max(f(0), min(u[3], v[3]) - max(u[1], v[1]))
    inter = f(iw * ih)
    au, av = f((u[2] - u[0]) * (u[3] - u[1])), f((v[2] - v[0]) * (v[3] - v[1]))
    denom = f(au + av - inter) if metric == "iou" else min(au, av)
    return f(inter / denom) if denom > 0 else f(0)


def _overlap64(u: list[float], v: list[float], metric: str) -> float:
    inter = max(0.0, min(u[2], v[2]) - max(u[0], v[0])) * max(0.0, min(u[3], v[3]) - max(u[1], v[1]))
    au, av = (u[2] - u[0]) * (u[3] - u[1]), (v[2] - v[0]) * (v[3] - v[1])
    denom = au + av - inter if metric == "iou" else min(au, av)
    return inter / denom if denom > 0 else 0.0


def reference_merge(b: np.ndarray, s: np.ndarray, lab: np.ndarray, method: str, metric: str, thr: float) -> tuple:
    """The textbook loop, one class at a time: take the best remaining box, remove every remaining box
    matching it; greedy NMM grows the best box by each removed one that still matches the grown box."""
    out_b, out_s, out_l = [], [], []
    for c in sorted(set(lab.tolist())):
        alive = sorted((i for i in range(len(s)) if lab[i] == c), key=lambda i: (-s[i], *b[i].tolist()))
        while alive:
            k = alive.pop(0)
            matched = [j for j in alive if _overlap32(b[k], b[j], metric) >= np.float32(thr)]
            alive = [j for j in alive if j not in matched]
            box = [float(v) for v in b[k]]
            for j in matched if method == "greedy_nmm" else []:
                if _overlap64(box, b[j].tolist(), metric) >= thr:
                    box = [min(box[0], b[j][0]), min(box[1], b[j][1]), max(box[2], b[j][2]), max(box[3], b[j][3])]
            out_b.append(box)
            out_s.append(s[k])
            out_l.append(c)
    return _sorted(np.array(out_b), np.array(out_s), np.array(out_l))


@settings(max_examples=150, deadline=None)
@given(dets=detections(), method=st.sampled_from(["greedy_nmm", "nms"]), metric=st.sampled_from(["ios", "iou"]),
       thr=st.sampled_from([0.5, 0.3, 0.7]))  # fmt: skip
def test_merge_numpy_and_torch_equal_a_reference_loop(dets: tuple, method: str, metric: str, thr: float) -> None:
    b, s, lab = dets
    ref = reference_merge(b, s, lab, method, metric, thr)
    ours = _sorted(*merge(b, s, lab, method, metric, thr))
    mt = merge_torch(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(lab), method, metric, thr)
    theirs = _sorted(*(t.numpy() for t in mt))
    for o, t, r in zip(ours, theirs, ref, strict=True):
        np.testing.assert_array_equal(o, r)
        np.testing.assert_array_equal(t, r)


def test_merge_of_nothing_and_of_one_box() -> None:
    for fn in (merge, lambda *a: tuple(t.numpy() for t in merge_torch(*(torch.from_numpy(x) for x in a)))):
        b, s, lab = fn(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)
        one = fn(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([2]))
        assert one[0].tolist() == [[1, 2, 3, 4]] and one[2].tolist() == [2]


def test_map_to_image_and_inner_edges() -> None:
    crops = np.array([[0, 240, 0, 540, 300, 1000, 700], [0, 0, 0, 1000, 700, 1000, 700]], np.float32)
    boxes = np.array([[[0.0, 0.5, 0.1, 0.6], [0.4, 0.4, 0.5, 0.5]], [[0.0, 0.0, 0.1, 0.1], [-0.1, 0.9, 0.2, 1.2]]],
                     np.float32)  # fmt: skip
    px, touch = map_to_image(boxes, crops, edge_margin=2.0)
    np.testing.assert_allclose(px[0], [[240, 150, 270, 180], [360, 120, 390, 150]])
    np.testing.assert_allclose(px[1], [[0, 0, 100, 70], [0, 630, 200, 700]])  # clipped to the crop
    # tile 0 has inner edges left (x=240), right (540), bottom (300); the full frame has none
    assert touch.tolist() == [[True, False], [False, False]]
    tpx, ttouch = map_to_image(torch.from_numpy(boxes), torch.from_numpy(crops), 2.0)
    np.testing.assert_array_equal(tpx.numpy(), px) and np.testing.assert_array_equal(ttouch.numpy(), touch)
    assert not map_to_image(boxes, crops)[1].any()


# ------------------------------------------------ a detector whose answer is known: red pixels, per crop


class RedFinder:
    """An end2end 'model' that reports the box of the pure-red pixels it sees, scored by their count:
    the ground truth of every crop is known, so mapping and merging can be checked exactly."""

    name = "red-finder"
    layout = "end2end"
    device = "cpu"
    thread_safe = True

    def __init__(self, config: Any) -> None:
        self.config = config
        self.meta: dict[str, Any] = {"layout": "end2end"}
        self.batches: list[int] = []

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        self.batches.append(len(x))
        c = self.config
        rgb = (x * np.array(c.std, np.float32)[:, None, None] + np.array(c.mean, np.float32)[:, None, None]) * 255
        red = (rgb[:, 0] > 200) & (rgb[:, 1] < 60) & (rgb[:, 2] < 60)
        b, k = len(x), 4
        num, boxes = np.zeros((b, 1), np.int32), np.zeros((b, k, 4), np.float32)
        scores, classes = np.zeros((b, k), np.float32), np.zeros((b, k), np.int32)
        for i in range(b):
            ys, xs = np.nonzero(red[i])
            if len(xs):
                s = x.shape[-1]
                num[i, 0] = 1
                boxes[i, 0] = [xs.min() / s, ys.min() / s, (xs.max() + 1) / s, (ys.max() + 1) / s]
                scores[i, 0] = min(1.0, len(xs) / 2000)
        return [num, boxes, scores, classes]


@pytest.mark.parametrize(("merge_name", "edge"), [("nms", "drop"), ("nms", "merge"), ("greedy_nmm", "merge")])
def test_object_across_a_tile_border_comes_back_as_one_box(onnx_det: Detector, merge_name: str, edge: str) -> None:
    img = np.full((480, 640, 3), 90, np.uint8)
    cv2.rectangle(img, (280, 100), (329, 139), (0, 0, 255), -1)  # x 280-330 crosses tile 0's right edge (300)
    finder = RedFinder(onnx_det.config)
    det = Detector.from_backend(finder, "red", batch_size=4, tile=Tiling((300, 300), full_frame=False,
                                                                         merge=merge_name, edge=edge))  # fmt: skip
    (r,) = det(img)
    assert finder.batches == [4, 2]  # 6 tiles, batched
    assert r.boxes.tolist() == [[280, 100, 330, 140]] and r.image_shape == (480, 640)
    (with_full,) = det(img, tile=Tiling((300, 300), merge=merge_name, edge=edge))  # + the full frame, resized
    assert len(with_full) == 1 and _iou(with_full.boxes[0], [280, 100, 330, 140]) > 0.93
    (empty,) = det(np.full((480, 640, 3), 90, np.uint8))  # every tile empty
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def _iou(a: Any, b: Any) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)


def test_demo_model_finds_a_shape_cut_by_a_tile_border(onnx_det: Detector) -> None:
    """A 40 px square across tile borders (x = 540, y = 300) on a textured 1280x720 background: tiled, it
    comes back once, in the right place; the whole frame resized (9 px left of it) misses it; with cut
    boxes merged instead of dropped, the left tile's half-square survives as a second (wrong-class) box."""
    img = make_image(0, "val", 0, SynthSpec(objects_per_image=(0, 0), image_sizes=((1280, 720),), clutter=3.0))[0]
    truth = [520, 280, 560, 320]
    cv2.rectangle(img, (truth[0], truth[1]), (truth[2] - 1, truth[3] - 1), (40, 200, 250), -1)
    (r,) = onnx_det(img, tile=300)
    good = r.scores >= 0.3
    assert good.sum() == 1, (r.boxes[good], r.scores[good])
    assert r.class_names[int(r.labels[good][0])] == "square" and _iou(r.boxes[good][0], truth) > 0.9
    assert (onnx_det(img)[0].scores < 0.3).all()
    (kept,) = onnx_det(img, tile=Tiling((300, 300), edge="merge"))
    assert (kept.scores >= 0.3).sum() == 2


# -------------------------------------------------------------------- the Detector: backends, batching, API


def test_all_crops_of_all_images_are_batched_and_batching_does_not_change_results(frames: list[np.ndarray]) -> None:
    finder = RedFinder(Detector(DEMO_ONNX).config)
    Detector.from_backend(finder, "red", batch_size=8, tile=300)(frames)
    crops = len(plan_crops([f.shape[:2] for f in frames], Tiling((300, 300))))
    assert crops > 12 and finder.batches == [8] * (crops // 8) + [crops % 8] * (crops % 8 > 0)  # across images
    one = Detector(DEMO_ONNX, batch_size=1, tile=300)(frames)
    eight = Detector(DEMO_ONNX, batch_size=8, tile=300)(frames)
    same(one, eight, iou=0.999, tol=1e-5)


def test_pt_raw_layout_merges_with_torch_like_end2end_with_numpy(frames: list[np.ndarray]) -> None:
    pt = Detector(DEMO_MODEL, tile=300)(frames)
    e2e = Detector(DEMO_ONNX, tile=300)(frames)
    assert sum(len(r) for r in pt) > 20
    same(pt, e2e, iou=0.99, tol=1e-4)
    assert all(isinstance(r, Result) and r.boxes.dtype == np.float32 and r.labels.dtype == np.int64 for r in pt)


def test_per_call_override_and_whole_image_default(onnx_det: Detector, frames: list[np.ndarray]) -> None:
    tiled = Detector(DEMO_ONNX, tile=300, overlap=0.25)
    plain = onnx_det(frames[0])[0]
    off = tiled(frames[0], tile=False)[0]
    assert np.array_equal(off.boxes, plain.boxes) and np.array_equal(off.scores, plain.scores)
    a, b = tiled(frames[0])[0], onnx_det(frames[0], tile=300, overlap=0.25)[0]
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores) and tiled.tiling is not None
    assert tiled.tiling.overlap == 0.25 and tiled.tiling_for(overlap=0.1).tile == (300, 300)  # type: ignore[union-attr]
    assert onnx_det.tiling_for(True) == Tiling((300, 300))  # the model's input size


def test_tile_larger_than_the_image_is_one_tile(onnx_det: Detector) -> None:
    img = make_image(2, "val", 0)[0][:200, :250]
    (whole,) = onnx_det(img)
    (tiled,) = onnx_det(img, tile=1000)
    b, s, lab = merge(whole.boxes, whole.scores, whole.labels, "nms", "ios", 0.5)
    assert np.array_equal(tiled.boxes, b) and np.array_equal(tiled.scores, s) and np.array_equal(tiled.labels, lab)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tile": 0}, "tile 0: a tile is a whole number of pixels >= 1"),
        ({"tile": -5}, "tile -5"),
        ({"tile": 300.5}, "pass a tile size in pixels"),
        ({"tile": (300,)}, "pass a tile size in pixels"),
        ({"tile": "big"}, "pass a tile size in pixels"),
        ({"tile": (300, 0)}, "tile (300, 0)"),
        ({"tile": 300, "overlap": 1.0}, "overlap 1.0: the overlap is a fraction of a tile in [0, 1)"),
        ({"tile": 300, "overlap": -0.1}, "overlap -0.1"),
        ({"overlap": 0.2}, "tiling is off"),
        ({"tile": False, "overlap": 0.2}, "tiling is off"),
    ],
)
def test_bad_tiling_is_one_line(kwargs: dict[str, Any], fragment: str, onnx_det: Detector) -> None:
    for call in (lambda: Detector(DEMO_ONNX, **kwargs), lambda: onnx_det(np.zeros((50, 50, 3), np.uint8), **kwargs)):
        with pytest.raises(MfssdError) as exc:
            call()
        assert fragment in str(exc.value) and "\n" not in str(exc.value)
    for bad in ({"merge": "wbf"}, {"metric": "giou"}, {"threshold": 0.0}, {"threshold": 1.5}, {"edge": "keep"}):
        with pytest.raises(MfssdError):
            Tiling((300, 300), **bad)  # type: ignore[arg-type]


def test_stream_tiles_like_a_call(tmp_path: Path, frames: list[np.ndarray]) -> None:
    for i, f in enumerate(frames * 2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), f)
    det = Detector(DEMO_ONNX, batch_size=5)
    streamed = list(det.stream(tmp_path, batch=3, tile=300))
    expected = det(sorted(str(p) for p in tmp_path.iterdir()), tile=300)
    same([f.result for f in streamed], expected, iou=0.999, tol=1e-5)  # type: ignore[misc]


def test_lean_runtime_tiles_end2end_without_torch(tmp_path: Path, frames: list[np.ndarray]) -> None:
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), frames[0])
    r = run_without_torch(f"""
        from mfssd_deploy import Detector
        res = Detector({str(DEMO_ONNX)!r}, tile=300)({str(path)!r})
        print(len(res[0]))
        assert "torch" not in sys.modules
    """)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) == len(Detector(DEMO_ONNX, tile=300)(str(path))[0]) > 0


# ---------------------------------------------------------------- SAHI driving the same Detector, slice by slice


class MfssdSahiModel(DetectionModel):
    """Our Detector inside SAHI: one slice (or the full frame) per call, untiled, resized like any image."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        names = {str(i): n for i, n in enumerate(detector.class_names)}
        super().__init__(model=detector, confidence_threshold=detector.nms.conf_thresh, category_mapping=names,
                         device="cpu")  # fmt: skip

    def set_model(self, model: Any, **kwargs: Any) -> None:
        self.model = model

    def perform_inference(self, image: np.ndarray) -> None:
        self._original_predictions = self.detector.detect_arrays([image], tile=False)

    def _create_object_prediction_list_from_original_predictions(
        self, shift_amount_list: Any = None, full_shape_list: Any = None
    ) -> None:
        shifts = fix_shift_amount_list(shift_amount_list or [[0, 0]])
        shapes = fix_full_shape_list(full_shape_list)
        self._object_prediction_list_per_image = [
            [ObjectPrediction(bbox=b.tolist(), score=float(s), category_id=int(c), category_name=r.class_names[int(c)],
                              shift_amount=shifts[k], full_shape=shapes[k] if shapes else None)
             for b, s, c in zip(r.boxes, r.scores, r.labels, strict=True)]
            for k, r in enumerate(self._original_predictions)
        ]  # fmt: skip


def sahi_detect(model: MfssdSahiModel, image: np.ndarray, merge_name: str, metric: str = "ios") -> tuple:
    out = get_sliced_prediction(image, model, 300, 300, 0.2, 0.2, perform_standard_pred=True,
                                postprocess_type={"nms": "NMS", "greedy_nmm": "GREEDYNMM"}[merge_name],
                                postprocess_match_metric=metric.upper(), postprocess_match_threshold=0.5,
                                verbose=0, force_postprocess_type=True).object_prediction_list  # fmt: skip
    boxes = np.array([p.bbox.to_xyxy() for p in out]).reshape(-1, 4)
    return _sorted(boxes, np.array([p.score.value for p in out], np.float32), np.array([p.category.id for p in out]))


@pytest.mark.parametrize("merge_name", ["nms", "greedy_nmm"])
def test_tiled_detector_equals_sahi_driving_it_slice_by_slice(frames: list[np.ndarray], merge_name: str) -> None:
    """Configured alike (edge boxes merged, SAHI's way), batch 1: the same detections and scores exactly,
    boxes to float32 rounding; our batch of 8 (one engine call for many tiles): the same within tolerance."""
    single = Detector(DEMO_ONNX, batch_size=1)
    model = MfssdSahiModel(single)
    tiling = Tiling((300, 300), merge=merge_name, edge="merge")
    ours1 = single(frames, tile=tiling)
    ours8 = Detector(DEMO_ONNX, batch_size=8, tile=tiling)(frames)
    refs = []
    for frame, r in zip(frames, ours1, strict=True):
        ref = sahi_detect(model, frame, merge_name)
        got = _sorted(r.boxes, r.scores, r.labels)
        assert len(ref[0]) == len(got[0]) > 10
        # SAHI shifts in float64; ours are float32 pixels (matching is float32 in both)
        np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[2], ref[2])
        refs.append(Result(ref[0].astype(np.float32), ref[1].astype(np.float32), ref[2], r.class_names, r.image_shape))
    same(ours8, refs, iou=0.999, tol=1e-4)


# ---------------------------------------------------------------------------------------- CLIs and data


def test_mfssd_detect_and_eval_tile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    generate(data, 0, 2, seed=5, spec=SMALL_FRAMES, show_progress=False)
    out = tmp_path / "out"
    argv = [str(data / "val"), "--tile", "300", "--overlap", "0.25", "--merge-metric", "iou", "--save-dir", str(out),
            "--no-progress", "--model", str(DEMO_ONNX)]  # fmt: skip
    assert detect_main(argv) == 0
    written = json.loads((out / "detections.json").read_text())
    assert written["tiling"]["tile"] == [300, 300] and written["tiling"]["metric"] == "iou"
    expected = Detector(DEMO_ONNX, tile=Tiling((300, 300), overlap=0.25, metric="iou"))(
        sorted(str(p) for p in (data / "val").iterdir())
    )
    assert [len(im["detections"]) for im in written["images"]] == [len(r) for r in expected]
    assert eval_main(["--data", str(data), "--tile", "model", "--no-full-frame", "--no-progress", "--json",
                      str(tmp_path / "ev.json"), "--model", str(DEMO_ONNX)]) == 0  # fmt: skip
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["tiling"]["full_frame"] is False and ev["coco"]["AP50"] > 0.5
    for bad, fragment in ((["--overlap", "0.3"], "--overlap sets up tiled inference"), (["--tile", "3x"], "--tile 3x"),
                          (["--tile", "300", "--overlap", "1"], "overlap 1.0")):  # fmt: skip
        capsys.readouterr()
        assert run_cli("mfssd-eval", eval_main, ["--data", str(data), "--model", str(DEMO_ONNX), *bad]) == 2
        assert run_cli("mfssd-detect", detect_main, [str(data / "val"), "--no-save", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all(fragment in line for line in err), err


def test_large_frame_set_is_deterministic_and_mostly_small(tmp_path: Path) -> None:
    hists = [generate_large(tmp_path / k, 2, seed=3, show_progress=False) for k in ("a", "b")]
    assert hists[0] == hists[1]
    for rel in ("annotations/val.json", "val/000000.jpg", "val/000001.jpg"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    coco = json.loads((tmp_path / "a/annotations/val.json").read_text())
    assert {(im["width"], im["height"]) for im in coco["images"]} <= set(LARGE_FRAME_SIZES)
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in coco["annotations"]])
    assert len(areas) >= 80 and (areas < 32**2).mean() > 0.55 and (areas >= 32**2).any()
