"""Reacher: dm_control's reacher stepped as dm_control steps it, LeWM's action repeat, both success criteria,
the state, the hidden target, and bags to cache to evaluation on a tiny budget."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.ingest import IngestConfig, ingest
from lewm_ros.sim import make_world, world_spec
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.sim.reacher.simulator import ACTION_REPEAT, Reacher
from lewm_ros.tools.evaluate import run

from .tiny import save_tiny


@pytest.fixture
def world():
    world = Reacher()
    yield world
    world.close()


def test_one_step_is_two_dm_control_steps_of_the_same_torques(world):
    from dm_control.suite import reacher as dm_reacher

    env = dm_reacher.easy(random=0)
    env.reset()
    physics = env.physics
    rng = np.random.default_rng(0)
    for _ in range(20):
        state = np.concatenate([world.sample_state(rng)[:2], rng.uniform(-3, 3, 2)])  # moving, near the limit too
        action = rng.uniform(-1, 1, 2)
        world.reset(options={'state': state, 'goal': world.sample_state(rng)})
        with physics.reset_context():
            physics.data.qpos[:], physics.data.qvel[:] = state[:2], state[2:]
        for _ in range(ACTION_REPEAT):
            env.step(action)  # dm_control: one 0.02 s physics step per environment step here
        world.step(action)
        np.testing.assert_allclose(world.get_state(), np.concatenate([physics.data.qpos, physics.data.qvel]),
                                   rtol=0, atol=1e-12)
    assert world.control_period == pytest.approx(0.04)


def test_torques_are_clamped_to_the_motor_range(world):
    world.reset(seed=0)
    start = world.get_state()
    world.step([5.0, -5.0])
    clamped = world.get_state()
    world.set_state(start)
    world.step([1.0, -1.0])
    np.testing.assert_array_equal(world.get_state(), clamped)


def test_success_is_both_joints_within_tolerance_the_shoulder_wrapped_and_the_official_check_is_not(world):
    goal = np.array([0.5, -0.3, 0.0, 0.0])
    near = goal + np.array([0.04, -0.04, 1.0, 1.0])  # velocities do not matter
    assert world.solved(near, goal) and world.official_solved(near, goal)
    for error in ([0.06, 0.0, 0, 0], [0.0, 0.06, 0, 0]):
        assert not world.solved(goal + np.array(error), goal)
    turned = goal + np.array([2 * np.pi + 0.01, 0.0, 0.0, 0.0])  # one more turn of the shoulder: the same pose
    assert world.solved(turned, goal) and not world.official_solved(turned, goal)
    assert world.goal_distance(turned, goal) == pytest.approx(0.01)
    across = np.array([np.pi - 0.02, 0.0, 0, 0]), np.array([-np.pi + 0.02, 0.0, 0, 0])  # across the +-pi seam
    assert world.solved(*across) and not world.official_solved(*across)
    wrist = np.array([0.0, 2.79, 0, 0]), np.array([0.0, -2.79, 0, 0])  # the limited wrist is never wrapped
    assert not world.solved(*wrist)


def test_the_state_round_trips_the_target_is_hidden_and_the_arm_can_change_colour(world):
    world.reset(seed=1)
    for _ in range(5):
        world.step([0.7, -0.4])
    state, frame = world.get_state(), world.render()
    twin = Reacher()
    try:
        twin.set_state(state)
        np.testing.assert_array_equal(twin.get_state(), state)
        np.testing.assert_array_equal(twin.render(), frame)
        assert twin.model.geom_rgba[twin.model.geom('target').id, 3] == 0.0
    finally:
        twin.close()
    before = world.render()
    world.arm_color = (60, 200, 255)
    np.testing.assert_allclose(world.arm_color, (60, 200, 255), atol=1e-3)
    assert np.abs(world.render().astype(int) - before).sum() > 0


def test_random_torque_episodes_become_bags_a_cache_and_a_tiny_evaluation(tmp_path):
    settings = CollectSettings(world='reacher', task='reach', policy='random', steps=40, image_size=64)
    collect(settings, episodes=3, out=tmp_path / 'bags', progress=False)
    ingest([tmp_path / 'bags'], tmp_path / 'cache', IngestConfig(image_size=64, state_topic='state',
                                                                 action={'dim': 2}), progress=False)
    cache = TrainingCache(tmp_path / 'cache')
    assert cache.action_dim == 2 and cache.state_dim == 4 and len(cache.episodes) == 3
    assert cache.control_period == pytest.approx(0.04)
    assert np.abs(cache.actions).max() <= 1.0 and cache.frames.shape[1:] == (64, 64, 3)

    checkpoint = save_tiny(tmp_path / 'tiny.safetensors', 64)
    results = run(['--checkpoint', str(checkpoint), '--world', 'reacher', '--pairs', str(tmp_path / 'bags'),
                   '--episodes', '3', '--goal-offset', '10', '--budget', '4', '--samples', '8', '--elites', '2',
                   '--iterations', '1', '--no-progress', '--out', str(tmp_path / 'eval')])
    standard = results['subsets']['standard']
    assert set(results['subsets']) == {'standard', 'unsolved'}
    for policy in ('planner', 'random', 'replay'):  # both criteria for every row
        entry = standard[policy]
        assert entry['episodes'] == 3 and 0 <= entry['official_success_rate'] <= entry['success_rate']
    assert world_spec('reacher').probe.targets(np.array([cache.states[0]])).shape == (1, 4)
    table = subprocess.run([sys.executable, str(Path(__file__).parents[1] / 'training' / 'eval_table.py'),
                            str(tmp_path / 'eval')], capture_output=True, text=True, check=True).stdout
    planner_row = next(line for line in table.splitlines() if line.startswith('| planner'))
    assert planner_row.count('official criterion') == 2  # beside the wrapped figure, in both subsets


def test_the_world_registers_with_its_effort_controller_files():
    spec = world_spec('reacher')
    planner = spec.parameters('planner')
    assert planner['action_low'] == [-1.0, -1.0] and planner['control_rate'] == pytest.approx(25.0)
    assert planner['joint_names'] == ['shoulder', 'wrist']
    world = make_world('reacher')
    try:
        assert world.action_space.names == ('shoulder', 'wrist')
        assert world.joint_state().names == ('shoulder', 'wrist')
    finally:
        world.close()
