"""Make tensorrt-stubs parseable: a few generated signatures name a parameter `in` (a Python
keyword), and one puts a parameter without a default after defaulted ones.

The stubs (PyPI tensorrt-stubs, TensorRT 10.13 API) are generated from pybind11 docstrings; mypy
stops at the syntax error and checks nothing. Renaming the parameter to `in_` changes no type.
Idempotent; run by the Makefile after installing the stubs.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    stub = Path(sysconfig.get_paths()["purelib"]) / "tensorrt_bindings" / "tensorrt.pyi"
    if not stub.is_file():
        print(f"tensorrt-stubs not installed ({stub} missing)", file=sys.stderr)
        return 1
    text = stub.read_text()
    fixed, n = re.subn(r"(?<=[(,] )in(?=: )", "in_", text)
    fixed, m = re.subn(r"(power: Weights = None, channel_axis: int)\)", r"\1 = ...)", fixed)
    if n or m:
        stub.write_text(fixed)
    print(f"tensorrt-stubs: renamed {n} parameters named 'in', fixed {m} parameter orders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
