# The two commands of the README. Both create .venv when it is missing.
#
# torch comes from PyTorch's CPU wheel index (a bare `pip install torch` on Linux pulls the CUDA build and NVIDIA's
# CUDA libraries: a venv of about 5.8 GB, against 1.8 GB with the CPU build; see the README).
# Where that index cannot be reached within 5 seconds, torch comes from the default index instead (pip's own
# configuration: a mirror or a local wheel folder). GPU users choose their build, e.g.
#     make test TORCH_INDEX=https://download.pytorch.org/whl/cu126
# or install torch into .venv themselves before `make`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test lint venv clean

$(BIN)/remixup: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	    echo "torch already installed in $(VENV): $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	    echo "installing torch $(TORCH_VERSION) from $(TORCH_INDEX)"; \
	    $(BIN)/pip install --quiet --timeout 5 --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); \
	else \
	    echo "$(TORCH_INDEX) cannot be reached; installing torch $(TORCH_VERSION) from the default index"; \
	    $(BIN)/pip install --quiet torch==$(TORCH_VERSION); \
	fi
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/remixup

venv: $(BIN)/remixup

demo: venv
	$(BIN)/remixup demo

test: venv
	$(BIN)/python -m pytest

# Lint, format check and type check of the package (CI runs this before the tests).
lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info
