"""The planner node, optionally with a simulated world wired to the same (relative) topics.

    ros2 launch lewm_ros planner.launch.py                                 # planner only: remap it to your robot
    ros2 launch lewm_ros planner.launch.py use_sim:=true                   # + the simulated arm: what `make demo` runs
    ros2 launch lewm_ros planner.launch.py use_sim:=true lock_step:=true   # one sim step per command
    ros2 launch lewm_ros planner.launch.py config:=my_arm.yaml checkpoint:=my_arm.safetensors device:=cuda
    ros2 launch lewm_ros planner.launch.py autostart:=false                # a lifecycle manager takes the planner up
    ros2 launch lewm_ros planner.launch.py use_sim:=true world:=push_t checkpoint:=$PWD/runs/push_t.safetensors
    ros2 launch lewm_ros planner.launch.py use_sim:=true world:=cube checkpoint:=$PWD/runs/cube.safetensors  # UR5e

``world:=NAME`` (default ``arm``) picks a world of lewm_ros/sim: its ``planner.yaml`` goes under ``config`` (the
world's action limits and search; a value in ``config`` wins, so a real arm's limits are never replaced) and its
``sim.yaml`` over ``sim_config`` (the world to simulate and its task). ``config`` is a planner_node parameter file
(default: the installed config/planner.yaml) and ``sim_config`` a sim_node one (default: config/sim.yaml). A world
whose planner.yaml names no checkpoint has none packaged: it needs ``checkpoint:=`` (a relative path resolves
against the directory ``ros2 launch`` runs in). The other arguments override single values of those files when
given; left empty, the files decide. The launch ends when the planner does, instead of leaving the sim running
without it, and fails (a non-zero exit code) when the planner failed (a bad checkpoint, say).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lewm_ros.settings import node_parameters

BOOLEAN = {'true': True, 'false': False}


def _boolean(text: str) -> bool:
    if text.lower() not in BOOLEAN:
        raise ValueError(f"expected true or false, got '{text}'")
    return BOOLEAN[text.lower()]


# launch argument -> (parameter type, description); '' = keep the parameter files' value
PLANNER_OVERRIDES = {'checkpoint': (str, "lewm_ros checkpoint ('' = the parameter files')"),
                     'device': (str, "auto | cpu | cuda ('' = the parameter file's)"),
                     'autostart': (_boolean, "true | false ('' = the parameter file's); false: a lifecycle manager "
                                   'configures and activates the planner')}
SIM_OVERRIDES = {'task': (str, "the world's task ('' = its sim.yaml's): arm reach | push | ..."),
                 'goal_span': (float, 'arm reach: goals within this many radians per joint (0 = anywhere)')}
SHARE = get_package_share_directory('lewm_ros')


def _overrides(context, arguments: dict) -> dict:
    values = {}
    for name, (kind, _) in arguments.items():
        text = LaunchConfiguration(name).perform(context)
        if text:
            try:
                values[name] = kind(text)
            except ValueError as err:
                raise ValueError(f'{name}:={text}: {err}') from None
    return values


def _on_planner_exit(event, context):
    """The launch ends with the planner; a planner that failed (exit code 1: it could not start) fails the launch, so
    ``ros2 launch`` exits non-zero (launch turns a raised error into a shutdown and return code 1)."""
    if event.returncode:
        raise RuntimeError(f'the planner node exited with code {event.returncode}')
    return Shutdown(reason='the planner node exited')


def _nodes(context):
    namespace = LaunchConfiguration('namespace').perform(context)
    timing = {'lock_step': _boolean(LaunchConfiguration('lock_step').perform(context))}
    world = LaunchConfiguration('world').perform(context)
    folder = os.path.join(SHARE, 'worlds', world)
    if not os.path.isdir(folder):
        installed = sorted(os.listdir(os.path.join(SHARE, 'worlds')))
        raise ValueError(f'world:={world}: no such world (installed: {", ".join(installed)})')
    config = LaunchConfiguration('config').perform(context)
    planner = _overrides(context, PLANNER_OVERRIDES)
    world_planner = os.path.join(folder, 'planner.yaml')
    if 'checkpoint' not in node_parameters(world_planner) and not (planner.get('checkpoint')
                                                                or node_parameters(config).get('checkpoint')):
        raise ValueError(f'world:={world} needs checkpoint:=PATH (a model trained in that world): the package ships '
                         'none for it')
    nodes = [Node(package='lewm_ros', executable='planner_node', name='planner_node', namespace=namespace,
                  output='screen', parameters=[world_planner, config, {**timing, **planner}],  # later entries win
                  on_exit=_on_planner_exit)]
    if LaunchConfiguration('use_sim').perform(context).lower() == 'true':
        sim = _overrides(context, SIM_OVERRIDES)
        nodes.append(Node(package='lewm_ros', executable='sim_node', name='sim_node', namespace=namespace,
                          output='screen', parameters=[LaunchConfiguration('sim_config'),
                                                       os.path.join(folder, 'sim.yaml'), {**timing, **sim}]))
    return nodes


def generate_launch_description():
    config_dir = os.path.join(SHARE, 'config')
    arguments = [
        DeclareLaunchArgument('config', default_value=os.path.join(config_dir, 'planner.yaml'),
                              description='planner_node parameter file (over the world\'s planner.yaml)'),
        DeclareLaunchArgument('sim_config', default_value=os.path.join(config_dir, 'sim.yaml'),
                              description='sim_node parameter file (under the world\'s sim.yaml; with use_sim:=true)'),
        DeclareLaunchArgument('world', default_value='arm', description='arm | two_room | push_t | cube'),
        DeclareLaunchArgument('use_sim', default_value='false', description='also start the simulated world'),
        DeclareLaunchArgument('lock_step', default_value='false',
                              description='sim and planner in lock step (one step per command; needs use_sim)'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of both nodes'),
        *(DeclareLaunchArgument(name, default_value='', description=description)
          for name, (_, description) in {**PLANNER_OVERRIDES, **SIM_OVERRIDES}.items()),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
