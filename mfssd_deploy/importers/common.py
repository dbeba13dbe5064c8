"""What every checkpoint source shares: the class count read off a head, and a key-for-key mapping
that names what is missing or unexpected instead of loading a partial model."""

from __future__ import annotations

from typing import Any

from mfssd_deploy.errors import MfssdError


def head_classes(state: dict[str, Any], key: str, anchors: int) -> int:
    """Classes (background included) from a classification head's output channels (anchors x K)."""
    if key not in state:
        raise MfssdError(f"no {key} in the state_dict: not the classification head this source has")
    out = int(state[key].shape[0])
    if out % anchors:
        raise MfssdError(f"{key} has {out} channels, not {anchors} anchors x K")
    return out // anchors


def mapped(state: dict[str, Any], mapping: dict[str, str], what: str, k: int,
           class_names: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """`state` under our key names; refused unless it holds exactly the mapped keys and one name per class."""
    missing = [n for n in mapping if n not in state]
    unexpected = [n for n in state if n not in mapping]
    if missing or unexpected:
        raise MfssdError(f"not a {what} state_dict: missing {missing[:3]}, unexpected {unexpected[:3]} "
                         f"({len(missing)} and {len(unexpected)} in all)")  # fmt: skip
    if len(class_names) != k - 1:
        raise MfssdError(f"the head has {k - 1} classes but {len(class_names)} names were given; give one name per "
                         "class (--classes FILE), background excluded")  # fmt: skip
    return {mapping[n]: v for n, v in state.items()}
