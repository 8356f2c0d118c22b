"""Closed-loop evaluation at the LeWM protocol: ``lewm-eval --checkpoint CKPT --world two_room --pairs BAGS``.

Start and goal come from held-out episodes (bags with a ``state`` topic that the model never trained
on): a start state at a random step, the goal = the state ``--goal-offset`` steps later in the same
episode, rendered as the goal image. The planner (the same ``MPC`` the ROS node runs) then has
``--budget`` control steps; an episode succeeds if the goal is reached at any step. On the same pairs,
side by side: a uniformly random policy (the floor) and, for pairs from bags, the episode's own recorded
actions replayed from the start state (the ceiling of the protocol: what the data says is reachable) and,
with ``--oracle``, the same search with the true simulator as its model (the planner's ceiling).
The world's own subsets of pairs need what the world is about (its SPEC.subsets): for Two-Room the cross-room
pairs (start and goal in different rooms; only a few standard pairs need the door), for Push-T the block-moved
pairs (the block moves more than 20 px or turns more than 20 degrees; where it stays, the task is navigation).

The planner's settings: ``--planner node`` (default: what planner_node runs in that world, its planner.yaml),
``tuned`` (the world's evaluation settings, lewm_ros/sim/WORLD SPEC.tuned) or ``paper`` (the public LeWM code's:
CEM 300 x 30 x 30, H 5, white noise, cost after the last block, whole plans); any ``--samples``, ``--mode``, ...
given wins over them. Policies: lewm_ros.tools.eval_policies.

Prints a table (success % with Wilson 95% intervals) and writes ``results.json``, ``results.png`` and,
with ``--gif``, ``episode_SUBSET.gif`` (camera | goal) of the first planner episode of each drawn subset that is
not solved at its start.
Imports nothing from ROS.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from lewm_ros.data.ingest import find_bags
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.model.device import DEVICES, resolve_device
from lewm_ros.planning.cem import PAPER_SEARCH, CEMConfig, parse_budget
from lewm_ros.planning.mpc import MPC, PAPER_LOOP, Actuation, MPCConfig
from lewm_ros.sim.registry import PLANNERS, WORLDS, WorldSpec, make_world, world_spec
from lewm_ros.sim.world import World
from lewm_ros.tools.eval_policies import PlannerPolicy, ReplayPolicy, SimulatorMPC, UniformPolicy
from lewm_ros.tools.pairs import Pair, load_episode, sample_pairs, world_pairs


def run_episode(world: World, pair: Pair, budget: int, policy,
                frames: list | None = None) -> tuple[bool, int, bool]:
    """Success at any step within ``budget``, the step it came at (budget when it did not), and success at any
    step by the benchmark's own criterion (``World.official_solved``; where it is stricter, the episode runs on
    until it is met or the budget ends).

    ``frames``: a list to append (camera | goal) 224 px frames to: the start, then one per step.
    """
    world.reset(options={'state': pair.start, 'goal': pair.goal})
    policy.begin(world, pair)
    goal = world.goal_image(224) if frames is not None else None

    def record():
        if frames is not None:
            frames.append(np.concatenate([world.render(224), goal], axis=1))
    record()
    solved_at, official = None, False
    for step in range(budget):
        world.step(policy.act(world))
        record()
        state = world.get_state()
        if solved_at is None and world.solved(state, world.goal):
            solved_at = step + 1
        official = official or world.official_solved(state, world.goal)
        if solved_at is not None and official:
            break
    return solved_at is not None, solved_at or budget, official


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
    """Success statistics of ``policy`` on ``pairs``; ``frames`` collects the frames of the first episode not
    solved at its start (one solved there ends before anything moves)."""
    shown = next((index for index, pair in enumerate(pairs) if not world.solved(pair.start, pair.goal)), 0)
    outcomes = []
    for index, pair in enumerate(tqdm(pairs, desc=label, unit='episode', disable=not progress)):
        outcomes.append(run_episode(world, pair, budget, policy, frames if index == shown else None))
    return summary(outcomes, type(world).official_solved is not World.official_solved)


def summary(outcomes: list[tuple[bool, int, bool]], official: bool = False) -> dict:
    """Success statistics of (success, steps, official success) outcomes; ``official``: also by the benchmark's own
    criterion (worlds where it differs from ``solved``)."""
    successes = sum(ok for ok, _, _ in outcomes)
    low, high = wilson(successes, len(outcomes))
    result = {'success_rate': successes / max(len(outcomes), 1), 'ci95': [low, high], 'successes': successes,
              'episodes': len(outcomes), 'steps_to_success': [steps for ok, steps, _ in outcomes if ok],
              'per_episode': [ok for ok, _, _ in outcomes], 'steps': [steps for _, steps, _ in outcomes]}
    if official:
        met = sum(ok for _, _, ok in outcomes)
        result.update(official_success_rate=met / max(len(outcomes), 1), official_ci95=list(wilson(met, len(outcomes))),
                      official_per_episode=[ok for _, _, ok in outcomes])
    return result


def restricted(entry: dict, keep: list[bool]) -> dict:
    """A subset entry from another one's pairs and outcomes, keeping the pairs marked in ``keep``."""
    out = {'pairs': [pair for pair, kept in zip(entry['pairs'], keep, strict=True) if kept]}
    for policy in POLICY_COLOURS:
        if policy in entry:
            result = entry[policy]
            official = result.get('official_per_episode', result['per_episode'])
            outcomes = zip(result['per_episode'], result['steps'], official, strict=True)
            out[policy] = summary([outcome for outcome, kept in zip(outcomes, keep, strict=True) if kept],
                                  'official_per_episode' in result)
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
    parser.add_argument('--device', default='cpu', choices=DEVICES)
    parser.add_argument('--planner', default='node', choices=PLANNERS,
                        help="node: the world's planner.yaml (what planner_node runs there); tuned: the world's "
                        "evaluation settings; paper: the public LeWM code's. The options below override it")
    for config in (CEMConfig, MPCConfig):  # the search and the loop around it, as the node's cem.* and mpc.*
        for item in fields(config):
            if item.name != 'seed':  # --seed above seeds everything
                parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=None,
                                    choices=item.metadata.get('choices'), help=f'{config.__name__}.{item.name}')
    parser.add_argument('--oracle', metavar='BUDGET',
                        help="also run the planner's loop and search with the true simulator as its model "
                        "(eval_policies.SimulatorMPC) at this CEM budget (node, paper or SAMPLESxELITESxITERATIONS, "
                        "e.g. 64x8x3): the planner's ceiling with a perfect world model")
    parser.add_argument('--no-random', action='store_true', help='skip the random-policy floor')
    parser.add_argument('--no-replay', action='store_true', help='skip replaying the recorded actions')
    parser.add_argument('--subsets', nargs='+', default=None,
                        help="default: standard and the world's own (two_room: cross_room, push_t: block_moved)")
    parser.add_argument('--gif', action='store_true', help="write the first planner episode's frames as a GIF")
    parser.add_argument('--out', type=Path, default=Path('out/eval'))
    parser.add_argument('--no-progress', action='store_true')
    return parser


