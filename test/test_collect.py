"""lewm-collect: bags that replay exactly, resumable collection, and the ingest round trip."""

import numpy as np
import pytest

from lewm_ros.data.actions import action_from_message
from lewm_ros.data.bags import LATCHED, BagReader
from lewm_ros.data.commands import command_spec
from lewm_ros.data.images import image_to_rgb
from lewm_ros.sim import make_world
from lewm_ros.sim.collect import CollectSettings, collect, main
from lewm_ros.sim.topics import SIM_TOPICS

STEPS = 12


def read_bag(path, command_type, names):
    """Everything a bag holds, per topic, decoded."""
    spec = command_spec(command_type, names)
    decode = {'/image': image_to_rgb, '/goal_image': image_to_rgb, '/state': lambda m: np.array(m.data),
              '/command': lambda m: action_from_message(m, spec), '/success': lambda m: m.data,
              '/joint_states': lambda m: np.array(m.position)}
    topics, stamps = {}, {}
    with BagReader(path) as reader:
        for message in reader.messages(reader.topics):
            topics.setdefault(message.topic, []).append(decode[message.topic](message.msg))
            stamps.setdefault(message.topic, []).append(message.stamp_ns)
    return topics, stamps


def assert_replays(bag, settings):
    """The bag's commands, re-run from the episode's seed, reproduce its states and frames."""
    world = make_world(settings.world, settings.task, image_size=settings.image_size)
    topics, stamps = read_bag(bag, settings.command_type, world.action_space.names)
    assert len(topics['/image']) == STEPS + 1 and len(topics['/command']) == STEPS
    assert len(topics['/goal_image']) == 1
    with BagReader(bag) as reader:  # sim_node's QoS: the goal replays latched
        assert reader.offered_qos('/goal_image') == [LATCHED]
        assert reader.offered_qos('/image') == [SIM_TOPICS['image'][1]]
    periods = np.diff(stamps['/image'])
    assert (periods == round(world.control_period * 1e9)).all()
    assert stamps['/command'] == stamps['/image'][:-1]  # a command shares its frame's stamp

    world.reset(seed=settings.seed + int(bag.name.split('_')[-1]))
    np.testing.assert_array_equal(topics['/goal_image'][0], world.goal_image(settings.image_size))
    for step in range(STEPS + 1):
        np.testing.assert_array_equal(topics['/image'][step], world.render(settings.image_size))
        np.testing.assert_array_equal(topics['/state'][step], world.get_state())
        assert topics['/success'][step] == world.success()
        if step < STEPS:
            world.step(topics['/command'][step])
    assert np.std(topics['/state'], axis=0).max() > 0, 'the policy must move something'
    world.close()
    return topics


@pytest.mark.parametrize('world,task,command_type,storage', [
    ('arm', 'reach', 'float64_multi_array', 'mcap'),
    ('arm', 'push', 'joint_trajectory', 'sqlite3'),
    ('two_room', 'navigate', 'twist_stamped', 'mcap'),
])
def test_collected_bags_replay_exactly(tmp_path, world, task, command_type, storage):
    settings = CollectSettings(world=world, task=task, policy='expert', steps=STEPS, seed=3,
                               storage=storage, command_type=command_type)
    bags = collect(settings, 2, tmp_path, progress=False)
    for bag in bags:
        topics = assert_replays(bag, settings)
        assert ('/joint_states' in topics) == (world == 'arm')


def test_collection_resumes_and_refuses_other_settings(tmp_path):
    settings = CollectSettings(world='two_room', task='navigate', policy='random', steps=STEPS)
    first, second = collect(settings, 2, tmp_path, progress=False)
    kept = sorted(path.stat().st_mtime_ns for path in first.iterdir())
    for path in second.iterdir():  # a damaged episode directory is not complete...
        path.unlink()
    second.rmdir()
    (tmp_path / '.partial' / second.name).mkdir(parents=True)  # ...nor is a half-written one
    bags = collect(settings, 3, tmp_path, progress=False)
    assert sorted(path.stat().st_mtime_ns for path in first.iterdir()) == kept
    for bag in bags:
        assert_replays(bag, settings)
    assert not (tmp_path / '.partial').exists()

    with pytest.raises(SystemExit):
        collect(CollectSettings(world='two_room', task='navigate', policy='expert', steps=STEPS), 1, tmp_path)


def test_command_line(tmp_path, capsys):
    assert main(['--world', 'two_room', '--episodes', '2', '--steps', str(STEPS), '--out', str(tmp_path),
                 '--workers', '2']) == 0
    assert sorted(path.name for path in tmp_path.glob('episode_*')) == ['episode_000000', 'episode_000001']
    assert main(['--world', 'arm', '--task', 'navigate', '--episodes', '1', '--out', str(tmp_path / 'x')]) == 2


def test_ingest_round_trip(tmp_path):
    ingest_module = pytest.importorskip('lewm_ros.data.ingest')
    from lewm_ros.data.cache import TrainingCache

    settings = CollectSettings(world='arm', task='reach', policy='random', steps=STEPS)
    bags = collect(settings, 2, tmp_path / 'bags', progress=False)
    names = ('shoulder', 'elbow')
    spec = command_spec(settings.command_type, names)
    config = ingest_module.IngestConfig(image_size=64, action=spec, state_topic='state')
    ingest_module.ingest([tmp_path / 'bags'], tmp_path / 'cache', config, progress=False)

    cache = TrainingCache(tmp_path / 'cache')
    assert len(cache.episodes) == 2
    for episode, bag in zip(sorted(cache.episodes, key=lambda e: e.key), bags, strict=True):
        topics, _ = read_bag(bag, settings.command_type, names)
        steps = slice(episode.step_start, episode.step_start + episode.step_count)
        assert episode.step_count == STEPS + 1
        np.testing.assert_array_equal(cache.frames[cache.step_frame[steps]], np.array(topics['/image']))
        np.testing.assert_allclose(cache.actions[steps][:STEPS], np.array(topics['/command']), rtol=1e-6)
        np.testing.assert_allclose(cache.states[steps], np.array(topics['/state']), rtol=1e-6, atol=1e-6)
