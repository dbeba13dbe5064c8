"""Model facts beside speed: parameters and GFLOPs of the architecture an artifact was exported from."""

from __future__ import annotations

import json
from functools import lru_cache

from mfssd_deploy.config import ModelConfig


@lru_cache(maxsize=32)
def _complexity(config_json: str) -> tuple[int, float]:
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_from_config

    cfg = ModelConfig.from_dict(json.loads(config_json))
    c = measure(build_from_config(cfg), cfg.input_wh)
    return c.params, c.gflops


def model_facts(cfg: ModelConfig) -> tuple[int, float]:
    """Parameters and GFLOPs (2 x multiply-adds) per image at the config's input size (a native-resolution
    export: the whole frame), measured on the model the config builds."""
    return _complexity(json.dumps(cfg.to_dict(), sort_keys=True))
