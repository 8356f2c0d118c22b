"""Closed-loop evaluation at the LeWM protocol: ``lewm-eval --checkpoint CKPT --world two_room --pairs BAGS``.

Start and goal come from held-out episodes (bags with a ``state`` topic that the model never trained
on): a start state at a random step, the goal = the state ``--goal-offset`` steps later in the same
episode, rendered as the goal image. The planner (the same ``MPC`` the ROS node runs) then has
``--budget`` control steps; an episode succeeds if the goal is reached at any step. On the same pairs,
side by side: a uniformly random policy (the floor) and, for pairs from bags, the episode's own recorded
actions replayed from the start state (the ceiling of the protocol: what the data says is reachable) and,
with ``--oracle``, the same search with the true simulator as its model (the planner's ceiling).
A second subset of pairs needs what the world is about: for Two-Room the cross-room pairs (start and goal
in different rooms; only a few standard pairs need the door), for Push-T the block-moved pairs (the block
moves more than 20 px or turns more than 20 degrees; where it stays, the task is navigation).

Prints a table (success % with Wilson 95% intervals) and writes ``results.json``, ``results.png`` and,
with ``--gif``, ``episode_SUBSET.gif`` (camera | goal) of the first planner episode of each drawn subset.
Imports nothing from ROS.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from lewm_ros.data.bags import BagReader
from lewm_ros.data.ingest import find_bags
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.planning.cem import CEM, OBJECTIVES, CEMConfig, normalised_bounds
from lewm_ros.planning.mpc import CAPTURES, MODES, MPC, SOLVERS, Actuation, MPCConfig
from lewm_ros.sim import WORLDS, make_world
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
    actions: list[list[float]] | None = None  # the episode's recorded actions from the start step on


@dataclass
class Episode:
    bag: str
    states: np.ndarray  # (T + 1, S) recorded true states
    actions: np.ndarray | None  # (T, A) recorded actions (Float64MultiArray commands), None without them


def _topic(reader: BagReader, topic: str) -> str | None:
    return next((t for t in reader.topics if t.lstrip('/') == topic.lstrip('/')), None)


def load_episode(bag: Path, state_topic: str = 'state', command_topic: str = 'command') -> Episode:
    """One held-out episode bag: its true states and, when recorded as Float64MultiArray, its actions."""
    with BagReader(bag) as reader:
        name = _topic(reader, state_topic)
        if name is None:
            raise ValueError(f'{bag}: no {state_topic!r} topic; held-out episodes need the true state '
                             '(lewm-collect writes it)')
        states = np.array([np.asarray(m.msg.data, np.float64) for m in reader.messages([name])])
        command = _topic(reader, command_topic)
        actions = None
        if command is not None and reader.topics[command] == 'std_msgs/msg/Float64MultiArray':
            actions = np.array([np.asarray(m.msg.data, np.float64) for m in reader.messages([command])])
        return Episode(str(bag), states, actions)


def cross_room(world: World, start: np.ndarray, goal: np.ndarray) -> bool:
    return room_of(start[0]) != room_of(goal[0])


def block_moved(world: World, start: np.ndarray, goal: np.ndarray) -> bool:
    return world.block_moved(start, goal)


SUBSETS = {'standard': None, 'cross_room': cross_room, 'block_moved': block_moved}
# Subsets taken from the standard pairs rather than drawn apart: most standard pairs qualify (in Push-T
# expert episodes the block moves in about 5 of 6 pairs), so the filter costs nothing and keeps n close to 50.
FILTERED = {'block_moved'}
WORLD_SUBSETS = {'two_room': ('standard', 'cross_room'), 'push_t': ('standard', 'block_moved')}


def sample_pairs(world: World, episodes: list[Episode], count: int, offset: int, rng: np.random.Generator,
                 accept=None) -> list[Pair]:
    """``count`` (start, goal offset steps later) pairs, not already solved at the start."""
    usable = [episode for episode in episodes if len(episode.states) > offset]
    if not usable:
        raise ValueError(f'no held-out episode is longer than the goal offset ({offset} steps)')
    pairs = []
    for _ in range(1000 * count):
        if len(pairs) == count:
            break
        episode = usable[rng.integers(len(usable))]
        step = int(rng.integers(len(episode.states) - offset))
        start, goal = episode.states[step], episode.states[step + offset]
        if world.solved(start, goal) or (accept and not accept(world, start, goal)):
            continue
        actions = None if episode.actions is None else episode.actions[step:].tolist()
        pairs.append(Pair(episode.bag, step, start.tolist(), goal.tolist(), actions))
    if len(pairs) < count:
        raise ValueError(f'found only {len(pairs)} of {count} acceptable pairs in the held-out episodes')
    return pairs


def world_pairs(world: World, count: int, seed: int, accept=None) -> list[Pair]:
    """Pairs from ``world.reset(seed=seed + i)``: the world's own start and goal distributions."""
    pairs, index = [], seed
    while len(pairs) < count:
        start, _ = world.reset(seed=index)
        if not accept or accept(world, start, world.goal):
            pairs.append(Pair(f'reset(seed={index})', 0, start.tolist(), world.goal.tolist()))
        index += 1
    return pairs


