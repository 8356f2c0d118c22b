"""rclpy works for real here: an Image crosses DDS between two nodes."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402


def test_image_round_trip_between_two_nodes():
    rclpy.init()
    try:
        talker = rclpy.create_node('smoke_talker')
        listener = rclpy.create_node('smoke_listener')
        received = []
        publisher = talker.create_publisher(Image, 'image', 10)
        listener.create_subscription(Image, 'image', received.append, 10)
        executor = SingleThreadedExecutor()
        executor.add_node(talker)
        executor.add_node(listener)

        pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
        msg = Image(height=4, width=5, encoding='rgb8', step=15, data=pixels.tobytes())
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            publisher.publish(msg)
            executor.spin_once(timeout_sec=0.1)

        assert received, 'no Image arrived over DDS within 10 s'
        got = received[0]
        assert (got.height, got.width, got.encoding, got.step) == (4, 5, 'rgb8', 15)
        np.testing.assert_array_equal(np.frombuffer(bytes(got.data), np.uint8).reshape(4, 5, 3), pixels)
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.try_shutdown()
