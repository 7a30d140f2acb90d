# These commands do all the set-up on a fresh machine:
#   make demo   install, then run the main job end to end on generated example data
#   make test   install, then run the test suite
#   make compare   the diffusion generator against the Pix2PixHD baseline on the example data
PYTHON ?= python3
# Which ONNX Runtime: cpu (onnxruntime) or gpu (onnxruntime-gpu); they are one module and conflict,
# so switching means a new environment: `make clean && make test ORT=gpu`.
ORT ?= cpu
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lesionaug-installed

.PHONY: install demo compare test bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU build of torch first, so no dependency pulls a multi-GB CUDA build.
	$(PY) -m pip install $(TORCH_PIP_ARGS) torch==2.13.0
	$(PY) -m pip install -c constraints.txt -e '.[$(ORT),test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

compare: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/compare.sh

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

docs: $(STAMP)
	$(PY) scripts/gen_docs.py

clean:
	rm -rf $(VENV) example example-augmented example-controlnet example-pix2pixhd example-pix2pixhd-model runs
