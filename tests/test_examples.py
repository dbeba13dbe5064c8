"""Every script in examples/ runs on CPU with the demo model (as a subprocess, like a user runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfssd_deploy.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, 0, 16, seed=3, show_progress=False)
    return root


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_explains_itself(script: str, tmp_path: Path) -> None:
    out = run(script, "--help", cwd=tmp_path)
    assert "usage:" in out and len(out.splitlines()) > 5


def test_quickstart_prints_and_draws_what_the_detector_finds(tmp_path: Path) -> None:
    from mfssd_deploy import Detector
    from mfssd_deploy.demo_assets import sample_images

    out = run("quickstart.py", "--out", str(tmp_path / "q"), cwd=tmp_path)
    expected = Detector(conf=0.3)([str(p) for p in sample_images()])
    for p, r in zip(sample_images(), expected, strict=True):
        assert f"{p.name}: {len(r)} objects" in out
        assert cv2.imread(str(tmp_path / "q" / p.name)).shape == cv2.imread(str(p)).shape
    assert sum(len(r) for r in expected) > 0


def test_folder_to_json_is_scored_by_mfssd_eval_like_the_model_itself(synth: Path, tmp_path: Path) -> None:
    from mfssd_deploy.cli.eval import main as eval_main

    dets = tmp_path / "dets.json"
    out = run("folder_to_json.py", str(synth / "val"), "--annotations", str(synth / "annotations" / "val.json"),
              "--out", str(dets), "--batch", "4", cwd=tmp_path)  # fmt: skip
    assert "on 16 images" in out
    items = json.loads(dets.read_text())
    assert items and set(items[0]) == {"image_id", "category_id", "bbox", "score"}
    assert eval_main(["--detections", str(dets), "--data", str(synth), "--json", str(tmp_path / "a.json")]) == 0
    assert eval_main(["--data", str(synth), "--json", str(tmp_path / "b.json"), "--no-progress"]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["voc07_map"] == pytest.approx(b["voc07_map"], abs=2e-3)  # boxes rounded to 0.01 px in the file
    assert a["coco"]["APs"] == pytest.approx(b["coco"]["APs"], abs=2e-3)
    assert a["voc07_map"] > 0.5


def test_eval_detections_errors_are_one_line(synth: Path, tmp_path: Path, capsys: Any) -> None:
    from mfssd_deploy.cli import run_cli
    from mfssd_deploy.cli.eval import main as eval_main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    assert run_cli("mfssd-eval", eval_main, ["--detections", str(bad), "--data", str(synth)]) == 2
    assert "image_id 999, which is not in" in capsys.readouterr().err


def test_video_writes_an_annotated_video(tmp_path: Path) -> None:
    from mfssd_deploy.demo_assets import sample_images

    src = tmp_path / "in.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(12):
        w.write(cv2.resize(cv2.imread(str(sample_images()[i % 4])), (320, 240)))
    w.release()
    out = run("video.py", str(src), "--out", str(tmp_path / "out.mp4"), "--max-frames", "10", "--batch", "4",
              cwd=tmp_path)  # fmt: skip
    assert "10 frames ->" in out and "FPS" in out
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    assert not list(tmp_path.glob(".*part*"))


@pytest.mark.slow
def test_int8_calibrate_compares_precisions(tmp_path: Path) -> None:
    out = run("int8_calibrate.py", "--out", str(tmp_path / "x"), "--calib-num", "16", "--val-images", "16",
              "--iters", "2", cwd=tmp_path)  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| mfssd_bn")]
    assert [r.split("|")[2].strip() for r in rows] == ["fp32", "int8-qdq", "int8-qdq-u8"]
    assert "int8-qdq: mAP@0.5" in out and "int8-qdq-u8: mAP@0.5" in out and "x its speed" in out


@pytest.mark.slow
def test_prune_and_deploy_runs_the_pipeline(tmp_path: Path) -> None:
    out = run("prune_and_deploy.py", "--out", str(tmp_path / "p"), "--images", "32", "--batch", "8",
              cwd=tmp_path)  # fmt: skip
    for step in ("== 1.", "== 2.", "== 3.", "== 4.", "== 5."):
        assert step in out
    assert "fewer)" in out and "| pruned.int8.end2end.onnx onnxruntime | 8 |" in out
    from mfssd_deploy.checkpoint import read_checkpoint

    pruned = read_checkpoint(tmp_path / "p" / "pruned.pt")
    widths = pruned["config"]["widths"]
    assert pruned["pruning"]["round_to"] == 8 and all(w % 8 == 0 for w in widths.values()), widths


class FakeTriton:
    """A Triton client double: returns the repository's config and runs the served ONNX on what it receives."""

    def __init__(self, model_dir: Path, protocol: str) -> None:
        import onnxruntime as ort
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2

        cfg = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        self.config = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
        self.protocol = protocol
        self.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        self.requests: list[dict[str, Any]] = []

    def get_model_config(self, model: str, version: str = "", as_json: bool = False) -> dict[str, Any]:
        return {"config": self.config} if self.protocol == "grpc" else self.config

    def infer(self, model: str, inputs: list[Any], model_version: str = "", outputs: Any = None) -> Any:
        (inp,) = inputs
        raw = inp._get_content() if self.protocol == "grpc" else inp._get_binary_data()
        x = np.frombuffer(raw, np.float32).reshape(inp.shape())
        self.requests.append({"name": inp.name(), "datatype": inp.datatype(), "shape": inp.shape(), "x": x,
                              "outputs": [o.name() for o in outputs]})  # fmt: skip
        res = dict(
            zip([o.name for o in self.session.get_outputs()], self.session.run(None, {"images": x}), strict=True)
        )
        return type("R", (), {"as_numpy": lambda self, n: res[n]})()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_client_builds_the_request_and_reads_the_answer(protocol: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import triton_client
    finally:
        sys.path.remove(str(EXAMPLES))
    from mfssd_deploy import Detector
    from mfssd_deploy.cli.export import main as export_main
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.runtime.preprocess import preprocess_batch

    repo = tmp_path / "repo"
    argv = ["--out-dir", str(tmp_path / "x"), "--end2end", "--triton", str(repo), "--batch-profile", "1,4,8"]
    assert export_main(argv) == 0
    (model_dir,) = list(repo.iterdir())
    fake = FakeTriton(model_dir, protocol)
    det = triton_client.make_detector("localhost:1", model_dir.name, protocol == "grpc", 0.3, client=fake)
    paths = [str(p) for p in sample_images()]
    got = det(paths)
    (req,) = fake.requests
    assert req["name"] == "images" and req["datatype"] == "FP32" and req["shape"] == [4, 3, 300, 300]
    assert req["outputs"] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    c = det.config
    np.testing.assert_array_equal(req["x"], preprocess_batch([cv2.imread(p) for p in paths], c.input_size, c.mean,
                                                             c.std, c.color))  # fmt: skip
    local = Detector(tmp_path / "x" / "mfssd_bn_w025_synth.end2end.onnx", conf=0.3)(paths)
    for a, b in zip(got, local, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.names == b.names
