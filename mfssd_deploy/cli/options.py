"""Argument groups shared by the console scripts, and their reading back into the library's dataclasses.

The way Polygraphy shares its argument groups: a setting that two commands take (the TensorRT engine
options of mfssd-export and mfssd-bench, the checkpoint, the device, the JSON file) is spelled, defaulted
and documented once, here, and read back once into what the library takes (`EngineOptions`, a path).
Nothing here imports more than argparse at module level (the defaults and the runtime rule are read from the
library's dataclasses and registries when a parser is built): a lean install builds every parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    from mfssd_deploy.exporters.deploy import EngineOptions

Parser = argparse.ArgumentParser | argparse._ArgumentGroup
ENGINE_OPTIONS = ("precision", "batch_profile", "workspace", "timing_cache", "dla_core", "engines_dir")


def runtime_rule() -> str:
    """Which runtime runs a model file, for every command's --model help: said by runtime.backends, which
    applies the rule (default_backend), so the help cannot drift from it."""
    from mfssd_deploy.runtime.backends import rule_text

    return rule_text()


class _DeprecatedAlias(argparse.Action):
    """An old spelling that still works (users' scripts keep running) and says, in one line, what replaced it."""

    def __init__(self, option_strings: Sequence[str], dest: str, replaced_by: str = "", **kwargs: Any) -> None:
        self.replaced_by = replaced_by
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"{parser.prog}: note: {option_string} is deprecated: use {self.replaced_by}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: Parser, old: str, new: argparse.Action) -> None:
    """`old` as a hidden alias of the option `new` (same destination and type, not in --help)."""
    spelling = f"{new.option_strings[0]} {new.metavar or ''}".strip()
    parser.add_argument(old, dest=new.dest, type=new.type or str, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                        action=_DeprecatedAlias, replaced_by=spelling)  # fmt: skip


def add_model_option(parser: Parser) -> None:
    """--model: the checkpoint a command starts from (mfssd-export, mfssd-demo)."""
    parser.add_argument("--model", help="checkpoint (default: the bundled demo model)")


def checkpoint_path(args: argparse.Namespace) -> Path:
    from mfssd_deploy.demo_assets import demo_model

    return Path(args.model) if args.model else demo_model()


def add_device_option(parser: Parser, text: str, choices: Sequence[str] = ("auto", "cpu", "cuda"),
                      default: str = "auto") -> None:  # fmt: skip
    """--device: where a command runs its models (mfssd-bench: auto adds GPU rows when a GPU is visible)."""
    parser.add_argument("--device", default=default, choices=tuple(choices), help=text)


def add_json_option(parser: Parser, what: str) -> None:
    """--json FILE: every command that reports writes its report there (the contracts of docs/architecture.md)."""
    parser.add_argument("--json", help=f"write {what} to this file")


def add_engine_options(parser: Parser, which: Sequence[str] = ENGINE_OPTIONS,
                       timing_cache_default: str = "ENGINES_DIR/timing.trtVERSION.GPU.smXY.cache") -> None:  # fmt: skip
    """How TensorRT engines are built: the options of `which` (names in ENGINE_OPTIONS), in that order.

    mfssd-export takes them all; mfssd-bench, whose engine precision comes from --formats, whose profile
    comes from --batch-sizes and whose engines live in --cache, takes the builder settings only.
    """
    from mfssd_deploy.artifacts import ENGINE_PRECISIONS
    from mfssd_deploy.exporters.deploy import EngineOptions

    unknown = set(which) - set(ENGINE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown engine options {sorted(unknown)}")
    d = EngineOptions()  # the defaults live in the dataclass the options are read back into
    for name in which:
        if name == "precision":
            parser.add_argument("--precision", default=d.precision, choices=list(ENGINE_PRECISIONS),
                                help="engine precision (default %(default)s; on GTX 10xx Pascal use int8: FP16 is not "
                                "faster there)")  # fmt: skip
        elif name == "batch_profile":
            new = parser.add_argument("--batch-profile", default=",".join(map(str, d.batch)), metavar="MIN,OPT,MAX",
                                      help="optimization profile MIN,OPT,MAX of the batch axis")  # fmt: skip
            add_deprecated_alias(parser, "--batch", new)
        elif name == "workspace":
            parser.add_argument("--workspace", type=float, default=d.workspace_gb,
                                help="builder workspace in GiB (default %(default)g)")  # fmt: skip
        elif name == "timing_cache":
            text = f"timing cache file, read and updated (default: {timing_cache_default})"
            parser.add_argument("--timing-cache", help=text)
        elif name == "dla_core":
            parser.add_argument("--dla-core", type=int,
                                help="build for this DLA core (Jetson Xavier/Orin), GPU fallback on")  # fmt: skip
        else:
            parser.add_argument("--engines-dir", default=str(d.engines_dir),
                                help="engine output folder (default: %(default)s/)")  # fmt: skip


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise MfssdError(f"--batch-profile {text!r}: give MIN,OPT,MAX, e.g. 1,8,16") from None
    if not 1 <= lo <= opt <= hi:
        raise MfssdError(f"--batch-profile {text}: need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options a parser of add_engine_options read; the ones it did not add keep their defaults."""
    from mfssd_deploy.exporters.deploy import EngineOptions

    kw: dict[str, Any] = {}
    if getattr(args, "precision", None) is not None:
        kw["precision"] = args.precision
    if getattr(args, "batch_profile", None) is not None:
        kw["batch"] = parse_batch_profile(args.batch_profile)
    if getattr(args, "workspace", None) is not None:
        kw["workspace_gb"] = args.workspace
    if getattr(args, "timing_cache", None):
        kw["timing_cache"] = Path(args.timing_cache)
    if getattr(args, "dla_core", None) is not None:
        kw["dla_core"] = args.dla_core
    if getattr(args, "engines_dir", None) is not None:
        kw["engines_dir"] = Path(args.engines_dir)
    return EngineOptions(**kw)


class DataArgs:
    """How a dataset folder is read: --format (one of data.sources.LAYOUTS, found from the folder unless
    given) and --classes (a VOC folder's class list). Shared by every command that takes a dataset."""

    @staticmethod
    def add(ap: Parser) -> None:
        from mfssd_deploy.data.sources import LAYOUTS

        group = ap.add_argument_group("dataset layout") if isinstance(ap, argparse.ArgumentParser) else ap
        group.add_argument("--format", choices=list(LAYOUTS),
                           help="the dataset's layout (default: found from the folder; "
                           + "; ".join(f"{k}: {v.looks_like}" for k, v in LAYOUTS.items()) + ")")  # fmt: skip
        group.add_argument("--classes", help="a VOC folder's class list ('voc' or a text file, one name per line; "
                           "also the names of a VisDrone-layout set's categories 1..N) "
                           "(default: classes.txt/labels.txt beside the annotations, VOC's 20 for VOC2007/VOC2012, "
                           "else the names in the XML files, sorted); classes are always matched by name")  # fmt: skip
