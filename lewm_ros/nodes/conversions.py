"""numpy -> rclpy messages, and QoS profiles, shared by the nodes (the reverse direction lives in lewm_ros.data).

``ros_message`` is the rclpy message factory behind ``lewm_ros.data.commands.build_command``, so the planner's
live commands and the collector's bag commands come from one builder. rclpy sequence fields check Python lists
element by element; array.array is taken as is, which is what makes publishing 224 px images cheap.
"""

import importlib
from array import array

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from lewm_ros.data.bags import TopicQos
from lewm_ros.data.commands import COMMAND_TYPES, build_command, float_array, header
from lewm_ros.data.images import rgb_to_image_fields

IMAGE_QOS = {'sensor_data': QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability),
             'reliable': QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)}
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
# A latched goal publisher needs a transient-local subscription, a plain one (``ros2 topic pub``) a volatile one.
GOAL_QOS = (LATCHED_QOS,
            QoSProfile(depth=1, durability=DurabilityPolicy.VOLATILE, reliability=ReliabilityPolicy.BEST_EFFORT))
_DIAGNOSTIC_LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN, 'error': DiagnosticStatus.ERROR}
_TYPECODES = {np.dtype(np.float64): 'd', np.dtype(np.float32): 'f', np.dtype(np.uint8): 'B'}


def message_class(type_name: str):
    """The rclpy message class of 'pkg/msg/Name'."""
    package, _, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def ros_message(msgtype: str, **fields):
    """An rclpy message of ``msgtype`` ('pkg/msg/Name'); numpy arrays become array.array."""
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            fields[name] = array(_TYPECODES[value.dtype], np.ascontiguousarray(value).tobytes())
    return message_class(msgtype)(**fields)


def command_class(command_type: str):
    return message_class(COMMAND_TYPES[command_type])


def command_msg(command_type: str, action, stamp_ns: int, joint_names=(), positions: bool = False,
                duration_s: float = 0.0, frame_id: str = '', twist_fields=()):
    """The rclpy ``command_type`` message commanding ``action`` (see ``lewm_ros.data.commands``)."""
    return build_command(ros_message, command_type, action, stamp_ns, joint_names, positions, duration_s, frame_id,
                         twist_fields)


def stamped_header(stamp_ns: int, frame_id: str = ''):
    return header(ros_message, stamp_ns, frame_id)


def float_array_msg(values):
    return float_array(ros_message, values)


def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = '') -> Image:
    """An rgb8 sensor_msgs/Image of an (H, W, 3) uint8 array."""
    fields = rgb_to_image_fields(np.ascontiguousarray(rgb, dtype=np.uint8))
    fields['data'] = array('B', fields['data'].tobytes())
    return Image(header=stamped_header(stamp_ns, frame_id), **fields)


def qos_profile(qos: TopicQos) -> QoSProfile:
    """The rclpy profile of a topic's QoS (the same description bags record)."""
    return QoSProfile(depth=qos.depth,
                      reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.latched else DurabilityPolicy.VOLATILE)


def topic_qos(profile: QoSProfile) -> TopicQos:
    """The inverse of ``qos_profile``: what a publisher offers, as bags record it."""
    return TopicQos(reliable=profile.reliability == ReliabilityPolicy.RELIABLE,
                    latched=profile.durability == DurabilityPolicy.TRANSIENT_LOCAL, depth=profile.depth)


def status_msg(status, device, name: str = 'lewm_ros: planner episode', message: str | None = None) -> DiagnosticStatus:
    """A ``lewm_ros.planning.control.LoopStatus`` as a DiagnosticStatus: by default the episode's state (idle,
    planning, reached, stopped, timeout) as the message (``~/status``); every figure, why it holds among them
    ('state'), as values."""
    values = {**status.values(), 'device': device}
    return DiagnosticStatus(level=_DIAGNOSTIC_LEVELS[status.level], name=name,
                            message=status.episode if message is None else message, hardware_id=str(device),
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def diagnostics_msg(status, device, stamp_ns: int) -> DiagnosticArray:
    """The planner's DiagnosticArray of a ``lewm_ros.planning.control.LoopStatus`` (the loop's state as message)."""
    return DiagnosticArray(header=stamped_header(stamp_ns),
                           status=[status_msg(status, device, 'lewm_ros: planner', status.state)])
