"""sim_node + planner_node as separate processes over real DDS, driven by the demo's code (training/demo.py)."""

import pytest
import torch

pytest.importorskip('rclpy')
from lewm_ros.model.checkpoint import save_checkpoint
from lewm_ros.model.config import preset
from lewm_ros.model.world_model import WorldModel
from lewm_ros.training.demo import DEFAULT_CHECKPOINT, run_demo

pytestmark = pytest.mark.ros


def test_demo_plumbing_with_an_untrained_model(tmp_path):
    """Reset, goal, enable/disable, lock-step stepping, plan reports and the outputs, in two short episodes."""
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / 'untrained.safetensors', WorldModel(preset('small')), [0, 0], [1, 1])
    # 20 steps (2 s at 10 Hz): room for a first plan that a loaded machine slows down (it holds until then)
    result = run_demo(checkpoint, episodes=2, max_steps=20, out_dir=tmp_path / 'demo',
                      planner_parameters={'mpc.mode': 'receding', 'mpc.execute_steps': 3})
    assert [episode.seed for episode in result.episodes] == [1, 2]
    assert all(len(episode.distances) == episode.steps and (episode.success or episode.steps == 20)
               for episode in result.episodes)
    assert result.plan_times_ms and all(episode.costs for episode in result.episodes)
    assert (tmp_path / 'demo' / 'episode.gif').stat().st_size > 0
    assert (tmp_path / 'demo' / 'cost_distance.png').stat().st_size > 0
    logs = (tmp_path / 'demo' / 'planner_node.log').read_text()
    assert 'Traceback' not in logs, logs


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(),
                    reason=f'the shipped checkpoint {DEFAULT_CHECKPOINT.name} has not been trained and committed yet')
def test_shipped_checkpoint_reaches_arm_goals(tmp_path):
    result = run_demo(DEFAULT_CHECKPOINT, episodes=10, max_steps=60, out_dir=None, log_dir=tmp_path)
    print(result.summary())
    assert result.success_rate >= 0.8, result.summary()
