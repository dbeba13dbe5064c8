"""The model family, built from explicit channel lists: each variant's class is named by its entry in
mfssd_deploy.config.VARIANT_TABLE (beside its widths, prior set and feature-map arithmetic, which every
artifact reader validates configs against without torch)."""

from __future__ import annotations

import importlib

from torch import nn

from mfssd_deploy.config import VARIANT_TABLE, ModelConfig, make_config
from mfssd_deploy.models.fssd import FSSD
from mfssd_deploy.models.layers import init_weights
from mfssd_deploy.models.mfssd import MFSSD
from mfssd_deploy.models.ssd import SSD300


def config_of(model: nn.Module) -> ModelConfig:
    """The ModelConfig a model was built from (every model of build_model carries one)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"{type(model).__name__} was not built by build_model: it has no ModelConfig")
    return cfg


def build_from_config(config: ModelConfig) -> nn.Module:
    config.validate()
    module, cls = VARIANT_TABLE[config.variant].model.split(":")
    model: nn.Module = getattr(importlib.import_module(f"mfssd_deploy.models.{module}"), cls)(config)
    init_weights(model)
    return model


def build_model(
    variant: str = "mfssd_bn",
    num_classes: int = 21,
    *,
    width: float = 1.0,
    widths: dict[str, int] | None = None,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> nn.Module:
    """A freshly initialised model. `width` scales every layer; `widths` sets each layer (pruned models).

    forward(images [B,3,H,W]) -> (loc [B,P,4], conf logits [B,P,num_classes]).
    """
    return build_from_config(make_config(variant, num_classes, class_names, width, widths))


__all__ = ["FSSD", "MFSSD", "SSD300", "build_from_config", "build_model", "config_of"]
