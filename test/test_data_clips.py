"""Clip sampler over a hand-built cache: windows, action blocks, z-scoring, missing frames, split."""

import pickle

import numpy as np
import pytest

from lewm_ros.data.cache import CacheWriter, TrainingCache
from lewm_ros.data.clips import ClipDataset, validation_keys

SIZE = 4


def build_cache(root, episode_lengths, missing_steps=()) -> TrainingCache:
    """Episodes whose frame of global step g is filled with g % 256 and whose action is [g, -2g]."""
    writer = CacheWriter(root, settings={'test': True}, image_size=SIZE)
    writer.index.update(control_period=0.1, action_dim=2, state_dim=1)
    for number, length in enumerate(episode_lengths):
        steps = writer.step_count + np.arange(length)
        frames = np.broadcast_to((steps % 256).astype(np.uint8)[:, None, None, None], (length, SIZE, SIZE, 3))
        writer.append('frames.bin', frames)
        writer.append('step_frame.bin', steps.astype(np.int64))  # one frame per step here
        writer.append('step_ok.bin', (~np.isin(steps, missing_steps)).astype(np.uint8))
        writer.append('step_action.bin', np.stack([steps, -2 * steps], axis=1).astype(np.float32))
        writer.append('step_state.bin', steps[:, None].astype(np.float32) * 10)
        writer.commit_bag(f'/bags/episode_{number}', {'episodes': [{'steps': [int(steps[0]), length], 'period': 0.1}]})
    writer.close()
    return TrainingCache(root)


def test_clip_windows_actions_and_states(tmp_path):
    cache = build_cache(tmp_path, [30, 25])
    data = ClipDataset(cache, history=3, frameskip=5, split='all')
    assert len(data) == (30 - 20 + 1) + (25 - 20 + 1)  # a clip spans 4 blocks of 5 steps
    clip = data[3]
    assert clip['frames'].shape == (4, SIZE, SIZE, 3) and clip['frames'].dtype == np.uint8
    np.testing.assert_array_equal(clip['frames'][:, 0, 0, 0], [3, 8, 13, 18])
    assert clip['actions'].shape == (4, 10) and clip['actions'].dtype == np.float32
    raw = data.action_stats.denormalize(clip['actions'].reshape(4, 5, 2))
    np.testing.assert_allclose(raw[:, :, 0], np.arange(3, 23).reshape(4, 5), atol=1e-4)
    np.testing.assert_allclose(raw[:, :, 1], -2 * np.arange(3, 23).reshape(4, 5), atol=1e-4)
    np.testing.assert_array_equal(clip['state'][:, 0], [30, 80, 130, 180])

    everything = np.arange(55)
    np.testing.assert_allclose(data.action_stats.mean, [everything.mean(), -2 * everything.mean()], rtol=1e-5)
    normalised = data.batch(np.arange(len(data)))['actions']
    assert normalised.shape == (len(data), 4, 10) and abs(normalised.mean()) < 0.5


def test_clips_never_cross_episodes_or_use_missing_frames(tmp_path):
    cache = build_cache(tmp_path, [30, 25], missing_steps=[12])
    data = ClipDataset(cache, history=3, frameskip=5, split='all')
    first_frames = data.batch(np.arange(len(data)))['frames'][:, :, 0, 0, 0].astype(int)  # (N, 4)
    assert np.all(np.diff(first_frames, axis=1) == 5)  # a jump would mean a crossed episode
    assert not np.isin(first_frames, [12]).any()
    assert not (first_frames[:, 0] % 5 == 2)[first_frames[:, 0] <= 12].any()  # starts 2 and 7 hit step 12
    assert not ((first_frames[:, 0] < 30) & (first_frames[:, -1] >= 30)).any()


def test_split_is_by_episode_disjoint_and_stable(tmp_path):
    cache = build_cache(tmp_path / 'a', [22] * 20)
    train = ClipDataset(cache, split='train', val_fraction=0.2)
    val = ClipDataset(cache, split='val', val_fraction=0.2)
    train_keys, val_keys = {ep.key for ep in train.episodes}, {ep.key for ep in val.episodes}
    assert train_keys.isdisjoint(val_keys) and len(train_keys | val_keys) == 20 and val_keys
    train_steps = set(np.concatenate([train.starts[:, None] + np.arange(20)]).ravel())
    val_steps = set(np.concatenate([val.starts[:, None] + np.arange(20)]).ravel())
    assert train_steps.isdisjoint(val_steps)
    bigger = build_cache(tmp_path / 'b', [22] * 30)  # more episodes: the first 20 keep their side
    assert validation_keys(bigger, 0.2) & train_keys == set()
    assert validation_keys(build_cache(tmp_path / 'c', [22] * 2), 0.01)  # always one held out


def test_pickles_without_copying_frames_and_feeds_a_dataloader(tmp_path):
    torch = pytest.importorskip('torch')
    data = ClipDataset(build_cache(tmp_path, [30]), split='all')
    assert len(pickle.dumps(data.cache)) < 1000
    restored = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(restored[2]['frames'], data[2]['frames'])
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch['frames'].shape == (4, 4, SIZE, SIZE, 3) and batch['actions'].shape == (4, 4, 10)


def test_sample_and_bad_arguments(tmp_path):
    data = ClipDataset(build_cache(tmp_path, [30]), split='all')
    assert data.sample(8, np.random.default_rng(0))['frames'].shape == (8, 4, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match='split'):
        ClipDataset(data.cache, split='test')
