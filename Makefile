# fsan-lightning: common commands. `make help` lists them.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
DATA ?= synthetic
SEEDS ?= 0
ARGS ?=

.PHONY: help install test test-slow train eval ablations table2 table3 figures bench bench-gpu lint clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

install:  ## create .venv with CPU torch and the package (editable) + dev tools
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,launchers]"

test:  ## fast test suite (slow tests excluded)
	WANDB_MODE=disabled $(PY) -m pytest -q

test-slow:  ## only the slow end-to-end tests (exit 5 = none collected is not a failure)
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

train:  ## train FSAN (small CPU model) on the embedded synthetic world, then test the selected checkpoint
	$(PY) -m fsan_lightning.train experiment=synthetic_cpu $(ARGS)

lint:  ## ruff
	$(PY) -m ruff check src tests benchmarks

clean:  ## remove run outputs
	rm -rf outputs multirun