def planner_configs(spec: WorldSpec, args: argparse.Namespace) -> tuple[CEMConfig, MPCConfig]:
    """The --planner settings, then every option given over them; the search is seeded by --seed."""
    settings = {'cem': PAPER_SEARCH, 'mpc': PAPER_LOOP} if args.planner == 'paper' else spec.planner(args.planner)
    configs = []
    for section, config in (('cem', CEMConfig), ('mpc', MPCConfig)):
        given = {item.name: getattr(args, item.name) for item in fields(config)
                 if getattr(args, item.name, None) is not None}
        configs.append(config(**{**settings[section], **given}))
    return configs[0], configs[1]


def main(argv=None) -> None:
    run(argv)


def run(argv=None) -> dict:
    """``main`` returning the results (for tests and scripts)."""
    args = build_parser().parse_args(argv)
    spec = world_spec(args.world)
    subsets = args.subsets or ['standard', *spec.subsets]
    unknown = sorted(set(subsets) - {'standard', *spec.subsets})
    if unknown:
        raise SystemExit(f'lewm-eval: {args.world} has no subset {", ".join(unknown)} (its subsets: standard'
                         + ''.join(f', {name}' for name in spec.subsets) + ')')
    try:
        device = resolve_device(args.device)
        cem, mpc_config = planner_configs(spec, args)
        oracle_budget = parse_budget(args.oracle) if args.oracle else None
    except ValueError as error:
        raise SystemExit(f'lewm-eval: {error}') from None
    torch.manual_seed(args.seed)
    ckpt = load_checkpoint(args.checkpoint, device)
    goal_span = {'goal_span': args.goal_span} if args.goal_span else {}
    world = make_world(args.world, args.task, image_size=ckpt.config.image_size, **goal_span)
    actuation = Actuation(world.action_space.low, world.action_space.high)
    mpc = MPC(ckpt, actuation, cem, mpc_config)
    mpc.warm_up()
    oracle = None
    if oracle_budget:
        samples, elites, iterations = oracle_budget
        oracle_cem = replace(cem, samples=samples, elites=elites, iterations=iterations)
        oracle = SimulatorMPC(world, ckpt, actuation, oracle_cem, replace(mpc_config, solver='cem'))  # no prior

    episodes = [load_episode(bag) for bag in find_bags(args.pairs)] if args.pairs else None
    replay = episodes is not None and not args.no_replay and all(e.actions is not None for e in episodes)
    rng = np.random.default_rng(args.seed)
    results = {'checkpoint': str(args.checkpoint), 'world': world.name, 'task': world.task,
               'goal_span': args.goal_span,
               'goal_offset': args.goal_offset if episodes else None, 'budget': args.budget, 'seed': args.seed,
               'planner': args.planner, 'cem': asdict(mpc.cem.config),  # what ran: solver auto picks a budget
               'mpc': {**asdict(mpc_config), 'solver': mpc.solver}, 'device': str(device),
               'subsets': {}, 'oracle_cem': asdict(oracle.cem.config) if oracle else None}
    started = time.perf_counter()
    filtered = {name for name in subsets if name in spec.subsets and spec.subsets[name].filtered}
    if filtered and 'standard' not in subsets:
        subsets = ['standard', *subsets]
    subsets.sort(key=lambda name: name in filtered)  # the standard pairs first, their filters after
    for subset in subsets:
        accept = spec.subsets[subset].accept if subset in spec.subsets else None
        if subset in filtered:
            keep = [accept(world, np.array(p['start']), np.array(p['goal']))
                    for p in results['subsets']['standard']['pairs']]
            results['subsets'][subset] = restricted(results['subsets']['standard'], keep)
            continue
        pairs = (sample_pairs(world, episodes, args.episodes, args.goal_offset, rng, accept, spec.pairs_start_solved)
                 if episodes
                 else world_pairs(world, args.episodes, args.seed, accept))
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
            entry['oracle'] = evaluate(world, pairs, args.budget, PlannerPolicy(oracle), f'{subset} oracle',
                                       not args.no_progress)
        if not args.no_random:
            entry['random'] = evaluate(world, pairs, args.budget, UniformPolicy(args.seed), f'{subset} random',
                                       not args.no_progress)
        if replay:
            entry['replay'] = evaluate(world, pairs, args.budget, ReplayPolicy(), f'{subset} replay',
                                       not args.no_progress)
        results['subsets'][subset] = entry
    results['seconds'] = time.perf_counter() - started
    report(results, args)
    return results


