"""The training cache on disk: append-only raw arrays plus an atomically replaced JSON index.

Layout of a cache directory:
  index.json        settings, dimensions, committed byte length of every array file, and per bag
                    its fingerprint and episodes (step range, control period); the only source of truth
  frames.bin        uint8 (N_frames, S, S, 3) resized RGB frames, each stored once
  step_frame.bin    int64 (N_steps,) frame row of each control step (a dropped frame repeats a row)
  step_ok.bin       uint8 (N_steps,) 1 where that frame lies within tolerance of the step time
  step_action.bin   float32 (N_steps, A) zero-order-held raw action of each step
  step_state.bin    float32 (N_steps, S_dim) state at each step's frame time (when configured)

Why this format: a few flat files are memory-mapped with ``np.memmap`` in microseconds, whatever the
number of episodes (one file per episode would exhaust file descriptors at thousands of bags), and a
clip batch is then one vectorised fancy-index per array. Appending is cheap, and crash safety comes
from the commit protocol: rows beyond the committed byte lengths of index.json are garbage that the
next writer truncates away, and index.json is replaced atomically (write temp file, rename), so an
interrupted or failed ingest always leaves the previous valid cache. A bag whose files changed is
re-ingested; its old rows stay unreferenced until the cache is rebuilt.
"""

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_NAME = 'index.json'
FORMAT_VERSION = 1
FILES = ('frames.bin', 'step_frame.bin', 'step_ok.bin', 'step_action.bin', 'step_state.bin')


class CacheError(ValueError):
    """The cache is missing, from another format version, or was built with other settings."""


def _read_index(root: Path) -> dict | None:
    path = root / INDEX_NAME
    if not path.exists():
        return None
    index = json.loads(path.read_text())
    if index.get('version') != FORMAT_VERSION:
        raise CacheError(f'{path}: cache format version {index.get("version")}, expected {FORMAT_VERSION}')
    return index


class CacheWriter:
    """Appends bags to a cache under an exclusive lock; call ``commit_bag`` after each complete bag.

    ``settings`` (the ingest configuration) must equal those the cache was built with, so that every
    episode in a cache is resized, aligned and mapped the same way.
    """

    COMMIT_INTERVAL_S = 2.0  # rewriting a large index after every small bag would be quadratic

    def __init__(self, root, settings: dict, image_size: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = (self.root / '.lock').open('w')
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheError(f'{self.root} is being written by another ingest') from None
        try:
            self.index = _read_index(self.root) or {
                'format': 'lewm_ros training cache', 'version': FORMAT_VERSION, 'settings': settings,
                'image_size': image_size, 'control_period': None, 'action_dim': None, 'state_dim': 0,
                'frames': 0, 'steps': 0, 'file_bytes': dict.fromkeys(FILES, 0), 'bags': {},
            }
            if self.index['settings'] != settings:
                raise CacheError(f'{self.root} was built with settings {self.index["settings"]}, not {settings}')
        except BaseException:
            self._lock.close()
            raise
        self._files = {}
        for name in FILES:
            path = self.root / name
            path.touch()
            os.truncate(path, self.index['file_bytes'][name])  # drop rows of an interrupted ingest
            self._files[name] = path.open('ab')
        self._committed = dict(self.index['file_bytes'])
        self._last_write = time.monotonic()

    @property
    def frame_count(self) -> int:
        """Frames written so far, committed or not: the global row of the next appended frame."""
        return self._files['frames.bin'].tell() // (self.index['image_size'] ** 2 * 3)

    @property
    def step_count(self) -> int:
        return self._files['step_frame.bin'].tell() // 8

    def append(self, name: str, rows: np.ndarray) -> None:
        """Append rows (already of the cache's dtype and row shape) to one array file."""
        self._files[name].write(memoryview(np.ascontiguousarray(rows)).cast('B'))  # no extra copy

    def commit_bag(self, key: str, entry: dict) -> None:
        """Make everything appended since the last commit part of the cache, as bag ``key``."""
        for handle in self._files.values():
            handle.flush()
        self._committed = {name: handle.tell() for name, handle in self._files.items()}
        self.index['bags'][key] = entry
        self.index['file_bytes'] = dict(self._committed)
        self.index['frames'], self.index['steps'] = self.frame_count, self.step_count
        if time.monotonic() - self._last_write > self.COMMIT_INTERVAL_S:
            self._write_index()

    def rollback(self) -> None:
        """Forget everything appended since the last commit."""
        for name, handle in self._files.items():
            handle.flush()
            handle.truncate(self._committed[name])
            handle.seek(self._committed[name])  # truncate leaves the position, and tell() counts rows

    def close(self) -> None:
        """Roll back uncommitted rows, sync the data, write the index and release the lock."""
        self.rollback()
        for handle in self._files.values():
            os.fsync(handle.fileno())
            handle.close()
        self._write_index()
        self._lock.close()

    def _write_index(self) -> None:
        temporary = self.root / f'{INDEX_NAME}.tmp'
        with temporary.open('w') as handle:
            json.dump(self.index, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.root / INDEX_NAME)
        self._last_write = time.monotonic()


@dataclass
class Episode:
    key: str  # 'bag path#n', stable as the cache grows
    step_start: int
    step_count: int
    period: float  # control period of its grid, seconds


class TrainingCache:
    """Read-only, memory-mapped view of a cache (the committed part of it)."""

    def __init__(self, root):
        self.root = Path(root)
        index = _read_index(self.root)
        if index is None or not index['steps']:
            raise CacheError(f'{self.root} holds no ingested episodes')
        self.index = index
        self.image_size: int = index['image_size']
        self.control_period: float = index['control_period']
        self.action_dim: int = index['action_dim']
        self.state_dim: int = index['state_dim']
        self.episodes = [
            Episode(f'{path}#{number}', *episode['steps'], episode['period'])
            for path, bag in sorted(index['bags'].items())
            for number, episode in enumerate(bag['episodes'])
        ]
        size, frames, steps = self.image_size, index['frames'], index['steps']
        self.frames = self._map('frames.bin', np.uint8, (frames, size, size, 3))  # (N, S, S, 3)
        self.step_frame = self._map('step_frame.bin', np.int64, (steps,))  # (M,)
        self.step_ok = self._map('step_ok.bin', np.uint8, (steps,)).astype(bool)  # (M,)
        self.actions = self._map('step_action.bin', np.float32, (steps, self.action_dim))  # (M, A)
        self.states = (self._map('step_state.bin', np.float32, (steps, self.state_dim))  # (M, S_dim)
                       if self.state_dim else None)

    def _map(self, name: str, dtype, shape: tuple) -> np.ndarray:
        if not all(shape):
            return np.zeros(shape, dtype)
        return np.memmap(self.root / name, dtype=dtype, mode='r', shape=shape)

    def __getstate__(self):  # pickled into DataLoader workers: reopen the maps, never copy them
        return {'root': self.root}

    def __setstate__(self, state):
        self.__init__(state['root'])
