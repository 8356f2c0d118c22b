"""Plan latency of the latent MPC per model preset and CEM budget (a benchmark script, not a test).

    python training/bench_plan.py [--presets small paper] [--devices cpu cuda] [--threads 1 2] [--budgets node]

Budgets: the paper's 300 x 30 elites x 30 iterations, 300 x 30 x 10, and the node's default (CEMConfig's).
Weights are random, which does not change the cost of a plan. Each plan is a real MPC plan
(lewm_ros.planning.MPC), after one warm-up plan, timed two ways: from one fresh frame (an episode's first plan:
the predictor's windows grow 1, 2, 3, 3, 3 over a horizon of 5, as in the official loop) and
replanning every block with the node's 3-frame history and warm start (windows 3, 3, 3, 3, 3: 25% more
predictor tokens). Prints p50 / p90 / max in ms of the first, the p50 of the second, and beside them the p50
of the official-style loop (lewm_ros.planning.official: the public LeWM planner re-run eagerly on the same
model and budget, from one frame, measured in the same run) and the ratio official / ours for equal work
(both from one frame); ``--capture`` adds our plan with the compiled rollout (``mpc.capture: compile``, CUDA
graphs on a GPU) and its ratio. Imports torch, numpy and lewm_ros' ROS-free core only, so it runs on a
GPU machine without ROS.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.model.config import preset
from lewm_ros.model.world_model import WorldModel
from lewm_ros.planning import MPC, PAPER_SEARCH, Actuation, CEMConfig, MPCConfig
from lewm_ros.planning.official import official_plan


def budgets() -> dict[str, CEMConfig]:
    node, paper = CEMConfig(), CEMConfig(**PAPER_SEARCH)
    return {'300x30 it30 (paper)': paper, '300x30 it10': replace(paper, iterations=10),
            f'{node.samples}x{node.elites} it{node.iterations} (node)': node}


def measure(model: WorldModel, cem: CEMConfig, plans: int, max_seconds: float, capture: str = 'none',
            history: bool = False) -> np.ndarray:
    """Seconds per plan on fresh frames: each from one frame (an episode's first plan), or, with ``history``,
    replanning every block as the node does (frame history and warm start). The warm-up plan comes first (a
    captured rollout compiles there)."""
    checkpoint = Checkpoint(model, np.zeros(2, np.float32), np.ones(2, np.float32))
    mpc = MPC(checkpoint, Actuation([-1.5, -1.5], [1.5, 1.5]), cem,
              MPCConfig(mode='receding', execute_steps=5, capture=capture))
    rng = np.random.default_rng(0)
    size = model.cfg.image_size
    mpc.set_goal(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    mpc.warm_up()
    times, started = [], time.perf_counter()
    while len(times) < plans and (len(times) < 2 or time.perf_counter() - started < max_seconds):
        if not history:
            mpc.reset()  # keeps the goal
        mpc.observe(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        if mpc.needs_plan:
            times.append(mpc.replan().seconds)  # ends with the plan on the host: includes the GPU's work
        mpc.act()
    return np.array(times)


def measure_official(model: WorldModel, cem: CEMConfig, plans: int, max_seconds: float) -> np.ndarray:
    """Seconds per plan of the official-style loop on fresh frames (one warm-up plan first)."""
    device = next(model.parameters()).device
    size = model.cfg.image_size
    rng = np.random.default_rng(0)

    def plan() -> float:
        frame, goal = (torch.as_tensor(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), device=device)
                       for _ in range(2))
        started = time.perf_counter()
        official_plan(model, frame, goal, cem.samples, cem.elites, cem.iterations, cem.horizon).cpu()
        return time.perf_counter() - started

    plan()
    times, started = [], time.perf_counter()
    while len(times) < plans and (len(times) < 2 or time.perf_counter() - started < max_seconds):
        times.append(plan())
    return np.array(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--presets', nargs='+', default=['small', 'paper'])
    parser.add_argument('--devices', nargs='+', default=['cpu', 'cuda'])
    parser.add_argument('--threads', nargs='+', type=int, default=[torch.get_num_threads()],
                        help='torch CPU thread counts to try (the node: its threads parameter)')
    parser.add_argument('--budgets', nargs='+', default=None, help='only budgets whose label contains one of these')
    parser.add_argument('--plans', type=int, default=20, help='plans per configuration (after one warm-up)')
    parser.add_argument('--max-seconds', type=float, default=30.0, help='stop a configuration after this long')
    parser.add_argument('--capture', action='store_true',
                        help='also time the captured rollout (mpc.capture: compile; CUDA graphs on a GPU)')
    args = parser.parse_args(argv)
    devices = [device for device in args.devices if device != 'cuda' or torch.cuda.is_available()]
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads by default'
          + (f', {torch.cuda.get_device_name()}' if 'cuda' in devices else ', no CUDA device'))
    print(f'{"preset":<7} {"device":<7} {"budget":<22} {"plans":>5} {"p50 ms":>8} {"p90 ms":>8} {"max ms":>8} '
          f'{"3-frame p50":>11} {"official p50":>12} {"ratio":>6}'
          + (f' {"captured p50":>12} {"ratio":>6}' if args.capture else ''))
    for name in args.presets:
        torch.manual_seed(0)
        for device, threads in [(d, t) for d in devices for t in (args.threads if d == 'cpu' else [0])]:
            if threads:
                torch.set_num_threads(threads)
            model = WorldModel(preset(name)).to(device).eval()
            where = f'{device}x{threads}' if threads else device
            for label, cem in budgets().items():
                if args.budgets and not any(part in label for part in args.budgets):
                    continue
                times = 1000 * measure(model, cem, args.plans, args.max_seconds)
                p50, p90 = np.percentile(times, [50, 90])
                steady = np.median(1000 * measure(model, cem, args.plans, args.max_seconds, history=True))
                theirs = np.median(1000 * measure_official(model, cem, args.plans, args.max_seconds))
                captured = ''
                if args.capture:
                    fast = np.median(1000 * measure(model, cem, args.plans, args.max_seconds, 'compile'))
                    captured = f' {fast:>12.1f} {theirs / fast:>5.1f}x'
                print(f'{name:<7} {where:<7} {label:<22} {len(times):>5} {p50:>8.1f} {p90:>8.1f} {times.max():>8.1f} '
                      f'{steady:>11.1f} {theirs:>12.1f} {theirs / p50:>5.1f}x' + captured, flush=True)


if __name__ == '__main__':
    main()
