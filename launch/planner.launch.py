"""The planner node, optionally with the simulated arm wired to the same (relative) topics.

    ros2 launch lewm_ros planner.launch.py [config:=FILE] [checkpoint:=FILE] [device:=auto|cpu|cuda] [use_sim:=true]

``config`` is a planner_node parameter file (default: the installed config/planner.yaml); ``checkpoint`` and
``device`` override its values ('' = the packaged checkpoint). ``use_sim:=true`` also starts sim_node with the
installed config/sim.yaml: its image, goal_image and command topics are the planner's.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config_dir = os.path.join(get_package_share_directory('lewm_ros'), 'config')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=os.path.join(config_dir, 'planner.yaml'),
                              description='planner_node parameter file'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="lewm_ros checkpoint ('' = the packaged arm_reach_small)"),
        DeclareLaunchArgument('device', default_value='auto', description='auto | cpu | cuda'),
        DeclareLaunchArgument('use_sim', default_value='false', description='also start the simulated arm'),
        Node(package='lewm_ros', executable='planner_node', name='planner_node', output='screen',
             # typed as strings: launch would otherwise parse them as YAML ('' would become null)
             parameters=[LaunchConfiguration('config'),
                         {name: ParameterValue(LaunchConfiguration(name), value_type=str)
                          for name in ('checkpoint', 'device')}]),
        Node(package='lewm_ros', executable='sim_node', name='sim_node', output='screen',
             parameters=[os.path.join(config_dir, 'sim.yaml')], condition=IfCondition(LaunchConfiguration('use_sim'))),
    ])
