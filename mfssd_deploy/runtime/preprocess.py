"""The pre-processing and its inverse, re-exported for the runtime: they live in mfssd_deploy.geometry,
the one owner of a model's geometry (below the runtime, which builds on it)."""

from mfssd_deploy.geometry import preprocess_batch, scale_to_image

__all__ = ["preprocess_batch", "scale_to_image"]
