"""Command message -> action vector, and the action normalisation statistics.

The mapping is explicit: an ``ActionSpec`` names which numeric fields (and which joints) form the
action, in order. It works on rosbags-deserialised and live rclpy messages alike (same attribute
names), so ingest, the simulator and the planner all read commands the same way.

Supported types and their fields (default: all Twist components, else the first listed):
  std_msgs/Float64MultiArray, Float32MultiArray  data
  geometry_msgs/Twist, TwistStamped              linear.x linear.y linear.z angular.x angular.y angular.z
  trajectory_msgs/JointTrajectory (first point)  positions velocities accelerations effort
  sensor_msgs/JointState                         position velocity effort
Several fields are concatenated in the order given; ``joints`` selects and orders joints by name.
"""

from dataclasses import dataclass, field

import numpy as np

TWIST_FIELDS = ('linear.x', 'linear.y', 'linear.z', 'angular.x', 'angular.y', 'angular.z')
# message type -> fields it accepts; the first of each is its default
_FIELDS = {
    'std_msgs/msg/Float64MultiArray': ('data',),
    'std_msgs/msg/Float32MultiArray': ('data',),
    'geometry_msgs/msg/Twist': TWIST_FIELDS,
    'geometry_msgs/msg/TwistStamped': TWIST_FIELDS,
    'trajectory_msgs/msg/JointTrajectory': ('positions', 'velocities', 'accelerations', 'effort'),
    'sensor_msgs/msg/JointState': ('position', 'velocity', 'effort'),
}
SUPPORTED_ACTION_TYPES = tuple(_FIELDS)
_TWIST_TYPES = ('geometry_msgs/msg/Twist', 'geometry_msgs/msg/TwistStamped')
_JOINT_TYPES = ('trajectory_msgs/msg/JointTrajectory', 'sensor_msgs/msg/JointState')


class ActionError(ValueError):
    """A command message cannot become a valid action (type, field, joint, dimension or NaN/inf)."""


@dataclass
class ActionSpec:
    """Which numbers of a command message form the action vector.

    fields: field names in order (see module docstring); empty = the type's default (all six Twist
        components, JointState position, trajectory positions, MultiArray data).
    joints: joint names to select, in order (JointState / JointTrajectory only); empty = all, as sent.
    dim: expected action dimension; None = accept any (ingest then fixes it from the first message).
    """

    fields: tuple[str, ...] = ()
    joints: tuple[str, ...] = ()
    dim: int | None = None

    def __post_init__(self):
        self.fields, self.joints = tuple(self.fields), tuple(self.joints)  # YAML gives lists
        if self.dim is not None and self.dim <= 0:
            raise ActionError(f'action dim must be positive, got {self.dim}')


def message_type(msg) -> str:
    """'pkg/msg/Name' of a rosbags or rclpy message object."""
    name = getattr(msg, '__msgtype__', None)  # rosbags dataclasses carry it
    if name is None:  # rclpy classes live in modules like std_msgs.msg._twist
        cls = type(msg)
        name = f'{cls.__module__.split(".")[0]}/msg/{cls.__name__}'
    return name


def action_from_message(msg, spec: ActionSpec) -> np.ndarray:
    """The action vector (float64, 1-D) that ``msg`` commands, validated against ``spec``."""
    msgtype = message_type(msg)
    if msgtype not in _FIELDS:
        raise ActionError(f'unsupported action message type {msgtype} (supported: {SUPPORTED_ACTION_TYPES})')
    default_fields = TWIST_FIELDS if msgtype in _TWIST_TYPES else _FIELDS[msgtype][:1]
    fields = spec.fields or default_fields
    unknown = [name for name in fields if name not in _FIELDS[msgtype]]
    if unknown:
        raise ActionError(f'{msgtype} has no action field(s) {unknown}; choose from {_FIELDS[msgtype]}')
    if spec.joints and msgtype not in _JOINT_TYPES:
        raise ActionError(f'joints are only meaningful for JointState/JointTrajectory, not {msgtype}')

    if msgtype in _TWIST_TYPES:
        twist = msg.twist if msgtype.endswith('Stamped') else msg
        values = np.array([_dotted(twist, name) for name in fields], dtype=np.float64)
    else:
        source, names = _array_source(msg, msgtype)
        parts = [np.asarray(getattr(source, name), dtype=np.float64) for name in fields]
        values = np.concatenate([_select_joints(part, names, spec.joints, name)
                                 for part, name in zip(parts, fields, strict=True)])
    return _validated(values, spec)


def _dotted(obj, path: str) -> float:
    for name in path.split('.'):
        obj = getattr(obj, name)
    return float(obj)


def _array_source(msg, msgtype: str):
    """The object holding the array fields and the joint names that index them."""
    if msgtype == 'trajectory_msgs/msg/JointTrajectory':
        if not len(msg.points):
            raise ActionError('JointTrajectory has no points')
        return msg.points[0], list(msg.joint_names)
    if msgtype == 'sensor_msgs/msg/JointState':
        return msg, list(msg.name)
    return msg, []


def _select_joints(values: np.ndarray, names: list[str], joints: tuple[str, ...], field_name: str) -> np.ndarray:
    if not joints:
        return values
    if len(values) != len(names):
        raise ActionError(f'{field_name} has {len(values)} values for {len(names)} joint names')
    missing = [joint for joint in joints if joint not in names]
    if missing:
        raise ActionError(f'joint(s) {missing} not in message joints {names}')
    return values[[names.index(joint) for joint in joints]]


def _validated(values: np.ndarray, spec: ActionSpec) -> np.ndarray:
    if spec.dim is not None and values.shape != (spec.dim,):
        raise ActionError(f'action has {values.size} values, expected {spec.dim}')
    if values.size == 0:
        raise ActionError('empty action')
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ActionError(f'non-finite action value(s) {values[bad].tolist()} at dim(s) {bad.tolist()}')
    return values


@dataclass
class ActionStats:
    """Per raw action dimension mean and std; the model trains and plans in z-scored actions.

    They are saved with the checkpoint (``to_dict`` / ``from_dict``) so the planner maps its
    normalised plans back to commands exactly as the trainer normalised them.
    """

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))

    @classmethod
    def from_actions(cls, actions: np.ndarray, std_floor: float = 1e-3) -> 'ActionStats':
        """Statistics of (N, A) actions; std is floored so constant dimensions do not blow up."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or not len(actions):
            raise ActionError(f'need a non-empty (N, A) action array, got shape {actions.shape}')
        std = np.maximum(actions.std(axis=0), std_floor)
        return cls(actions.mean(axis=0).astype(np.float32), std.astype(np.float32))

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions (..., A) -> z-scored float32."""
        return ((actions - self.mean) / self.std).astype(np.float32)

    def denormalize(self, actions: np.ndarray) -> np.ndarray:
        """Z-scored actions (..., A) -> raw float32."""
        return (actions * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {'mean': self.mean.tolist(), 'std': self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> 'ActionStats':
        return cls(np.asarray(data['mean'], np.float32), np.asarray(data['std'], np.float32))
