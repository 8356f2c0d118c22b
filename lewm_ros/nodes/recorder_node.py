"""recorder_node: record configured topics into one rosbag2 (mcap) per episode, without ``ros2 bag``.

Subscriptions are raw (the CDR bytes go to the bag undeserialised), stamped with the node clock at
reception like ``ros2 bag record`` (sim time when ``use_sim_time`` is set). Episodes start and stop
through the services ``~/start`` and ``~/stop`` (std_srvs/Trigger), ``~/set_recording``
(std_srvs/SetBool), the ``control_topic`` (std_msgs/Bool: true starts, false stops), ``autostart``,
and roll over to a new bag every ``episode_duration`` seconds when that is positive. Shutdown
(Ctrl-C, SIGTERM, node destruction) closes the open bag, so it keeps its index and metadata.

Faults: the open bag is flushed every ``flush_interval`` seconds, so a recorder killed (or a machine losing
power) loses about that much; ``lewm-ingest --recover`` rebuilds such an unclosed bag. A write that fails (a
full disk) ends the episode: the bag is given up unfinished, flagged by ``recording_failed.txt`` (the reason)
where the disk still takes it, the error is logged, and the node records the next episode when asked.

    recorder_node --ros-args --params-file config/recorder.yaml
"""

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from lewm_ros.data.bags import STORAGES, BagWriter, TopicQos, typestore_for
from lewm_ros.data.recover import FAILURE_NOTE
from lewm_ros.nodes.conversions import message_class, topic_qos
from lewm_ros.nodes.parameters import ParameterBinding
from lewm_ros.nodes.spinning import run_node
from lewm_ros.settings import check_settings, setting

RELIABILITIES = {'best_effort': ReliabilityPolicy.BEST_EFFORT, 'reliable': ReliabilityPolicy.RELIABLE}


@dataclass
class RecorderConfig:
    """recorder_node's parameters, one to one."""

    topics: list[str] = setting(['image', 'command'], 'topics to record (relative names resolve in the node\'s '
                                'namespace)')
    types: list[str] = setting([], "their message types ('sensor_msgs/msg/Image', ...), same order; empty = "
                               'discover them from the ROS graph')
    output_dir: str = setting('bags', 'directory the episode bags are written into')
    storage: str = setting('mcap', 'bag storage format', choices=tuple(sorted(STORAGES)))
    bag_prefix: str = setting('episode', 'bag directory names start with this')
    autostart: bool = setting(False, 'start recording an episode at start-up')
    episode_duration: float = setting(0.0, 'seconds; > 0 rolls over to a new bag this often while recording '
                                      '(0 = never)', low=0.0, high=1e9, live=True)
    control_topic: str = setting('record', "std_msgs/Bool topic that starts (true) and stops (false) episodes; "
                                 "'' = none")
    reliability: str = setting('best_effort', "subscription QoS; 'best_effort' also hears best-effort camera "
                               'drivers', choices=tuple(sorted(RELIABILITIES)))
    qos_depth: int = setting(100, 'subscription queue depth', low=1, high=100_000)
    flush_interval: float = setting(1.0, 'seconds between flushes of the open bag to disk: a recorder killed loses '
                                    'about this much (lewm-ingest --recover reads the rest)', low=0.05, high=3600.0,
                                    live=True)

    def validate(self) -> None:
        """Raise ValueError with the reason when a value is invalid."""
        check_settings(self)
        if not self.topics or len(set(self.topics)) != len(self.topics):
            raise ValueError(f'topics must be a non-empty list without duplicates, got {self.topics}')
        if self.types and len(self.types) != len(self.topics):
            raise ValueError(f'types must be empty (discover) or match topics one to one, got {self.types}')
        for type_name in self.types:
            check_recordable(type_name)
        if not self.output_dir or not self.bag_prefix:
            raise ValueError('output_dir and bag_prefix must not be empty')


