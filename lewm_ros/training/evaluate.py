"""Closed-loop evaluation at the LeWM protocol: ``lewm-eval --checkpoint CKPT --world two_room --pairs BAGS``.

Start and goal come from held-out episodes (bags with a ``state`` topic that the model never trained
on): a start state at a random step, the goal = the state ``--goal-offset`` steps later in the same
episode, rendered as the goal image. The planner (the same ``MPC`` the ROS node runs) then has
``--budget`` control steps; an episode succeeds if the goal is reached at any step. A uniformly random
policy runs on the same pairs as the floor. For Two-Room the cross-room pairs (start and goal in
different rooms) are evaluated as a second subset, since only a few standard pairs need the door.

Prints a table (success % with Wilson 95% intervals) and writes ``results.json`` and ``results.png``.
Imports nothing from ROS.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lewm_ros.data.bags import BagReader
from lewm_ros.data.ingest import find_bags
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.planning.cem import OBJECTIVES, CEMConfig
from lewm_ros.planning.mpc import MODES, MPC, Actuation, MPCConfig
from lewm_ros.sim import make_world
from lewm_ros.sim.policies import RandomPolicy
from lewm_ros.sim.two_room import room_of
from lewm_ros.sim.world import World
from lewm_ros.training.train import resolve_device


@dataclass
class Pair:
    bag: str
    start_step: int
    start: list[float]
    goal: list[float]


def episode_states(bag: Path, topic: str = 'state') -> np.ndarray:
    """(T, S) recorded true states of one episode bag."""
    with BagReader(bag) as reader:
        name = next((t for t in reader.topics if t.lstrip('/') == topic.lstrip('/')), None)
        if name is None:
            raise ValueError(f'{bag}: no {topic!r} topic; held-out episodes need the true state '
                             '(lewm-collect writes it)')
        return np.array([np.asarray(m.msg.data, np.float64) for m in reader.messages([name])])


def cross_room(start: np.ndarray, goal: np.ndarray) -> bool:
    return room_of(start[0]) != room_of(goal[0])


def sample_pairs(world: World, episodes: list[tuple[str, np.ndarray]], count: int, offset: int,
                 rng: np.random.Generator, accept=None) -> list[Pair]:
    """``count`` (start, goal offset steps later) pairs, not already solved at the start."""
    usable = [(bag, states) for bag, states in episodes if len(states) > offset]
    if not usable:
        raise ValueError(f'no held-out episode is longer than the goal offset ({offset} steps)')
    pairs = []
    for _ in range(1000 * count):
        if len(pairs) == count:
            break
        bag, states = usable[rng.integers(len(usable))]
        step = int(rng.integers(len(states) - offset))
        start, goal = states[step], states[step + offset]
        if world.goal_distance(start, goal) <= world.success_threshold or (accept and not accept(start, goal)):
            continue
        pairs.append(Pair(bag, step, start.tolist(), goal.tolist()))
    if len(pairs) < count:
        raise ValueError(f'found only {len(pairs)} of {count} acceptable pairs in the held-out episodes')
    return pairs


def world_pairs(world: World, count: int, seed: int, accept=None) -> list[Pair]:
    """Pairs from ``world.reset(seed=seed + i)``: the world's own start and goal distributions."""
    pairs, index = [], seed
    while len(pairs) < count:
        start, _ = world.reset(seed=index)
        if not accept or accept(start, world.goal):
            pairs.append(Pair(f'reset(seed={index})', 0, start.tolist(), world.goal.tolist()))
        index += 1
    return pairs


def run_episode(world: World, pair: Pair, budget: int, policy) -> tuple[bool, int]:
    """Success at any step within ``budget``, and the step it came at (budget when it did not)."""
    world.reset(options={'state': pair.start, 'goal': pair.goal})
    policy.begin(world)
    for step in range(budget):
        world.step(policy.act(world))
        if world.success():
            return True, step + 1
    return False, budget


class PlannerPolicy:
    def __init__(self, mpc: MPC):
        self.mpc = mpc

    def begin(self, world: World):
        self.mpc.reset()
        self.mpc.set_goal(world.goal_image())

    def act(self, world: World) -> np.ndarray:
        self.mpc.observe(world.render())
        if self.mpc.needs_plan:
            self.mpc.replan()
        return self.mpc.act()


