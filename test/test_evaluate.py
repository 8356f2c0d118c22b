"""lewm-eval: the protocol's pairs, the success rule, the interval, and a run end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.planning import Actuation, CEMConfig, MPCConfig
from lewm_ros.sim import make_policy, make_world
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.sim.two_room import cross_room
from lewm_ros.tools.eval_policies import PlannerPolicy, ReplayPolicy, SimulatorMPC, UniformPolicy
from lewm_ros.tools.evaluate import run, run_episode, wilson
from lewm_ros.tools.pairs import Pair, load_episode, sample_pairs

from .tiny import save_tiny


@pytest.fixture(scope='module')
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp('heldout')
    collect(CollectSettings(world='two_room', task='navigate', policy='expert', steps=60), 4, root, progress=False)
    return root


def test_pairs_take_the_goal_offset_steps_later_in_the_same_episode(heldout):
    world = make_world('two_room')
    episodes = [load_episode(bag) for bag in sorted(heldout.glob('episode_*'))]
    pairs = sample_pairs(world, episodes, 20, 25, np.random.default_rng(0))
    for pair in pairs:
        episode = next(e for e in episodes if e.bag == pair.bag)
        np.testing.assert_array_equal(pair.start, episode.states[pair.start_step])
        np.testing.assert_array_equal(pair.goal, episode.states[pair.start_step + 25])
        np.testing.assert_array_equal(pair.actions, episode.actions[pair.start_step:])
        assert world.goal_distance(np.array(pair.start), np.array(pair.goal)) > world.success_threshold
    crossing = sample_pairs(world, episodes, 5, 25, np.random.default_rng(0), cross_room)
    assert all(cross_room(world, np.array(p.start), np.array(p.goal)) for p in crossing)


def test_success_counts_at_any_step_within_the_budget():
    world = make_world('two_room')
    world.reset(seed=3)
    start, goal = world.get_state(), world.goal.copy()
    expert = make_policy('expert', world, seed=3)
    expert.retarget = False
    actions = []
    while not world.success():
        actions.append(expert.act())
        world.step(actions[-1])
    pair = Pair('none', 0, start.tolist(), goal.tolist(), [a.tolist() for a in actions])
    assert run_episode(world, pair, len(actions) + 10, ReplayPolicy()) == (True, len(actions), True)
    assert run_episode(world, pair, len(actions) - 1, ReplayPolicy()) == (False, len(actions) - 1, False)


def test_wilson_interval():
    low, high = wilson(45, 50)
    assert low == pytest.approx(0.786, abs=1e-3) and high == pytest.approx(0.957, abs=1e-3)
    assert wilson(50, 50)[1] == 1.0 and wilson(0, 50)[0] == 0.0


def test_end_to_end_writes_results(tmp_path, heldout):
    ckpt = save_tiny(tmp_path / 'untrained.safetensors', 64, acting=False)
    results = run(['--checkpoint', str(ckpt), '--world', 'two_room', '--pairs', str(heldout), '--episodes', '3',
                   '--goal-offset', '8',
                    '--budget', '10', '--samples', '16', '--elites', '4', '--iterations', '2',
                    '--objective', 'closest', '--mode', 'receding', '--execute-steps', '3',
                    '--out', str(tmp_path / 'eval'), '--no-progress'])
    saved = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert set(saved['subsets']) == {'standard', 'cross_room'} and (tmp_path / 'eval' / 'results.png').is_file()
    assert saved['mpc'] == {'mode': 'receding', 'execute_steps': 3, 'intermediate_weight': 0.0, 'objective': 'closest',
                            'solver': 'cem', 'prior_share': 0.75, 'prior_budget': 'quick', 'capture': 'none'}
    for entry in results['subsets'].values():
        assert entry['planner']['episodes'] == entry['random']['episodes'] == entry['replay']['episodes'] == 3
        assert 0 <= entry['planner']['success_rate'] <= 1
        # a deterministic world: the recorded actions reach the goal, at the goal offset
        assert entry['replay']['success_rate'] == 1.0 and max(entry['replay']['steps_to_success']) <= 8


def test_the_oracle_solves_what_the_random_policy_does_not(heldout, tmp_path):
    """The planner's loop and search with the true simulator as its model (lewm-eval --oracle) reach Two-Room goals
    25 steps away."""
    world = make_world('two_room')
    pairs = sample_pairs(world, [load_episode(bag) for bag in sorted(heldout.glob('episode_*'))], 6, 25,
                         np.random.default_rng(0))
    checkpoint = load_checkpoint(save_tiny(tmp_path / 'tiny.safetensors', 64))  # its frameskip; not its model
    oracle = PlannerPolicy(SimulatorMPC(world, checkpoint, Actuation(world.action_space.low, world.action_space.high),
                                        CEMConfig(samples=32, elites=4, iterations=2, horizon=5),
                                        MPCConfig(mode='receding', execute_steps=5, objective='closest')))
    solved = sum(run_episode(world, pair, 50, oracle)[0] for pair in pairs)
    random = sum(run_episode(world, pair, 50, UniformPolicy(0))[0] for pair in pairs)
    assert solved >= 5 and solved > random, (solved, random)


def test_push_t_evaluation_smoke(tmp_path):
    """Push-T end to end on a tiny budget: all pairs and block-moved pairs, floor and replay ceiling, GIF."""
    bags = tmp_path / 'bags'
    collect(CollectSettings(world='push_t', task='push', policy='expert', steps=40), 3, bags, progress=False)
    ckpt = save_tiny(tmp_path / 'untrained.safetensors', 64, acting=False)
    results = run(['--checkpoint', str(ckpt), '--world', 'push_t', '--pairs', str(bags), '--episodes', '2',
                   '--budget', '6', '--samples', '8', '--elites', '2', '--iterations', '1', '--gif',
                   '--oracle', '4x2x1', '--out', str(tmp_path / 'eval'), '--no-progress'])
    assert set(results['subsets']) == {'standard', 'block_moved'}
    world = make_world('push_t')
    for pair in results['subsets']['block_moved']['pairs']:
        assert world.block_moved(pair['start'], pair['goal'])
    for entry in results['subsets'].values():
        assert {'planner', 'oracle', 'random', 'replay'} <= set(entry)
    assert (tmp_path / 'eval' / 'episode_standard.gif').is_file()

    # The side-by-side table of two runs on the same pairs (here the same run under two names), and of one planner
    # over two trained models (here the same run twice).
    shutil.copytree(tmp_path / 'eval', tmp_path / 'paper')
    shutil.copytree(tmp_path / 'eval', tmp_path / 'seed1' / 'eval')
    recorded = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    for folder, solver in (('prior', 'prior+cem'), ('mean/eval', 'prior')):  # as runs with an action prior record
        shutil.copytree(tmp_path / 'eval', tmp_path / folder)
        recorded['mpc'].update(solver=solver, prior_share=0.75)
        (tmp_path / folder / 'results.json').write_text(json.dumps(recorded))
    script = Path(__file__).parents[1] / 'training' / 'eval_table.py'

    def table(*runs: str) -> list[str]:
        out = subprocess.run([sys.executable, str(script), *(str(tmp_path / run) for run in runs), '--out',
                              str(tmp_path / 'table.md')], capture_output=True, text=True, check=True).stdout
        assert (tmp_path / 'table.md').read_text().strip() == out.strip()
        return [line for line in out.splitlines() if line.startswith('| ')]

    rows = table('eval', 'paper')
    labels = [row.split(' | ')[0] for row in rows[1:]]
    assert labels == ['| planner (eval)', '| planner (paper)', '| oracle', '| random', '| replay']
    assert 'CEM 8x2x1, H 5' in rows[1] and 'CEM 4x2x1 with the true simulator' in rows[3]
    rows = table('eval', 'prior')
    assert rows[1].startswith('| planner (eval) | CEM 8x2x1, H 5')
    assert rows[2].startswith('| planner (prior) | action prior (75% of the first round) + CEM 8x2x1, H 5')
    assert table('mean/eval')[1].startswith("| planner (eval) | the action prior's mean (no search), H 5")
    mixed = subprocess.run([sys.executable, str(script), str(tmp_path / 'eval'), str(tmp_path / 'mean' / 'eval')],
                           capture_output=True, text=True)  # one row, two planners: refused
    assert mixed.returncode != 0 and 'different planner settings' in mixed.stderr, mixed.stderr
    rows = table('eval', 'seed1/eval', 'paper')
    assert rows[1].startswith('| planner (eval, 2 models)') and rows[2].startswith('| planner (paper) ')
    rate = f"{100 * results['subsets']['standard']['planner']['success_rate']:.0f}%"
    assert f'{rate} / {rate} (mean {rate}, n=2 each)' in rows[1]


def test_the_shipped_checkpoints_action_prior_reaches_arm_goals_on_a_sixteen_candidate_search(tmp_path):
    """prior+cem at 16 x 4 x 1 (0.21-0.25x of the node default's decision time, docs/performance.md) still reaches the
    goals."""
    results = run(['--checkpoint', str(DEFAULT_CHECKPOINT), '--world', 'arm', '--sampled-pairs', '--goal-span', '1.5',
                   '--episodes', '10', '--budget', '60', '--samples', '16', '--elites', '4', '--iterations', '1',
                   '--solver', 'prior+cem', '--no-replay', '--out', str(tmp_path / 'eval'), '--no-progress'])
    entry = results['subsets']['standard']
    assert entry['planner']['success_rate'] >= 0.7 > entry['random']['success_rate'], entry
