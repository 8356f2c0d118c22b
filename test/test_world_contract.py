"""The contract every registered world meets (lewm_ros.sim.registry.WORLDS): a world is tested the day it is
registered. Its own physics and rendering are tested in its own file (test_sim_WORLD.py)."""

import numpy as np
import pytest

from lewm_ros.sim import WORLDS, make_policy, make_world, world_spec
from lewm_ros.sim.config import SimConfig
from lewm_ros.tools.run_config import load_config, world_config

TASKS = [(name, task) for name in sorted(WORLDS) for task in world_spec(name).simulator.tasks]


@pytest.fixture(params=TASKS, ids=[f'{name}-{task}' for name, task in TASKS])
def world(request):
    name, task = request.param
    world = make_world(name, task)
    yield world
    world.close()


def test_reset_and_step_follow_the_gymnasium_contract(world):
    state, info = world.reset(seed=3)
    assert state.ndim == 1 and np.isfinite(state).all() and {'success', 'distance'} <= set(info)
    assert not world.solved(state, world.goal) and world.solved(world.goal, world.goal)
    action = make_policy('random', world, seed=3).act()
    assert action.shape == world.action_space.shape and world.action_space.names
    state, reward, terminated, truncated, info = world.step(action)
    assert state.shape == world.get_state().shape and reward == float(terminated) == float(info['success'])
    assert world.steps == 1 and not truncated and world.control_period > 0
    with pytest.raises(ValueError):
        world.step(np.full(world.action_space.shape, np.nan))


def test_frames_are_rgb_at_any_size_and_the_goal_image_renders_the_goal_state(world):
    world.reset(seed=4)
    for size in (32, 64):
        frame = world.render(size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8 and frame.std() > 5
    np.testing.assert_array_equal(world.goal_image(), world.render_state(world.goal))
    assert np.abs(world.goal_image().astype(int) - world.render()).sum() > 0  # the start is not the goal


def test_a_state_restores_in_another_instance(world):
    """At rest (a reset's state) every world restores exactly; mid-episode, the worlds that say so reproduce the
    next step exactly (the oracle rolls candidates out from restored states)."""
    twin = make_world(world.name, world.task)
    try:
        start, _ = world.reset(seed=5)
        twin.set_state(start)
        np.testing.assert_array_equal(twin.get_state(), start)
        np.testing.assert_array_equal(twin.render(), world.render())
        policy = make_policy('random', world, seed=5)
        for _ in range(7):
            world.step(policy.act())
        twin.set_state(world.get_state())
        twin.set_goal(world.goal)
        action = policy.act()
        world.step(action)
        twin.step(action)
        if type(world).restores_exactly:
            np.testing.assert_array_equal(twin.get_state(), world.get_state())
        else:
            np.testing.assert_allclose(twin.get_state(), world.get_state(), atol=10.0)
    finally:
        twin.close()


def test_the_expert_moves_towards_its_goals_more_than_the_random_policy(world):
    def remaining(kind: str) -> float:  # mean goal cost after 60 steps, relative to the start's
        costs = []
        for seed in range(6):
            world.reset(seed=seed)
            policy = make_policy(kind, world, seed=seed)
            policy.retarget = False  # (an expert's own choice of a new target; the random policy ignores it)
            start = world.goal_cost(world.get_state(), world.goal)
            for _ in range(60):
                world.step(policy.act())
            costs.append(world.goal_cost(world.get_state(), world.goal) / start)
        return float(np.mean(costs))

    expert, random = remaining('expert'), remaining('random')
    assert expert < 0.75 * random, (expert, random)


@pytest.mark.parametrize('name', sorted(WORLDS))
def test_the_world_carries_what_the_package_needs_to_know_about_it(name):
    spec = world_spec(name)
    assert spec.name == name and spec.folder.name == name and spec.simulator.tasks
    assert set(spec.experts) == set(spec.simulator.tasks)  # an expert per task
    world = make_world(name)
    try:
        pairs = [(world.reset(seed=seed)[0], world.goal) for seed in range(40)]
        for subset_name, subset in spec.subsets.items():  # each subset keeps some pairs, never a goal at the start
            assert 'standard' != subset_name and subset.doc
            assert any(subset.accept(world, start, goal) for start, goal in pairs), subset_name
            assert not any(subset.accept(world, start, start) for start, _ in pairs), subset_name
        if spec.pair_kind is not None:  # a name for what each pair asks (eval_table's breakdown)
            assert all(isinstance(kind, str) and kind for kind in (spec.pair_kind(*pair) for pair in pairs))
        states = np.array([state for state, _ in pairs])
        targets = spec.probe.targets(states)
        assert targets.shape == (len(states), len(spec.probe.names)) and np.isfinite(targets).all()
        if spec.perturbation is not None:
            assert hasattr(world, spec.perturbation.colour_attribute)
            assert len(states[0][spec.perturbation.teleported]) >= 2  # a position, at least
    finally:
        world.close()
    # its parameter files: a valid sim config, a planner search, a training config
    SimConfig(**spec.parameters('sim')).validate()
    assert SimConfig(**spec.parameters('sim')).world == name
    for which in ('node', 'tuned'):
        assert set(spec.planner(which)) == {'cem', 'mpc'}
    assert load_config(world_config(name)).data.bags, 'a world trains on its collected bags'
