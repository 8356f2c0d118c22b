"""OGBench-Cube on the simulated UR5e: action scaling and the workspace, success, what a pair asks, the look at
every size, the oracle, collection with sparse frames and ingest, and an evaluation smoke test with its tables (the
world contract is in test_world_contract.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.clips import ClipDataset
from lewm_ros.data.ingest import IngestConfig, ingest
from lewm_ros.sim import make_policy, make_world
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.sim.cube import pair_kind
from lewm_ros.sim.cube.simulator import CUBE_QPOS, cube_position
from lewm_ros.tools.evaluate import run

from .tiny import save_tiny


@pytest.fixture(scope='module')
def world():
    world = make_world('cube')
    yield world
    world.close()


def pinch(world) -> np.ndarray:
    return world.data.site_xpos[world.env._pinch_site_id].copy()


def test_an_action_sets_the_pinch_site_target_5_cm_per_unit_and_the_workspace_clips_it(world):
    """What the IK aims for after one step: the pinch site's pose plus the scaled action, inside the workspace."""
    world.reset(seed=0)
    start = pinch(world)
    towards_centre = -np.sign(start - [0.425, 0.0, 0.275])  # (3,) away from every workspace bound
    action = np.append(towards_centre * [0.5, 1.0, 0.2], [0.0, 0.0])
    world.step(action)
    target = world.env._target_effector_pose.translation()
    np.testing.assert_allclose(target - start, 0.05 * action[:3], atol=1e-9)
    moved, aimed = pinch(world) - start, 0.05 * action[:3]
    assert moved @ aimed > 0.3 * aimed @ aimed  # the PD arm follows (measured: 43% of the way within the step)
    for _ in range(30):  # up and out, far beyond the workspace's corner
        world.step([1.0, 1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(world.env._target_effector_pose.translation(), [0.6, 0.35, 0.35], atol=1e-9)
    assert np.all(pinch(world) < np.array([0.6, 0.35, 0.35]) + 0.02), pinch(world)
    before = pinch(world)
    world.step([50.0, 0.0, 0.0, 0.0, -7.0])  # out of range: clipped to one unit, no error
    np.testing.assert_allclose(world.env._target_effector_pose.translation(), [0.6, *before[1:]], atol=1e-9)


def test_a_twist_in_m_per_s_and_rad_per_s_is_the_action_of_one_control_step():
    """The UR5e's twist interface: 0.05 m and 0.3 rad per 0.05 s step at action 1; the gripper passes as is."""
    from lewm_ros.sim.cube.simulator import CONTROL_PERIOD, MAX_MOVE, MAX_YAW, Cube

    twist = Cube.twist
    np.testing.assert_allclose(twist.per_unit, [MAX_MOVE / CONTROL_PERIOD] * 3 + [MAX_YAW / CONTROL_PERIOD])
    assert twist.fields == ('linear.x', 'linear.y', 'linear.z', 'angular.z') and twist.frame == 'base'
    np.testing.assert_allclose(twist.to_action([0.5, -1.0, 0.25, 3.0], [-0.5]), [0.5, -1.0, 0.25, 0.5, -0.5])


def test_success_is_the_cube_within_4_cm_of_its_goal_position_whatever_its_orientation(world):
    world.reset(seed=1)
    goal = world.get_state()
    state = goal.copy()
    state[CUBE_QPOS.start] += 0.039
    state[CUBE_QPOS.start + 3:CUBE_QPOS.stop] = [0.0, 0.0, 0.0, 1.0]  # turned half way round about z
    assert world.solved(state, goal) and world.goal_distance(state, goal) == pytest.approx(0.039)
    state[CUBE_QPOS.start] += 0.002
    assert not world.solved(state, goal)
    np.testing.assert_array_equal(cube_position(goal), goal[14:17])


def test_a_pair_is_named_by_what_it_asks_of_the_arm(world):
    world.reset(seed=0)
    resting, held = world.get_state(), world.get_state()
    resting[14:17], held[14:17] = [0.4, 0.0, 0.02], [0.45, 0.1, 0.15]
    nearby, elsewhere, higher = resting.copy(), resting.copy(), held.copy()
    nearby[14] += 0.03  # within the 4 cm of success
    elsewhere[15] += 0.2
    higher[16] += 0.1
    asks = [(resting, held, 'pick up'), (held, resting, 'put down'), (resting, elsewhere, 'push'),
            (held, higher, 'carry'), (resting, nearby, 'solved at the start')]
    assert [pair_kind(start, goal) for start, goal, _ in asks] == [kind for _, _, kind in asks]


def test_frames_look_the_same_at_every_size_and_show_the_cube_and_the_arm(world):
    world.reset(seed=2)
    small, large = world.render(64), world.render(128)
    assert small.shape == (64, 64, 3) and large.shape == (128, 128, 3) and small.dtype == np.uint8
    pooled = large.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))  # no multisampling or shadows at either size
    assert np.abs(pooled - small).mean() < 6.0
    moved = world.get_state()
    moved[14:16] += [0.1, 0.1]  # the cube elsewhere: a different frame
    assert np.abs(world.render_state(moved).astype(int) - small).sum() > 0
    colour, world.cube_color = world.cube_color, (0, 255, 0)
    try:
        assert (world.render().astype(int) != small).any()
    finally:
        world.cube_color = colour


