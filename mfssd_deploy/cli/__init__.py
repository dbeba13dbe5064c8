"""Console scripts. Each `main` goes through `run_cli`: user errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mfssd_deploy.errors import MfssdError


def run_cli(prog: str, main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    try:
        code = main(argv)
    except MfssdError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
