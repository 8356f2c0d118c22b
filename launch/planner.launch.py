"""The planner node, optionally with a simulated world wired to the same (relative) topics.

    ros2 launch lewm_ros planner.launch.py                                 # planner only: remap it to your robot
    ros2 launch lewm_ros planner.launch.py use_sim:=true                   # + the simulated arm: what `make demo` runs
    ros2 launch lewm_ros planner.launch.py use_sim:=true lock_step:=true   # one sim step per command
    ros2 launch lewm_ros planner.launch.py config:=my_arm.yaml checkpoint:=my_arm.safetensors device:=cuda
    ros2 launch lewm_ros planner.launch.py use_sim:=true world:=push_t checkpoint:=$PWD/runs/push_t.safetensors

``config`` is a planner_node parameter file (default: the installed config/planner.yaml) and ``sim_config`` a
sim_node one (default: config/sim.yaml: the arm reaching goals within one plan's reach, a new goal once one is
reached). ``world:=NAME`` also layers config/planner_NAME.yaml over ``config`` when the package has one (the
world's action limits and planner settings); the package ships a checkpoint for the arm only, so another world
needs ``checkpoint:=`` (a relative path resolves against the directory ``ros2 launch`` runs in). The other
arguments override single values of those files when given; left empty, the files decide. The launch ends
when the planner does (a bad checkpoint, say), instead of leaving the sim running without it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# launch argument -> (parameter type, description); '' = keep the parameter file's value
PLANNER_OVERRIDES = {'checkpoint': (str, "lewm_ros checkpoint ('' = the parameter file's)"),
                     'device': (str, "auto | cpu | cuda ('' = the parameter file's)")}
SIM_OVERRIDES = {'world': (str, 'arm | two_room | push_t (also layers config/planner_WORLD.yaml)'),
                 'task': (str, 'arm: reach | push; two_room: navigate; push_t: push'),
                 'goal_span': (float, 'arm reach: goals within this many radians per joint (0 = anywhere)')}
BOOLEAN = {'true': True, 'false': False}
CONFIG_DIR = os.path.join(get_package_share_directory('lewm_ros'), 'config')


def _overrides(context, arguments: dict) -> dict:
    values = {}
    for name, (kind, _) in arguments.items():
        text = LaunchConfiguration(name).perform(context)
        if text:
            values[name] = kind(text)
    return values


def _nodes(context):
    namespace = LaunchConfiguration('namespace').perform(context)
    lock_step = LaunchConfiguration('lock_step').perform(context).lower()
    if lock_step not in BOOLEAN:
        raise ValueError(f"lock_step must be true or false, got '{lock_step}'")
    timing = {'lock_step': BOOLEAN[lock_step]}
    planner = _overrides(context, PLANNER_OVERRIDES)
    world = LaunchConfiguration('world').perform(context)
    if world not in ('', 'arm') and not planner.get('checkpoint'):
        raise ValueError(f'world:={world} needs checkpoint:=PATH (a model trained on that world): the packaged '
                         'checkpoint is the arm\'s')
    world_file = os.path.join(CONFIG_DIR, f'planner_{world}.yaml')
    world_files = [world_file] if os.path.isfile(world_file) else []  # later parameter files win
    nodes = [Node(package='lewm_ros', executable='planner_node', name='planner_node', namespace=namespace,
                  output='screen', parameters=[LaunchConfiguration('config'), *world_files, {**timing, **planner}],
                  on_exit=Shutdown(reason='the planner node exited'))]
    if LaunchConfiguration('use_sim').perform(context).lower() == 'true':
        sim = _overrides(context, SIM_OVERRIDES)
        if world not in ('', 'arm'):  # sim.yaml's task and goal span are the arm's: use the world's own
            sim = {'task': '', 'goal_span': 0.0, **sim}
        nodes.append(Node(package='lewm_ros', executable='sim_node', name='sim_node', namespace=namespace,
                          output='screen', parameters=[LaunchConfiguration('sim_config'), {**timing, **sim}]))
    return nodes


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('config', default_value=os.path.join(CONFIG_DIR, 'planner.yaml'),
                              description='planner_node parameter file'),
        DeclareLaunchArgument('sim_config', default_value=os.path.join(CONFIG_DIR, 'sim.yaml'),
                              description='sim_node parameter file (with use_sim:=true)'),
        DeclareLaunchArgument('use_sim', default_value='false', description='also start the simulated world'),
        DeclareLaunchArgument('lock_step', default_value='false',
                              description='sim and planner in lock step (one step per command; needs use_sim)'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of both nodes'),
        *(DeclareLaunchArgument(name, default_value='', description=description)
          for name, (_, description) in {**PLANNER_OVERRIDES, **SIM_OVERRIDES}.items()),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