def check_recordable(type_name: str) -> None:
    """Raise ValueError unless rclpy can subscribe to the type and the bag writer knows its definition."""
    if type_name.count('/') != 2 or type_name not in typestore_for().types:
        raise ValueError(f"cannot record {type_name!r}: expected 'pkg/msg/Name' of a type the rosbags typestore knows")
    try:
        message_class(type_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f'cannot record {type_name!r}: {err}') from err


class RecorderNode(Node):
    """Records ``RecorderConfig.topics`` into one bag per episode; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('recorder_node', **kwargs)
        self.parameters = ParameterBinding(self, {'': RecorderConfig}, check=lambda configs: configs[0].validate(),
                                           apply=self._apply)
        (self.config,) = self.parameters.check()
        self._lock = threading.Lock()  # services, timers and subscriptions may run on several threads
        self._writer: BagWriter | None = None
        self._episode_started = self._flushed = 0.0
        self._episode_number = 0
        self._message_count = 0
        self._types: dict[str, str] = {}  # resolved topic -> type, once known and subscribed
        types = self.config.types or [None] * len(self.config.topics)
        self._wanted = {self.resolve_topic_name(topic): type_name
                        for topic, type_name in zip(self.config.topics, types, strict=True)}
        self._qos = QoSProfile(depth=self.config.qos_depth, reliability=RELIABILITIES[self.config.reliability])
        self.last_bag: Path | None = None
        self.refusal = ''  # why the last start or stop did nothing

        self._discovery_timer = None
        self._subscribe_known_topics()
        if len(self._types) < len(self._wanted):
            self._discovery_timer = self.create_timer(0.5, self._subscribe_known_topics)
        self.create_service(Trigger, '~/start', self._on_start)
        self.create_service(Trigger, '~/stop', self._on_stop)
        self.create_service(SetBool, '~/set_recording', self._on_set_recording)
        if self.config.control_topic:
            self.create_subscription(Bool, self.config.control_topic, self._on_control, 10)
        self.create_timer(0.05, self._flush_or_roll_over_if_due)
        if self.config.autostart:
            self.start_episode()

    def _apply(self, configs) -> None:
        with self._lock:
            (self.config,) = configs

    def _subscribe_known_topics(self) -> None:
        """Subscribe to every wanted topic whose type is configured or now visible in the graph."""
        graph = dict(self.get_topic_names_and_types())
        for topic, type_name in list(self._wanted.items()):
            type_name = type_name or (graph.get(topic) or [None])[0]
            if topic in self._types or type_name is None:
                continue
            try:
                check_recordable(type_name)
            except ValueError as err:  # a discovered type we cannot write: say so once, record the rest
                self.get_logger().error(f'not recording {topic}: {err}')
                del self._wanted[topic]
                continue
            self.create_subscription(message_class(type_name), topic,
                                     lambda data, topic=topic: self._on_message(topic, data), self._qos, raw=True)
            with self._lock:
                self._types[topic] = type_name
                if self._writer is not None:
                    self._register(self._writer, topic)
            self.get_logger().info(f'recording {topic} [{type_name}]')
        if len(self._types) == len(self._wanted) and self._discovery_timer is not None:
            self._discovery_timer.cancel()

    def _register(self, writer: BagWriter, topic: str, fallback: bool = False) -> None:
        """Add ``topic`` to the bag with the QoS its publishers offer, as ``ros2 bag record`` writes it (a latched
        topic then replays latched). While no publisher is known, its first message registers it (registered
        before, a latched goal publisher that came later was recorded as volatile and its replay lost the goal);
        a topic that never had one is registered as the bag closes. ``fallback``: reliable and volatile when no
        publisher is known."""
        offered = [topic_qos(info.qos_profile) for info in self.get_publishers_info_by_topic(topic)]
        if offered or fallback:
            writer.add_topic(topic, self._types[topic], offered or [TopicQos()])

    def _on_message(self, topic: str, data: bytes) -> None:
        stamp_ns = self.get_clock().now().nanoseconds
        with self._lock:
            if self._writer is not None:
                try:
                    if not self._writer.has_topic(topic):
                        self._register(self._writer, topic, fallback=True)  # (its publisher may have left already)
                    self._writer.write_raw(topic, data, stamp_ns)
                except (OSError, sqlite3.Error) as err:
                    self._give_up(err)
                    return
                self._message_count += 1

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def start_episode(self) -> Path | None:
        """Open a new bag; None (reason in ``refusal``) when already recording or the bag cannot be opened."""
        with self._lock:
            self.refusal = 'already recording'
            path = None if self._writer is not None else self._open_bag()
        if path is not None:
            self.get_logger().info(f'episode started: {path}')
        return path

    def stop_episode(self) -> Path | None:
        """Close the open bag and return its path; None (reason in ``refusal``) when not recording or the bag
        failed to close."""
        with self._lock:
            self.refusal = 'not recording'
            path = None if self._writer is None else self._close_bag()
        return path

    def _flush_or_roll_over_if_due(self) -> None:
        duration, now = self.config.episode_duration, time.monotonic()
        with self._lock:  # close and reopen under one lock: no message falls between two bags
            if self._writer is None:
                return
            try:
                if duration > 0 and now - self._episode_started >= duration:
                    if self._close_bag() is not None:  # (a bag that failed to close: the disk takes no new one)
                        self._open_bag()
                elif now - self._flushed >= self.config.flush_interval:
                    self._writer.flush()
                    self._flushed = now
            except (OSError, sqlite3.Error) as err:
                self._give_up(err)

    def _give_up(self, error: Exception) -> None:
        """A write failed (a full disk): end the episode without finishing the bag (that would write again), flag
        it, say so; the node goes on and the next episode starts when asked."""
        writer, self._writer = self._writer, None
        writer.abort()
        reason = self.refusal = f'writing {writer.path} failed: {error}'
        with contextlib.suppress(OSError):  # (the disk may not take even this)
            (writer.path / FAILURE_NOTE).write_text(reason + '\n')
        self.last_bag = writer.path
        self.get_logger().error(f'episode ended: {reason}; {self._message_count} messages recorded, those flushed '
                                'before the error are kept: rebuild the bag with `lewm-ingest --recover`')

    def _open_bag(self) -> Path | None:
        stamp = time.strftime('%Y%m%d_%H%M%S')
        name = f'{self.config.bag_prefix}_{stamp}_{os.getpid()}_{self._episode_number:04d}'  # unique per process
        path = Path(self.config.output_dir) / name
        self._episode_number += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = BagWriter(path, self.config.storage)
            for topic in self._types:
                self._register(writer, topic)
        except Exception as err:  # filesystem or rosbags: report it, the node keeps running
            self.refusal = f'cannot open bag {path}: {err}'
            self.get_logger().error(self.refusal)
            return None
        self._writer = writer
        self._episode_started = self._flushed = time.monotonic()
        self._message_count = 0
        return path

    def _close_bag(self) -> Path | None:
        """The closed bag's path; None when closing failed (given up, the reason in ``refusal``)."""
        writer = self._writer
        try:
            for topic in self._types:
                if not writer.has_topic(topic):
                    self._register(writer, topic, fallback=True)
            writer.close()
        except (OSError, sqlite3.Error) as err:  # (its index and metadata are writes too)
            self._give_up(err)
            return None
        self._writer = None
        self.last_bag = writer.path
        self.get_logger().info(f'episode stopped: {writer.path} ({self._message_count} messages)')
        return writer.path

    def _on_control(self, msg: Bool) -> None:
        self._set_recording(msg.data)

    def _set_recording(self, on: bool) -> tuple[bool, str]:
        path = self.start_episode() if on else self.stop_episode()
        return (False, self.refusal) if path is None else (True, str(path))

    def _on_start(self, _request, response):
        response.success, response.message = self._set_recording(True)
        return response

    def _on_stop(self, _request, response):
        response.success, response.message = self._set_recording(False)
        return response

    def _on_set_recording(self, request, response):
        response.success, response.message = self._set_recording(request.data)
        return response

    def destroy_node(self):
        self.stop_episode()  # an open bag must get its index and metadata.yaml
        super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args, __doc__)


if __name__ == '__main__':
    raise SystemExit(main())