def test_the_oracle_puts_the_cube_at_its_goal_and_the_random_policy_does_not(world):
    def reached(kind: str) -> int:
        count = 0
        for seed in range(4):
            world.reset(seed=seed)
            policy = make_policy(kind, world, seed=seed)
            policy.retarget = False
            count += any(world.step(policy.act())[2] for _ in range(100))
        return count

    assert reached('expert') >= 3 and reached('random') == 0


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('cube')
    settings = CollectSettings(world='cube', task='single', policy='expert', steps=40, frame_every=5)
    collect(settings, 3, root / 'bags', progress=False)
    return root / 'bags'


def test_collection_with_sparse_frames_ingests_into_clips_at_the_frame_stride(bags, tmp_path):
    config = IngestConfig(image_size=64, state_topic='state', action={'dim': 5}, control_period=0.05)
    ingest([bags], tmp_path / 'cache', config, progress=False)
    cache = TrainingCache(tmp_path / 'cache')
    assert len(cache.episodes) == 3 and cache.action_dim == 5
    episode = cache.episodes[0]
    assert episode.step_count == 41
    clips = ClipDataset(cache, history=3, frameskip=5, split='all')
    assert len(clips) == 3 * (41 // 5 - 3)  # windows of 4 frames at stride 5, starting on a recorded frame
    batch = clips.sample(4, np.random.default_rng(0))
    assert batch['frames'].shape == (4, 4, 64, 64, 3) and batch['actions'].shape == (4, 4, 25)


def test_evaluation_reports_all_pairs_and_the_unsolved_ones(bags, tmp_path):
    checkpoint = save_tiny(tmp_path / 'tiny.safetensors', 64, acting=False, action_dim=5)
    results = run(['--checkpoint', str(checkpoint), '--world', 'cube', '--pairs', str(bags), '--episodes', '4',
                   '--goal-offset', '10', '--budget', '5', '--samples', '4', '--elites', '2', '--iterations', '1',
                   '--oracle', '4x2x1', '--no-progress', '--out', str(tmp_path / 'eval')])
    standard, unsolved = results['subsets']['standard'], results['subsets']['unsolved']
    assert set(results['subsets']) == {'standard', 'unsolved'} and standard['planner']['episodes'] == 4
    world = make_world('cube')
    try:
        kept = [not world.solved(np.array(p['start']), np.array(p['goal'])) for p in standard['pairs']]
    finally:
        world.close()
    assert unsolved['planner']['episodes'] == sum(kept)
    assert {'planner', 'oracle', 'random', 'replay'} <= set(standard)

    # The results table breaks the standard pairs down by what they ask, each row over all four pairs.
    table = subprocess.run([sys.executable, str(Path(__file__).parents[1] / 'training' / 'eval_table.py'),
                            str(tmp_path / 'eval')], capture_output=True, text=True, check=True).stdout
    by_kind = table[table.index('standard pairs by what they ask'):].splitlines()
    kinds = [pair_kind(np.array(p['start']), np.array(p['goal'])) for p in standard['pairs']]
    names = by_kind[2].strip('| ').split(' | ')[1:]
    assert sorted(names) == sorted(set(kinds))
    rows = {row.split(' | ')[0][2:]: row.strip(' |').split(' | ')[1:] for row in by_kind[4:] if row.startswith('| ')}
    assert set(rows) == {'planner (eval)', 'oracle', 'random', 'replay'}

    def cell(outcomes: list[bool], name: str) -> str:
        picked = [ok for ok, kind in zip(outcomes, kinds, strict=True) if kind == name]
        return f'{sum(picked)} of {len(picked)} ({100 * sum(picked) / len(picked):.0f}%)'

    for policy, cells in rows.items():
        outcomes = standard['planner' if policy.startswith('planner') else policy]['per_episode']
        assert cells == [cell(outcomes, name) for name in names]
