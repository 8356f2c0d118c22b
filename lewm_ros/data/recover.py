"""Recover a recording that was never closed: rebuild a readable bag from what its storage file holds.

rosbag2 writes ``metadata.yaml`` (and an mcap file's index and footer) when a recording closes, so a recorder
killed, a full disk or a power cut leave a folder no reader opens. ``recover_bag`` reads the storage file as far
as it is whole (an mcap file record by record up to the first cut one; a sqlite3 file as its last commit left
it), writes those messages, with the bag's own message definitions, as a closed bag of the same storage in the
same folder, and keeps the original file beside it as ``<name>.unclosed``. recorder_node flushes its bags every
``flush_interval`` seconds, so a killed recorder loses about that much. ``lewm-ingest --recover`` runs this on
every unclosed bag it finds.
"""

import contextlib
import io
import os
import shutil
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2.metadata import parse_qos
from rosbags.rosbag2.storage_mcap import decompress

from lewm_ros.data.bags import BagError, BagWriter, TopicQos, typestore_for

MCAP_MAGIC = b'\x89MCAP0\r\n'
FAILURE_NOTE = 'recording_failed.txt'  # recorder_node's reason, when a write failed (a full disk)
UNCLOSED_SUFFIX = '.unclosed'


@dataclass
class Recovery:
    bag: Path
    topics: dict[str, int]  # topic -> messages recovered
    original: Path  # the unclosed storage file, kept
    skipped: dict[str, str]  # topic -> why it could not be written (a type the typestore does not know)
    note: str = ''  # the recorder's reason, when it left one

    @property
    def messages(self) -> int:
        return sum(self.topics.values())

    def summary(self) -> str:
        text = (f'recovered {self.bag}: {self.messages} messages on {len(self.topics)} topic(s) from its unclosed '
                f'storage file (kept as {self.original.name})')
        text += ''.join(f'; not recovered {topic}: {why}' for topic, why in self.skipped.items())
        return text + (f'; the recorder noted: {self.note}' if self.note else '')


def recover_bag(bag) -> Recovery:
    """Make the unclosed bag folder ``bag`` readable; BagError when it is closed already or holds nothing usable.

    Nothing changes in the folder unless the recovery succeeds. Safe to interrupt and run again: the original is
    renamed ``*.unclosed`` only after the rebuilt bag is complete (a sqlite3 file with its journal, so that nothing
    pairs the journal with the rebuilt file), a run finding it reads it again, and metadata.yaml moves in last."""
    bag = Path(bag)
    try:
        if (bag / 'metadata.yaml').exists():
            raise BagError(bag, 'has metadata.yaml: it was closed, nothing to recover')
        source = _original(bag)
        scratch = bag.parent / f'.{bag.name}.recovering'  # (a dot folder: never taken for a bag)
        shutil.rmtree(scratch, ignore_errors=True)  # left by a recovery that was itself interrupted
        scratch.mkdir()
        try:
            mcap = '.mcap' in source.suffixes
            rebuilt = scratch / bag.name  # the storage file is named after its folder
            with _Rebuild(rebuilt, 'mcap' if mcap else 'sqlite3') as sink:
                if mcap:
                    _read_mcap(bag, source, sink)
                else:
                    _read_sqlite(source, scratch, sink)
            if not sum(sink.counts.values()):
                raise BagError(bag, 'its storage file holds no complete message to recover'
                               + ''.join(f'; {topic}: {why}' for topic, why in sink.skipped.items()))
            original = source.with_name(source.name.removesuffix(UNCLOSED_SUFFIX) + UNCLOSED_SUFFIX)
            if source != original:  # (else set aside by an earlier run)
                for side in ('-journal', '-wal', '-shm', ''):  # sqlite pairs these with a database by name
                    file = source.with_name(source.name + side)
                    if file.exists():
                        file.replace(original.with_name(original.name + side))
            for item in sorted(rebuilt.iterdir(), key=lambda item: item.name == 'metadata.yaml'):
                with item.open('rb') as handle:
                    os.fsync(handle.fileno())
                item.replace(bag / item.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        note = bag / FAILURE_NOTE
        return Recovery(bag, sink.counts, original, sink.skipped, note.read_text().strip() if note.exists() else '')
    except OSError as err:  # a folder that cannot be read or written (permissions, a full or read-only disk)
        raise BagError(bag, f'cannot recover: {err}') from err


def _original(bag: Path) -> Path:
    """The storage file as the recorder left it: ``*.unclosed`` where an earlier recovery was cut short after
    setting it aside, else the one .mcap or .db3 file."""
    kept = [f for f in sorted(bag.glob(f'*{UNCLOSED_SUFFIX}')) if f.suffixes[-2:-1] in (['.mcap'], ['.db3'])]
    files = kept or [f for f in sorted(bag.glob('*')) if f.suffix in ('.mcap', '.db3')]
    if len(files) != 1:
        raise BagError(bag, f'expected one .mcap or .db3 storage file to recover from, found {len(files)}')
    return files[0]


class _Rebuild:
    """A new bag, written as the reader finds topics and messages: a long recording never sits in memory."""

    def __init__(self, path: Path, storage: str):
        self.writer, self.known = BagWriter(path, storage), typestore_for().types
        self.names: dict[int, str] = {}  # storage's topic id -> name, for the topics written
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, str] = {}  # topic -> why it is not recovered

    def __enter__(self) -> '_Rebuild':
        return self

    def __exit__(self, error_type, *_):
        if error_type is None:
            self.writer.close()
        else:
            self.writer.abort()  # (the error that stopped it is the one to report)

    def topic(self, topic_id: int, name: str, msgtype: str, qos_yaml: str, definition: str = '') -> None:
        """``definition``: the bag's own message definition, carried over (a reader decodes by it)."""
        if msgtype not in self.known:
            self.skipped[name] = f'type {msgtype} unknown to the rosbags typestore'
            return
        try:
            qos = [TopicQos.of(profile) for profile in parse_qos(qos_yaml)]
        except Exception:  # (damaged or absent YAML) a replay of it is reliable and volatile then
            qos = []
        try:
            self.writer.add_topic(name, msgtype, qos or [TopicQos()], definition=definition or None)
        except Exception as err:  # rosbags refuses it (a name recorded twice with two types, a damaged name)
            self.skipped[name] = str(err)
            return
        self.names[topic_id] = name
        self.counts.setdefault(name, 0)

    def message(self, topic_id: int, stamp_ns: int, data: bytes) -> None:
        name = self.names.get(topic_id)
        if name is not None:
            self.writer.write_raw(name, data, stamp_ns)
            self.counts[name] += 1


