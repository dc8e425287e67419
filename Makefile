# The two commands of the README. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint venv clean

$(BIN)/remixup: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build first: a bare torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/remixup

venv: $(BIN)/remixup

demo: venv
	$(BIN)/remixup demo

test: venv
	$(BIN)/python -m pytest

# Lint, format check and type check of the package (CI runs this before the tests).
lint: venv
	$(BIN)/ruff check src
	$(BIN)/ruff format --check src
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info
