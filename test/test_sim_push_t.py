"""Push-T: reset ranges, relative PD actions, pushing, the success rule, rendering, states, policies."""

import numpy as np
import pytest

from lewm_ros.sim import make_policy, make_world
from lewm_ros.sim.push_t.simulator import (
    AGENT_EDGE,
    AGENT_FILL,
    BLOCK_FILL,
    GOAL_GREEN,
    GOAL_POSE,
    KP,
    KV,
    angle_error,
)


@pytest.fixture
def world():
    return make_world('push_t')


def test_reset_draws_the_benchmark_ranges(world):
    states = np.array([world.reset(seed=seed)[0] for seed in range(200)])
    assert (states[:, :2] >= 50).all() and (states[:, :2] < 450).all()
    assert (states[:, 2:4] >= 100).all() and (states[:, 2:4] < 400).all()
    assert (states[:, 4] >= 0).all() and (states[:, 4] < 2 * np.pi).all()
    assert np.ptp(states[:, 4]) > 5.0  # angles over the whole turn
    assert not world.solved(world.get_state(), world.goal)


def test_actions_are_relative_targets_reached_by_the_pd_controller(world):
    start = np.array([100.0, 100.0, 300.0, 250.0, 0.0, 0.0, 0.0])  # block far away: free motion
    world.reset(options={'state': start, 'goal': start})
    action = np.array([0.6, -0.3])
    position, velocity = start[:2].copy(), np.zeros(2)
    target = position + 100.0 * action
    for _ in range(10):  # the reference's integration: velocity from the PD law, then position
        velocity += (KP * (target - position) - KV * velocity) * 0.01
        position += velocity * 0.01
    state = world.step(action)[0]
    np.testing.assert_allclose(state[:2], position, atol=1e-9)
    np.testing.assert_allclose(state[5:7], velocity, atol=1e-9)
    np.testing.assert_array_equal(state[2:5], start[2:5])
    world.step(np.array([5.0, -5.0]))  # clipped to [-1, 1]
    world.reset(options={'state': start, 'goal': start})
    clipped = world.step(np.array([1.0, -1.0]))[0]
    world.reset(options={'state': start, 'goal': start})
    np.testing.assert_allclose(world.step(np.array([5.0, -5.0]))[0], clipped)


def test_the_agent_pushes_the_block_and_passes_through_walls(world):
    # Below the stem's end, pushing up (-y) along the line through the centre of mass: a pure translation.
    world.reset(options={'state': [256.0, 350.0, 256.0, 200.0, 0.0, 0.0, 0.0], 'goal': [0, 0, 0, 0, 0]})
    for _ in range(10):
        state = world.step(np.array([0.0, -0.5]))[0]
    assert state[3] < 170.0 and abs(state[2] - 256.0) < 1.0 and angle_error(state[4], 0.0) < 0.01
    assert state[1] < 300.0  # the agent kept going: collisions never slow it
    world.reset(options={'state': [480.0, 256.0, 150.0, 150.0, 0.0, 0.0, 0.0], 'goal': [0, 0, 0, 0, 0]})
    for _ in range(10):
        state = world.step(np.array([1.0, 0.0]))[0]
    assert state[0] > 520.0  # kinematic: the walls only stop the block


def test_success_is_a_4d_distance_and_an_angle_modulo_two_pi(world):
    goal = np.array([200.0, 200.0, 300.0, 300.0, 0.01, 0.0, 0.0])
    near = goal.copy()
    near[4] = 2 * np.pi - 0.01  # 0.02 rad away across the wrap
    assert world.solved(near, goal)
    off = near.copy()
    off[[0, 2]] += 14.5  # 14.5 px on each of two axes: 20.5 px in 4-D
    assert not world.solved(off, goal)
    turned = goal.copy()
    turned[4] += np.pi / 9 + 1e-3
    assert not world.solved(turned, goal)
    assert angle_error(0.1, 2 * np.pi + 0.1) == pytest.approx(0.0, abs=1e-12)
    assert angle_error(0.0, 3 * np.pi) == pytest.approx(np.pi)


def test_goal_cost_is_one_at_each_success_limit(world):
    goal = np.array([200.0, 200.0, 300.0, 300.0, 0.01, 0.0, 0.0])
    assert world.goal_cost(goal, goal) == 0.0
    moved, turned = goal.copy(), goal.copy()
    moved[0] += 20.0
    turned[4] = 0.01 - np.pi / 9 + 2 * np.pi  # across the wrap
    assert world.goal_cost(moved, goal) == pytest.approx(1.0)
    assert world.goal_cost(turned, goal) == pytest.approx(1.0)


def test_rendering_shapes_and_colours(world):
    state = np.array([100.0, 400.0, 380.0, 120.0, 0.0, 0.0, 0.0])
    image = world.render_state(state, 224)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    scale = 224 / 512
    pixel = lambda x, y: image[int(y * scale), int(x * scale)]  # noqa: E731
    assert tuple(pixel(30, 470)) == (255, 255, 255)
    stem_centre = np.array(GOAL_POSE[:2]) + 75.0 * np.array([-np.sin(GOAL_POSE[2]), np.cos(GOAL_POSE[2])])
    np.testing.assert_array_equal(pixel(*stem_centre), GOAL_GREEN)
    np.testing.assert_array_equal(pixel(380, 120 + 15), BLOCK_FILL)  # inside the bar
    np.testing.assert_array_equal(pixel(100, 400), AGENT_FILL)
    np.testing.assert_array_equal(pixel(100 + 13.5, 400), AGENT_EDGE)  # the ring
    assert world.render_state(state, 64).shape == (64, 64, 3)
    assert world.render().shape == (64, 64, 3)


def test_set_state_round_trip(world):
    state = np.array([120.0, 380.0, 300.0, 200.0, 1.25, 0.0, 0.0])
    world.set_state(state)
    np.testing.assert_allclose(world.get_state(), state, atol=1e-12)
    world.set_state(np.array([120.0, 380.0, 300.0, 200.0, -1.0]))
    assert world.get_state()[4] == pytest.approx(2 * np.pi - 1.0)
    with pytest.raises(ValueError, match='finite'):
        world.set_state([np.nan] * 7)


def _block_error(world, policy_kind: str, seeds=range(8), steps=100) -> float:
    errors = []
    for seed in seeds:
        world.reset(seed=seed)
        policy = make_policy(policy_kind, world, seed=seed)
        policy.retarget = False
        for _ in range(steps):
            world.step(policy.act())
        errors.append(np.linalg.norm(world.block_com(world.get_state()) - world.block_com(world.goal)))
    return float(np.mean(errors))


def test_the_expert_pushes_the_block_towards_its_goal_more_than_the_weak_policy(world):
    world.reset(seed=0)
    start_error = np.mean([np.linalg.norm(world.block_com(world.reset(seed=s)[0]) - world.block_com(world.goal))
                           for s in range(8)])
    expert, weak = _block_error(world, 'expert'), _block_error(world, 'random')
    assert expert < 0.5 * start_error and expert < 0.5 * weak


def test_the_weak_policy_keeps_targets_near_the_block(world):
    world.reset(seed=1)
    policy = make_policy('random', world, seed=1)
    for _ in range(50):
        action = policy.act()
        assert np.all(np.abs(action) <= 1.0)
        target = world.get_state()[:2] + 100.0 * action
        assert np.all(np.abs(target - world.get_state()[2:4]) <= 100.0 + 1e-9) or np.any(np.abs(action) == 1.0)
        world.step(action)
