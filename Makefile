# Two entry points (README): `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is installed first and pinned to the build this project is developed and tested with;
# override on other platforms, e.g. make test TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint typecheck venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile tools/patch_tensorrt_stubs.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	# tensorrt-stubs declares the real tensorrt wheel as a dependency, which only NVIDIA's index serves.
	$(PY) -m pip install -q --no-deps tensorrt-stubs
	$(PY) tools/patch_tensorrt_stubs.py
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mfssd-demo

lint: $(STAMP)
	$(VENV)/bin/ruff check mfssd_deploy tests tools benchmarks examples
	$(VENV)/bin/ruff format --check mfssd_deploy tests tools benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The OpenVINO tests run in their own process: after OpenVINO has run, torch training in the same
# process crashed (segmentation fault, OpenVINO 2026.4 beside torch 2.14; see backends/openvino_backend.py).
test: lint typecheck
	$(VENV)/bin/pytest --ignore=tests/test_openvino_backend.py
	$(VENV)/bin/pytest tests/test_openvino_backend.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
