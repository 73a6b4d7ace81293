# hw2: `make report` builds the submission PDF, `make test` runs the tests. Both install what is missing.
# PROFILE=full|quick|smoke picks the experiment sizes (default: full with a CUDA GPU, else quick).
SHELL := /bin/bash
# The newest of Python 3.13, 3.12 and 3.11 that runs here (a version manager's shim can name one it cannot run),
# unless PYTHON= names one.
ifndef PYTHON
PYTHON := $(firstword $(foreach v,3.13 3.12 3.11,$(shell python$(v) -c '' >/dev/null 2>&1 && echo python$(v))) python3.11)
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := espeak-ng:espeak-ng poppler-utils:pdftotext gcc:cc
JOBS ?= 2
# medmnist, installed without its dependencies (see setup)
MEDMNIST := medmnist==3.0.2

# The questions, read from the experiment registry (a leaf module: the system Python reads it before setup).
QUESTIONS := $(shell PYTHONPATH=. $(PYTHON) -c 'from hw2.engine.registry import questions; print(*questions())' 2>/dev/null)
RUN_TARGETS := $(addprefix runs-,$(QUESTIONS))

.PHONY: setup sysdeps test lint runs $(RUN_TARGETS) status report submission bench-q1 bench-q2 bench-q3 clean

setup: $(STAMP) sysdeps

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || { echo "hw2 needs Python 3.11, 3.12 or 3.13 ($(PYTHON) is not one that runs here); set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	# medmnist declares torchvision, which has no CPU build here; hw2 never imports it.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(MEDMNIST)
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

# Which data each question uses, and how to get the real data: `make data ARGS='fetch q3'` downloads LJ Speech.
.PHONY: data
data: setup
	$(PY) -m hw2 data $(ARGS)

# The render runs _quarto.yml's pre-render step (the missing runs) itself; `runs` first lets make -j run
# the questions side by side.
report: setup runs
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m hw2 render

submission: setup
	$(PY) -m hw2 submission

# Render with hw2's renderer, then again on every save of report/, _quarto*.yml, the package or the run store
# (the missing runs once, at the start; the cell cache reruns only the cells whose inputs changed).
.PHONY: preview
preview: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m hw2 preview

# Every full-profile experiment for a few optimizer steps on this machine, into results-rehearsal/: step times,
# projected wall times and the memory the full profile needs.
.PHONY: rehearse
rehearse: setup
	$(PY) -m hw2 rehearse

bench-q1: setup
	$(PY) bench/q1_busy.py
bench-q2: setup
	$(PY) bench/q2_cnn.py
bench-q3: setup
	$(PY) bench/q3_asr.py

# hw2's renderer on a copy of the project: the first render, a full re-execution, nothing changed, a prose edit and
# a code-cell edit, each with the cells it ran, and the ratios.
.PHONY: bench-render
bench-render: setup
	$(PY) bench/render.py

# The full protocol's training steps, decoding and a Q2 sweep epoch on a CUDA GPU, on synthetic inputs; without
# CUDA it says so. Installs nothing: where there is no .venv (a GPU image that has torch but no package registry)
# the machine's python3 runs it.
.PHONY: bench-gpu
bench-gpu:
	$(if $(wildcard $(PY)),$(PY),python3) bench/gpu.py

# Whether the dependency set (pyproject.toml's, with constraints.txt, and medmnist as setup installs it) resolves
# from PyPI for the Pythons CI does not run, without installing: binary wheels only, each wheel's metadata read
# (the index's PEP 658 file, else a few HTTP range requests: fast-deps), never the wheel (only setuptools, to read
# hw2's own metadata). Pip CHECK_PIP resolves, run from its wheel: where the index has no metadata files, the
# venv's pip 23.2 fetched whole wheels (530 MB for torch's alone, measured) and pip 26.3 read 2.6 MB. The machine's
# pip configuration is left out: a student installs from PyPI. Mostly waiting on the network: `make -j2
# check-python` checks both at once. (set -f: `.[test]` is pip's argument, not a glob.)
CHECK_PYTHONS := 3.12 3.13
CHECK_PIP := 26.3
.PHONY: check-python $(addprefix check-python-,$(CHECK_PYTHONS))
check-python: $(addprefix check-python-,$(CHECK_PYTHONS))
$(addprefix check-python-,$(CHECK_PYTHONS)): check-python-%: setup
	@set -f; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export PIP_CONFIG_FILE=/dev/null; \
	$(PY) -m pip --isolated download -q --disable-pip-version-check --no-deps -d "$$tmp" pip==$(CHECK_PIP) || { \
	  echo "hw2: PyPI did not answer, so the dependencies were NOT checked for Python $* (a network problem, not a resolution failure)" >&2; exit 0; }; \
	for reqs in "-c constraints.txt .[test]" "--no-deps $(MEDMNIST)"; do \
	  start=$$SECONDS; \
	  out=$$($(PY) "$$tmp/pip-$(CHECK_PIP)-py3-none-any.whl/pip" --isolated install --disable-pip-version-check --dry-run --use-feature=fast-deps \
	         --only-binary=:all: --python-version $* --target "$$tmp/target" --no-cache-dir $$reqs 2>&1) || { \
	    echo "$$out" | tail -15 >&2; echo "hw2: $$reqs does not resolve for Python $* (pip's output above)" >&2; exit 1; }; \
	  echo "Python $*, $$reqs: $$(echo "$$out" | grep '^Would install') ($$((SECONDS - start)) s)"; \
	done

clean:
	rm -rf _output .quarto .hw2_cache hw2-group*.zip report/_figures
