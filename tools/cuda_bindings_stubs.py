"""Type stubs for the part of NVIDIA's cuda-bindings that mfssd-deploy calls, generated from the installed package.

`cuda.bindings.runtime` is a compiled Cython module without .pyi files or py.typed, so mypy cannot see its API.
Cython embeds each function's signature in the first line of its docstring ("cudaMalloc(size_t size)") and
lists what it returns under "Returns" (a cudaError_t, then each output "name : type"); this script turns that
into typed stubs for the names in NAMES: functions return tuple[cudaError_t, ...], C integer parameters are
int, enum classes are IntEnums with their real members, struct classes carry their real attributes.

    python tools/cuda_bindings_stubs.py            # writes typings/cuda/bindings/{__init__,runtime}.pyi
    python tools/cuda_bindings_stubs.py --check    # exit 1 if the committed stubs differ from the package's

mypy reads typings/ (pyproject.toml, mypy_path); tests/test_cuda_stubs.py regenerates them and compares.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "typings" / "cuda" / "bindings"
# Every cuda.bindings.runtime name mfssd_deploy uses (mypy flags a use of any other: add it here).
NAMES = (
    "cudaDeviceProp", "cudaDriverGetVersion", "cudaError_t", "cudaEventCreateWithFlags", "cudaEventDestroy",
    "cudaEventDisableTiming", "cudaEventRecord", "cudaEventSynchronize", "cudaEvent_t", "cudaFree", "cudaFreeHost",
    "cudaGetDevice", "cudaGetDeviceCount", "cudaGetDeviceProperties", "cudaGetErrorName", "cudaMalloc",
    "cudaMallocHost", "cudaMemcpyAsync", "cudaMemcpyKind", "cudaRuntimeGetVersion", "cudaSetDevice",
    "cudaStreamCreateWithFlags", "cudaStreamDestroy", "cudaStreamNonBlocking", "cudaStreamSynchronize",
    "cudaStream_t",
)  # fmt: skip
C_INTEGERS = {"int", "unsigned int", "size_t", "long", "unsigned long", "long long", "unsigned long long"}


def _type(text: str, known: set[str]) -> str:
    """A docstring type ("int", "bytes", ":py:obj:`~.cudaStream_t`", "Any") as a stub annotation."""
    text = text.strip()
    m = re.fullmatch(r":py:obj:`~?\.?(\w+)`", text)
    name = m.group(1) if m else text.split(".")[0]
    if name in known:
        return name
    return {"int": "int", "bytes": "bytes", "float": "float", "bool": "bool", "str": "str"}.get(name, "Any")


def _params(line: str, fname: str, known: set[str]) -> list[str]:
    inner = line[len(fname) + 1 : line.rindex(")")]
    out = []
    for raw in (p.strip() for p in inner.split(",") if p.strip()):
        if ":" in raw:  # "kind: cudaMemcpyKind"
            name, ann = (s.strip() for s in raw.split(":", 1))
            out.append(f"{name}: {_type(ann, known)}")
            continue
        words = raw.split()
        name = words[-1]
        ctype = " ".join(words[:-1])
        out.append(f"{name}: {'int' if ctype in C_INTEGERS else 'Any'}")
    return out


def _returns(doc: str, known: set[str]) -> list[str]:
    """The tuple items of the "Returns" section: cudaError_t first, then each output's type."""
    lines = doc.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "Returns" and lines[i + 1].startswith("---"))
    except StopIteration:
        raise SystemExit(f"no Returns section in: {lines[0]}") from None
    items = []
    for i in range(start + 2, len(lines)):
        ln = lines[i]
        if i + 1 < len(lines) and lines[i + 1].startswith("---"):
            break  # the next section
        if not ln or ln.startswith(" "):
            continue
        items.append(_type(ln.split(" : ", 1)[1], known) if " : " in ln else _type(ln, known))
    if not items or items[0] != "cudaError_t":
        raise SystemExit(f"unexpected Returns section in {lines[0]}: {items}")
    return items


def _function(name: str, obj: Any, known: set[str]) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.splitlines()[0] if doc else ""
    if not first.startswith(f"{name}("):
        raise SystemExit(f"{name}: no embedded signature in its docstring")
    params = ", ".join(_params(first, name, known))
    return f"def {name}({params}) -> tuple[{', '.join(_returns(doc, known))}]: ..."


def _class(name: str, cls: type, known: set[str]) -> str:
    if issubclass(cls, int):  # an IntEnum, or cuda.bindings' FastEnum (an int subclass with iterable members)
        members = "\n".join(f"    {m.name} = {int(m.value)}" for m in cls)  # type: ignore[attr-defined]
        return f"class {name}(IntEnum):\n{members}"
    body = ["    def __init__(self, *args: Any, **kwargs: Any) -> None: ..."]
    if hasattr(cls, "__int__"):
        body.append("    def __int__(self) -> int: ...")
    instance = cls()
    for attr in sorted(a for a in dir(cls) if not a.startswith("_")):
        value = getattr(instance, attr)
        if callable(value):
            body.append(
                f"    def {attr}(self) -> int: ..." if attr == "getPtr" else f"    def {attr}(self) -> Any: ..."
            )
            continue
        ann = {int: "int", bytes: "bytes", float: "float", bool: "bool", list: "list[Any]"}.get(type(value), "Any")
        body.append(f"    {attr}: {ann}")
    return f"class {name}:\n" + "\n".join(body)


def generate() -> dict[str, str]:
    """File name -> text of the stubs for the installed cuda-bindings."""
    import cuda.bindings
    from cuda.bindings import runtime

    version = str(cuda.bindings.__version__)
    known = {n for n in NAMES if inspect.isclass(getattr(runtime, n))}
    header = (
        f"# Generated by tools/cuda_bindings_stubs.py from cuda-bindings {version}: the names mfssd_deploy uses.\n"
        "# Do not edit: regenerate (tests/test_cuda_stubs.py compares it with the installed package).\n"
    )
    parts = []
    for name in sorted(NAMES, key=lambda n: (not inspect.isclass(getattr(runtime, n)), n)):
        obj = getattr(runtime, name)
        if inspect.isclass(obj):
            parts.append(_class(name, obj, known))
        elif isinstance(obj, int):
            parts.append(f"{name}: int")
        elif callable(obj):
            parts.append(_function(name, obj, known))
        else:
            raise SystemExit(f"{name}: neither a class, an int nor a function ({type(obj)})")
    runtime_pyi = header + "from enum import IntEnum\nfrom typing import Any\n\n" + "\n\n".join(parts) + "\n"
    return {"__init__.pyi": header + "__version__: str\n", "runtime.pyi": runtime_pyi}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed stubs instead of writing")
    args = ap.parse_args(argv)
    stubs = generate()
    if args.check:
        stale = [n for n, text in stubs.items() if not (OUT / n).is_file() or (OUT / n).read_text() != text]
        for n in stale:
            print(f"typings/cuda/bindings/{n} differs from the installed cuda-bindings: regenerate it", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for n, text in stubs.items():
        (OUT / n).write_text(text)
    print(f"wrote {', '.join(stubs)} to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
