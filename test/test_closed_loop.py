"""sim_node + planner_node as separate processes over real DDS, driven by the demo's code (lewm_ros.tools.demo)."""

import numpy as np
import pytest
import torch

pytest.importorskip('rclpy')
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.planning import MPC, CEMConfig, MPCConfig
from lewm_ros.planning.planner_config import PlannerConfig
from lewm_ros.settings import layered_parameters
from lewm_ros.tools.demo import parameter_files, run_demo, sim_config

from .tiny import save_tiny

pytestmark = pytest.mark.ros


def test_demo_plumbing_with_an_untrained_model_in_real_time(tmp_path):
    """Reset, goal, enable/disable, real-time stepping, plan reports and the outputs (the imagined frames too), in
    two short episodes."""
    checkpoint = save_tiny(tmp_path / 'untrained.safetensors', 64, acting=False, decoder=True)
    # 20 steps (2 s at 10 Hz): room for a first plan that a loaded machine slows down (it holds until then)
    result = run_demo(checkpoint, episodes=2, max_steps=20, out_dir=tmp_path / 'demo', lock_step=False,
                      planner_parameters={'mpc.mode': 'receding', 'mpc.execute_steps': 3})
    assert [episode.seed for episode in result.episodes] == [1, 2]
    assert all(len(episode.distances) == episode.steps and (episode.success or episode.steps == 20)
               for episode in result.episodes)
    assert result.plan_times_ms and all(episode.costs for episode in result.episodes)
    assert len(result.command_intervals_ms) and (result.command_intervals_ms > 0).all()
    assert (tmp_path / 'demo' / 'episode.gif').stat().st_size > 0
    assert (tmp_path / 'demo' / 'cost_distance.png').stat().st_size > 0
    first = result.episodes[0]
    # each imagined strip carries the stamp of the camera frame its plan answered: the frames recorded in the
    # episode (plans of the dry run before it answered earlier ones)
    assert sum(stamp in first.camera for stamp, _ in first.imagined) >= 1
    assert (tmp_path / 'demo' / 'imagined.gif').stat().st_size > 0
    logs = (tmp_path / 'demo' / 'planner_node.log').read_text()
    assert 'Traceback' not in logs, logs


def offline_episode(seed: int, steps: int) -> list[float]:
    """The demo's episode without ROS and without time: the same configs, checkpoint, world and MPC, one plan
    whenever the MPC asks, one world step per action."""
    values = layered_parameters(parameter_files('planner'))
    cem, mpc_config = CEMConfig(**values.pop('cem', {})), MPCConfig(**values.pop('mpc', {}))
    config = PlannerConfig(**values)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # as the node: float reductions depend on the thread count
    try:
        mpc = MPC(load_checkpoint(DEFAULT_CHECKPOINT), config.actuation(), cem, mpc_config)
        world = sim_config().make_world()
        world.reset(seed=seed)
        mpc.set_goal(world.goal_image())
        distances = []
        while len(distances) < steps and not world.success():
            mpc.observe(world.render())
            if mpc.needs_plan:
                mpc.replan()
            world.step(mpc.act())
            distances.append(world.distance())
        return distances
    finally:
        torch.set_num_threads(threads)


def test_lock_step_over_dds_is_the_offline_loop_step_for_step(tmp_path):
    """In lock step the nodes' trajectory is the timing-free loop's, bit for bit: it cannot depend on plan time."""
    result = run_demo(DEFAULT_CHECKPOINT, episodes=2, max_steps=30, out_dir=None, log_dir=tmp_path, lock_step=True)
    for episode in result.episodes:
        np.testing.assert_array_equal(episode.distances, offline_episode(episode.seed, 30))


@pytest.mark.slow
def test_shipped_checkpoint_reaches_arm_goals(tmp_path):
    result = run_demo(DEFAULT_CHECKPOINT, episodes=10, max_steps=60, out_dir=None, log_dir=tmp_path)
    print(result.summary())
    assert result.success_rate >= 0.8, result.summary()
