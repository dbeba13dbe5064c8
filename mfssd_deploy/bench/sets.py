"""Which configurations are loaded and timed together: memory-bounded sets that keep every ratio interleaved.

Loading all 49 configurations of `mfssd-bench --fps --val` at once peaked at 15 GB (every full-size
session holds its weights, prepacked copies and batch-8 activations). A ratio is only as good as the
interleaving of its two rows, not of the whole table, so the run loads one set at a time, times it
round by round, and releases it. A set holds, for one device and one model and its pruned twin (demo
and demo-pruned, full and full-pruned), one family of artifacts (`families`). That keeps together each precision
ratio (INT8, u8, bf16 against FP32 of the same layout and runtime) and each pruning ratio (pruned
against unpruned, same kind); the runtime ratio (the same INT8 file in OpenVINO and ONNX Runtime)
gets a small set of its own, and torchvision's model on the `torchvision-import` weights joins every
set of that group. The peers of the full-size targets are timed afterwards, beside the best full-size
row of each batch (run._peer_set). A configuration in two sets is timed in both: the table shows its
first set's timing, each ratio the timing of the set that holds both of its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfssd_deploy.artifacts import ONNX_PRECISIONS
from mfssd_deploy.bench.torchvision_pair import GROUP as TV_GROUP
from mfssd_deploy.bench.torchvision_pair import PEER as TV_PEER
from mfssd_deploy.runtime.backends import REGISTRY, RUNTIMES, base_runtime

Spec = dict[str, Any]


def families(spec: Spec) -> tuple[str, ...]:
    """The artifact families a detector spec is timed in: eager; raw ONNX per runtime; end2end ONNX per runtime
    and reduced precision (bf16, INT8 s8, INT8 u8), each beside the FP32 file it is read against (timed in each
    of them). Measured on the full-size models at batch 8 (2 cores, Intel Xeon): a set of 6 end2end files in
    ONNX Runtime held 3.3 GB and grew to 4.6 GB while timed; sets of 4 stay under 4 GB."""
    fmt, runtime = spec["format"], spec.get("runtime") or ""
    if fmt == "eager":
        return ("eager",)
    hint = RUNTIMES[runtime][1].hint if runtime else None
    base = base_runtime(runtime) if runtime else ""
    if fmt.endswith("-raw"):
        return (f"raw {base}".strip(),)
    if hint:
        return (f"e2e {base} {hint}",)
    if fmt != "fp32-e2e":
        return (f"e2e {base} {fmt.removesuffix('-e2e')}".strip(),)
    # the FP32 file is read against by every reduced precision timed in its backend: the benched ONNX precisions
    # and the hints of the backend's other runtimes (bf16 in OpenVINO)
    backend = RUNTIMES[runtime][0] if runtime else ""
    hints = tuple(r.hint for r in REGISTRY[backend].cpu_runtimes if r.hint) if backend else ()
    reduced = (*hints, *(p.short for p in ONNX_PRECISIONS.values() if p.bench and p.builder)) if base else ()
    return tuple(f"e2e {base} {p}" for p in reduced) or (f"e2e {base}".strip(),)


def _keys(spec: Spec) -> list[tuple[str, ...]]:
    device = spec.get("device", "cpu")
    if spec.get("weights") == "as given":  # files named on the command line: few, paired by file name
        return [(device, "given")]
    if device != "cpu":  # a GPU's memory holds the engines; host memory stays small
        return [(device, "all")]
    return [(device, spec["group"].removesuffix("-pruned"), f) for f in families(spec)]


def is_target_peer(spec: Spec) -> bool:
    """A peer of the full-size targets (timed beside the best row, run._peer_set), not of a set below."""
    return spec["kind"] == "peer" and spec.get("peer") != TV_PEER


def timing_sets(specs: Sequence[Spec]) -> list[list[int]]:
    """Indices into `specs`, one list per set, in order; the target peers are left out."""
    sets: dict[tuple[str, ...], list[int]] = {}
    runtime_sets: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(specs):
        if s["kind"] != "detector":
            continue
        keys = _keys(s)
        for key in keys:
            sets.setdefault(key, []).append(i)
        if s["format"] == "int8-e2e" and len(keys[0]) == 3:  # the runtime ratio: the same INT8 file in each runtime
            runtime_sets.setdefault(keys[0][:2], []).append(i)
    out = list(sets.values())
    out += [idx for idx in runtime_sets.values() if len({specs[i].get("runtime") for i in idx}) > 1]
    for p, peer in enumerate(specs):  # torchvision on the same weights: in every set of that group on its device
        if peer["kind"] != "peer" or peer.get("peer") != TV_PEER:
            continue
        dev = peer.get("device", "cpu")
        hits = [
            idx
            for idx in out
            if any(specs[i].get("group") == TV_GROUP and specs[i].get("device", "cpu") == dev for i in idx)
        ]
        if not hits:  # the group's rows were not asked for: the peer alone
            hits = [[]]
            out.append(hits[0])
        for idx in hits:
            idx.append(p)
    return out
