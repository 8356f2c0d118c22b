"""lewm-eval: the protocol's pairs, the success rule, the interval, and a run end to end."""

import json

import numpy as np
import pytest
import torch

from lewm_ros.model.checkpoint import save_checkpoint
from lewm_ros.model.config import preset
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim import make_world
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.sim.policies import make_policy
from lewm_ros.training.evaluate import (
    Pair,
    cross_room,
    episode_states,
    run,
    run_episode,
    sample_pairs,
    wilson,
)


@pytest.fixture(scope='module')
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp('heldout')
    collect(CollectSettings(world='two_room', task='navigate', policy='expert', steps=60), 4, root, progress=False)
    return root


def test_pairs_take_the_goal_offset_steps_later_in_the_same_episode(heldout):
    world = make_world('two_room')
    episodes = [(str(bag), episode_states(bag)) for bag in sorted(heldout.glob('episode_*'))]
    pairs = sample_pairs(world, episodes, 20, 25, np.random.default_rng(0))
    for pair in pairs:
        states = dict(episodes)[pair.bag]
        np.testing.assert_array_equal(pair.start, states[pair.start_step])
        np.testing.assert_array_equal(pair.goal, states[pair.start_step + 25])
        assert world.goal_distance(np.array(pair.start), np.array(pair.goal)) > world.success_threshold
    crossing = sample_pairs(world, episodes, 5, 25, np.random.default_rng(0), cross_room)
    assert all(cross_room(np.array(p.start), np.array(p.goal)) for p in crossing)


class Replay:
    """Replays a fixed action sequence (the expert's own path to the goal)."""

    def __init__(self, actions):
        self.actions = actions

    def begin(self, world):
        self.step = 0

    def act(self, world):
        self.step += 1
        return self.actions[self.step - 1]


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
    pair = Pair('none', 0, start.tolist(), goal.tolist())
    assert run_episode(world, pair, len(actions) + 10, Replay(actions + [np.zeros(2)] * 10)) == (True, len(actions))
    assert run_episode(world, pair, len(actions) - 1, Replay(actions)) == (False, len(actions) - 1)


def test_wilson_interval():
    low, high = wilson(45, 50)
    assert low == pytest.approx(0.786, abs=1e-3) and high == pytest.approx(0.957, abs=1e-3)
    assert wilson(50, 50)[1] == 1.0 and wilson(0, 50)[0] == 0.0


def test_end_to_end_writes_results(tmp_path, heldout):
    torch.manual_seed(0)
    cfg = preset('small')
    cfg.predictor.depth, cfg.encoder.channels, cfg.encoder.width = 1, (8, 8, 8, 8), 16
    ckpt = save_checkpoint(tmp_path / 'untrained.safetensors', WorldModel(cfg).eval(), [0, 0], [1, 1])
    results = run(['--checkpoint', str(ckpt), '--world', 'two_room', '--pairs', str(heldout), '--episodes', '3',
                    '--budget', '10', '--samples', '16', '--elites', '4', '--iterations', '2',
                    '--objective', 'closest', '--mode', 'receding', '--execute-steps', '3',
                    '--out', str(tmp_path / 'eval'), '--no-progress'])
    saved = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert set(saved['subsets']) == {'standard', 'cross_room'} and (tmp_path / 'eval' / 'results.png').is_file()
    assert saved['mpc'] == {'mode': 'receding', 'execute_steps': 3, 'intermediate_weight': 0.0, 'objective': 'closest'}
    for entry in results['subsets'].values():
        assert entry['planner']['episodes'] == entry['random']['episodes'] == 3
        assert 0 <= entry['planner']['success_rate'] <= 1
