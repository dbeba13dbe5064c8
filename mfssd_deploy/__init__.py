"""mfssd-deploy: the MFSSD small-object detector from PyTorch checkpoint to deployed inference.

Importing this package never imports torch: the lean runtime (numpy, OpenCV, ONNX Runtime) must
work on machines without it. Torch-using parts are imported lazily by the modules that need them.
"""

from mfssd_deploy.errors import MfssdError, MissingExtraError

__version__ = "0.1.0"

__all__ = ["MfssdError", "MissingExtraError", "__version__"]
