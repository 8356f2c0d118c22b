"""recorder_node over real DDS: live publisher -> recorder -> bag -> ingest, services, shutdown."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from lewm_ros.data.bags import BagReader  # noqa: E402
from lewm_ros.data.cache import TrainingCache  # noqa: E402
from lewm_ros.data.images import image_to_rgb, rgb_to_image_fields  # noqa: E402
from lewm_ros.data.ingest import IngestConfig, ingest  # noqa: E402
from lewm_ros.nodes.recorder_node import RecorderNode  # noqa: E402

from .waiting import wait_for  # noqa: E402

pytestmark = pytest.mark.ros
CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'recorder.yaml'


def frame(k: int) -> np.ndarray:
    pixels = np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pixels[0, 0, 0] = k  # the frame number, readable after resizing-free ingest
    return pixels


def parameters(tmp_path, **values) -> list[Parameter]:
    values = {'output_dir': str(tmp_path / 'bags'), **values}
    return [Parameter(name, value=value) for name, value in values.items()]


class Spinning:
    """Nodes spun by one executor on a background thread."""

    def __init__(self, *nodes):
        self.executor = SingleThreadedExecutor()
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self):
        self.executor.shutdown()
        self.thread.join(timeout=5)


def test_live_publisher_to_recorder_to_bag_to_cache(tmp_path):
    rclpy.init()
    try:
        recorder = RecorderNode(parameter_overrides=parameters(
            tmp_path, topics=['image', 'command'], types=['sensor_msgs/msg/Image', 'std_msgs/msg/Float64MultiArray'],
            reliability='reliable'))
        talker = rclpy.create_node('talker')
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        images = talker.create_publisher(Image, 'image', latched)
        commands = talker.create_publisher(Float64MultiArray, 'command', 50)
        control = talker.create_publisher(Bool, 'record', 10)
        spinning = Spinning(recorder, talker)
        wait_for(lambda: min(p.get_subscription_count() for p in (images, commands, control)) > 0, 'discovery')
        control.publish(Bool(data=True))
        wait_for(lambda: recorder.recording, 'episode start')
        for k in range(30):  # command k well before image k, image k well before command k+1
            commands.publish(Float64MultiArray(data=[float(k), float(-k)]))
            time.sleep(0.015)
            images.publish(Image(**{**rgb_to_image_fields(frame(k)), 'data': frame(k).tobytes()}))
            time.sleep(0.035)
        time.sleep(0.2)
        control.publish(Bool(data=False))
        wait_for(lambda: not recorder.recording, 'episode stop')
        spinning.stop()
        recorder.destroy_node()
        talker.destroy_node()
    finally:
        rclpy.try_shutdown()

    bag = recorder.last_bag
    with BagReader(bag) as reader:
        assert reader.topics == {'/image': 'sensor_msgs/msg/Image', '/command': 'std_msgs/msg/Float64MultiArray'}
        # the QoS the publishers offered, as ros2 bag record writes it: the latched topic replays latched
        assert [qos.latched for qos in reader.offered_qos('/image')] == [True]
        assert [(qos.latched, qos.reliable) for qos in reader.offered_qos('/command')] == [(False, True)]
        received = [image_to_rgb(message.msg) for message in reader.messages(['/image'])]
    assert len(received) == 30  # reliable QoS over localhost loses nothing
    for k, pixels in enumerate(received):
        np.testing.assert_array_equal(pixels, frame(k))

    report = ingest([bag], tmp_path / 'cache', IngestConfig(image_size=16), progress=False)
    assert report.control_rate == pytest.approx(20, rel=0.2)
    cache = TrainingCache(tmp_path / 'cache')
    ok = cache.step_ok
    assert ok.mean() > 0.8
    frame_numbers = cache.frames[cache.step_frame[ok], 0, 0, 0].astype(float)
    np.testing.assert_array_equal(cache.actions[ok], np.stack([frame_numbers, -frame_numbers], axis=1))


def call(client, request, spinning_timeout: float = 5.0):
    assert client.wait_for_service(timeout_sec=spinning_timeout)
    future = client.call_async(request)
    wait_for(future.done, 'service response', spinning_timeout)
    return future.result()


def test_services_roll_over_and_parameter_validation(tmp_path):
    rclpy.init()
    try:
        with pytest.raises(ValueError, match='storage must be one of'):
            RecorderNode(parameter_overrides=parameters(tmp_path, storage='bag'))
        with pytest.raises(ValueError, match="cannot record 'my_msgs/msg/X'"):
            RecorderNode(parameter_overrides=parameters(tmp_path, types=['sensor_msgs/msg/Image', 'my_msgs/msg/X']))
        recorder = RecorderNode(parameter_overrides=parameters(
            tmp_path, types=['sensor_msgs/msg/Image', 'std_msgs/msg/Float64MultiArray'], storage='sqlite3'))
        client_node = rclpy.create_node('client')
        start = client_node.create_client(Trigger, 'recorder_node/start')
        stop = client_node.create_client(Trigger, 'recorder_node/stop')
        set_recording = client_node.create_client(SetBool, 'recorder_node/set_recording')
        spinning = Spinning(recorder, client_node)
        assert call(start, Trigger.Request()).success
        assert not call(start, Trigger.Request()).success  # already recording
        rejected = recorder.set_parameters([Parameter('storage', value='mcap')])[0]
        assert not rejected.successful and 'applied at start-up' in rejected.reason
        assert not recorder.set_parameters([Parameter('episode_duration', value=-1.0)])[0].successful
        assert recorder.set_parameters([Parameter('episode_duration', value=0.3)])[0].successful
        time.sleep(1.0)
        response = call(stop, Trigger.Request())
        assert response.success
        assert call(set_recording, SetBool.Request(data=True)).success and recorder.recording
        assert call(set_recording, SetBool.Request(data=False)).success and not recorder.recording
        spinning.stop()
        recorder.destroy_node()
        client_node.destroy_node()
    finally:
        rclpy.try_shutdown()
    bags = sorted((tmp_path / 'bags').iterdir())
    assert 4 <= len(bags) <= 6 and response.message == str(bags[-2])
    for bag in bags:  # every rolled-over bag is complete and readable
        assert (bag / 'metadata.yaml').exists()
        with BagReader(bag) as reader:
            assert set(reader.topics) == {'/image', '/command'}


def test_a_bag_that_cannot_be_opened_is_refused_and_the_node_keeps_running(tmp_path):
    (tmp_path / 'bags').write_text('a file where the bag directory should go')
    rclpy.init()
    try:
        recorder = RecorderNode(parameter_overrides=parameters(
            tmp_path, types=['sensor_msgs/msg/Image', 'std_msgs/msg/Float64MultiArray']))
        client_node = rclpy.create_node('client')
        start = client_node.create_client(Trigger, 'recorder_node/start')
        spinning = Spinning(recorder, client_node)
        response = call(start, Trigger.Request())
        assert not response.success and 'cannot open bag' in response.message and not recorder.recording
        (tmp_path / 'bags').unlink()
        assert call(start, Trigger.Request()).success and recorder.recording  # still serving
        spinning.stop()
        recorder.destroy_node()
        client_node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_sigint_closes_the_bag_of_a_discovering_recorder_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, '-m', 'lewm_ros.nodes.recorder_node', '--ros-args', '--params-file', str(CONFIG),
         '-p', 'topics:=[image]', '-p', 'types:=[]', '-p', f'output_dir:={tmp_path}', '-p', 'autostart:=true'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    try:
        talker = rclpy.create_node('talker')
        images = talker.create_publisher(Image, 'image', 10)
        wait_for(lambda: images.get_subscription_count() > 0, 'recorder discovering /image', timeout=20)
        for k in range(10):
            images.publish(Image(**{**rgb_to_image_fields(frame(k)), 'data': frame(k).tobytes()}))
            time.sleep(0.03)
        time.sleep(0.3)
        talker.destroy_node()
    finally:
        rclpy.try_shutdown()
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    (bag,) = tmp_path.iterdir()
    with BagReader(bag) as reader:
        numbers = [int(image_to_rgb(message.msg)[0, 0, 0]) for message in reader.messages(['/image'])]
    assert numbers and numbers == sorted(numbers) and set(numbers) <= set(range(10)), output


def test_a_latched_publisher_that_appears_after_the_bag_opened_is_recorded_latched(tmp_path):
    rclpy.init()
    try:
        recorder = RecorderNode(parameter_overrides=parameters(
            tmp_path, topics=['goal_image', 'command'],
            types=['sensor_msgs/msg/Image', 'std_msgs/msg/Float64MultiArray'], reliability='reliable'))
        talker = rclpy.create_node('late_talker')
        spinning = Spinning(recorder, talker)
        assert recorder.start_episode() is not None  # the bag opens while nobody publishes either topic
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        goal = talker.create_publisher(Image, 'goal_image', latched)
        wait_for(lambda: goal.get_subscription_count() > 0, 'discovery')
        goal.publish(Image(**{**rgb_to_image_fields(frame(1)), 'data': frame(1).tobytes()}))
        wait_for(lambda: recorder._message_count == 1, 'the goal to be recorded')
        bag = recorder.stop_episode()
        spinning.stop()
        recorder.destroy_node()
        talker.destroy_node()
    finally:
        rclpy.try_shutdown()
    with BagReader(bag) as reader:
        assert [qos.latched for qos in reader.offered_qos('/goal_image')] == [True]  # replays latched
        assert [qos.latched for qos in reader.offered_qos('/command')] == [False]  # never published: the default
        assert reader.message_count('/goal_image') == 1 and reader.message_count('/command') == 0
