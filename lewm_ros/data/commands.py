"""The one table of command message types: what each carries, how an action vector is written into one, and
how it is read back (no ROS runtime).

- ``float64_multi_array`` (std_msgs/Float64MultiArray, a ros2_control forward controller): ``data`` is the action.
- ``joint_trajectory`` (trajectory_msgs/JointTrajectory, a joint_trajectory_controller): one point whose
  ``velocities`` (``positions`` for position actions) are the action, by joint name, reached after ``duration``.
- ``twist_stamped`` / ``twist`` (geometry_msgs/TwistStamped or Twist): one component per action dimension
  (velocities only), ``linear.x, linear.y, linear.z, angular.x, ...`` in order unless ``twist_fields`` names them
  (a UR5e's end effector: ``linear.x, linear.y, linear.z, angular.z``). Components not named are zero.

``build_command`` writes through a message factory ``make(msgtype, **fields)`` and fills every field, so the same
code builds live rclpy messages (``lewm_ros.nodes.conversions.ros_message``) and rosbags messages for bags
(``BagWriter.message``); ``command_spec`` gives the ``ActionSpec`` that ``action_from_message`` reads them with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lewm_ros.data.actions import TWIST_FIELDS, ActionSpec

COMMAND_TYPES = {
    'float64_multi_array': 'std_msgs/msg/Float64MultiArray',
    'joint_trajectory': 'trajectory_msgs/msg/JointTrajectory',
    'twist_stamped': 'geometry_msgs/msg/TwistStamped',
    'twist': 'geometry_msgs/msg/Twist',
}
MessageFactory = Callable[..., object]  # make(msgtype, **fields) -> message


def check_command_type(command_type: str, action_dim: int, positions: bool = False,
                       twist_fields: Sequence[str] = ()) -> None:
    """Raise ValueError unless ``command_type`` can carry ``action_dim`` actions (positions or velocities), the
    leading ``len(twist_fields)`` of them only when ``twist_fields`` names the twist components they drive."""
    if command_type not in COMMAND_TYPES:
        raise ValueError(f'command_type must be one of {sorted(COMMAND_TYPES)}, got {command_type!r}')
    twist = command_type.startswith('twist')
    if twist_fields and not twist:
        raise ValueError(f'twist_fields apply to twist commands, not {command_type}')
    unknown = sorted(set(twist_fields) - set(TWIST_FIELDS))
    if unknown or len(set(twist_fields)) != len(twist_fields) or len(twist_fields) > action_dim:
        raise ValueError(f'twist_fields must name distinct components of {list(TWIST_FIELDS)}, at most one per '
                         f'action dimension ({action_dim}), got {list(twist_fields)}')
    if twist and (positions or (action_dim > len(TWIST_FIELDS) and not twist_fields)):
        raise ValueError(f'a Twist carries at most {len(TWIST_FIELDS)} velocities; the action has {action_dim} '
                         f'{"positions" if positions else "values"}')


def twist_components(twist_fields: Sequence[str], dim: int) -> tuple[str, ...]:
    """The twist component of each of ``dim`` action dimensions: those named, else the first ``dim`` in order."""
    return tuple(twist_fields) or TWIST_FIELDS[:dim]


def command_spec(command_type: str, action_names: Sequence[str], positions: bool = False,
                 twist_fields: Sequence[str] = ()) -> ActionSpec:
    """The ActionSpec that reads a ``command_type`` message back as the action with these dimensions (for twists:
    the dimensions ``twist_fields`` names, when it does)."""
    dim = len(action_names)
    check_command_type(command_type, dim, positions, twist_fields)
    if command_type == 'float64_multi_array':
        return ActionSpec(dim=dim)
    if command_type == 'joint_trajectory':
        return ActionSpec(fields=('positions' if positions else 'velocities',), joints=tuple(action_names), dim=dim)
    fields = twist_components(twist_fields, dim)
    return ActionSpec(fields=fields, dim=len(fields))


def build_command(make: MessageFactory, command_type: str, action, stamp_ns: int, joint_names: Sequence[str] = (),
                  positions: bool = False, duration_s: float = 0.0, frame_id: str = '',
                  twist_fields: Sequence[str] = ()):
    """The ``command_type`` message commanding ``action`` (1-D), stamped ``stamp_ns``; a twist's components are
    ``twist_fields`` (one per action dimension) when given."""
    action = np.asarray(action, dtype=np.float64)
    check_command_type(command_type, action.size, positions, twist_fields)
    if twist_fields and len(twist_fields) != action.size:
        raise ValueError(f'twist_fields {list(twist_fields)} name {len(twist_fields)} components for '
                         f'{action.size} values')
    if command_type == 'float64_multi_array':
        return float_array(make, action)
    empty = np.zeros(0)
    if command_type == 'joint_trajectory':
        duration_ns = round(duration_s * 1e9)
        point = make('trajectory_msgs/msg/JointTrajectoryPoint', positions=action if positions else empty,
                     velocities=empty if positions else action, accelerations=empty, effort=empty,
                     time_from_start=make('builtin_interfaces/msg/Duration', sec=duration_ns // 10**9,
                                          nanosec=duration_ns % 10**9))
        return make('trajectory_msgs/msg/JointTrajectory', header=header(make, stamp_ns, frame_id),
                    joint_names=list(joint_names), points=[point])
    values = dict(zip(twist_components(twist_fields, action.size), action.tolist(), strict=True))
    vectors = {part: make('geometry_msgs/msg/Vector3', **{axis: values.get(f'{part}.{axis}', 0.0) for axis in 'xyz'})
               for part in ('linear', 'angular')}
    twist = make('geometry_msgs/msg/Twist', **vectors)
    if command_type == 'twist':
        return twist
    return make('geometry_msgs/msg/TwistStamped', header=header(make, stamp_ns, frame_id), twist=twist)


def header(make: MessageFactory, stamp_ns: int, frame_id: str = ''):
    """A std_msgs/Header stamped ``stamp_ns``."""
    stamp = make('builtin_interfaces/msg/Time', sec=int(stamp_ns) // 10**9, nanosec=int(stamp_ns) % 10**9)
    return make('std_msgs/msg/Header', stamp=stamp, frame_id=frame_id)


def float_array(make: MessageFactory, values):
    """A std_msgs/Float64MultiArray of ``values`` with an empty layout."""
    layout = make('std_msgs/msg/MultiArrayLayout', dim=[], data_offset=0)
    return make('std_msgs/msg/Float64MultiArray', layout=layout, data=np.asarray(values, dtype=np.float64))
