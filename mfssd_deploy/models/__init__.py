"""The model family, built from explicit channel lists (see mfssd_deploy.config)."""

from __future__ import annotations

from torch import nn

from mfssd_deploy.config import ModelConfig, make_config
from mfssd_deploy.models.fssd import FSSD
from mfssd_deploy.models.layers import init_weights
from mfssd_deploy.models.mfssd import MFSSD
from mfssd_deploy.models.ssd import SSD300

_CLASSES: dict[str, type[nn.Module]] = {"ssd300": SSD300, "fssd": FSSD, "mfssd": MFSSD, "mfssd_bn": MFSSD}


def config_of(model: nn.Module) -> ModelConfig:
    """The ModelConfig a model was built from (every model of build_model carries one)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"{type(model).__name__} was not built by build_model: it has no ModelConfig")
    return cfg


def build_from_config(config: ModelConfig) -> nn.Module:
    config.validate()
    model = _CLASSES[config.variant](config)
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
