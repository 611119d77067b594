# Two commands do all the set-up on a fresh machine (see README):
#   make demo   install, then train NeuroSQL on the embedded MNIST digits
#   make test   install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/demo
QUALITY_SETS ?= phantom-slices@64,brain@64,cells@64,gray-patches@64,rgb-patches@32,colour-shapes@32,fundus-rgb@32,faces@32

.PHONY: setup demo test bench quality clean

setup: $(VENV)/.installed

# torch is pinned to the local CPU wheel first; a looser requirement would pull GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[fast,test,metrics,dicom,tensorboard,export]'
	touch $@

demo: setup
	$(BIN)/neurosql train --out $(DEMO) --epochs 30 --latent-dim 16

test: setup
	$(BIN)/python -m pytest

# The performance targets (about 10 minutes here); `python -m benchmarks.run --quick` checks the code in a minute.
bench: setup
	$(BIN)/python -m benchmarks.run

# Sample quality on the small offline sets, defaults over three seeds (about an hour here).
quality: setup
	$(BIN)/python -m benchmarks.small_data --no-grid --seeds 0,1,2 --sets $(QUALITY_SETS)

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
