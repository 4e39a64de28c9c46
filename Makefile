# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo gpu-check clean

setup: $(STAMP)

# Torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ui]'
	@touch $@

# Two workers, a test file each at a time (its tests in order): most of the suite's time
# is single-threaded (ONNX export), so the two cores overlap it (683 -> 465 s here).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

# The edit-test loop: everything but the few full-size (ffhq-1024) tests.
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not full"

# The default bundle and its example face ship in the package (vrfam_rt/assets/default/).
EXAMPLE := vrfam_rt/assets/default/faces/example.png

demo: setup
	@echo "demo: the bundled example face, edited: input | reconstruction | Smiling +1.0, with the judge's reading"
	$(VENV)/bin/vrfam-rt edit $(EXAMPLE) --attr Smiling --grid --no-align --judge --out demo --overwrite

# On a machine with an NVIDIA GPU; installs nothing (runs from the checkout).
gpu-check:
	PYTHONPATH=. PYTHONUNBUFFERED=1 python3 -m vrfam_rt gpu-check --out $${OUT:-gpu-check}

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
