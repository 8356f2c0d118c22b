"""lewm-physics: the perturbed renderings, and the report end to end on a tiny model."""

import numpy as np

from lewm_ros.sim import make_world, world_spec
from lewm_ros.sim.push_t.simulator import BLOCK_FILL
from lewm_ros.tools.physics import expert_trajectory, render_variant, run

from .tiny import save_tiny

TELEPORT_MIN_PX = world_spec('two_room').perturbation.min_jump


def rendered_variants(world, steps: int, seed: int, event: int):
    """The three renderings of one expert trajectory, checked to differ from the plain one only from the event on."""
    states, actions = expert_trajectory(world, steps, seed=seed)
    rng = np.random.default_rng(0)
    plain, colour, teleport = (render_variant(world, states, actions, variant, event, rng)
                               for variant in ('unperturbed', 'colour change', 'teleport'))
    np.testing.assert_array_equal(colour[:event], plain[:event])
    np.testing.assert_array_equal(teleport[:event], plain[:event])
    assert all((colour[t] != plain[t]).any() for t in range(event, steps + 1))
    return plain, colour, teleport


def test_perturbations_change_only_what_they_claim_from_the_event_on():
    world = make_world('two_room')
    plain, _, teleport = rendered_variants(world, 30, seed=5, event=15)
    red = plain[15].astype(int)[..., 0] - plain[15].astype(int)[..., 2]
    moved = teleport[15].astype(int)[..., 0] - teleport[15].astype(int)[..., 2]
    # the agent's brightest red pixel jumped at least the teleport distance (in 64 px units)
    before, after = np.unravel_index(red.argmax(), red.shape), np.unravel_index(moved.argmax(), moved.shape)
    assert np.hypot(*np.subtract(before, after)) * 224 / 64 > TELEPORT_MIN_PX - 2 * 224 / 64
    np.testing.assert_array_equal(world.agent_color, (255, 0, 0))  # the world is left as it was


def test_report_end_to_end(tmp_path):
    ckpt = save_tiny(tmp_path / 'tiny.safetensors', 64, acting=False)
    results = run(['--checkpoint', str(ckpt), '--trajectories', '4', '--steps', '40', '--out', str(tmp_path)])
    assert set(results['surprise']) == {'unperturbed', 'colour change', 'teleport'}
    assert all(np.isfinite(t['t']) or np.isnan(t['t']) for t in results['paired_t_tests'].values())
    assert -1 <= results['probe']['pearson_r_mean'] <= 1
    assert (tmp_path / 'physics.json').is_file() and (tmp_path / 'surprise.png').is_file()


def test_push_t_perturbs_the_block():
    world = make_world('push_t')
    plain, _, teleport = rendered_variants(world, 20, seed=2, event=10)
    block = lambda frame: np.argwhere((frame == BLOCK_FILL).all(axis=-1)).mean(axis=0)  # noqa: E731
    assert np.linalg.norm(block(teleport[10]) - block(plain[10])) * 512 / 64 > TELEPORT_MIN_PX / 2
    assert world.block_color == BLOCK_FILL  # the world is left as it was


def test_reacher_perturbs_the_arm_and_leaves_it_as_it_was():
    world = make_world('reacher')
    try:
        before = world.arm_color
        plain, _, teleport = rendered_variants(world, 20, seed=2, event=10)
        assert (teleport[10] != plain[10]).any()
        np.testing.assert_array_equal(world.arm_color, before)
        np.testing.assert_array_equal(world.render_state(world.get_state()), world.render())  # no colour left over
    finally:
        world.close()