def report(results: dict, args: argparse.Namespace) -> None:
    """Print the table, write results.json and (with the random floor) results.png."""
    goals = f'goal {args.goal_offset} steps ahead' if results['goal_offset'] else "the world's sampled goals"
    print(f"\n{results['world']}/{results['task']}: {goals}, budget {args.budget}, {args.episodes} pairs per subset, "
          f"planner {args.planner}: {CEMConfig(**results['cem'])}, {MPCConfig(**results['mpc'])}")
    print(f"{'subset':12s} {'policy':8s} {'success':>8s}  95% interval")
    for subset, entry in results['subsets'].items():
        for policy in POLICY_COLOURS:
            if policy in entry:
                r = entry[policy]
                timing = f"  plans p50 {r['plan_ms_p50']:.0f} ms, p90 {r['plan_ms_p90']:.0f} ms" if 'plans' in r else ''
                official = (f"  (official criterion {100 * r['official_success_rate']:.1f}%)"
                            if 'official_success_rate' in r else '')
                print(f"{subset:12s} {policy:8s} {100 * r['success_rate']:7.1f}%  "
                      f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]{official}{timing}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(json.dumps(results, indent=1))
    if not args.no_random:
        plot(results, args.out / 'results.png')
    print(f"wrote {args.out / 'results.json'} ({results['seconds']:.0f} s)")


if __name__ == '__main__':
    main()
