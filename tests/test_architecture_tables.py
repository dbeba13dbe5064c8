"""docs/architecture.md's "How to add ..." section, held to the tables it names: a listed file that
does not exist, a table entry whose file is missing, or a layout the datasets guide leaves out fails."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mfssd_deploy"


def how_to_add() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## How to add ...", 1)[1]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| (an? [^|]+?) \| (.+?) \| (.+?) \|$", line)
        if m:
            rows[m.group(1)] = re.findall(r"`([\w/]+\.py)`", m.group(2))
    return rows


def test_every_listed_file_exists() -> None:
    rows = how_to_add()
    assert set(rows) == {
        "a backend",
        "a dataset layout",
        "a metric",
        "an ONNX precision",
        "a model variant",
        "a checkpoint source",
    }
    for what, files in rows.items():
        assert files, what
        for f in files:
            if "NAME" not in f:
                assert (PKG / f).is_file(), (what, f)


def test_tables_match_their_files() -> None:
    from mfssd_deploy.config import BASE_WIDTHS, VARIANTS
    from mfssd_deploy.data.sources import LAYOUTS
    from mfssd_deploy.runtime.backends import REGISTRY

    for name, entry in REGISTRY.items():
        assert (PKG / "runtime" / "backends" / f"{entry.module}.py").is_file(), name
    for name in LAYOUTS:
        assert name in ("coco", "voc") or (PKG / "data" / f"{name}.py").is_file(), name
        assert f"| `{name}` |" in (ROOT / "docs" / "datasets.md").read_text(), name
    assert set(VARIANTS) == set(BASE_WIDTHS)
    from mfssd_deploy.config import VARIANT_TABLE

    for name, v in VARIANT_TABLE.items():
        module, cls = v.model.split(":")
        assert f"class {cls}(" in (PKG / "models" / f"{module}.py").read_text(), name
        assert v.arch in VARIANTS and set(v.widths) == set(BASE_WIDTHS[v.arch]), name
    from mfssd_deploy.importers import SOURCES

    for name, module in SOURCES.items():
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), name


def test_every_precision_is_one_entry() -> None:
    """Each ONNX_PRECISIONS entry's builder exists, its switch is an ExportRequest field and an mfssd-export
    flag, and its bench format is a KINDS row: nothing else has to be edited for a precision to be exported,
    named, loaded and benched."""
    import dataclasses
    import importlib

    from mfssd_deploy.artifacts import KINDS, ONNX_PRECISIONS
    from mfssd_deploy.bench.suite import FORMATS
    from mfssd_deploy.cli.export import build_parser
    from mfssd_deploy.exporters.pipeline import ExportRequest

    fields = {f.name for f in dataclasses.fields(ExportRequest)}
    flags = build_parser().format_help()
    for name, p in ONNX_PRECISIONS.items():
        assert p.field in fields, name
        if p.builder:
            module, func = p.builder.split(":")
            assert callable(getattr(importlib.import_module(f"mfssd_deploy.exporters.{module}"), func)), name
        if p.help:
            assert f"--{p.field.replace('_', '-')} " in flags, name
        assert f"{p.short}-e2e" in KINDS and f"{p.short}-raw" in KINDS, name
        assert (f"{p.short}-e2e" in FORMATS) == p.bench, name
