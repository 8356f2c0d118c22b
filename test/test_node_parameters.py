"""The nodes' one parameter layer: the shipped YAMLs apply under any namespace, every parameter is described with
its range, live changes are applied after they are accepted, and the sim rebuilds its world from its whole config."""

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from lewm_ros.nodes.planner_node import PlannerNode  # noqa: E402
from lewm_ros.nodes.recorder_node import RecorderNode  # noqa: E402
from lewm_ros.nodes.sim_node import SimNode  # noqa: E402
from lewm_ros.paths import share_path  # noqa: E402

pytestmark = pytest.mark.ros


def shipped(name: str) -> dict:
    with open(share_path(f'config/{name}.yaml')) as f:
        (parameters,) = yaml.safe_load(f).values()
    return parameters['ros__parameters']


@pytest.mark.parametrize('node_class, file, name, cleanup', [
    (SimNode, 'sim', 'goal_span', lambda node: node.world.close()),
    (RecorderNode, 'recorder', 'topics', lambda node: None),
    (PlannerNode, 'planner', 'cem.samples', PlannerNode.stop),
])
def test_the_shipped_parameter_files_apply_in_any_namespace(ros, tmp_path, monkeypatch, node_class, file, name,
                                                            cleanup):
    monkeypatch.chdir(tmp_path)  # the recorder writes its bags under the working directory
    node = node_class(namespace='/robot_7/arm', cli_args=['--ros-args', '--params-file',
                                                          str(share_path(f'config/{file}.yaml'))])
    try:
        expected = shipped(file)
        for part in name.split('.'):
            expected = expected[part]
        assert node.get_parameter(name).value == expected
        assert all(descriptor.description for descriptor in node.describe_parameters(list(node.parameters.fields)))
    finally:
        cleanup(node)
        node.destroy_node()


@pytest.mark.parametrize('world', ['push_t', 'two_room'])
def test_a_world_file_layers_over_the_planner_file_and_the_sim_takes_the_world_as_the_launch_file_does(ros, world):
    files = [arg for name in ('planner', f'planner_{world}') for arg in ('--params-file', str(share_path(
        f'config/{name}.yaml')))]
    planner = PlannerNode(cli_args=['--ros-args', *files])
    try:
        layered = shipped(f'planner_{world}')
        assert list(planner.get_parameter('action_low').value) == layered['action_low'] == [-1.0, -1.0]
        assert planner.get_parameter('cem.horizon').value == layered['cem']['horizon']
        assert planner.get_parameter('control_rate').value == shipped('planner')['control_rate']  # kept
    finally:
        planner.stop()
        planner.destroy_node()
    # planner.launch.py world:=NAME: the world's own task and no goal span over sim.yaml's arm values
    sim = SimNode(cli_args=['--ros-args', '--params-file', str(share_path('config/sim.yaml'))],
                  parameter_overrides=[Parameter('world', value=world), Parameter('task', value=''),
                                       Parameter('goal_span', value=0.0)])
    try:
        assert sim.world.name == world
    finally:
        sim.world.close()
        sim.destroy_node()


def test_a_live_task_change_rebuilds_the_world_with_its_goal_span_and_episodes_roll_over(ros):
    node = SimNode(parameter_overrides=[Parameter('goal_span', value=1.5), Parameter('lock_step', value=True)])
    try:
        assert node.set_parameters([Parameter('task', value='reach')])[0].successful
        assert node.world.goal_span == 1.5 and node.config.task == 'reach'
        refused = node.set_parameters([Parameter('task', value='push')])[0]  # goal_span is for reach only
        assert not refused.successful and 'goal_span' in refused.reason and node.world.task == 'reach'

        assert node.set_parameters([Parameter('episode_steps', value=3)])[0].successful
        seed = node.episode_seed
        for _ in range(3):
            node._on_command(Float64MultiArray(data=[0.0, 0.0]))
        assert node.episode_seed == seed + 1 and node.world.steps == 0  # the next episode began by itself
    finally:
        node.world.close()
        node.destroy_node()


@pytest.mark.parametrize('file', ['planner', 'arm_forward_velocity', 'arm_joint_trajectory'])
def test_the_planner_parameter_files_are_valid_planner_configs(file):
    from lewm_ros.nodes.planner_node import PlannerConfig
    from lewm_ros.planning import CEMConfig, MPCConfig

    values = dict(shipped(file))
    CEMConfig(**values.pop('cem', {})).validate()
    MPCConfig(**values.pop('mpc', {})).validate()
    PlannerConfig(**{**values, 'checkpoint': ''}).validate(action_dim=2)
