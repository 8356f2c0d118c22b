"""Command message -> action vector for every supported type, from rosbags and rclpy messages alike."""

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from lewm_ros.data.actions import ActionError, ActionSpec, ActionStats, action_from_message, message_type

TYPES = get_typestore(Stores.ROS2_JAZZY).types


def rosbags_messages():
    """(message, spec, expected action) for each supported type, as rosbags objects."""
    header = TYPES['std_msgs/msg/Header'](stamp=TYPES['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='')
    layout = TYPES['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    vector = TYPES['geometry_msgs/msg/Vector3']
    twist = TYPES['geometry_msgs/msg/Twist'](linear=vector(x=1.0, y=2.0, z=3.0), angular=vector(x=4.0, y=5.0, z=6.0))
    point = TYPES['trajectory_msgs/msg/JointTrajectoryPoint'](
        positions=np.array([0.1, 0.2, 0.3]), velocities=np.array([1.0, 2.0, 3.0]), accelerations=np.array([]),
        effort=np.array([]), time_from_start=TYPES['builtin_interfaces/msg/Duration'](sec=0, nanosec=0))
    return [
        (TYPES['std_msgs/msg/Float64MultiArray'](layout=layout, data=np.array([1.5, -2.0])), ActionSpec(dim=2),
         [1.5, -2.0]),
        (TYPES['std_msgs/msg/Float32MultiArray'](layout=layout, data=np.array([0.5], np.float32)), ActionSpec(),
         [0.5]),
        (twist, ActionSpec(fields=('linear.x', 'angular.z')), [1.0, 6.0]),
        (twist, ActionSpec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        (TYPES['geometry_msgs/msg/TwistStamped'](header=header, twist=twist), ActionSpec(fields=('angular.y',)),
         [5.0]),
        (TYPES['trajectory_msgs/msg/JointTrajectory'](header=header, joint_names=['a', 'b', 'c'], points=[point]),
         ActionSpec(fields=('velocities',), joints=('c', 'a')), [3.0, 1.0]),
        (TYPES['trajectory_msgs/msg/JointTrajectory'](header=header, joint_names=['a', 'b', 'c'], points=[point]),
         ActionSpec(), [0.1, 0.2, 0.3]),
        (TYPES['sensor_msgs/msg/JointState'](header=header, name=['a', 'b'], position=np.array([1.0, 2.0]),
                                             velocity=np.array([3.0, 4.0]), effort=np.array([])),
         ActionSpec(fields=('velocity', 'position'), joints=('b',)), [4.0, 2.0]),
    ]


@pytest.mark.parametrize(('msg', 'spec', 'expected'), rosbags_messages(), ids=lambda v: getattr(v, '__msgtype__', None))
def test_rosbags_messages_map_to_actions(msg, spec, expected):
    action = action_from_message(msg, spec)
    assert action.dtype == np.float64
    np.testing.assert_array_equal(action, expected)


def test_rclpy_messages_map_to_the_same_actions():
    geometry = pytest.importorskip('geometry_msgs.msg')
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    twist = geometry.TwistStamped()
    twist.twist.linear.x, twist.twist.angular.z = 0.5, -1.0
    assert message_type(twist) == 'geometry_msgs/msg/TwistStamped'
    np.testing.assert_array_equal(action_from_message(twist, ActionSpec(fields=('linear.x', 'angular.z'))),
                                  [0.5, -1.0])
    np.testing.assert_array_equal(action_from_message(Float32MultiArray(data=[1.0, 2.0]), ActionSpec(dim=2)),
                                  [1.0, 2.0])
    state = JointState(name=['j1', 'j2'], position=[0.1, 0.2], velocity=[1.0, 2.0])
    np.testing.assert_array_equal(action_from_message(state, ActionSpec(fields=('velocity',), joints=('j2',))), [2.0])
    trajectory = JointTrajectory(joint_names=['x', 'y'], points=[JointTrajectoryPoint(velocities=[3.0, 4.0])])
    np.testing.assert_array_equal(action_from_message(trajectory, ActionSpec(fields=('velocities',))), [3.0, 4.0])


@pytest.mark.parametrize(('index', 'spec', 'reason'), [
    (0, ActionSpec(dim=3), 'expected 3'),
    (2, ActionSpec(fields=('linear.w',)), 'no action field'),
    (2, ActionSpec(joints=('a',)), 'only meaningful'),
    (5, ActionSpec(fields=('velocities',), joints=('z',)), r"joint\(s\) \['z'\] not in"),
])
def test_spec_mismatches_raise(index, spec, reason):
    msg = rosbags_messages()[index][0]
    with pytest.raises(ActionError, match=reason):
        action_from_message(msg, spec)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_actions_raise(bad):
    msg = rosbags_messages()[0][0]
    msg.data = np.array([1.0, bad])
    with pytest.raises(ActionError, match=r'non-finite .* at dim\(s\) \[1\]'):
        action_from_message(msg, ActionSpec())


def test_empty_trajectory_and_unsupported_type_raise():
    header = TYPES['std_msgs/msg/Header'](stamp=TYPES['builtin_interfaces/msg/Time'](sec=0, nanosec=0), frame_id='')
    empty = TYPES['trajectory_msgs/msg/JointTrajectory'](header=header, joint_names=[], points=[])
    with pytest.raises(ActionError, match='no points'):
        action_from_message(empty, ActionSpec())
    with pytest.raises(ActionError, match='unsupported action message type std_msgs/msg/Header'):
        action_from_message(header, ActionSpec())


def test_action_stats_normalise_round_trip_and_floor():
    actions = np.stack([np.linspace(-1, 3, 50), np.full(50, 2.0)], axis=1)
    stats = ActionStats.from_actions(actions, std_floor=1e-3)
    np.testing.assert_allclose(stats.mean, [1.0, 2.0], atol=1e-6)
    assert stats.std[1] == pytest.approx(1e-3)
    normalised = stats.normalize(actions)
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised[:, 0].std(), 1, atol=1e-5)
    restored = ActionStats.from_dict(stats.to_dict())
    np.testing.assert_allclose(restored.denormalize(normalised), actions, atol=1e-5)
