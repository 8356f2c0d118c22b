"""rosbag2 reading and writing through ``rosbags`` (sqlite3 and mcap storage, no ROS runtime).

Written bags carry the message definitions, the standard metadata.yaml and each topic's offered QoS profiles
(as rosbag2 writes them), so ``ros2 bag info/play`` read them and ``ros2 bag play`` replays a latched topic
latched. Reading decodes with the definitions stored in the bag; bags without them (older
distros) fall back to the typestore of the distro named in their metadata, else Jazzy.
"""

import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import (
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

DEFAULT_DISTRO = 'jazzy'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_BAG_VERSION = 8  # rosbags writes 8 or 9; rosbag2 of Jazzy and newer reads both
_INFINITE = QosTime(sec=9223372036, nsec=854775807)  # rmw's infinite duration, as rosbag2 writes it


@dataclass(frozen=True)
class TopicQos:
    """What a publisher offers, in the terms that matter for recording and replay.

    depth 0 = unknown, as DDS discovery reports it (``ros2 bag record`` writes history UNKNOWN then).
    """

    reliable: bool = True
    latched: bool = False  # transient-local durability: late subscribers get the last message
    depth: int = 10

    def profile(self) -> Qos:
        """The rosbags profile for metadata.yaml."""
        return Qos(history=QosHistory.KEEP_LAST if self.depth else QosHistory.UNKNOWN, depth=self.depth,
                   reliability=QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
                   durability=QosDurability.TRANSIENT_LOCAL if self.latched else QosDurability.VOLATILE,
                   deadline=_INFINITE, lifespan=_INFINITE, liveliness=QosLiveliness.AUTOMATIC,
                   liveliness_lease_duration=_INFINITE, avoid_ros_namespace_conventions=False)

    @classmethod
    def of(cls, profile: Qos) -> 'TopicQos':
        return cls(reliable=profile.reliability == QosReliability.RELIABLE,
                   latched=profile.durability == QosDurability.TRANSIENT_LOCAL, depth=profile.depth)


LATCHED = TopicQos(latched=True, depth=1)


class BagError(ValueError):
    """Bad bag content, naming the bag, the topic and the per-topic message index where known."""

    def __init__(self, bag, reason: str, topic: str | None = None, index: int | None = None):
        self.bag, self.reason, self.topic, self.index = str(bag), reason, topic, index
        where = f'topic {topic!r}' if topic else 'bag'
        if index is not None:
            where += f' message #{index}'
        super().__init__(f'{self.bag}: {where}: {reason}')


def resolve_topic(topic: str) -> str:
    """Bags store absolute topic names; accept 'image' for '/image'."""
    return topic if topic.startswith('/') else f'/{topic}'


@functools.cache
def typestore_for(distro: str | None = None) -> Typestore:
    """The rosbags typestore of a ROS 2 distro name ('humble', 'jazzy', ...); unknown or None -> Jazzy.

    Shared (cached): its generated (de)serialisers are then built once per process, not once per bag.
    """
    try:
        return get_typestore(Stores(f'ros2_{distro}'))
    except ValueError:
        return get_typestore(Stores(f'ros2_{DEFAULT_DISTRO}'))


@functools.lru_cache(maxsize=8)
def _typestore(definitions: tuple, distro: str | None) -> Typestore:
    """A typestore of the bag's own message definitions, or of its distro when it stores none.

    Cached by definitions: building a store and generating its deserialisers costs tens of
    milliseconds, which would dominate ingesting thousands of short episode bags.
    """
    if not definitions:
        return typestore_for(distro)
    types = {}
    for msgtype, definition_format, text in definitions:
        if definition_format == 'MSG':
            types.update(get_types_from_msg(text, msgtype))
        else:  # IDL, possibly several concatenated behind '====...' separator lines
            for chunk in re.split(r'^={80}\nIDL: [^\n]*\n', text, flags=re.MULTILINE):
                types.update(get_types_from_idl(chunk) if chunk.strip() else {})
    typestore = get_typestore(Stores.EMPTY)
    typestore.register(types)
    return typestore


@dataclass
class BagMessage:
    topic: str
    index: int  # position within its topic, counted from 0
    stamp_ns: int  # the bag (receive) timestamp
    msg: object  # deserialised rosbags message


class BagReader:
    """Read one rosbag2 directory (either storage); use as a context manager."""

    def __init__(self, path):
        self.path = Path(path)
        self._reader = None
        self._typestore = None

    def __enter__(self) -> 'BagReader':
        if self.path.is_dir() and not (self.path / 'metadata.yaml').exists():
            raise BagError(self.path, 'no metadata.yaml beside its storage files: rosbag2 writes it when the '
                           'recording closes, so this one was cut short (a recorder killed, a full disk, power lost); '
                           'rebuild it from its storage file with `lewm-ingest --recover` (or `ros2 bag reindex`), '
                           'then ingest again')
        try:
            self._reader = Reader(self.path)
            self._reader.open()
            definitions = tuple(sorted({(conn.msgtype, conn.msgdef.format.name, conn.msgdef.data)
                                        for conn in self._reader.connections
                                        if conn.msgdef.format != MessageDefinitionFormat.NONE}))
            self._typestore = _typestore(definitions, self._reader.ros_distro)
        except Exception as err:  # rosbags, sqlite3, yaml and the type parser each raise their own kinds
            if self._reader is not None:  # a half-opened reader still holds its files
                with contextlib.suppress(Exception):
                    self._reader.close()
            raise BagError(self.path, f'cannot open bag: {err}') from err
        return self

    def __exit__(self, *exc_info):
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type."""
        return {conn.topic: conn.msgtype for conn in self._reader.connections}

    def offered_qos(self, topic: str) -> list[TopicQos]:
        """The QoS profiles the topic's publishers offered when it was recorded (empty when not recorded)."""
        return [TopicQos.of(profile) for conn in self._reader.connections if conn.topic == topic
                for profile in conn.ext.offered_qos_profiles]

    def message_count(self, topic: str) -> int:
        return sum(conn.msgcount for conn in self._reader.connections if conn.topic == topic)

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        """Deserialised messages of ``topics`` in bag-time order; a read error names topic and index."""
        topics = set(topics)
        missing = topics - set(self.topics)
        if missing:
            raise BagError(self.path, f'topic(s) {sorted(missing)} not in bag (has {sorted(self.topics)})')
        connections = [conn for conn in self._reader.connections if conn.topic in topics]
        counts = dict.fromkeys(topics, 0)
        stream = self._reader.messages(connections=connections)
        while True:
            try:
                connection, stamp_ns, raw = next(stream)
            except StopIteration:
                return
            except Exception as err:  # truncated or corrupt storage
                read = sum(counts.values())
                raise BagError(self.path, f'cannot read message #{read} of the bag: {err}') from err
            index = counts[connection.topic]
            counts[connection.topic] += 1
            try:
                msg = self._typestore.deserialize_cdr(raw, connection.msgtype)
            except Exception as err:
                raise BagError(self.path, f'cannot deserialise: {err}', connection.topic, index) from err
            yield BagMessage(connection.topic, index, stamp_ns, msg)


class BagWriter:
    """Write a rosbag2 directory (mcap or sqlite3); use as a context manager or call ``close``.

    Messages are rosbags objects (``write``, built with ``message``) or serialised CDR bytes
    (``write_raw``, e.g. from an rclpy ``raw=True`` subscription). Topics are added on first use.
    """

    def __init__(self, path, storage: str = 'mcap', distro: str = DEFAULT_DISTRO):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.path, self.distro, self.storage = Path(path), distro, storage
        self.typestore = typestore_for(distro)
        self._writer = Writer(self.path, version=_BAG_VERSION, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections = {}

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc_info):
        self.close()  # also on errors: what was written stays readable

    def add_topic(self, topic: str, msgtype: str, qos: list[TopicQos] | tuple[TopicQos, ...] = (TopicQos(),),
                  definition: str | None = None) -> None:
        """Register ``topic`` with ``msgtype`` ('pkg/msg/Name') and the QoS its publishers offer; needed before the
        first write_raw (``write`` registers unknown topics with the default, reliable and volatile). ``definition``:
        the message definition to store (another bag's, carried over), else the typestore's."""
        topic = resolve_topic(topic)
        if topic in self._connections:
            if self._connections[topic].msgtype != msgtype:
                raise ValueError(f'{topic} already has type {self._connections[topic].msgtype}, not {msgtype}')
            return
        if msgtype not in self.typestore.types:
            raise ValueError(f'message type {msgtype} is unknown to the rosbags typestore')
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[profile.profile() for profile in qos],
            msgdef=definition, rihs01=self.typestore.hash_rihs01(msgtype) if definition else None)

    def has_topic(self, topic: str) -> bool:
        return resolve_topic(topic) in self._connections

    def message(self, msgtype: str, **fields):
        """Build a rosbags message of ``msgtype`` from its fields."""
        return self.typestore.types[msgtype](**fields)

    def header(self, stamp_ns: int, frame_id: str = ''):
        """A std_msgs/Header stamped ``stamp_ns``."""
        stamp = self.message('builtin_interfaces/msg/Time', sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return self.message('std_msgs/msg/Header', stamp=stamp, frame_id=frame_id)

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        """Serialise and write a rosbags message at bag time ``stamp_ns``."""
        self.add_topic(topic, msg.__msgtype__)
        self.write_raw(topic, self.typestore.serialize_cdr(msg, msg.__msgtype__), stamp_ns)

    def write_raw(self, topic: str, data: bytes, stamp_ns: int) -> None:
        """Write already serialised CDR bytes on a registered topic."""
        self._writer.write(self._connections[resolve_topic(topic)], int(stamp_ns), data)

    def flush(self) -> None:
        """Make what was written so far survive a crash of this process or the machine: finish the open mcap chunk
        and sync the file, or commit the sqlite3 transaction (rosbags writes an mcap chunk out when 1 MiB fills it,
        and commits sqlite3 only at close). ``lewm-ingest --recover`` reads it back from a bag never closed."""
        storage = self._writer.storage  # (rosbags' storage plugin; rosbags is pinned)
        if self.storage == 'mcap':
            if storage.chunk.msgs:  # (a chunk of schemas alone would be indexed with no time range)
                storage.close_chunk()
            storage.bio.flush()
            os.fsync(storage.bio.fileno())
        else:
            storage.conn.commit()

    def abort(self) -> None:
        """Give up the bag after a failed write (a full disk): release its files without finishing them (that
        would write again); what ``flush`` saved stays recoverable."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # the buffered tail may fail to write once more
                writer.abort()

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml; safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._name_the_distro()

    def _name_the_distro(self) -> None:
        """rosbags writes ``ros_distro: rosbags``: name the distro the bag's types come from, in metadata.yaml (what
        ``ros2 bag info`` and readers show) and in a sqlite3 bag's schema table. An mcap file keeps rosbags'
        embedded copy of the metadata (rewriting it means rewriting the file)."""
        metadata = self.path / 'metadata.yaml'
        named = metadata.with_suffix('.yaml.tmp')
        named.write_text(metadata.read_text().replace('ros_distro: rosbags\n', f'ros_distro: {self.distro}\n'))
        named.replace(metadata)  # never a half-written metadata.yaml
        if self.storage == 'sqlite3':
            with contextlib.closing(sqlite3.connect(self.path / f'{self.path.name}.db3')) as db, db:
                db.execute('UPDATE schema SET ros_distro = ?', (self.distro,))
