"""mfssd-deploy: the MFSSD small-object detector from PyTorch checkpoint to deployed inference.

Importing this package never imports torch: the lean runtime (numpy, OpenCV, ONNX Runtime) must
work on machines without it. Torch-using parts are imported lazily by the modules that need them.
"""

from typing import TYPE_CHECKING, Any

from mfssd_deploy.errors import MfssdError, MissingExtraError

if TYPE_CHECKING:
    from mfssd_deploy.runtime.detector import Detector
    from mfssd_deploy.runtime.results import Result

__version__ = "0.1.0"

__all__ = ["Detector", "MfssdError", "MissingExtraError", "Result", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import mfssd_deploy` stays cheap; the Detector pulls in numpy, OpenCV and ONNX Runtime.
    if name == "Detector":
        from mfssd_deploy.runtime.detector import Detector

        return Detector
    if name == "Result":
        from mfssd_deploy.runtime.results import Result

        return Result
    raise AttributeError(f"module 'mfssd_deploy' has no attribute {name!r}")