def run_episode(world: World, pair: Pair, budget: int, policy, frames: list | None = None) -> tuple[bool, int]:
    """Success at any step within ``budget``, and the step it came at (budget when it did not).

    ``frames``: a list to append (camera | goal) 224 px frames to, one per step.
    """
    world.reset(options={'state': pair.start, 'goal': pair.goal})
    policy.begin(world, pair)
    goal = world.goal_image(224) if frames is not None else None
    for step in range(budget):
        if frames is not None:
            frames.append(np.concatenate([world.render(224), goal], axis=1))
        world.step(policy.act(world))
        if world.success():
            return True, step + 1
    return False, budget


class PlannerPolicy:
    def __init__(self, mpc: MPC):
        self.mpc = mpc
        self.plan_seconds: list[float] = []  # decision time of every plan made

    def begin(self, world: World, pair: Pair):
        self.mpc.reset()
        self.mpc.set_goal(world.goal_image())

    def act(self, world: World) -> np.ndarray:
        self.mpc.observe(world.render())
        if self.mpc.needs_plan:
            self.plan_seconds.append(self.mpc.replan().seconds)
        return self.mpc.act()


class SimulatorPlanner:
    """The planner's search with the true simulator as its model: the same CEM (in raw action units) over the
    same action blocks and horizon, replanned as often (whole plans in paper mode, else every ``execute_steps``),
    every candidate rolled out in a private copy of the world from the true state, its cost the world's
    ``goal_cost`` towards the goal state after the last or the closest block. What a perfect world model would
    give this search: the gap to the planner is the model's, the gap to replay the search's."""

    def __init__(self, world: World, cem: CEMConfig, mpc: MPCConfig, frameskip: int):
        self.sim = make_world(world.name, world.task, image_size=8)
        self.cem_config, self.frameskip = cem, frameskip
        self.closest = mpc.objective == 'closest'
        self.execute = cem.horizon * frameskip if mpc.mode == 'paper' else mpc.execute_steps
        self.bounds = normalised_bounds(world.action_space.low, world.action_space.high, lambda a: a, frameskip)

    def begin(self, world: World, pair: Pair):
        self.cem = CEM(self.cem_config, *self.bounds, action_dim=world.action_space.shape[0])
        self.goal, self.queue, self.plan, self.start = np.asarray(pair.goal), [], None, None
        self.sim.set_goal(self.goal)  # once: every rollout of this pair is towards it

    def cost(self, candidates: torch.Tensor) -> torch.Tensor:
        """candidates (N, H, K) raw action blocks -> (N,) goal costs after the last (or the closest) block."""
        costs = []
        for blocks in candidates.double().numpy():
            self.sim.set_state(self.start)
            per_block = []
            for block in blocks:  # (K,)
                for action in block.reshape(self.frameskip, -1):
                    self.sim.step(action)
                per_block.append(self.sim.goal_cost(self.sim.get_state(), self.goal))
            costs.append(min(per_block) if self.closest else per_block[-1])
        return torch.tensor(costs)

    def act(self, world: World) -> np.ndarray:
        if not self.queue:
            self.start = world.get_state()
            warm = None
            if self.plan is not None:  # the previous plan less its executed blocks, padded with zero actions
                done = self.execute // self.frameskip
                warm = torch.cat([self.plan[done:], torch.zeros_like(self.plan[:done])])
            self.plan, _ = self.cem.plan(self.cost, warm_start=warm)  # (H, K)
            self.queue = list(self.plan.reshape(-1, world.action_space.shape[0]).double().numpy()[:self.execute])
        return self.queue.pop(0)


class UniformPolicy:
    def __init__(self, seed: int):
        self.seed = seed

    def begin(self, world: World, pair: Pair):
        self.random = RandomPolicy(world, self.seed)
        self.seed += 1

    def act(self, world: World) -> np.ndarray:
        return self.random.act()


