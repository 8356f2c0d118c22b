"""Bags written here (both storages, every encoding and command type, jitter, drops) -> cache, exactly."""

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lewm_ros.data import ingest as ingest_module
from lewm_ros.data.actions import ActionSpec
from lewm_ros.data.bags import BagError, BagReader, BagWriter
from lewm_ros.data.cache import CacheError, CacheWriter, TrainingCache
from lewm_ros.data.images import encode_compressed, resize_rgb, rgb_to_image_fields
from lewm_ros.data.ingest import IngestConfig, ingest, main

PERIOD = 100_000_000  # 10 Hz in ns
START = 1_700_000_000 * 10**9
SIZE = 16  # cache resolution; bags hold 24x32 images so ingest really resizes
ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'jpeg', 'png')
# command type -> the spec that reads [k, -k] back from what command_message writes for step k
COMMANDS = {
    'float64': ActionSpec(dim=2),
    'float32': ActionSpec(),
    'twist': ActionSpec(fields=('linear.x', 'angular.z')),
    'twist_stamped': ActionSpec(fields=('linear.x', 'angular.z')),
    'joint_trajectory': ActionSpec(fields=('velocities',), joints=('a', 'b')),
    'joint_state': ActionSpec(fields=('velocity',)),
}


def image_message(writer: BagWriter, rgb: np.ndarray, encoding: str, stamp_ns: int):
    header = writer.header(stamp_ns, 'camera')
    if encoding in ('jpeg', 'png'):
        return writer.message('sensor_msgs/msg/CompressedImage', header=header, format=encoding,
                              data=np.frombuffer(encode_compressed(rgb, encoding), np.uint8))
    return writer.message('sensor_msgs/msg/Image', header=header, **rgb_to_image_fields(rgb, encoding, row_padding=4))


def command_message(writer: BagWriter, kind: str, values, stamp_ns: int):
    values = np.asarray(values, np.float64)
    header = writer.header(stamp_ns)
    layout = writer.message('std_msgs/msg/MultiArrayLayout', dim=[], data_offset=0)
    vector = writer.typestore.types['geometry_msgs/msg/Vector3']
    twist = writer.message('geometry_msgs/msg/Twist', linear=vector(x=values[0], y=0.0, z=0.0),
                           angular=vector(x=0.0, y=0.0, z=values[-1]))
    empty = np.zeros(0)
    if kind == 'float64':
        return writer.message('std_msgs/msg/Float64MultiArray', layout=layout, data=values)
    if kind == 'float32':
        return writer.message('std_msgs/msg/Float32MultiArray', layout=layout, data=values.astype(np.float32))
    if kind == 'twist':
        return twist
    if kind == 'twist_stamped':
        return writer.message('geometry_msgs/msg/TwistStamped', header=header, twist=twist)
    if kind == 'joint_trajectory':  # joints sent in the other order: the spec reorders them
        point = writer.message('trajectory_msgs/msg/JointTrajectoryPoint', positions=empty,
                               velocities=values[::-1].copy(), accelerations=empty, effort=empty,
                               time_from_start=writer.message('builtin_interfaces/msg/Duration', sec=0, nanosec=0))
        return writer.message('trajectory_msgs/msg/JointTrajectory', header=header, joint_names=['b', 'a'],
                              points=[point])
    return writer.message('sensor_msgs/msg/JointState', header=header, name=['a', 'b'], position=values * 7,
                          velocity=values, effort=empty)


