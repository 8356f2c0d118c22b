# lewm_ros developer entry points. Every target sets itself up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench arm-reach-checkpoint clean

venv: $(STAMP)

# torch first and pinned: the local CPU wheel installs at once, an unpinned torch
# would pull a multi-GB CUDA build. The stamp makes a second run install nothing.
$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q test

bench: $(STAMP)
	$(BIN)/python training/bench_model.py
	$(BIN)/python training/bench_train.py --preset small

# The shipped planner checkpoint, from scratch: collect arm-reach bags, ingest, train (CPU, ~25 min).
ARM_DATA := out/arm_reach
arm-reach-checkpoint: $(STAMP)
	$(BIN)/lewm-collect --world arm --task reach --policy expert --episodes 300 --steps 100 --workers 2 \
		--seed 0 --out $(ARM_DATA)/expert
	$(BIN)/lewm-collect --world arm --task reach --policy random --episodes 300 --steps 100 --workers 2 \
		--seed 100000 --out $(ARM_DATA)/random
	$(BIN)/lewm-train --config training/configs/arm_reach.yaml
	mkdir -p lewm_ros/checkpoints
	cp runs/arm_reach_small/model.safetensors lewm_ros/checkpoints/arm_reach_small.safetensors

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