class ReplayPolicy:
    """The episode's own recorded actions from the start step on (then no action): the protocol's ceiling."""

    def begin(self, world: World, pair: Pair):
        self.actions, self.step = np.asarray(pair.actions, np.float64), 0
        self.rest = np.zeros(world.action_space.shape)

    def act(self, world: World) -> np.ndarray:
        self.step += 1
        return self.actions[self.step - 1] if self.step <= len(self.actions) else self.rest


def parse_budget(text: str) -> tuple[int, int, int]:
    """'SAMPLESxELITESxITERATIONS' (a CEM budget, e.g. '64x8x3') -> (samples, elites, iterations)."""
    parts = text.split('x')
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f'bad CEM budget {text!r}: want SAMPLESxELITESxITERATIONS, e.g. 64x8x3')
    samples, elites, iterations = (int(part) for part in parts)
    return samples, elites, iterations


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(world: World, pairs: list[Pair], budget: int, policy, label: str, progress: bool,
             frames: list | None = None) -> dict:
    """Success statistics of ``policy`` on ``pairs``; ``frames`` collects the first episode's frames."""
    outcomes = []
    for index, pair in enumerate(tqdm(pairs, desc=label, unit='episode', disable=not progress)):
        outcomes.append(run_episode(world, pair, budget, policy, frames if index == 0 else None))
    return summary(outcomes)


def summary(outcomes: list[tuple[bool, int]]) -> dict:
    """Success statistics of (success, steps) outcomes."""
    successes = sum(ok for ok, _ in outcomes)
    low, high = wilson(successes, len(outcomes))
    return {'success_rate': successes / max(len(outcomes), 1), 'ci95': [low, high], 'successes': successes,
            'episodes': len(outcomes), 'steps_to_success': [steps for ok, steps in outcomes if ok],
            'per_episode': [ok for ok, _ in outcomes], 'steps': [steps for _, steps in outcomes]}


def restricted(entry: dict, keep: list[bool]) -> dict:
    """A subset entry from another one's pairs and outcomes, keeping the pairs marked in ``keep``."""
    out = {'pairs': [pair for pair, kept in zip(entry['pairs'], keep, strict=True) if kept]}
    for policy in POLICY_COLOURS:
        if policy in entry:
            outcomes = zip(entry[policy]['per_episode'], entry[policy]['steps'], strict=True)
            out[policy] = summary([outcome for outcome, kept in zip(outcomes, keep, strict=True) if kept])
    return out


