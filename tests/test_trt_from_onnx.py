"""mfssd-export --trt --model NAME.onnx: an engine built from an exported ONNX file on the board, no checkpoint.

Against the recording fake `tensorrt` (tests/fake_tensorrt.py) and the fake CUDA bindings (tests/fake_cuda.py,
which also identify the GPU when torch has no CUDA). The last test does it all in a fresh interpreter where
importing torch fails: build the engine from the INT8 end2end ONNX, run it through the fakes, and get ONNX
Runtime's detections on the same file. They prove our side (which file is parsed, what is written, what is
refused), not TensorRT.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.export import main
from mfssd_deploy.exporters.tensorrt_build import ONNX_METADATA_KEY, BuildRequest, build_engine
from mfssd_deploy.fileio import sha256_file

from fake_cuda import FakeCuda
from fake_tensorrt import add_fake_runtime, make_fake_tensorrt
from helpers import same
from test_lean_import import BLOCK_TORCH

pytestmark = pytest.mark.contract
TESTS = Path(__file__).resolve().parent


def fakes(monkeypatch: pytest.MonkeyPatch, version: str = "10.3.0", run: Path | None = None) -> tuple[Any, FakeCuda]:
    cuda = FakeCuda()  # an Orin, sm_87
    for name, module in cuda.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    trt = make_fake_tensorrt(version)
    if run is not None:
        add_fake_runtime(trt, str(run), "end2end", current_device=cuda.current_device,
                         device_capability=lambda i: cuda.devices[i][1], enqueue=cuda.enqueue,
                         check_memory=cuda.check_memory)  # fmt: skip
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt, cuda


def export(*argv: str) -> int:
    return run_cli("mfssd-export", main, list(argv))


def test_metadata_key_is_the_exporters(artifacts: dict[str, Path]) -> None:
    from mfssd_deploy.exporters.onnx_export import METADATA_KEY

    assert ONNX_METADATA_KEY == METADATA_KEY


def test_engine_from_the_int8_end2end_onnx(artifacts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    src = artifacts["int8"]
    before = sha256_file(src)
    trt, _ = fakes(monkeypatch, run=src)
    engines = tmp_path / "e"
    code = export("--trt", "--model", str(src), "--precision", "int8", "--batch-profile", "1,2,4",
                  "--engines-dir", str(engines), "--check-trt", "10", "--json", str(tmp_path / "r.json"))  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    engine = engines / "m.end2end.int8.engine"  # the name a build from the checkpoint gives it
    assert f"TensorRT 10.0 parser check, {src.name}: ok" in out.out and f"engine {engine} (int8" in out.out
    assert ("parser.parse", src.stat().st_size) in trt.calls  # this file, not another
    assert [c[1] for c in trt.calls if c[0] == "config.set_flag"] == ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert ("profile.set_shape", "images", (1, 3, 300, 300), (2, 3, 300, 300), (4, 3, 300, 300)) in trt.calls
    assert sha256_file(src) == before and sorted(p.name for p in src.parent.glob("*.engine*")) == []
    meta = json.loads(engine.with_name(engine.name + ".json").read_text())
    onnx_meta = json.loads(next(p.value for p in onnx.load(src).metadata_props if p.key == "mfssd"))
    assert meta["config"] == onnx_meta["config"] and meta["layout"] == "end2end" and meta["precision"] == "int8"
    assert meta["source_sha256"] == onnx_meta["source_sha256"] and meta["calibration"] == onnx_meta["calibration"]
    assert (meta["tensorrt_version"], meta["gpu_name"], meta["compute_capability"]) == ("10.3.0", "Orin", [8, 7])
    assert meta["onnx"] == str(src) and meta["onnx_sha256"] == before
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["engines"][0]["path"] == str(engine) and report["from_onnx"] is True

    # the same sidecar as a build from the checkpoint's export (build_engine given all its ONNX files)
    twin = build_engine(BuildRequest(onnx={"fp32": artifacts["e2e"], "int8": src, "fp16": artifacts["fp16"]},
                                     out=tmp_path / "c" / engine.name, precision="int8", batch=(1, 2, 4),
                                     timing_cache_dir=engines), gpu=("Orin", (8, 7)))  # fmt: skip
    volatile = {"build_seconds", "built_at"}
    assert {k: v for k, v in meta.items() if k not in volatile} == {
        k: v for k, v in json.loads(json.dumps(twin)).items() if k not in volatile
    }

    # and it runs without torch buffers (torch here has no CUDA): ONNX Runtime's detections on the same file
    det = Detector(engine, device="cuda", batch_size=4)
    assert det.backend.buffers == "cuda"
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    same(det(paths), Detector(src)(paths), iou=0.9999, tol=1e-6)


@pytest.mark.parametrize(
    ("key", "version", "precision", "engine"),
    [("raw", "10.3.0", "fp16", "m.raw.fp16.engine"), ("e2e", "8.6.1", "fp32", "m.end2end.fp32.engine"),
     ("fp16", "11.0.0", "fp16", "m.end2end.fp16.engine"), ("int8_raw", "11.0.0", "int8", "m.raw.int8.engine")],
)  # fmt: skip
def test_every_kind_of_onnx_builds(artifacts, tmp_path, monkeypatch, capsys, key, version, precision, engine) -> None:  # type: ignore[no-untyped-def]
    trt, _ = fakes(monkeypatch, version)
    code = export("--trt", "--model", str(artifacts[key]), "--precision", precision, "--engines-dir", str(tmp_path))
    assert code == 0, capsys.readouterr().err
    assert ("parser.parse", artifacts[key].stat().st_size) in trt.calls
    meta = json.loads((tmp_path / f"{engine}.json").read_text())
    assert meta["precision"] == precision and meta["tensorrt_version"] == version


@pytest.mark.parametrize(
    ("key", "version", "precision", "message"),
    [("int8", "10.3.0", "fp16", r"m\.int8\.end2end\.onnx is the int8 ONNX; TensorRT 10\.3\.0 builds fp16 engines from "
                                r"the fp32 ONNX: use --precision int8 with this file"),
     ("e2e", "10.3.0", "int8", r"is the fp32 ONNX; .* use --precision fp32 or fp16 with this file"),
     ("e2e", "11.0.0", "fp16", r"TensorRT 11\.0\.0 builds fp16 engines from the fp16 ONNX: use --precision fp32 ")],
)  # fmt: skip
def test_a_precision_the_file_cannot_build_is_one_line(artifacts, tmp_path, monkeypatch, capsys, key, version,
                                                       precision, message) -> None:  # fmt: skip
    fakes(monkeypatch, version)
    code = export("--trt", "--model", str(artifacts[key]), "--precision", precision, "--engines-dir", str(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not list(tmp_path.glob("*.engine"))


def test_what_the_onnx_route_refuses(artifacts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    fakes(monkeypatch)
    u8 = tmp_path / "m.int8u8.end2end.onnx"  # the CPU-only INT8 (uint8 activations): its metadata says so
    model = onnx.load(artifacts["int8"])
    for p in model.metadata_props:
        if p.key == "mfssd":
            p.value = json.dumps({**json.loads(p.value), "precision": "int8-qdq-u8"})
    onnx.save(model, u8)
    bare = tmp_path / "foreign.onnx"
    del model.metadata_props[:]
    onnx.save(model, bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    cases = [
        (["--model", str(artifacts["int8"]), "--trt", "--int8", "--calib", "x"],
         r"--int8, --calib: m\.int8\.end2end\.onnx is already exported, and these options shape an export"),
        (["--model", str(artifacts["e2e"])], r"already exported: add --trt to build its TensorRT engine here"),
        (["--model", str(artifacts["e2e"]), "--trt", "--out-dir", "x"],
         r"--out-dir: m\.end2end\.onnx is already exported, .* engines go to --engines-dir"),
        (["--model", str(u8), "--trt", "--precision", "int8"], r"CPU-only INT8 model .* TensorRT cannot load"),
        (["--model", str(bare), "--trt"], r"foreign\.onnx has no 'mfssd' metadata \(not exported by mfssd-export\)"),
        (["--model", str(junk), "--trt"], r"junk\.onnx is not a readable ONNX file"),
        (["--model", str(tmp_path / "missing.onnx"), "--trt"], r"model not found: .*missing\.onnx"),
    ]  # fmt: skip
    for argv, message in cases:
        code = export(*argv, "--engines-dir", str(tmp_path / "e"))
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and re.search(message, err), (argv, err)
    assert not (tmp_path / "e").exists()


def test_build_and_run_from_onnx_where_torch_cannot_be_imported(artifacts: dict[str, Path], tmp_path: Path) -> None:
    """The Jetson path end to end in a fresh interpreter without torch: mfssd-export --trt from the INT8 end2end
    ONNX, then the Detector on the engine (CUDA-bindings buffers, picked because torch is missing); a raw
    engine is refused in one line there."""
    engines = tmp_path / "e"
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    code = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fake_cuda import FakeCuda
        from fake_tensorrt import add_fake_runtime, make_fake_tensorrt
        cuda = FakeCuda()
        sys.modules.update(cuda.modules())
        trt = make_fake_tensorrt("10.3.0")
        add_fake_runtime(trt, {str(artifacts["int8"])!r}, "end2end", current_device=cuda.current_device,
                         device_capability=lambda i: cuda.devices[i][1], enqueue=cuda.enqueue,
                         check_memory=cuda.check_memory)
        sys.modules["tensorrt"] = trt
        from mfssd_deploy.cli import run_cli
        from mfssd_deploy.cli.export import main
        for model, precision in (({str(artifacts["int8"])!r}, "int8"), ({str(artifacts["raw"])!r}, "fp32")):
            code = run_cli("mfssd-export", main, ["--trt", "--model", model, "--precision", precision,
                                                  "--batch-profile", "1,2,4", "--engines-dir", {str(engines)!r}])
            assert code == 0, code
        from mfssd_deploy import Detector
        from mfssd_deploy.errors import MissingExtraError
        det = Detector({str(engines / "m.end2end.int8.engine")!r}, device="cuda", batch_size=4)
        results = det({paths!r})
        try:
            Detector({str(engines / "m.raw.fp32.engine")!r}, device="cuda")
        except MissingExtraError as exc:
            print("RAW:", exc)
        print("BUFFERS:", det.backend.buffers, "TORCH:", "torch" in sys.modules)
        print("RESULTS:", json.dumps([[r.boxes.tolist(), r.scores.tolist(), r.labels.tolist()] for r in results]))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines() if ":" in ln}
    assert lines["BUFFERS"] == "cuda TORCH: False"
    assert "raw engine, whose decode + NMS run with torch on the GPU: build an end2end engine" in lines["RAW"]
    assert 'pip install "mfssd-deploy[torch]"' in lines["RAW"]
    meta = json.loads((engines / "m.end2end.int8.engine.json").read_text())
    assert meta["gpu_name"] == "Orin" and meta["compute_capability"] == [8, 7]  # found by the CUDA bindings
    got = json.loads(lines["RESULTS"])
    ref = Detector(artifacts["int8"])(paths)  # ONNX Runtime on the same file, in this process
    assert [len(g[1]) for g in got] == [len(x) for x in ref] and sum(len(x) for x in ref) > 0
    for (boxes, scores, labels), want in zip(got, ref, strict=True):
        assert np.allclose(boxes, want.boxes, atol=1e-3) and np.allclose(scores, want.scores, atol=1e-6)
        assert labels == want.labels.tolist()


def test_lean_install_names_the_lean_extra(artifacts: dict[str, Path], tmp_path: Path) -> None:
    """In the lean install (no onnx, tensorrt, torch...), the ONNX route names [trt-lean], not [export]."""
    from test_lean_import import run_lean

    r = run_lean(
        f"""
        import sys
        from mfssd_deploy.cli import run_cli
        from mfssd_deploy.cli.export import main
        sys.exit(run_cli("mfssd-export", main, ["--trt", "--model", {str(artifacts["int8"])!r},
                                                "--engines-dir", {str(tmp_path / "e")!r}]))
        """
    )
    line = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in line and "Traceback" not in line, r.stderr
    assert line.startswith("mfssd-export: error: ") and 'pip install "mfssd-deploy[trt-lean]"' in line, line
    assert not (tmp_path / "e").exists()
