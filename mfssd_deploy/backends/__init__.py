"""Inference backends behind the Detector: onnxruntime (lean), torch, tensorrt.

Each exposes `config`, `layout` ("raw" | "end2end"), `meta`, `name`, `device`, and `infer(x)` on a
preprocessed float32 [B,3,S,S] batch. Raw outputs may stay on the backend's device (torch tensors)
so the decode + NMS runs there too.
"""
