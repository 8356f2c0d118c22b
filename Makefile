# lewm_ros developer entry points. Every target sets itself up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench demo arm-reach-checkpoint two-room solvers push-t clean

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

# sim_node + planner_node over real DDS with the shipped checkpoint: success rate, plan times, GIF and plot
# in out/demo/ (lewm-demo --help: episodes, steps, planner parameter overrides).
demo: $(STAMP)
	$(BIN)/lewm-demo

# The shipped planner checkpoint, from scratch: collect arm-reach bags, ingest, train the world model and then
# its action prior (CPU, ~30 min).
ARM_DATA := out/arm_reach
arm-reach-checkpoint: $(STAMP)
	$(BIN)/lewm-collect --world arm --task reach --policy expert --episodes 300 --steps 100 --workers 2 \
		--seed 0 --out $(ARM_DATA)/expert
	$(BIN)/lewm-collect --world arm --task reach --policy random --episodes 300 --steps 100 --workers 2 \
		--seed 100000 --out $(ARM_DATA)/random
	$(BIN)/lewm-train --config training/configs/arm_reach.yaml
	mkdir -p lewm_ros/checkpoints
	cp runs/arm_reach_small/model.safetensors lewm_ros/checkpoints/arm_reach_small.safetensors

# The Two-Room result end to end on 2 CPU cores (34 min measured): collect, ingest, train, evaluate at
# the 50/25 protocol (standard and cross-room pairs) and the longer 150/100 protocol, then the
# violation-of-expectation and probe report. Results land in out/two_room/.
TWO_ROOM := out/two_room
# CEM at the paper's 300 x 30 x 30; sampling noise correlated in time (noise_beta 3, init_std 2) so that
# candidates reach goals 25 steps away; a 10-block horizon costed at its block closest to the goal, replanned
# every 10 steps (README, "Two-Room at the LeWM protocol", for what each choice is worth).
TWO_ROOM_PLAN := --samples 300 --elites 30 --iterations 30 --horizon 10 --init-std 2 --noise-beta 3 \
	--objective closest --mode receding --execute-steps 10
two-room: $(STAMP)
	$(BIN)/lewm-collect --world two_room --policy expert --episodes 2000 --steps 120 --workers 2 \
		--seed 0 --out $(TWO_ROOM)/train
	$(BIN)/lewm-collect --world two_room --policy expert --episodes 200 --steps 120 --workers 2 \
		--seed 500000 --out $(TWO_ROOM)/heldout
	$(BIN)/lewm-train --config training/configs/two_room.yaml
	$(BIN)/lewm-eval --checkpoint runs/two_room_small/model.safetensors --world two_room \
		--pairs $(TWO_ROOM)/heldout --episodes 50 --goal-offset 25 --budget 50 $(TWO_ROOM_PLAN) \
		--out $(TWO_ROOM)/eval_50_25
	$(BIN)/lewm-eval --checkpoint runs/two_room_small/model.safetensors --world two_room \
		--pairs $(TWO_ROOM)/heldout --episodes 50 --goal-offset 100 --budget 150 $(TWO_ROOM_PLAN) \
		--subsets standard --out $(TWO_ROOM)/eval_150_100
	$(BIN)/lewm-physics --checkpoint runs/two_room_small/model.safetensors --out $(TWO_ROOM)/physics

# Success against decision time for each planner solver (README, "Solvers"), on the shipped arm checkpoint (its
# action prior included) and on make two-room's model with a prior trained here (goals 5 blocks ahead, as the
# protocol's); needs make two-room first. About 10 min; tables, JSON and plots in out/solvers/.
solvers: $(STAMP)
	$(BIN)/python training/bench_solvers.py --checkpoint lewm_ros/checkpoints/arm_reach_small.safetensors --world arm \
		--sampled-pairs --goal-span 1.5 --episodes 40 --budget 60 --rows cem:300x30x30 cem:64x8x3 cem:16x4x1 prior+cem:64x8x3 \
		prior+cem:32x4x1 prior+cem:16x4x1 prior+cem:8x2x1 prior --out out/solvers/arm
	$(BIN)/lewm-train --config training/configs/two_room.yaml prior.init_from=runs/two_room_small/model.safetensors \
		prior.horizon=5 train.out_dir=runs/two_room_prior 'data.bags=[]'
	$(BIN)/python training/bench_solvers.py --checkpoint runs/two_room_prior/model.safetensors --world two_room \
		--pairs $(TWO_ROOM)/heldout --episodes 50 --goal-offset 25 --budget 50 $(TWO_ROOM_PLAN) \
		--rows cem:300x30x30 cem:64x8x3 cem:16x4x1:horizon=5 prior+cem:64x8x3:horizon=5 prior+cem:32x4x1:horizon=5 \
		prior+cem:16x4x1:horizon=5 prior+cem:16x4x1 prior::horizon=5 --out out/solvers/two_room

# Push-T end to end on 2 CPU cores (README, "Push-T"): collect scripted-expert and weak-policy bags and
# held-out expert episodes, ingest, train, evaluate at the paper's protocol (50 pairs from held-out episodes,
# goal 25 steps ahead, budget 50) with our planner settings and the paper's, beside the random floor and the
# replay ceiling and the same search with the true simulator as its model (--oracle, the planner's ceiling), on
# all pairs and on block-moved pairs; then violation of expectation and the state probe.
# Results land in out/push_t/ (results.md, results.png, episode GIFs, physics/). 53 min measured on a 2-core AMD EPYC,
# 34 of them training (bf16 on the CPU: train.cpu_bf16).
PUSH_T := out/push_t
PUSH_T_EVAL := --checkpoint runs/push_t_small/model.safetensors --world push_t --pairs $(PUSH_T)/heldout \
	--episodes 50 --goal-offset 25 --budget 50
# 128 x 16 x 5, replanned every block, cost at the closest block: measured best of the settings tried on 12 pairs
# (README, "Push-T"); the paper's 300 x 30 x 30 row runs on the same pairs beside it.
PUSH_T_PLAN := --samples 128 --elites 16 --iterations 5 --horizon 5 --mode receding --execute-steps 5 \
	--objective closest
PAPER_PLAN := --samples 300 --elites 30 --iterations 30 --horizon 5 --mode paper --objective final
push-t: $(STAMP)
	$(BIN)/lewm-collect --world push_t --policy expert --episodes 1000 --steps 100 --workers 2 \
		--seed 0 --out $(PUSH_T)/expert
	$(BIN)/lewm-collect --world push_t --policy random --episodes 1500 --steps 100 --workers 2 \
		--seed 100000 --out $(PUSH_T)/weak
	$(BIN)/lewm-collect --world push_t --policy expert --episodes 100 --steps 100 --workers 2 \
		--seed 500000 --out $(PUSH_T)/heldout
	$(BIN)/lewm-train --config training/configs/push_t.yaml
	$(BIN)/lewm-eval $(PUSH_T_EVAL) $(PUSH_T_PLAN) --oracle 64x8x3 --gif --out $(PUSH_T)/tuned
	$(BIN)/lewm-eval $(PUSH_T_EVAL) $(PAPER_PLAN) --no-random --no-replay --out $(PUSH_T)/paper
	$(BIN)/python training/eval_table.py $(PUSH_T)/tuned $(PUSH_T)/paper --out $(PUSH_T)/results.md
	$(BIN)/lewm-physics --world push_t --checkpoint runs/push_t_small/model.safetensors --out $(PUSH_T)/physics

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
