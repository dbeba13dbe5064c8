"""The deployment runtime: what runs with numpy, OpenCV and ONNX Runtime alone (plus each backend's own
optional runtime, imported when that backend is chosen). No module here imports torch, onnx, tensorrt or
a CUDA binding at module level: tests/test_runtime_folder.py walks the folder and holds it to that."""
