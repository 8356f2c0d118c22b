"""Which command message carries a world's action, and how its numbers map to the action vector.

``command_spec`` is the single definition of that mapping: ``sim_node`` reads live commands with
it (through ``lewm_ros.data.actions.action_from_message``), the collector writes bag commands that
read back through it, and ingest can be configured with the same spec.

- ``float64_multi_array`` (std_msgs/Float64MultiArray, a ros2_control forward controller): ``data``
  is the action.
- ``joint_trajectory`` (trajectory_msgs/JointTrajectory): the first point's ``velocities``, by joint
  name (the arm's actions are joint velocities; Two-Room names its axes ``x`` and ``y``).
- ``twist_stamped`` / ``twist`` (geometry_msgs/TwistStamped or Twist): ``linear.x, linear.y, ...`` in
  order, one component per action dimension.
"""

from __future__ import annotations

from lewm_ros.data.actions import TWIST_FIELDS, ActionSpec

COMMAND_TYPES = {
    'float64_multi_array': 'std_msgs/msg/Float64MultiArray',
    'joint_trajectory': 'trajectory_msgs/msg/JointTrajectory',
    'twist_stamped': 'geometry_msgs/msg/TwistStamped',
    'twist': 'geometry_msgs/msg/Twist',
}


def command_spec(command_type: str, action_names: tuple[str, ...]) -> ActionSpec:
    """The ActionSpec that turns a ``command_type`` message into an action with these dimensions."""
    dim = len(action_names)
    if command_type == 'float64_multi_array':
        return ActionSpec(dim=dim)
    if command_type == 'joint_trajectory':
        return ActionSpec(fields=('velocities',), joints=tuple(action_names), dim=dim)
    if command_type in ('twist_stamped', 'twist'):
        if dim > len(TWIST_FIELDS):
            raise ValueError(f'a Twist carries at most {len(TWIST_FIELDS)} numbers, the action has {dim}')
        return ActionSpec(fields=TWIST_FIELDS[:dim], dim=dim)
    raise ValueError(f'unknown command type {command_type!r}, expected one of {sorted(COMMAND_TYPES)}')
