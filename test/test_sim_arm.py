"""The MuJoCo arm: rendering, state handling, determinism, action limits and the experts."""

import itertools

import numpy as np
import pytest

pytest.importorskip('mujoco')
from lewm_ros.sim import make_policy, make_world


@pytest.fixture(scope='module')
def reach():
    world = make_world('arm', 'reach')
    yield world
    world.close()


@pytest.fixture(scope='module')
def push():
    world = make_world('arm', 'push')
    yield world
    world.close()


def test_frames_follow_the_state_and_are_never_blank(reach):
    rng = np.random.default_rng(0)
    frames = [reach.render_state(reach.sample_state(rng)) for _ in range(10)]
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
        assert frame.std() > 10, 'a blank or constant frame'
        orange = (frame[..., 0] > 200) & (frame[..., 1] > 80) & (frame[..., 2] < 80)
        assert orange.sum() > 20, 'the arm must be large and visible'
    assert all(np.abs(a.astype(int) - b).sum() > 1000 for a, b in itertools.pairwise(frames))
    np.testing.assert_array_equal(reach.render_state(reach.sample_state(np.random.default_rng(3))),
                                  reach.render_state(reach.sample_state(np.random.default_rng(3))))
    assert reach.render(224).shape == (224, 224, 3)


def test_goal_image_shows_the_goal_state(reach):
    reach.reset(seed=1)
    start = reach.render()
    goal_image = reach.goal_image()
    assert np.abs(goal_image.astype(int) - start).sum() > 1000
    reach.set_state(reach.goal)
    np.testing.assert_array_equal(reach.render(), goal_image)
    assert reach.success() and reach.distance() == 0.0


def test_state_round_trip_and_determinism(push):
    def rollout(seed):
        push.reset(seed=seed)
        policy = make_policy('random', push, seed=seed)
        for _ in range(15):
            push.step(policy.act())
        return push.get_state(), push.render()

    state, frame = rollout(4)
    again_state, again_frame = rollout(4)
    np.testing.assert_array_equal(state, again_state)
    np.testing.assert_array_equal(frame, again_frame)
    assert (rollout(5)[0] != state).any()

    push.set_state(state)
    np.testing.assert_array_equal(push.get_state(), state)
    np.testing.assert_array_equal(push.render(), frame)
    with pytest.raises(ValueError):
        push.set_state(state[:4])


def test_actions_are_joint_velocities_clamped_to_the_limits(reach):
    reach.reset(seed=0, options={'state': [0.0, 0.0, 0.0, 0.0]})
    for _ in range(3):
        reach.step([10.0, -10.0])
    np.testing.assert_allclose(reach.state[2:], [1.5, -1.5], rtol=0.02)
    for _ in range(30):  # the shoulder turns freely: its angle stays wrapped
        reach.step([1.5, 0.0])
    assert -np.pi <= reach.state[0] < np.pi
    with pytest.raises(ValueError):
        reach.step([np.nan, 0.0])
    with pytest.raises(ValueError):
        reach.step([0.0])


def test_reach_expert_succeeds(reach):
    successes = 0
    for seed in range(20):
        reach.reset(seed=seed)
        policy = make_policy('expert', reach, seed=seed)
        successes += any(reach.step(policy.act())[2] for _ in range(60))
    assert successes >= 19


def test_push_expert_moves_the_cube_to_its_goal(push):
    successes = 0
    for seed in range(8):
        push.reset(seed=seed)
        policy = make_policy('expert', push, seed=seed)
        successes += any(push.step(policy.act())[2] for _ in range(200))
    assert successes >= 5


def test_goal_span_keeps_reach_goals_near_the_start():
    world = make_world('arm', 'reach', goal_span=1.0)
    for seed in range(20):
        start, _ = world.reset(seed=seed)
        delta = (world.goal[:2] - start[:2] + np.pi) % (2 * np.pi) - np.pi
        assert np.abs(delta).max() <= 1.0 + 1e-9
        assert world.goal_distance(start, world.goal) > 2 * world.success_threshold
    with pytest.raises(ValueError, match='goal_span'):
        make_world('arm', 'push', goal_span=1.0)
