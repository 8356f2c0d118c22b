"""Simulator throughput: world steps per second with a frame rendered every step, at 64 and 224 px.

    python training/bench_sim.py [--steps 500]

Random actions, one process, rendering included (that is what collection and sim_node pay).
"""

import argparse
import os
import time

os.environ.setdefault('MUJOCO_GL', 'egl')

from lewm_ros.sim import make_policy, make_world

CASES = (('two_room', 'navigate'), ('arm', 'reach'), ('arm', 'push'))


def steps_per_second(world_name: str, task: str, size: int, steps: int) -> float:
    world = make_world(world_name, task, image_size=size)
    world.reset(seed=0)
    policy = make_policy('random', world, seed=0)
    world.render()  # first render creates the GL context: not part of the steady state
    start = time.perf_counter()
    for _ in range(steps):
        world.step(policy.act())
        world.render()
    elapsed = time.perf_counter() - start
    world.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=500)
    steps = parser.parse_args().steps
    print(f'{"world":<10} {"task":<9} {"64 px":>10} {"224 px":>10}   (steps/s, rendering every step)')
    for world_name, task in CASES:
        rates = [steps_per_second(world_name, task, size, steps) for size in (64, 224)]
        print(f'{world_name:<10} {task:<9} {rates[0]:>10.0f} {rates[1]:>10.0f}')


if __name__ == '__main__':
    main()
