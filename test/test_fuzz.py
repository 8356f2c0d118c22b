"""Property-based tests (hypothesis): whatever arrives, the package answers with a result or a reason, never a crash.

Bounded for ``make test`` (the ``default`` profile: derandomised, a few dozen examples each); ``HYPOTHESIS_PROFILE=long
make test`` runs thousands (test/conftest.py registers both).
"""

import json
import shutil
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lewm_ros.data.bags import BagError
from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.images import ImageDecodeError, encode_compressed, image_to_rgb, resize_rgb
from lewm_ros.data.ingest import IngestConfig, ingest
from lewm_ros.model.checkpoint import CheckpointError, load_checkpoint
from lewm_ros.planning.mpc import Actuation
from lewm_ros.sim import make_world
from lewm_ros.sim.collect import CollectSettings, collect

from .tiny import save_tiny

ENCODINGS = st.sampled_from(['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'RGB8', '16UC1', 'yuv422', '']) | st.text(
    max_size=12)


@st.composite
def image_messages(draw):
    """Image fields, sometimes consistent (data of height x step bytes), mostly not."""
    height, width = draw(st.integers(0, 48)), draw(st.integers(0, 48))
    step = draw(st.one_of(st.integers(0, 200), st.just(width * 3), st.just(width * 4), st.integers(-5, 0)))
    consistent = draw(st.booleans())
    size = max(height * step, 0) if consistent else draw(st.integers(0, 6000))
    data = draw(st.binary(min_size=size, max_size=size)) if size <= 6000 else bytes(size)
    return SimpleNamespace(height=height, width=width, step=step, encoding=draw(ENCODINGS), is_bigendian=0, data=data)


def decoded(msg) -> np.ndarray | None:
    """The node's conversion of ``msg``: its RGB frame, or None when refused (always with a reason)."""
    try:
        return image_to_rgb(msg)
    except ImageDecodeError as err:
        assert str(err)
        return None


@given(image_messages())
def test_any_image_message_decodes_to_rgb_or_is_refused_with_a_reason(msg):
    rgb = decoded(msg)
    if rgb is not None:
        assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8
        assert resize_rgb(np.array(rgb), 16).shape == (16, 16, 3)  # what the planner does next


@st.composite
def compressed_messages(draw):
    """A real jpeg or png with bytes flipped or cut off, or bytes of nothing in particular."""
    fmt = draw(st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8', 'tiff', '', 'PNG']))
    if draw(st.booleans()):
        side = draw(st.integers(1, 24))
        pixels = np.random.default_rng(draw(st.integers(0, 1000))).integers(0, 256, (side, side, 3), dtype=np.uint8)
        data = bytearray(encode_compressed(pixels, 'png' if 'png' in fmt.lower() else 'jpeg'))
        for _ in range(draw(st.integers(0, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(data[:draw(st.integers(0, len(data)))])
    else:
        data = draw(st.binary(max_size=2000))
    return SimpleNamespace(format=fmt, data=data)


@given(compressed_messages())
def test_any_compressed_image_decodes_or_is_refused_with_a_reason(msg):
    rgb = decoded(msg)
    if rgb is not None:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@pytest.fixture(scope='module')
def checkpoint_bytes(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp('fuzz') / 'tiny.safetensors').read_bytes()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_mutated_checkpoint_loads_or_raises_one_checkpoint_error(checkpoint_bytes, tmp_path, data):
    blob = bytearray(checkpoint_bytes)
    header_length = struct.unpack('<Q', blob[:8])[0]
    where = data.draw(st.sampled_from(['length', 'header', 'tensors', 'cut']))
    if where == 'length':
        blob[:8] = struct.pack('<Q', data.draw(st.integers(0, 2**64 - 1)))
    elif where == 'header':  # the JSON: dtypes, shapes, offsets, the config
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(8, 8 + header_length - 1))] = data.draw(st.integers(0, 255))
    elif where == 'tensors':  # weights: garbage values (NaN, inf), which must still load or be named
        for _ in range(data.draw(st.integers(1, 64))):
            blob[data.draw(st.integers(8 + header_length, len(blob) - 1))] = data.draw(st.integers(0, 255))
    else:
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    path = tmp_path / f'mutated_{data.draw(st.integers(0, 10**9))}.safetensors'
    path.write_bytes(bytes(blob))
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert isinstance(checkpoint.model.encode(torch.zeros(16, 16, 3, dtype=torch.uint8)), torch.Tensor)


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(st.lists(FLOATS, min_size=2, max_size=2), st.lists(st.floats(0.01, 10), min_size=2, max_size=2))
def test_the_planners_actuation_clamps_any_finite_action_and_refuses_the_rest(action, limit):
    actuation = Actuation(-np.array(limit), np.array(limit))
    if not np.isfinite(action).all():
        with pytest.raises(ValueError, match='not finite'):
            actuation.command(np.array(action))
        return
    command = actuation.command(np.array(action))
    assert np.all(command >= -np.array(limit)) and np.all(command <= np.array(limit))


@pytest.fixture(scope='module')
def world():
    world = make_world('arm')
    world.reset(seed=0)
    yield world
    world.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(FLOATS, min_size=2, max_size=2))
def test_the_simulator_clamps_any_finite_command_and_refuses_the_rest(world, action):
    before = world.get_state()
    try:
        state = world.step(np.array(action))[0]
    except ValueError as err:
        assert 'finite' in str(err) and not np.isfinite(action).all()
        np.testing.assert_array_equal(world.get_state(), before)  # refused: nothing moved
        return
    assert np.isfinite(action).all() and np.isfinite(state).all()  # what is not finite never gets in


INGEST = IngestConfig(image_size=64, state_topic='state', action={'dim': 2})


@pytest.fixture(scope='module')
def recordings(tmp_path_factory):
    """A real recording in each storage (the simulated arm, 30 steps), and a cache holding one good episode."""
    root = tmp_path_factory.mktemp('bags')
    bags = {}
    for storage in ('mcap', 'sqlite3'):
        collect(CollectSettings(world='arm', task='reach', policy='random', steps=30, storage=storage), episodes=1,
                out=root / storage, progress=False)
        (bags[storage],) = (meta.parent for meta in (root / storage).rglob('metadata.yaml'))
    collect(CollectSettings(world='arm', task='reach', policy='random', steps=30, seed=1), episodes=1,
            out=root / 'good', progress=False)
    ingest([root / 'good'], root / 'cache', INGEST, progress=False)
    return bags, root / 'cache'


def damage(data, target: Path, hows: tuple[str, ...]) -> str:
    """Flip bytes of, cut or delete ``target``, as drawn from ``hows``; returns which."""
    how = data.draw(st.sampled_from(hows))
    blob = bytearray(target.read_bytes())
    if how == 'delete':
        target.unlink()
    elif how == 'cut':
        target.write_bytes(bytes(blob[:data.draw(st.integers(0, max(len(blob) - 1, 0)))]))
    else:
        for _ in range(data.draw(st.integers(1, 32))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
        target.write_bytes(bytes(blob))
    return how


def ingest_damaged(recordings, data, damage_bag, recover: bool = False):
    """A drawn recording, copied and damaged by ``damage_bag(bag)``, ingested into a copy of the one-episode cache:
    taken whole, or refused naming the bag with the cache as it was. Returns the report or the error, and what
    ``damage_bag`` returned."""
    bags, good_cache = recordings
    with tempfile.TemporaryDirectory() as scratch:
        bag, cache = Path(scratch) / 'bag', Path(scratch) / 'cache'
        shutil.copytree(bags[data.draw(st.sampled_from(sorted(bags)))], bag)
        shutil.copytree(good_cache, cache)
        damaged = damage_bag(bag)
        index = json.loads((cache / 'index.json').read_text())
        try:
            report = ingest([bag], cache, INGEST, progress=False, recover=recover)
        except BagError as err:
            assert str(bag) in str(err)
            assert json.loads((cache / 'index.json').read_text()) == index  # untouched
            assert len(TrainingCache(cache).episodes) == 1
            return err, damaged
        assert report.ingested == 1 and len(TrainingCache(cache).episodes) == report.episodes > 1  # taken whole
        return report, damaged


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_damaged_bag_is_ingested_whole_or_named_and_the_cache_stays_consistent(recordings, data):
    """Byte flips, cuts and deleted files of a real recording: ingest takes it whole, or names it and leaves the
    cache as it was; a folder left without metadata.yaml is named with the way to rebuild it."""
    def damage_any_file(bag):
        target = data.draw(st.sampled_from(sorted(bag.iterdir())))
        return target.name, damage(data, target, ('flip', 'cut', 'delete'))

    outcome, damaged = ingest_damaged(recordings, data, damage_any_file)
    if isinstance(outcome, BagError) and damaged == ('metadata.yaml', 'delete'):
        assert 'ros2 bag reindex' in str(outcome)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_an_unclosed_damaged_bag_is_recovered_whole_or_named_and_the_cache_stays_consistent(recordings, data):
    """A recording cut short (no metadata.yaml) whose storage file is also cut or flipped, through ingest with
    ``recover``: what is whole comes back and is ingested, or the bag is named; the cache is consistent."""
    def unclose_and_damage(bag):
        (bag / 'metadata.yaml').unlink()
        (storage,) = (path for path in bag.iterdir() if path.suffix in ('.mcap', '.db3'))
        damage(data, storage, ('flip', 'cut'))

    outcome, _ = ingest_damaged(recordings, data, unclose_and_damage, recover=True)
    assert isinstance(outcome, BagError) or outcome.recovered


VALUES = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), FLOATS, st.text(max_size=20),
                   st.lists(st.booleans(), max_size=3), st.lists(st.integers(-10**6, 10**6), max_size=6),
                   st.lists(FLOATS, max_size=6), st.lists(st.text(max_size=8), max_size=4))


@pytest.fixture(scope='module')
def planner_over_dds(tiny_checkpoint):
    """A configured planner node and a client, spun on a thread: parameters are set as ``ros2 param set`` does."""
    import threading

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from lewm_ros.nodes.planner_node import PlannerNode

    rclpy.init()
    node = PlannerNode(namespace='/fuzz', parameter_overrides=[
        Parameter('checkpoint', value=str(tiny_checkpoint)), Parameter('device', value='cpu'),
        Parameter('cem.samples', value=8), Parameter('cem.elites', value=2), Parameter('cem.iterations', value=1)])
    client_node = rclpy.create_node('fuzz_client', namespace='/fuzz')
    client = AsyncParameterClient(client_node, '/fuzz/planner_node')
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(client_node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    assert client.wait_for_services(timeout_sec=10)
    yield node, client
    executor.shutdown()
    thread.join(timeout=5)
    node.stop()
    node.destroy_node()
    client_node.destroy_node()
    rclpy.try_shutdown()


@pytest.mark.ros
@given(st.data())
def test_any_parameter_value_of_any_type_is_taken_or_refused_with_a_reason(planner_over_dds, data):
    import time

    from rclpy.parameter import Parameter

    node, client = planner_over_dds
    name = data.draw(st.sampled_from(sorted(node.parameters.fields)))
    value = data.draw(VALUES)
    original = node.parameters.configs()
    future = client.set_parameters([Parameter(name, value=value)])
    deadline = time.monotonic() + 10
    while not future.done():
        assert time.monotonic() < deadline, 'no answer from the planner'
        time.sleep(0.002)
    (result,) = future.result().results
    assert result.successful or result.reason, (name, value)
    node.parameters.check()  # whatever was taken, the node's configs are valid
    if result.successful:  # put it back for the next example
        section = next(config for prefix, config in zip(node.parameters.sections, original, strict=True)
                       if name.startswith(prefix) and hasattr(config, name.removeprefix(prefix)))
        node.set_parameters([Parameter(name, value=getattr(section, name.split('.')[-1]))])
