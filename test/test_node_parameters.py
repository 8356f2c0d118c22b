"""The nodes' one parameter layer: the shipped YAMLs apply under any namespace, every parameter is described with
its range, live changes are applied after they are accepted, and the sim rebuilds its world from its whole config."""

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from lewm_ros.nodes.planner_node import PlannerNode  # noqa: E402
from lewm_ros.nodes.recorder_node import RecorderNode  # noqa: E402
from lewm_ros.nodes.sim_node import SimNode  # noqa: E402
from lewm_ros.paths import share_path  # noqa: E402
from lewm_ros.settings import node_parameters  # noqa: E402
from lewm_ros.sim.registry import WORLDS, make_world, world_spec  # noqa: E402

pytestmark = pytest.mark.ros


def shipped(name: str) -> dict:
    return node_parameters(share_path(f'config/{name}.yaml'))


@pytest.mark.parametrize('node_class, file, name, cleanup', [
    (SimNode, 'sim', 'episode_steps', lambda node: node.world.close()),
    (RecorderNode, 'recorder', 'topics', lambda node: None),
    (PlannerNode, 'planner', 'threads', PlannerNode.stop),
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


def files(*paths) -> list[str]:
    return [arg for path in paths for arg in ('--params-file', str(path))]


@pytest.mark.parametrize('world', sorted(WORLDS))
def test_a_worlds_files_layer_as_the_launch_file_layers_them(ros, world):
    """The planner: the world's planner.yaml under config/planner.yaml (whose values win); the sim: the world's
    sim.yaml over config/sim.yaml."""
    spec = world_spec(world)
    planner_files = files(spec.folder / 'planner.yaml', share_path('config/planner.yaml'))
    # not configured: the packaged checkpoint is the arm's, and parameters are taken before any checkpoint is read
    planner = PlannerNode(cli_args=['--ros-args', *planner_files, '-p', 'autostart:=false'])
    try:
        layered = spec.parameters('planner')
        assert list(planner.get_parameter('action_low').value) == layered['action_low']
        assert planner.get_parameter('threads').value == shipped('planner')['threads']  # the config's wins
        # how the robot is commanded is the world's (config/planner.yaml leaves it to the world)
        assert planner.get_parameter('control_rate').value == layered.get('control_rate', 10.0)
        assert planner.get_parameter('command_type').value == layered.get('command_type', 'float64_multi_array')
        node_search = spec.planner('node')
        assert node_search['cem'] == layered.get('cem', {})
        for name, value in node_search['cem'].items():
            assert planner.get_parameter(f'cem.{name}').value == value
    finally:
        planner.stop()
        planner.destroy_node()
    sim = SimNode(cli_args=['--ros-args', *files(share_path('config/sim.yaml'), spec.folder / 'sim.yaml')])
    try:
        assert sim.world.name == world and sim.config.episode_steps == shipped('sim')['episode_steps']
        assert sim.world.task == (spec.parameters('sim').get('task') or spec.simulator.tasks[0])
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


@pytest.mark.parametrize('file', ['planner', 'arm_forward_velocity', 'arm_joint_trajectory',
                                  *(f'world:{name}' for name in sorted(WORLDS))])
def test_the_planner_parameter_files_are_valid_planner_configs(file):
    from lewm_ros.planning import CEMConfig, MPCConfig
    from lewm_ros.planning.planner_config import PlannerConfig

    spec = world_spec(file[6:]) if file.startswith('world:') else None
    values = dict(spec.parameters('planner') if spec else shipped(file))
    action_dim = 2
    if spec:
        world = make_world(spec.name)
        action_dim = world.action_space.shape[0]
        world.close()
    CEMConfig(**values.pop('cem', {})).validate()
    MPCConfig(**values.pop('mpc', {})).validate()
    PlannerConfig(**{**values, 'checkpoint': ''}).validate(action_dim=action_dim)


def test_the_cube_world_and_the_ur5e_file_command_twists_in_the_simulated_arms_units_and_frame():
    """The planner's twist (the cube world's planner.yaml, and a real UR5e's config/planner_cube.yaml over it) is
    what the simulated UR5e takes: the same components, m/s and rad/s per model unit, and frame."""
    from lewm_ros.planning.planner_config import PlannerConfig
    from lewm_ros.settings import layered_parameters
    from lewm_ros.sim.cube.simulator import Cube

    world_file = world_spec('cube').folder / 'planner.yaml'
    for files in ([world_file], [world_file, share_path('config/planner_cube.yaml')]):
        values = layered_parameters(files)
        values.pop('cem', None), values.pop('mpc', None)
        config = PlannerConfig(**{**values, 'checkpoint': ''})
        config.validate(action_dim=5)
        twist = Cube.twist
        assert (config.command_type, tuple(config.twist_fields), config.command_frame) == \
            ('twist_stamped', twist.fields, twist.frame)
        assert config.action_scale == [*twist.per_unit, 1.0]  # the gripper in model units
        low, high = config.action_low, config.action_high
        assert all(-scale <= lo < 0 < hi <= scale for lo, hi, scale in zip(low, high, config.action_scale, strict=True))
        arm, gripper = config.split(np.arange(5.0))
        assert list(arm) == [0, 1, 2, 3] and list(gripper) == [4]


@pytest.mark.parametrize('change, reason', [({'gripper_topic': ''}, 'gripper_topic'),
                                            ({'twist_fields': []}, 'gripper_topic'),
                                            ({'action_scale': [1.0, 2.0]}, 'action_scale'),
                                            ({'command_type': 'float64_multi_array'}, 'twist commands')])
def test_twist_settings_that_do_not_fit_the_action_say_why(change, reason):
    from lewm_ros.planning.planner_config import PlannerConfig
    from lewm_ros.settings import layered_parameters

    values = layered_parameters([world_spec('cube').folder / 'planner.yaml'])
    values.pop('mpc')
    with pytest.raises(ValueError, match=reason):
        PlannerConfig(**{**values, 'checkpoint': '', **change}).validate(action_dim=5)