class UniformPolicy:
    def __init__(self, seed: int):
        self.seed = seed

    def begin(self, world: World):
        self.random = RandomPolicy(world, self.seed)
        self.seed += 1

    def act(self, world: World) -> np.ndarray:
        return self.random.act()


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(world: World, pairs: list[Pair], budget: int, policy, label: str, progress: bool) -> dict:
    outcomes = []
    for pair in tqdm(pairs, desc=label, unit='episode', disable=not progress):
        outcomes.append(run_episode(world, pair, budget, policy))
    successes = sum(ok for ok, _ in outcomes)
    low, high = wilson(successes, len(outcomes))
    return {'success_rate': successes / len(outcomes), 'ci95': [low, high], 'successes': successes,
            'episodes': len(outcomes), 'steps_to_success': [steps for ok, steps in outcomes if ok],
            'per_episode': [ok for ok, _ in outcomes]}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    subsets = list(results['subsets'])
    fig, ax = plt.subplots(figsize=(2.5 + 2 * len(subsets), 4))
    for offset, (policy, colour) in zip((-0.2, 0.2), (('planner', 'tab:blue'), ('random', 'tab:grey')), strict=True):
        entries = [results['subsets'][s][policy] for s in subsets]
        rates = np.array([100 * e['success_rate'] for e in entries])
        errors = np.abs(np.array([[100 * bound for bound in e['ci95']] for e in entries]).T - rates)  # (2, n)
        ax.bar(np.arange(len(subsets)) + offset, rates, 0.4, yerr=errors, capsize=4, color=colour, label=policy)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_ylabel('success %  (95% Wilson interval)')
    ax.set_ylim(0, 105)
    goals = f"goal {results['goal_offset']} steps ahead" if results['goal_offset'] else 'sampled goals'
    ax.set_title(f"{results['world']}: {goals}, budget {results['budget']}")
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--world', required=True, choices=['two_room', 'arm'])
    parser.add_argument('--task', help="world task (default: the world's first)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--pairs', nargs='+', type=Path,
                        help='held-out episode bags (or folders of them) with a state topic')
    source.add_argument('--sampled-pairs', action='store_true',
                        help="start and goal drawn by the world's own sampler, as sim_node's reset does")
    parser.add_argument('--goal-span', type=float, help='arm reach with --sampled-pairs: goals within this many '
                        'radians per joint (as sim_node goal_span)')
    parser.add_argument('--episodes', type=int, default=50, help='pairs per subset')
    parser.add_argument('--goal-offset', type=int, default=25, help='goal = the state this many steps later')
    parser.add_argument('--budget', type=int, default=50, help='control steps per episode')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda', 'auto'])
    choices = {'mode': MODES, 'objective': OBJECTIVES}
    for config in (CEMConfig, MPCConfig):  # the search and the loop around it, as the node's cem.* and mpc.*
        for item in fields(config):
            if item.name != 'seed':  # --seed above seeds everything
                parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=item.default,
                                    choices=choices.get(item.name),
                                    help=f'{config.__name__}.{item.name} (default {item.default})')
    parser.add_argument('--no-random', action='store_true', help='skip the random-policy floor')
    parser.add_argument('--subsets', nargs='+', default=None, help='standard and/or cross_room (two_room)')
    parser.add_argument('--out', type=Path, default=Path('out/eval'))
    parser.add_argument('--no-progress', action='store_true')
    return parser


def main(argv=None) -> None:
    run(argv)


def run(argv=None) -> dict:
    """``main`` returning the results (for tests and scripts)."""
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device, 0)
    torch.manual_seed(args.seed)
    ckpt = load_checkpoint(args.checkpoint, device)
    goal_span = {'goal_span': args.goal_span} if args.goal_span else {}
    world = make_world(args.world, args.task, image_size=ckpt.config.image_size, **goal_span)
    cem = CEMConfig(**{item.name: getattr(args, item.name) for item in fields(CEMConfig)})
    mpc_config = MPCConfig(**{item.name: getattr(args, item.name) for item in fields(MPCConfig)})
    mpc = MPC(ckpt, Actuation(world.action_space.low, world.action_space.high), cem, mpc_config)
    mpc.warm_up()

    episodes = [(str(bag), episode_states(bag)) for bag in find_bags(args.pairs)] if args.pairs else None
    subsets = args.subsets or (['standard', 'cross_room'] if args.world == 'two_room' else ['standard'])
    accept = {'standard': None, 'cross_room': cross_room}
    rng = np.random.default_rng(args.seed)
    results = {'checkpoint': str(args.checkpoint), 'world': world.name, 'task': world.task,
               'goal_span': args.goal_span,
               'goal_offset': args.goal_offset if episodes else None, 'budget': args.budget, 'seed': args.seed,
               'cem': asdict(cem), 'mpc': asdict(mpc_config), 'device': str(device), 'subsets': {}}
    started = time.perf_counter()
    for subset in subsets:
        pairs = (sample_pairs(world, episodes, args.episodes, args.goal_offset, rng, accept[subset]) if episodes
                 else world_pairs(world, args.episodes, args.seed, accept[subset]))
        entry = {'pairs': [asdict(p) for p in pairs]}
        entry['planner'] = evaluate(world, pairs, args.budget, PlannerPolicy(mpc), f'{subset} planner',
                                    not args.no_progress)
        if not args.no_random:
            entry['random'] = evaluate(world, pairs, args.budget, UniformPolicy(args.seed), f'{subset} random',
                                       not args.no_progress)
        results['subsets'][subset] = entry
    results['seconds'] = time.perf_counter() - started

    goals = f'goal {args.goal_offset} steps ahead' if episodes else "the world's sampled goals"
    print(f"\n{world.name}/{world.task}: {goals}, budget {args.budget}, "
          f"{args.episodes} pairs per subset, {cem}, {mpc_config}")
    print(f"{'subset':12s} {'policy':8s} {'success':>8s}  95% interval")
    for subset, entry in results['subsets'].items():
        for policy in ('planner', 'random'):
            if policy in entry:
                r = entry[policy]
                print(f"{subset:12s} {policy:8s} {100 * r['success_rate']:7.1f}%  "
                      f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(json.dumps(results, indent=1))
    if not args.no_random:
        plot(results, args.out / 'results.png')
    print(f"wrote {args.out / 'results.json'} ({results['seconds']:.0f} s)")
    return results


if __name__ == '__main__':
    main()