POLICY_COLOURS = {'planner': 'tab:blue', 'oracle': 'tab:purple', 'random': 'tab:grey', 'replay': 'tab:green'}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    subsets = list(results['subsets'])
    policies = [policy for policy in POLICY_COLOURS if policy in results['subsets'][subsets[0]]]
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(3.5 + 2 * len(subsets), 4))
    for index, policy in enumerate(policies):
        entries = [results['subsets'][s][policy] for s in subsets]
        rates = np.array([100 * e['success_rate'] for e in entries])
        errors = np.abs(np.array([[100 * bound for bound in e['ci95']] for e in entries]).T - rates)  # (2, n)
        offset = (index - (len(policies) - 1) / 2) * width
        ax.bar(np.arange(len(subsets)) + offset, rates, width, yerr=errors, capsize=4, color=POLICY_COLOURS[policy],
               label=policy)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_ylabel('success %  (95% Wilson interval)')
    ax.set_ylim(0, 105)
    goals = f"goal {results['goal_offset']} steps ahead" if results['goal_offset'] else 'sampled goals'
    ax.set_title(f"{results['world']}: {goals}, budget {results['budget']}")
    ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5))  # beside the axes: bars reach every height
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--world', required=True, choices=sorted(WORLDS))
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
    choices = {'mode': MODES, 'objective': OBJECTIVES, 'solver': SOLVERS, 'capture': CAPTURES}
    for config in (CEMConfig, MPCConfig):  # the search and the loop around it, as the node's cem.* and mpc.*
        for item in fields(config):
            if item.name != 'seed':  # --seed above seeds everything
                parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=item.default,
                                    choices=choices.get(item.name),
                                    help=f'{config.__name__}.{item.name} (default {item.default})')
    parser.add_argument('--oracle', metavar='SAMPLESxELITESxITERATIONS',
                        help="also run the search with the true simulator as its model (SimulatorPlanner) at this "
                        "CEM budget, e.g. 64x8x3: the planner's ceiling with a perfect world model")
    parser.add_argument('--no-random', action='store_true', help='skip the random-policy floor')
    parser.add_argument('--no-replay', action='store_true', help='skip replaying the recorded actions')
    parser.add_argument('--subsets', nargs='+', default=None, choices=sorted(SUBSETS),
                        help='default: standard, and cross_room (two_room) or block_moved (push_t)')
    parser.add_argument('--gif', action='store_true', help="write the first planner episode's frames as a GIF")
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
    oracle = None
    if args.oracle:
        try:
            samples, elites, iterations = parse_budget(args.oracle)
        except ValueError as error:
            raise SystemExit(f'lewm-eval --oracle: {error}') from None
        oracle_cem = replace(cem, samples=samples, elites=elites, iterations=iterations)
        oracle = SimulatorPlanner(world, oracle_cem, mpc_config, ckpt.config.frameskip)

    episodes = [load_episode(bag) for bag in find_bags(args.pairs)] if args.pairs else None
    subsets = args.subsets or list(WORLD_SUBSETS.get(world.name, ('standard',)))
    replay = episodes is not None and not args.no_replay and all(e.actions is not None for e in episodes)
    rng = np.random.default_rng(args.seed)
    results = {'checkpoint': str(args.checkpoint), 'world': world.name, 'task': world.task,
               'goal_span': args.goal_span,
               'goal_offset': args.goal_offset if episodes else None, 'budget': args.budget, 'seed': args.seed,
               'cem': asdict(cem), 'mpc': asdict(mpc_config), 'device': str(device), 'subsets': {},
               'oracle_cem': asdict(oracle.cem_config) if oracle else None}
    started = time.perf_counter()
    if FILTERED & set(subsets) and 'standard' not in subsets:
        subsets = ['standard', *subsets]
    subsets.sort(key=lambda name: name in FILTERED)  # the standard pairs first, their filters after
    for subset in subsets:
        if subset in FILTERED:
            keep = [SUBSETS[subset](world, np.array(p['start']), np.array(p['goal']))
                    for p in results['subsets']['standard']['pairs']]
            results['subsets'][subset] = restricted(results['subsets']['standard'], keep)
            continue
        pairs = (sample_pairs(world, episodes, args.episodes, args.goal_offset, rng, SUBSETS[subset]) if episodes
                 else world_pairs(world, args.episodes, args.seed, SUBSETS[subset]))
        entry = {'pairs': [{k: v for k, v in asdict(p).items() if k != 'actions'} for p in pairs]}
        frames = [] if args.gif else None
        planner = PlannerPolicy(mpc)
        entry['planner'] = evaluate(world, pairs, args.budget, planner, f'{subset} planner', not args.no_progress,
                                    frames)
        p50, p90 = np.percentile(1000 * np.array(planner.plan_seconds), [50, 90])
        entry['planner'].update(plans=len(planner.plan_seconds), plan_ms_p50=float(p50), plan_ms_p90=float(p90))
        if frames:
            args.out.mkdir(parents=True, exist_ok=True)
            imageio.mimsave(args.out / f'episode_{subset}.gif', frames, duration=0.1, loop=0)
        if oracle is not None:
            entry['oracle'] = evaluate(world, pairs, args.budget, oracle, f'{subset} oracle', not args.no_progress)
        if not args.no_random:
            entry['random'] = evaluate(world, pairs, args.budget, UniformPolicy(args.seed), f'{subset} random',
                                       not args.no_progress)
        if replay:
            entry['replay'] = evaluate(world, pairs, args.budget, ReplayPolicy(), f'{subset} replay',
                                       not args.no_progress)
        results['subsets'][subset] = entry
    results['seconds'] = time.perf_counter() - started

    goals = f'goal {args.goal_offset} steps ahead' if episodes else "the world's sampled goals"
    print(f"\n{world.name}/{world.task}: {goals}, budget {args.budget}, "
          f"{args.episodes} pairs per subset, {cem}, {mpc_config}")
    print(f"{'subset':12s} {'policy':8s} {'success':>8s}  95% interval")
    for subset, entry in results['subsets'].items():
        for policy in POLICY_COLOURS:
            if policy in entry:
                r = entry[policy]
                timing = f"  plans p50 {r['plan_ms_p50']:.0f} ms, p90 {r['plan_ms_p90']:.0f} ms" if 'plans' in r else ''
                print(f"{subset:12s} {policy:8s} {100 * r['success_rate']:7.1f}%  "
                      f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]{timing}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(json.dumps(results, indent=1))
    if not args.no_random:
        plot(results, args.out / 'results.png')
    print(f"wrote {args.out / 'results.json'} ({results['seconds']:.0f} s)")
    return results


if __name__ == '__main__':
    main()
