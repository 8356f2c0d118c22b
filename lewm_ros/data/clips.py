"""Training clips from the cache: history+1 frames at stride ``frameskip`` with their action blocks.

A clip starting at step s holds frames s, s+fs, ..., s+(T-1)*fs (T = history + 1) and, for each of
them, the fs raw actions executed until the next kept frame, flattened: actions (T, fs * A), z-scored
with the dataset statistics. Clips never cross episodes, need a present frame (``step_ok``) at every
kept step, and the train/validation split is by episode, decided by a hash of the episode key so an
episode keeps its side when more bags are ingested.
"""

import zlib

import numpy as np

from lewm_ros.data.actions import ActionStats
from lewm_ros.data.cache import TrainingCache

SPLITS = ('train', 'val', 'all')


class ClipDataset:
    """Map-style dataset (works with torch DataLoader); items and batches are dicts of numpy arrays.

    ``batch(indices)`` gathers many clips with a few vectorised memmap reads and is the fast path.
    ``action_stats`` defaults to statistics over every step of the cache; pass the checkpoint's to
    fine-tune or evaluate with the same normalisation.
    """

    def __init__(self, cache, history: int = 3, frameskip: int = 5, split: str = 'train',
                 val_fraction: float = 0.1, action_stats: ActionStats | None = None, std_floor: float = 1e-3):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if history < 1 or frameskip < 1 or not 0 <= val_fraction < 1:
            raise ValueError('need history >= 1, frameskip >= 1 and 0 <= val_fraction < 1')
        self.cache = cache if isinstance(cache, TrainingCache) else TrainingCache(cache)
        self.history, self.frameskip = history, frameskip
        held_out = validation_keys(self.cache, val_fraction)
        self.episodes = [ep for ep in self.cache.episodes if split == 'all' or (split == 'val') == (ep.key in held_out)]
        all_steps = np.concatenate([np.arange(ep.step_start, ep.step_start + ep.step_count)
                                    for ep in self.cache.episodes])
        self.action_stats = action_stats or ActionStats.from_actions(self.cache.actions[all_steps], std_floor)
        self._frame_offsets = np.arange(history + 1) * frameskip  # (T,)
        self._action_offsets = np.arange((history + 1) * frameskip)  # (T * fs,)
        self.starts = self._clip_starts()  # (N,) first step of each clip

    def _clip_starts(self) -> np.ndarray:
        span = (self.history + 1) * self.frameskip  # steps a clip covers, last action block included
        starts = []
        for episode in self.episodes:
            candidates = episode.step_start + np.arange(max(episode.step_count - span + 1, 0))  # (C,)
            kept = candidates[:, None] + self._frame_offsets  # (C, T)
            starts.append(candidates[self.cache.step_ok[kept].all(axis=1)])
        return np.concatenate(starts) if starts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        return {name: value[0] for name, value in self.batch(np.array([index])).items()}

    def locate(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clips ``indices``: their steps (B, T), the cache's frame rows at those steps (B, T) and their action
        blocks (B, T, fs*A) float32 z-scored. What ``batch`` gathers, for callers with their own frame store."""
        starts = self.starts[np.asarray(indices)]  # (B,)
        frame_steps = starts[:, None] + self._frame_offsets  # (B, T)
        raw_actions = self.cache.actions[starts[:, None] + self._action_offsets]  # (B, T*fs, A)
        actions = self.action_stats.normalize(raw_actions).reshape(len(starts), self.history + 1, -1)
        return frame_steps, self.cache.step_frame[frame_steps], actions

    def batch(self, indices) -> dict:
        """Clips ``indices``: frames (B, T, S, S, 3) uint8, actions (B, T, fs*A) float32 z-scored,
        and state (B, T, S_dim) float32 at the kept frames when the cache has states."""
        frame_steps, rows, actions = self.locate(indices)
        clips = {'frames': self.cache.frames[rows], 'actions': actions}  # frames: one gather
        if self.cache.states is not None:
            clips['state'] = np.asarray(self.cache.states[frame_steps])  # (B, T, S_dim)
        return clips

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        """A random batch of clips (with replacement)."""
        return self.batch(rng.integers(0, len(self), batch_size))


def validation_keys(cache: TrainingCache, val_fraction: float) -> set[str]:
    """Episodes held out for validation: those whose key hashes below ``val_fraction``.

    With two or more episodes and a positive fraction, at least one episode is held out and one kept.
    """
    scores = {ep.key: zlib.crc32(ep.key.encode()) / 2**32 for ep in cache.episodes}
    if not val_fraction or len(scores) < 2:
        return set()
    held_out = {key for key, score in scores.items() if score < val_fraction}
    if not held_out or len(held_out) == len(scores):
        held_out = {min(scores, key=scores.get)}
    return held_out
