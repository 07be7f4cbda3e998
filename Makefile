# fsan-lightning: common commands. `make help` lists them.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
DATA ?= synthetic
SEEDS ?= 0
ARGS ?=
# reproduction targets (experiments/README.md): real features, run folders, table folder, run of `figures`
DATA_DIR ?=
SWEEP_DIR ?=
OUT ?=
RUN ?=
QUERIES ?= 4
SWEEP_OPTS = --seeds $(SEEDS) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(SWEEP_DIR),--sweep-dir $(SWEEP_DIR)) $(if $(OUT),--out $(OUT))

.PHONY: help install test test-slow train eval ablations table2 table3 figures bench bench-gpu bench-scale lint clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

install:  ## create .venv with CPU torch and the package (editable) + dev tools + the [video] extra
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,launchers,video]"

test:  ## fast test suite (slow tests excluded)
	WANDB_MODE=disabled $(PY) -m pytest -q

test-slow:  ## only the slow end-to-end tests (exit 5 = none collected is not a failure)
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

train:  ## train FSAN (small CPU model) on the embedded synthetic world, then test the selected checkpoint
	$(PY) -m fsan_lightning.train experiment=synthetic_cpu $(ARGS)

ablations:  ## Table 4: five ablation rows x SEEDS on DATA (synthetic; activitynet with DATA_DIR), ARGS=overrides
	$(PY) -m fsan_lightning.reproduce.sweep --table table4 --data $(DATA) $(SWEEP_OPTS) -- $(ARGS)

table2:  ## Table 2 (DiDeMo with DATA_DIR=features dir; without: synthetic DiDeMo-format world, CPU)
	$(PY) -m fsan_lightning.reproduce.sweep --table table2 $(SWEEP_OPTS) -- $(ARGS)

table3:  ## Table 3 (ActivityNet with DATA_DIR=features dir; DATA=anet_sim: real annotations, simulated features; else the synthetic world, CPU)
	$(PY) -m fsan_lightning.reproduce.sweep --table table3 $(if $(filter-out synthetic,$(DATA)),--data $(DATA)) $(SWEEP_OPTS) -- $(ARGS)

figures:  ## Figures 3 and 4 of a run: make figures RUN=outputs/train/<date> [QUERIES=4] [OUT=dir]
	@test -n "$(RUN)" || { echo "usage: make figures RUN=<run dir> [QUERIES=4] [OUT=dir]" >&2; exit 2; }
	$(PY) -m fsan_lightning.reproduce.figures $(RUN) --queries $(QUERIES) $(if $(OUT),--out $(OUT))

bench:  ## CPU benchmarks, every figure a ratio within the run (< 10 min on 2 cores; benchmarks/README.md), ARGS=--quick
	$(PY) -m benchmarks.run $(ARGS)

bench-scale:  ## the pipeline at ActivityNet size on the full anet_sim world (6.6 GB in .data_cache; ~25 min on 2 cores), ARGS=--workers N
	$(PY) -m benchmarks.bench_scale $(ARGS)

bench-gpu:  ## GPU training-step benchmark in bf16-mixed (needs CUDA; a few minutes), ARGS=options
	$(PY) -m benchmarks.gpu_step $(ARGS)

lint:  ## ruff
	$(PY) -m ruff check src tests benchmarks

clean:  ## remove run outputs
	rm -rf outputs multirun
