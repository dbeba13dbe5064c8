"""The served models' contract: the image model's tensors, the model-config parameters, the names.

The tensor model takes the artifact's input (artifacts.INPUT) and returns the end2end outputs
(artifacts.OUTPUTS["end2end"]) for any artifact: its `mfssd` parameter is the artifact's metadata
with layout "end2end" (and the artifact's own layout kept as `artifact_layout`). The image model takes
one encoded image per batch row and returns detections in that image's pixels. Names and element
types are defined here once; the repository writer (serving/repository.py), the model (runners.py)
and the clients (image_client.py, backends/triton_backend.py) read them from here or artifacts.py.

Why UINT8 rows and not Triton's BYTES type for the encoded images and the JSON: the Python-backend
stub of the Triton builds that pip ships (nvidia-pytriton: Triton 2.45 and 2.51) was compiled with a
pybind11 that misreads NumPy 2's dtype struct, so under NumPy 2 a BYTES input arrives as garbage and
numeric tensors only cross through DLPack (python_model.py). Byte rows with a length cross intact on
every server, the NGC container included.
"""

from __future__ import annotations

from typing import Any

from mfssd_deploy.artifacts import OUTPUT_TYPES, OUTPUTS

TENSOR_ROLE, IMAGE_ROLE = "tensor", "image"
ROLES: tuple[str, ...] = (TENSOR_ROLE, IMAGE_ROLE)
IMAGE_MODEL_SUFFIX = "_image"  # NAME_image serves the artifact of NAME on encoded images

# The image model's inputs: IMAGE_INPUT UINT8 [B, L], one encoded image file (JPEG, PNG, anything OpenCV
# decodes) per row, rows zero-padded to the longest; IMAGE_LENGTH INT32 [B, 1] (optional) the byte length
# of each row's file (absent: the whole row).
IMAGE_INPUT = "image"
IMAGE_LENGTH = "image_length"
IMAGE_INPUT_TYPES: dict[str, str] = {IMAGE_INPUT: "UINT8", IMAGE_LENGTH: "INT32"}
# num_dets [B,1]; pixel_boxes [B,K,4] x1,y1,x2,y2 in the original image's pixels (not the [0,1] of the
# end2end det_boxes, hence another name); det_scores, det_classes [B,K] as in end2end (rows past num_dets
# are padding); image_size [B,2] height, width of the decoded image; detections [B, J]: per image the
# UTF-8 JSON of Result.to_dict() (boxes in pixels, scores, labels, class names), space-padded to the
# request's longest (json.loads ignores the padding).
IMAGE_OUTPUTS: tuple[str, ...] = ("num_dets", "pixel_boxes", "det_scores", "det_classes", "image_size", "detections")
IMAGE_OUTPUT_TYPES: dict[str, str] = {
    **{n: OUTPUT_TYPES[n] for n in ("num_dets", "det_scores", "det_classes")},
    "pixel_boxes": "FP32",
    "image_size": "INT32",
    "detections": "UINT8",
}
# dims without the batch axis; K: max_det; -1: variable
IMAGE_DIMS: dict[str, tuple[int | str, ...]] = {
    "num_dets": (1,), "pixel_boxes": ("K", 4), "det_scores": ("K",), "det_classes": ("K",), "image_size": (2,),
    "detections": (-1,),
}  # fmt: skip
TENSOR_OUTPUTS: tuple[str, ...] = OUTPUTS["end2end"]

# Model-config parameters (string values) that model.py reads, beside the `mfssd` metadata.
PARAM_META = "mfssd"
PARAM_ROLE = "mfssd_role"
PARAM_ARTIFACT = "mfssd_artifact"  # the artifact's file name in the version folder
PARAM_BACKEND = "mfssd_backend"  # a Detector backend name, "" for the file's default
PARAM_THREADS = "mfssd_threads"  # ONNX Runtime intra-op threads per instance, "0": its default
PARAM_MAX_IMAGE_BYTES = "mfssd_max_image_bytes"
DEFAULT_MAX_IMAGE_MB = 20.0

NUMPY_TYPES: dict[str, str] = {"FP32": "float32", "INT32": "int32", "UINT8": "uint8"}


def image_model_name(name: str) -> str:
    return name + IMAGE_MODEL_SUFFIX


def served_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The tensor model's `mfssd` parameter: the artifact's metadata, its outputs being end2end."""
    out = dict(meta)
    out["artifact_layout"] = meta["layout"]
    out["layout"] = "end2end"
    return out
