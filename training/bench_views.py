"""What the planner's pictures cost per plan (a benchmark script, not a test).

    python training/bench_views.py [--checkpoint PATH] [--plans 40] [--threads 1]

On a checkpoint with a frame decoder (default: the shipped arm one), times one plan of the node's default solver
from a 3-frame history of the arm world, then what ``~/imagined`` adds to it (one more rollout of the chosen plan,
the decoder and the strip) and what ``~/debug_image`` adds (drawing camera | goal and the text). Both are paid
only while someone subscribes. Prints p50 / p90 in ms and each as a share of the plan. ROS-free.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.planning import MPC, Actuation, CEMConfig, MPCConfig
from lewm_ros.planning.views import debug_view, imagined_strip
from lewm_ros.sim.registry import make_world


def timed(work, repeats: int) -> np.ndarray:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=str(DEFAULT_CHECKPOINT))
    parser.add_argument('--plans', type=int, default=40)
    parser.add_argument('--threads', type=int, default=1, help='torch threads (the node runs with 1 by default)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    if checkpoint.decoder is None:
        raise SystemExit(f'{args.checkpoint} has no frame decoder (lewm-train decoder.init_from=...)')
    world = make_world('arm', image_size=checkpoint.config.image_size)
    world.reset(seed=0)
    mpc = MPC(checkpoint, Actuation([-1.5, -1.5], [1.5, 1.5]), CEMConfig(), MPCConfig(mode='receding'))
    mpc.set_goal(world.goal_image())
    for _ in range(2 * checkpoint.config.frameskip + 1):  # a full 3-frame history
        mpc.observe(world.render())
        world.step(mpc.act(hold=True))
    mpc.observe(world.render())
    mpc.warm_up()
    request = mpc.request()
    plan = mpc.solve(request)
    plan_ms = timed(lambda: mpc.solve(request), args.plans)
    imagined_ms = timed(lambda: imagined_strip(checkpoint.decoder.frames(mpc.imagine(request, plan)).numpy()),
                        args.plans)
    debug_ms = timed(lambda: debug_view(request.frames[-1], world.goal_image(), ['cost 1.0', 'planning']), args.plans)
    world.close()
    print(f'{platform.processor() or platform.machine()}, torch threads {args.threads}, solver {mpc.solver} '
          f'{mpc.cem.config.samples}x{mpc.cem.config.elites}x{mpc.cem.config.iterations}, {args.plans} repeats')
    for name, times in (('plan', plan_ms), ('+ ~/imagined', imagined_ms), ('+ ~/debug_image', debug_ms)):
        p50, p90 = np.percentile(times, [50, 90])
        print(f'{name:16s} p50 {p50:7.2f} ms  p90 {p90:7.2f} ms  ({p50 / np.median(plan_ms):.2f}x the plan)')


if __name__ == '__main__':
    main()
