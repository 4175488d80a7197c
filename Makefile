# Two commands do all the set-up on a fresh machine:
#   make demo   -- trains, saves and evaluates a tiny long-context model (the embedded default)
#   make test   -- runs the test suite
# Both create .venv and install the package on first use.
# torch: where the venv has none, TORCH_SPEC is installed first (the CPU build 2.13.0 on the project's
# machines). GPU users: install the torch build for your CUDA into the venv first, or run
# `make TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url <your CUDA index>" test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

demo: setup
	$(PY) scripts/train.py --output_dir runs/demo

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check hf_longctx scripts tests

clean:
	rm -rf $(VENV) runs
