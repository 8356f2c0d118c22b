"""numpy -> rclpy message helpers shared by the nodes (the reverse direction lives in lewm_ros.data).

``command_msg`` is the one adapter from an action vector to each command message type the planner can
publish; ``lewm_ros.sim.commands`` (through ``lewm_ros.data.actions``) reads them back the same way.

rclpy sequence fields reject numpy arrays and check Python lists element by element; array.array
is taken as is, which is what makes publishing 224 px images cheap.
"""

from array import array

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Twist, TwistStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lewm_ros.data.actions import TWIST_FIELDS
from lewm_ros.data.images import rgb_to_image_fields

COMMAND_CLASSES = {'float64_multi_array': Float64MultiArray, 'joint_trajectory': JointTrajectory,
                   'twist_stamped': TwistStamped, 'twist': Twist}


def header(stamp: Time, frame_id: str = '') -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def rgb_to_image_msg(rgb: np.ndarray, stamp: Time, frame_id: str = '') -> Image:
    """An rgb8 sensor_msgs/Image of an (H, W, 3) uint8 array."""
    fields = rgb_to_image_fields(np.ascontiguousarray(rgb, dtype=np.uint8))
    fields['data'] = array('B', fields['data'].tobytes())
    return Image(header=header(stamp, frame_id), **fields)


def float_array_msg(values) -> Float64MultiArray:
    return Float64MultiArray(data=array('d', np.asarray(values, dtype=np.float64).tobytes()))


def command_msg(command_type: str, action, stamp: Time, joint_names=(), positions: bool = False,
                duration: float = 0.0, frame_id: str = ''):
    """The ``command_type`` message commanding ``action`` (1-D).

    float64_multi_array: ``data``; joint_trajectory: one point with ``velocities`` (``positions`` when
    ``positions``) for ``joint_names``, reached after ``duration`` seconds; twist / twist_stamped:
    ``linear.x, linear.y, linear.z, angular.x, ...`` in order, one per action dimension.
    """
    action = np.asarray(action, dtype=np.float64)
    if command_type == 'float64_multi_array':
        return float_array_msg(action)
    if command_type == 'joint_trajectory':
        point = JointTrajectoryPoint(time_from_start=Duration(sec=int(duration), nanosec=int(duration % 1 * 1e9)))
        setattr(point, 'positions' if positions else 'velocities', array('d', action.tobytes()))
        return JointTrajectory(header=header(stamp, frame_id), joint_names=list(joint_names), points=[point])
    if command_type in ('twist', 'twist_stamped'):
        twist = Twist()
        for path, value in zip(TWIST_FIELDS, action.tolist(), strict=False):
            part, axis = path.split('.')
            setattr(getattr(twist, part), axis, value)
        return twist if command_type == 'twist' else TwistStamped(header=header(stamp, frame_id), twist=twist)
    raise ValueError(f'unknown command type {command_type!r}, expected one of {sorted(COMMAND_CLASSES)}')
