from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from mfssd_deploy.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from mfssd_deploy.config import make_config
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_model


def one_line(exc: pytest.ExceptionInfo[MfssdError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def narrow() -> torch.nn.Module:
    return build_model("mfssd_bn", num_classes=5, width=0.125)


def test_round_trip_is_exact(tmp_path: Path, narrow: torch.nn.Module) -> None:
    # Non-default BN statistics so the test sees buffers as well as parameters.
    narrow.backbone.conv1_1.bn.running_mean.uniform_()
    path = save_checkpoint(tmp_path / "m.pt", narrow, meta={"epoch": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["meta"] == {"epoch": 3}
    loaded = load_model(path)
    assert not loaded.training
    x = torch.randn(1, 3, 300, 300)
    narrow.eval()
    with torch.no_grad():
        for a, b in zip(narrow(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loaded.config == narrow.config


def test_other_class_count_names_layer_and_shapes(tmp_path: Path, narrow: torch.nn.Module) -> None:
    path = save_checkpoint(tmp_path / "m.pt", narrow)
    with pytest.raises(MfssdError) as exc:
        load_model(path, config=make_config("mfssd_bn", num_classes=21, width=0.125))
    msg = one_line(exc)
    assert "head.conf.0.weight" in msg and "[30, 64, 3, 3]" in msg and "[126, 64, 3, 3]" in msg
    assert "class count" in msg


def test_other_widths_names_layer_and_shapes(tmp_path: Path, narrow: torch.nn.Module) -> None:
    path = save_checkpoint(tmp_path / "m.pt", narrow)
    with pytest.raises(MfssdError) as exc:
        load_model(path, config=make_config("mfssd_bn", num_classes=5, width=0.25))
    msg = one_line(exc)
    assert "backbone.conv1_1.conv.weight" in msg and "[8, 3, 3, 3]" in msg and "[16, 3, 3, 3]" in msg


def test_other_variant(tmp_path: Path, narrow: torch.nn.Module) -> None:
    path = save_checkpoint(tmp_path / "m.pt", narrow)
    with pytest.raises(MfssdError, match="another model variant"):
        load_model(path, config=make_config("mfssd", num_classes=5, width=0.125))


def test_missing_corrupt_and_foreign_files(tmp_path: Path, narrow: torch.nn.Module) -> None:
    with pytest.raises(MfssdError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "m.pt", narrow)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(MfssdError, match="corrupt or truncated") as exc:
        read_checkpoint(truncated)
    one_line(exc)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(MfssdError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(text)
    bare = tmp_path / "bare.pt"
    torch.save(narrow.state_dict(), bare)
    with pytest.raises(MfssdError, match="not an mfssd checkpoint"):
        read_checkpoint(bare)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned > /dev/null",))


def test_a_checkpoint_cannot_run_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "config": {}, "state_dict": {}, "x": _Evil()}, path)
    with pytest.raises(MfssdError, match="refused for safety") as exc:
        read_checkpoint(path)
    one_line(exc)
    assert isinstance(exc.value.__cause__, pickle.UnpicklingError)


def test_write_is_atomic(tmp_path: Path, narrow: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "m.pt", narrow)
    before = path.read_bytes()

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, build_model("mfssd_bn", num_classes=5, width=0.25))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