def write_episode(path: Path, storage: str = 'mcap', encoding: str = 'rgb8', command: str = 'float64',
                  count: int = 30, dropped=(), jitter: float = 0.2, seed: int = 0, overrides=None) -> dict:
    """One episode bag: frames k at START + k*PERIOD (+-jitter, frame 0 exact) minus ``dropped``, command
    [k, -k] at or just before each step and [k+0.5, -k-0.5] later in the step, state [k, 10k] with each frame.

    ``overrides`` maps ('image' | 'command', k) to replacement image fields / command values (bad input).
    Returns what ingest must reproduce: the decoded source frame of every step.
    """
    rng = np.random.default_rng(seed)
    overrides = overrides or {}
    frames = rng.integers(0, 256, (count, 24, 32, 3), dtype=np.uint8)
    if encoding == 'mono8':
        frames[:] = frames[:, :, :, :1]
    jitters = rng.uniform(-jitter, jitter, count) * PERIOD
    jitters[0] = 0
    decoded = []
    with BagWriter(path, storage) as writer:
        for k in range(count):
            step = START + k * PERIOD
            values = overrides.get(('command', k), [k, -k])
            early = int(rng.integers(0, PERIOD // 4))
            writer.write('/command', command_message(writer, command, values, step), step - early)
            writer.write('/command', command_message(writer, command, [k + 0.5, -k - 0.5], step),
                         step + PERIOD * 6 // 10)  # after mid-step: the command in force for most of the step is k
            if k in dropped:
                decoded.append(None)
                continue
            stamp = step + int(jitters[k])
            msg = image_message(writer, frames[k], encoding, stamp)
            for name, value in overrides.get(('image', k), {}).items():
                setattr(msg, name, value)
            writer.write('/image', msg, stamp)
            writer.write('/state', command_message(writer, 'float64', [k, 10 * k], stamp), stamp)
            decoded.append(np.asarray(PILImage.open(io.BytesIO(msg.data.tobytes())).convert('RGB'))
                           if encoding == 'jpeg' else frames[k])
    return {'decoded': decoded}


def config(**changes) -> IngestConfig:
    return IngestConfig(**{'image_size': SIZE, 'control_period': PERIOD / 1e9, 'state_topic': 'state', **changes})


CASES = [(storage, encoding, list(COMMANDS)[i % len(COMMANDS)])
         for storage in ('mcap', 'sqlite3') for i, encoding in enumerate(ENCODINGS)]


@pytest.mark.parametrize(('storage', 'encoding', 'command'), CASES)
def test_round_trip_is_exact_despite_jitter_and_drops(tmp_path, storage, encoding, command):
    dropped = {5, 6, 17}
    written = write_episode(tmp_path / 'bag', storage, encoding, command, dropped=dropped)
    report = ingest([tmp_path / 'bag'], tmp_path / 'cache', config(action=COMMANDS[command]), progress=False)
    assert (report.ingested, report.episodes, report.steps, report.frames) == (1, 1, 30, 27)

    cache = TrainingCache(tmp_path / 'cache')
    steps = np.arange(30)
    present = ~np.isin(steps, sorted(dropped))
    np.testing.assert_array_equal(cache.step_ok, present)
    for k in steps[present]:
        np.testing.assert_array_equal(cache.frames[cache.step_frame[k]], resize_rgb(written['decoded'][k], SIZE))
    np.testing.assert_array_equal(cache.actions, np.stack([steps, -steps], axis=1))
    np.testing.assert_array_equal(cache.states[present], np.stack([steps, 10 * steps], axis=1)[present])


def test_default_control_period_is_the_median_image_period(tmp_path):
    write_episode(tmp_path / 'bag', jitter=0.0, count=12)
    report = ingest([tmp_path / 'bag'], tmp_path / 'cache', config(control_period=None), progress=False)
    assert report.control_rate == pytest.approx(10.0)
    assert TrainingCache(tmp_path / 'cache').index['control_period'] == pytest.approx(0.1)


def test_header_time_source_undoes_transport_delays(tmp_path):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    with BagWriter(tmp_path / 'bag', 'mcap') as writer:
        writer.write('/command', command_message(writer, 'twist', [1.0, 2.0], 0), START - 1)
        for k in range(10):
            stamp = START + k * PERIOD
            delay = int(rng.integers(0, 3 * PERIOD))  # receive times scrambled, stamps exact
            writer.write('/image', image_message(writer, frames[k], 'rgb8', stamp), stamp + delay)
    ingest([tmp_path / 'bag'], tmp_path / 'cache', config(state_topic='', time_source='header', image_size=8,
                                                         action=COMMANDS['twist']), progress=False)
    cache = TrainingCache(tmp_path / 'cache')
    np.testing.assert_array_equal(cache.frames[cache.step_frame], frames)


def test_a_bag_at_another_frame_rate_needs_an_explicit_control_period(tmp_path):
    write_episode(tmp_path / 'bags' / 'a', count=12, jitter=0.0)
    with BagWriter(tmp_path / 'bags' / 'b', 'mcap') as writer:
        writer.write('/command', command_message(writer, 'float64', [0.0, 0.0], 0), START)
        for k in range(20):
            stamp = START + k * PERIOD // 2
            writer.write('/image', image_message(writer, np.zeros((24, 32, 3), np.uint8), 'rgb8', stamp), stamp)
            writer.write('/state', command_message(writer, 'float64', [0.0, 0.0], stamp), stamp)
    with pytest.raises(BagError, match=r"/b: topic '/image': frame period 0.0500 s is not the cache's 0.1000 s"):
        ingest([tmp_path / 'bags'], tmp_path / 'cache', config(control_period=None), progress=False)
    report = ingest([tmp_path / 'bags'], tmp_path / 'cache2', config(), progress=False)  # resampled at 10 Hz
    assert report.steps == 12 + 11  # 0.95 s of frames: steps 0 .. 1.0 s, the last within half a period


def test_split_at_gaps_makes_episodes(tmp_path):
    with BagWriter(tmp_path / 'bag', 'sqlite3') as writer:
        writer.write('/command', command_message(writer, 'float64', [0.0, 0.0], 0), START)
        for k in [*range(10), *range(40, 50)]:
            writer.write('/image', image_message(writer, np.zeros((4, 4, 3), np.uint8), 'rgb8', 0), START + k * PERIOD)
    report = ingest([tmp_path / 'bag'], tmp_path / 'cache', config(state_topic='', split_gap=1.0, image_size=4),
                    progress=False)
    assert (report.episodes, report.steps) == (2, 20)


def test_incremental_ingest_skips_known_bags_and_redoes_changed_ones(tmp_path):
    write_episode(tmp_path / 'bags' / 'a', count=12)
    first = ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    write_episode(tmp_path / 'bags' / 'b', count=12, seed=1)
    second = ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    assert (first.ingested, second.ingested, second.skipped, second.episodes) == (1, 1, 1, 2)
    bag_file = next((tmp_path / 'bags' / 'a').glob('*.mcap'))
    os.utime(bag_file, ns=(bag_file.stat().st_atime_ns, bag_file.stat().st_mtime_ns + 10**9))
    third = ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    assert (third.ingested, third.skipped, third.episodes) == (1, 1, 2)
    with pytest.raises(CacheError, match='built with settings'):
        ingest([tmp_path / 'bags'], tmp_path / 'cache', config(image_size=32), progress=False)
    writer = CacheWriter(tmp_path / 'cache', config().settings(), SIZE)
    with pytest.raises(CacheError, match='being written by another ingest'):
        ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    writer.close()


def test_an_interrupted_ingest_leaves_a_valid_cache(tmp_path, monkeypatch):
    for name in 'abc':
        write_episode(tmp_path / 'bags' / name, count=12, seed=ord(name))
    calls = []

    def interrupt_in_second_bag(message, time_source):
        calls.append(message)
        if len(calls) == 60:  # the first bag holds 12 * 4 messages
            raise KeyboardInterrupt
        return message.stamp_ns

    monkeypatch.setattr(ingest_module, '_stamp', interrupt_in_second_bag)
    with pytest.raises(KeyboardInterrupt):
        ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    cache = TrainingCache(tmp_path / 'cache')
    assert (len(cache.episodes), cache.index['frames'], (tmp_path / 'cache' / 'frames.bin').stat().st_size) == (
        1, 12, 12 * SIZE * SIZE * 3)
    monkeypatch.undo()
    report = ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    assert (report.ingested, report.skipped, report.episodes, report.frames) == (2, 1, 3, 36)


def damage_file(bag: Path, how: str) -> None:
    storage_file = next(item for item in bag.iterdir() if item.suffix in ('.mcap', '.db3'))
    if how == 'truncated':
        os.truncate(storage_file, storage_file.stat().st_size // 2)
    elif how == 'unclosed':  # what a recorder killed before it closed leaves: storage, no metadata.yaml
        (bag / 'metadata.yaml').unlink()
    else:  # garbage over the start of the file, where the structure lives
        data = bytearray(storage_file.read_bytes())
        data[8:4096] = np.random.default_rng(0).integers(0, 256, 4088, dtype=np.uint8).tobytes()
        storage_file.write_bytes(bytes(data))


BAD_INPUTS = {
    'unknown encoding': ({('image', 3): {'encoding': '16UC1'}}, {}, "topic '/image' message #3",
                         'unsupported encoding'),
    'size change': ({('image', 4): {'height': 12, 'data': np.zeros(12 * (32 * 3 + 4), np.uint8)}}, {},
                    "topic '/image' message #4", 'image size changed from 32x24 to 32x12'),
    'nan action': ({('command', 2): [np.nan, 0.0]}, {}, "topic '/command' message #4", 'non-finite'),
    'inf action': ({('command', 2): [0.0, np.inf]}, {}, "topic '/command' message #4", 'non-finite'),
    'wrong action dim': ({('command', 3): [1.0, 2.0, 3.0]}, {}, "topic '/command' message #6", 'expected 2'),
    'missing topic': ({}, {'dropped': set(range(12))}, 'bag', r"\['/image', '/state'\] not in bag"),
}


@pytest.mark.parametrize('case', [*BAD_INPUTS, 'truncated mcap', 'truncated sqlite3', 'corrupt mcap',
                                  'corrupt sqlite3', 'unclosed mcap', 'unclosed sqlite3'])
def test_bad_bag_names_bag_topic_index_and_leaves_cache_intact(tmp_path, case):
    write_episode(tmp_path / 'bags' / 'a_good', count=12)
    ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    index_before = (tmp_path / 'cache' / 'index.json').read_text()
    sizes_before = {item.name: item.stat().st_size for item in (tmp_path / 'cache').iterdir()}

    bad = tmp_path / 'bags' / 'b_bad'
    if case in BAD_INPUTS:
        overrides, write_options, where, reason = BAD_INPUTS[case]
        write_episode(bad, count=12, overrides=overrides, **write_options)
    else:
        how, storage = case.split()
        write_episode(bad, storage, count=12)
        damage_file(bad, how)
        where, reason = 'bag', ('no metadata.yaml .*ros2 bag reindex' if how == 'unclosed'
                                else 'cannot (open bag|read message)')
    write_episode(tmp_path / 'bags' / 'c_good', count=12, seed=2)

    with pytest.raises(BagError, match=rf'{re.escape(str(bad))}: {where}: .*{reason}'):
        ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), progress=False)
    assert json.loads((tmp_path / 'cache' / 'index.json').read_text()) == json.loads(index_before)
    assert {item.name: item.stat().st_size for item in (tmp_path / 'cache').iterdir()} == sizes_before
    report = ingest([tmp_path / 'bags'], tmp_path / 'cache', config(), skip_bad=True, progress=False)
    assert (report.ingested, report.skipped, report.episodes) == (1, 1, 2)
    assert len(report.failed) == 1 and str(bad) in report.failed[0]
    assert len(TrainingCache(tmp_path / 'cache').episodes) == 2


def test_a_bag_whose_own_image_definition_lacks_a_field_is_named(tmp_path):
    """A bag decodes by the definitions it carries; one damaged there (found by fuzz_bench: a flipped byte renamed
    a field) gave messages without the field, and ingest raised AttributeError."""
    write_episode(tmp_path / 'bag', 'mcap', count=6)
    storage = tmp_path / 'bag' / 'bag.mcap'
    data = storage.read_bytes()
    assert b'uint32 step' in data
    storage.write_bytes(data.replace(b'uint32 step', b'uint32 stpe'))
    with pytest.raises(BagError, match=r"topic '/image' message #0: cannot read .*step.*not the standard one"):
        ingest([tmp_path / 'bag'], tmp_path / 'cache', config(), progress=False)


def test_cli_ingests_prints_summary_and_fails_cleanly(tmp_path, capsys):
    write_episode(tmp_path / 'good', count=12)
    write_episode(tmp_path / 'bad', count=12, overrides={('command', 1): [np.nan, 1.0]})
    common = ['--out', str(tmp_path / 'cache'), '--size', str(SIZE), '--state-topic', 'state',
              '--control-period', '0.1']
    assert main([str(tmp_path / 'good'), *common]) == 0
    output = capsys.readouterr().out
    assert '1 episodes, 12 frames, 12 steps, 1.2 s at 10.00 Hz' in output and 'action std' in output
    assert main([str(tmp_path / 'bad'), *common]) == 1
    assert 'non-finite' in capsys.readouterr().err
    assert main([str(tmp_path / 'bad'), *common, '--skip-bad']) == 0
    assert 'bad bag:' in capsys.readouterr().out


def test_reader_reports_topics_and_counts(tmp_path):
    write_episode(tmp_path / 'bag', 'sqlite3', count=5, dropped={1})
    with BagReader(tmp_path / 'bag') as reader:
        assert reader.topics == {'/command': 'std_msgs/msg/Float64MultiArray', '/image': 'sensor_msgs/msg/Image',
                                 '/state': 'std_msgs/msg/Float64MultiArray'}
        assert reader.message_count('/image') == 4
        indices = [message.index for message in reader.messages(['/image'])]
    assert indices == [0, 1, 2, 3]
