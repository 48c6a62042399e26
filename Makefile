# Two commands on a fresh machine:
#   make demo   set up .venv and restore the bundled sample images with the default model
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# torch with the torchvision that spandrel needs (both on this machine's disk: a CUDA build that runs on
# the CPU); PyPI's torchvision does not import beside the CPU-only torch 2.13.0.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test paper-full bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,zoo]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/restore-demo

# Default CI run: everything except the hour-long paper_full reproductions.
test: $(STAMP)
	$(PY) -m pytest -m "not paper_full" --durations=30

paper-full: $(STAMP)
	$(PY) -m pytest -m paper_full --durations=30

# Converse2D speed against the official algorithm (docs/RESULTS.md); the other benchmarks: benchmarks/*.py.
bench: $(STAMP)
	$(PY) benchmarks/converse2d_speed.py

clean:
	rm -rf $(VENV) .pytest_cache
