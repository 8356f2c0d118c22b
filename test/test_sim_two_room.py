"""Two-Room: published geometry on rendered pixels, dynamics, determinism and the expert."""

import itertools

import numpy as np
import pytest

from lewm_ros.sim import make_policy, make_world
from lewm_ros.sim.two_room.simulator import FREE_HIGH, FREE_LOW, WALL_BAND

WHITE, BLACK = 255, 0


@pytest.fixture
def world():
    return make_world('two_room', image_size=224)


def render_at(world, position, size=224):
    world.set_state(position)
    return world.render(size)


def test_geometry_on_224_pixels(world):
    image = render_at(world, [40.5, 190.5])  # agent far from the rows/columns inspected
    green = image[..., 1]  # white and black are equal in every channel; red shows in green as dark

    row = green[100]  # a row below the door: borders and wall
    assert set(np.flatnonzero(row == BLACK)) == {*range(10, 14), *range(107, 117), *range(210, 214)}
    assert set(np.unique(row)) == {BLACK, WHITE}

    column = green[:, 60]  # a column of the left room: top and bottom border lines only
    assert set(np.flatnonzero(column == BLACK)) == {*range(10, 14), *range(210, 214)}

    wall = green[:, 112]  # the wall column: black everywhere but the door, rows 35..62
    assert set(np.flatnonzero(wall == WHITE)) == set(range(35, 63))

    # the agent: a red Gaussian dot, pure red at its centre, exp(-1/2) at one radius (7 px)
    assert tuple(image[190, 40]) == (255, 0, 0)
    assert abs(int(image[190, 47, 1]) - round(255 * (1 - np.exp(-0.5)))) <= 1
    assert tuple(image[190, 40 + 30]) == (255, 255, 255)


def test_geometry_scales_to_64_pixels(world):
    image = render_at(world, [40.0, 190.0], size=64)[..., 1]
    # 224 / 64 = 3.5 world px per pixel: the wall [107, 117) fully covers columns 31 and 32
    assert (image[40, 31:33] == BLACK).all() and image[40, 30] > BLACK and image[40, 33] > BLACK
    assert (image[12, 31:33] == WHITE).all()  # row 12 covers y 42..45.5: inside the door
    assert image.std() > 20


def test_walls_and_borders_block_the_agent(world):
    world.reset(seed=0, options={'state': [95.0, 150.0]})
    for _ in range(10):
        world.step([1.0, 0.0])
    assert world.state[0] <= WALL_BAND[0]  # pressed against the wall, not through it

    world.reset(seed=0, options={'state': [95.0, 49.0]})
    for _ in range(10):
        world.step([1.0, 0.0])
    assert world.state[0] >= WALL_BAND[1]  # through the door

    world.reset(seed=0, options={'state': [25.0, 25.0]})
    for _ in range(5):
        world.step([-1.0, -1.0])
    np.testing.assert_allclose(world.state, [FREE_LOW, FREE_LOW])


def test_speed_and_action_clipping(world):
    world.reset(seed=0, options={'state': [50.0, 150.0]})
    world.step([0.4, -7.0])
    np.testing.assert_allclose(world.state, [52.0, 145.0])
    with pytest.raises(ValueError):
        world.step([np.nan, 0.0])


def test_frames_follow_the_state_and_are_never_blank(world):
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(20):
        state = world.sample_state(rng)
        frame = render_at(world, state, size=64)
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
        assert frame.std() > 20
        red = (frame[..., 0] > 200) & (frame[..., 1] < 60)
        assert red.any(), 'the agent must be visible'
        frames.append(frame)
    assert all((a != b).any() for a, b in itertools.pairwise(frames))
    world.reset(seed=1)
    np.testing.assert_array_equal(world.goal_image(64), world.render_state(world.goal, 64))


def test_same_seed_same_trajectory():
    def rollout(seed):
        world = make_world('two_room')
        world.reset(seed=seed)
        policy = make_policy('random', world, seed=seed)
        states, frames = [], []
        for _ in range(20):
            world.step(policy.act())
            states.append(world.state)
            frames.append(world.render())
        return np.array(states), np.array(frames)

    states, frames = rollout(7)
    again_states, again_frames = rollout(7)
    np.testing.assert_array_equal(states, again_states)
    np.testing.assert_array_equal(frames, again_frames)
    assert (rollout(8)[0] != states).any()
    assert ((states >= FREE_LOW) & (states <= FREE_HIGH)).all()


def test_expert_reaches_the_target_in_90_percent_of_episodes():
    world = make_world('two_room')
    successes, crossings = 0, 0
    for seed in range(50):
        world.reset(seed=seed)
        crossings += (world.state[0] < 112) != (world.goal[0] < 112)
        policy = make_policy('expert', world, seed=seed)
        for _ in range(100):
            if world.step(policy.act())[2]:
                successes += 1
                break
    assert crossings >= 10, 'the check needs episodes that go through the door'
    assert successes >= 45


def test_expert_data_shows_walls_borders_and_corners_stopping_the_agent_and_the_door_letting_it_through():
    """A model learns obstacles only from frames where one stopped the agent: the expert's careless targets
    give them (a careful expert pushed into the wall on 0.4% of its steps, careless targets inside the free
    space into a border on 0.4% and never into a corner), while it still uses the door."""
    world = make_world('two_room', image_size=8)
    blocked = border = corner = crossings = steps = 0
    for seed in range(40):
        world.reset(seed=seed)
        policy = make_policy('expert', world, seed=seed)
        for _ in range(120):
            before, action = world.get_state(), policy.act()
            world.step(action)
            after = world.get_state()
            free = before + np.clip(action, -1, 1) * 5.0
            outside = (free < FREE_LOW) | (free > FREE_HIGH)  # (2,) pushing beyond the border lines
            unobstructed = np.clip(free, FREE_LOW, FREE_HIGH)
            blocked += abs(after[0] - unobstructed[0]) > 0.5 and WALL_BAND[0] <= after[0] <= WALL_BAND[1]
            border, corner = border + outside.any(), corner + outside.all()
            crossings += (before[0] < 112) != (after[0] < 112)
            steps += 1
    assert blocked / steps > 0.03 and crossings >= 40, (blocked / steps, crossings)
    assert border / steps > 0.03 and corner / steps > 0.005, (border / steps, corner / steps)
