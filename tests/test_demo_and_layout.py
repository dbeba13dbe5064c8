from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mfssd_deploy import demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_the_paper_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--repeats", "1", "--table-only"]) == 0
    out = capsys.readouterr().out
    for line in (
        "| SSD300 | 26,285,486 | 100.3 | 31.37 | 8,732 |",
        "| FSSD | 34,132,960 | 130.2 | 38.06 | 11,620 |",
        "| MFSSD | 33,709,664 | 128.6 | 39.52 | 11,620 |",  # the paper: 128.6 MB
        "| MFSSD-BN | 33,713,888 | 128.6 | 39.52 | 11,620 |",
    ):
        assert line in out
    assert "MFSSD-BN forward, batch 1" in out


def test_demo_bad_flag_exits_non_zero() -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--repeats", "many"])
    assert exc.value.code == 2


@pytest.mark.parametrize("folder", ["export", "engines"])
def test_output_folders_keep_only_their_readme(folder: str) -> None:
    assert (ROOT / folder / "README.md").is_file()
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"{folder}/model.onnx"], cwd=ROOT, capture_output=True
    ).returncode
    kept = subprocess.run(["git", "check-ignore", "-q", f"{folder}/README.md"], cwd=ROOT).returncode
    assert ignored == 0 and kept == 1


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci
