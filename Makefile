# hw2: `make report` builds the submission PDF, `make test` runs the tests. Both install what is missing.
# PROFILE=full|quick|smoke picks the experiment sizes (default: full with a CUDA GPU, else quick).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := espeak-ng:espeak-ng poppler-utils:pdftotext gcc:cc
JOBS ?= 2

# The questions, read from the experiment registry (a leaf module: the system Python reads it before setup).
QUESTIONS := $(shell PYTHONPATH=. $(PYTHON) -c 'from hw2.engine.registry import questions; print(*questions())' 2>/dev/null)
RUN_TARGETS := $(addprefix runs-,$(QUESTIONS))

.PHONY: setup sysdeps test lint runs $(RUN_TARGETS) status report submission bench-q1 bench-q2 bench-q3 clean

setup: $(STAMP) sysdeps

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "hw2 needs Python 3.11 ($(PYTHON) not found); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	# medmnist declares torchvision, which has no CPU build here; hw2 never imports it.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps medmnist==3.0.2
	@touch $(STAMP)

# Debian packages: espeak-ng speaks the stand-in LJ Speech corpus, poppler-utils reads PDFs back in tests,
# gcc builds Question 2's C training step (hw2/q2/cnn_cpu.c).
sysdeps:
	@missing=""; for pair in $(DEBIAN_PACKAGES); do command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "hw2 needs the Debian packages:$$missing (install them with: sudo apt-get install$$missing)" >&2; \
	  fi; \
	fi

test: setup lint
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check hw2 tests bench

# `make runs-qN`: the missing runs of one question; `make runs` of all (make -j runs the questions side by side).
$(RUN_TARGETS): runs-%: setup
	$(PY) -m hw2 runs $* --jobs $(JOBS)
runs: $(RUN_TARGETS)
	@test -n "$(QUESTIONS)" || { echo "hw2: $(PYTHON) could not read the questions from hw2/engine/registry.py" >&2; exit 1; }

# Which runs of the profile are current, stale (and which files' code changed) or missing.
status: setup
	$(PY) -m hw2 status

# The render runs _quarto.yml's pre-render step (the missing runs) itself; `runs` first lets make -j run
# the questions side by side.
report: setup runs
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m hw2 render

submission: setup
	$(PY) -m hw2 submission

bench-q1: setup
	$(PY) bench/q1_busy.py
bench-q2: setup
	$(PY) bench/q2_cnn.py
bench-q3: setup
	$(PY) bench/q3_asr.py

clean:
	rm -rf _output .quarto .hw2_cache hw2-group*.zip report/_figures
