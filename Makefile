# Two commands do all the set-up on a fresh machine (see README):
#   make demo   install, then train NeuroSQL on the embedded MNIST digits
#   make test   install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/demo

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch is pinned to the local CPU wheel first; a looser requirement would pull GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[fast,test,metrics,dicom,tensorboard,export]'
	touch $@

demo: setup
	$(BIN)/neurosql train --out $(DEMO) --epochs 25 --latent-dim 16

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.small_data

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
