"""Serving on Triton Inference Server: `mfssd-serve` and the Python-backend model repository.

One artifact is served as two Triton models (contract.py says what each takes and returns):

* NAME, the tensor model: pre-processed `images` -> the end2end outputs, whatever the artifact's
  layout (a raw one is decoded and NMS'd on the server), so `TritonBackend` reads it like an end2end ONNX;
* NAME_image, the image model: encoded images (JPEG, PNG bytes) -> detections in original-image
  pixels with class names, so a client needs no pre- or post-processing code.

Modules, one job each: `contract` (tensor names, parameters), `images` (decoding request bytes),
`runners` (a batch of requests -> responses, plain numpy: testable without a server), `python_model`
(the Triton Python-backend glue that model.py imports), `bundled` (the tritonserver binary and
Python-backend stub that nvidia-pytriton ships, and the environment they need), `process` (start,
readiness, drain and stop of one server), `service` (what mfssd-serve does, start to stop),
`image_client` (a client of the image model), `load` (a bounded load generator and the server's
batching statistics).
"""