# --- mcap: records up to the first one that is cut or malformed -------------------------------------------------
class _EndOfDataError(Exception):
    """The data ends (or stops making sense) here."""


def _take(view, size: int) -> bytes:
    data = view.read(size)
    if len(data) != size:
        raise _EndOfDataError
    return data


def _uint(view, fmt: str) -> int:
    return struct.unpack(fmt, _take(view, struct.calcsize(fmt)))[0]


def _string(view) -> str:
    try:
        return _take(view, _uint(view, '<I')).decode()
    except UnicodeDecodeError as err:
        raise _EndOfDataError from err


def _read_mcap(bag: Path, storage_file: Path, sink: _Rebuild) -> None:
    with storage_file.open('rb') as file:
        if file.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise BagError(bag, 'its storage file is not mcap (bad magic): nothing to recover')
        _read_records(file, storage_file.stat().st_size, {}, sink, top_level=True)


def _read_records(view, end: int, schemas: dict, sink: _Rebuild, top_level: bool) -> None:
    """Schemas, channels and messages (also inside chunks) until ``end``, the first cut record or one that makes no
    sense (lengths are checked against what is left before anything is read)."""
    while True:
        try:
            opcode = view.read(1)
            if not opcode:
                return
            length = _uint(view, '<Q')
            if length > end - view.tell():
                raise _EndOfDataError
            record = io.BytesIO(_take(view, length))
            if opcode == b'\x03':  # schema: id, name, encoding, definition
                schema_id, name = _uint(record, '<H'), _string(record)
                _string(record)
                schemas[schema_id] = name, _take(record, _uint(record, '<I')).decode(errors='replace')
            elif opcode == b'\x04':  # channel
                channel_id, schema_id, name = _uint(record, '<H'), _uint(record, '<H'), _string(record)
                _string(record)  # message encoding (cdr)
                metadata, qos = io.BytesIO(_take(record, _uint(record, '<I'))), ''
                while metadata.tell() < len(metadata.getbuffer()):
                    key, value = _string(metadata), _string(metadata)
                    qos = value if key == 'offered_qos_profiles' else qos
                if schema_id not in schemas:
                    raise _EndOfDataError
                msgtype, definition = schemas[schema_id]
                sink.topic(channel_id, name, msgtype, qos, definition)
            elif opcode == b'\x05':  # message: channel, sequence, log time, publish time, data
                channel_id, _, stamp_ns = struct.unpack('<HIQ', _take(record, 14))
                _take(record, 8)
                sink.message(channel_id, stamp_ns, record.read())
            elif opcode == b'\x06' and top_level:  # chunk: times, sizes, compression, records
                _take(record, 8 + 8)
                size, crc, compression = _uint(record, '<Q'), _uint(record, '<I'), _string(record)
                try:  # (rosbags' own check of the size and, where written, the checksum)
                    payload = decompress(_take(record, _uint(record, '<Q')), compression, size, crc)
                except Exception as err:  # a decompressor's error on a cut or flipped chunk
                    raise _EndOfDataError from err
                _read_records(io.BytesIO(payload), len(payload), schemas, sink, top_level=False)
        except _EndOfDataError:
            return


# --- sqlite3: the last commit -------------------------------------------------------------------------------------
def _read_sqlite(db_file: Path, scratch: Path, sink: _Rebuild) -> None:
    """Read a copy in ``scratch`` (with its journal): opening it rolls back what was not committed, never touching
    the original."""
    for item in db_file.parent.glob(db_file.name + '*'):
        shutil.copy2(item, scratch / item.name)
    try:
        with contextlib.closing(sqlite3.connect(scratch / db_file.name)) as db:
            db.text_factory = lambda raw: raw.decode(errors='replace')  # a damaged name reads damaged, no crash
            definitions = {}
            with contextlib.suppress(sqlite3.Error):  # (rosbag2 before Iron stored none)
                definitions = dict(db.execute('SELECT topic_type, encoded_message_definition FROM '
                                              'message_definitions'))
            for topic_id, name, msgtype, qos in db.execute('SELECT id, name, type, offered_qos_profiles FROM topics'):
                if isinstance(name, str) and isinstance(msgtype, str):  # (sqlite keeps any type in any column)
                    definition = definitions.get(msgtype)
                    sink.topic(topic_id, name, msgtype, qos if isinstance(qos, str) else '',
                               definition if isinstance(definition, str) else '')
            for topic_id, stamp_ns, data in db.execute('SELECT topic_id, timestamp, data FROM messages ORDER BY id'):
                if isinstance(stamp_ns, int) and isinstance(data, bytes):
                    sink.message(topic_id, stamp_ns, data)
    except (sqlite3.Error, UnicodeDecodeError) as err:  # (sqlite's message quoting a damaged schema is not UTF-8)
        raise BagError(db_file.parent, f'cannot read its sqlite3 file: {err}') from err
