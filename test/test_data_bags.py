"""Bag reading and writing across the distros rosbags knows, and bags without stored definitions."""

import sqlite3

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores

from lewm_ros.data.bags import LATCHED, BagReader, BagWriter, TopicQos, typestore_for
from lewm_ros.data.images import image_to_rgb, rgb_to_image_fields

DISTROS = [store.value.removeprefix('ros2_') for store in Stores if store.value.startswith('ros2_')]
PIXELS = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def write_small_bag(path, storage: str, distro: str) -> None:
    with BagWriter(path, storage, distro=distro) as writer:
        writer.write('image', writer.message('sensor_msgs/msg/Image', header=writer.header(7, 'cam'),
                                             **rgb_to_image_fields(PIXELS, 'bgr8')), 10)
        vector = writer.typestore.types['geometry_msgs/msg/Vector3']
        writer.write('/cmd_vel', writer.message('geometry_msgs/msg/Twist', linear=vector(x=1.0, y=2.0, z=3.0),
                                                angular=vector(x=4.0, y=5.0, z=6.0)), 20)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('distro', DISTROS)
def test_every_distro_round_trips_in_both_storages(tmp_path, storage, distro):
    write_small_bag(tmp_path / 'bag', storage, distro)
    metadata = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['storage_identifier'] == storage and metadata['message_count'] == 2  # what ros2 bag reads
    assert metadata['ros_distro'] == distro  # rosbags writes 'rosbags'
    if storage == 'sqlite3':
        with sqlite3.connect(tmp_path / 'bag' / 'bag.db3') as database:
            assert database.execute('SELECT ros_distro FROM schema').fetchall() == [(distro,)]
    with BagReader(tmp_path / 'bag') as reader:
        assert reader.topics == {'/image': 'sensor_msgs/msg/Image', '/cmd_vel': 'geometry_msgs/msg/Twist'}
        image, twist = reader.messages(['/image', '/cmd_vel'])
    assert (image.topic, image.index, image.stamp_ns, image.msg.header.stamp.nanosec) == ('/image', 0, 10, 7)
    np.testing.assert_array_equal(image_to_rgb(image.msg), PIXELS)
    assert (twist.stamp_ns, twist.msg.angular.z) == (20, 6.0)


def test_bag_without_stored_definitions_falls_back_to_the_distro_typestore(tmp_path):
    write_small_bag(tmp_path / 'bag', 'sqlite3', 'humble')
    with sqlite3.connect(tmp_path / 'bag' / 'bag.db3') as database:  # as an older rosbag2 would have written it
        database.execute('DELETE FROM message_definitions')
    with BagReader(tmp_path / 'bag') as reader:
        (image,) = reader.messages(['/image'])
    np.testing.assert_array_equal(image_to_rgb(image.msg), PIXELS)


def test_distro_names():
    assert 'sensor_msgs/msg/Image' in typestore_for('humble').types
    assert typestore_for('rosbags').types.keys() == typestore_for('jazzy').types.keys()


def test_writer_refuses_unknown_types_and_storages(tmp_path):
    with pytest.raises(ValueError, match='storage must be one of'):
        BagWriter(tmp_path / 'a', 'rosbag1')
    with BagWriter(tmp_path / 'b') as writer, pytest.raises(ValueError, match='unknown to the rosbags typestore'):
        writer.add_topic('x', 'my_msgs/msg/Custom')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_offered_qos_profiles_round_trip_as_rosbag2_writes_them(tmp_path, storage):
    with BagWriter(tmp_path / 'bag', storage) as writer:
        writer.add_topic('goal_image', 'sensor_msgs/msg/Image', [LATCHED])
        writer.add_topic('image', 'sensor_msgs/msg/Image', [TopicQos(reliable=False, depth=0)])
        writer.write('/cmd_vel', writer.message('geometry_msgs/msg/Twist', linear=vector3(writer),
                                                angular=vector3(writer)), 1)
    metadata = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    profiles = {topic['topic_metadata']['name']: yaml.safe_load(topic['topic_metadata']['offered_qos_profiles'])
                for topic in metadata['topics_with_message_count']}
    (goal,) = profiles['/goal_image']  # rosbag2's numbering: durability 1 transient local, reliability 1 reliable
    assert (goal['durability'], goal['reliability'], goal['history'], goal['depth']) == (1, 1, 1, 1)
    assert goal['deadline'] == {'sec': 9223372036, 'nsec': 854775807}  # infinite, as rmw writes it
    with BagReader(tmp_path / 'bag') as reader:
        assert reader.offered_qos('/goal_image') == [LATCHED]
        assert reader.offered_qos('/image') == [TopicQos(reliable=False, depth=0)]
        assert reader.offered_qos('/cmd_vel') == [TopicQos()]  # written without a profile: reliable, volatile


def vector3(writer):
    return writer.message('geometry_msgs/msg/Vector3', x=0.0, y=0.0, z=0.0)
