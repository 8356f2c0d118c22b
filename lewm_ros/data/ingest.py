"""Ingest rosbag2 episodes into the training cache: ``lewm-ingest BAG_DIR... --out CACHE``.

Each bag is decoded in one pass (images batched through the shared resize), aligned onto the
control grid (see ``align``) and appended to the cache, which commits it atomically. Bags already
in the cache with unchanged files are skipped. A bad bag raises ``BagError`` naming bag, topic and
message index and leaves the cache as it was; with ``skip_bad`` it is reported and skipped. A bag that was
never closed (no metadata.yaml) is refused with that reason; ``recover`` rebuilds it first (``data.recover``).
"""

import argparse
import dataclasses
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from lewm_ros.data.actions import ActionError, ActionSpec, ActionStats, action_from_message
from lewm_ros.data.align import align_episode, median_period_ns, refined_period_ns, split_at_gaps
from lewm_ros.data.bags import BagError, BagReader, resolve_topic
from lewm_ros.data.cache import CacheWriter, TrainingCache
from lewm_ros.data.images import ImageDecodeError, image_to_rgb, resize_rgb_batch
from lewm_ros.data.recover import recover_bag

_RESIZE_BATCH = 64  # frames resized together; batching makes resizing ~3x cheaper per frame
_DECODE_THREADS = 2
_BATCHES_IN_FLIGHT = 4  # bounds the memory held by decoded-but-unwritten frames
TIME_SOURCES = ('bag', 'header')
_PERIOD_TOLERANCE = 0.05  # without a configured control period, episodes may differ this much in rate


@dataclass
class IngestConfig:
    """How bags become cache episodes; the same settings must be used for every bag of a cache.

    time_source: 'bag' (receive time, every message has one) or 'header' (header.stamp where the
        message has a non-zero one, else receive time).
    control_period: seconds; None = each episode's own median image period, refined to its average
        frame rate (see ``align``); those must agree within 5 % across the cache.
    split_gap: seconds; an image gap longer than this starts a new episode (None = one bag, one episode).
    frame_tolerance: a step's frame counts as present within this fraction of a period.
    command_offset: the action of step k is the latest command at or before t_k + command_offset * period
        (default mid-step: the command in force for most of the step; see ``align``).
    """

    image_topic: str = 'image'
    action_topic: str = 'command'
    state_topic: str = ''  # '' = no state; else a low-dim vector topic for linear probes
    image_size: int = 224
    action: ActionSpec = field(default_factory=ActionSpec)
    state: ActionSpec = field(default_factory=ActionSpec)
    control_period: float | None = None
    time_source: str = 'bag'
    split_gap: float | None = None
    frame_tolerance: float = 0.5
    command_offset: float = 0.5

    def __post_init__(self):
        if isinstance(self.action, dict):
            self.action = ActionSpec(**self.action)
        if isinstance(self.state, dict):
            self.state = ActionSpec(**self.state)
        if self.time_source not in TIME_SOURCES:
            raise ValueError(f'time_source must be one of {TIME_SOURCES}, got {self.time_source!r}')
        if self.image_size <= 0 or (self.control_period is not None and self.control_period <= 0):
            raise ValueError('image_size and control_period must be positive')
        if not 0 < self.frame_tolerance <= 1:
            raise ValueError(f'frame_tolerance must be in (0, 1], got {self.frame_tolerance}')
        if not 0 <= self.command_offset < 1:
            raise ValueError(f'command_offset must be in [0, 1), got {self.command_offset}')

    def settings(self) -> dict:
        """JSON-able form, stored in and compared with the cache index."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(value):
    """Tuples as lists, so that settings compare equal to their JSON round trip."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    return list(value) if isinstance(value, tuple) else value


@dataclass
class IngestReport:
    cache: str
    ingested: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # one line per bag rebuilt by ``recover``
    episodes: int = 0
    frames: int = 0
    steps: int = 0
    seconds: float = 0.0
    control_rate: float = 0.0
    action_stats: ActionStats | None = None

    def summary(self) -> str:
        lines = [
            f'cache {self.cache}: {self.ingested} bag(s) ingested, {self.skipped} already there, '
            f'{len(self.failed)} skipped as bad',
            f'{self.episodes} episodes, {self.frames} frames, {self.steps} steps, {self.seconds:.1f} s '
            f'at {self.control_rate:.2f} Hz control rate',
        ]
        if self.action_stats is not None:
            lines.append(f'action mean {np.round(self.action_stats.mean, 4).tolist()}')
            lines.append(f'action std  {np.round(self.action_stats.std, 4).tolist()}')
        lines += self.recovered
        lines += [f'bad bag: {error}' for error in self.failed]
        return '\n'.join(lines)


STORAGE_PATTERNS = ('*.mcap', '*.db3', '*.mcap.unclosed', '*.db3.unclosed')  # (the last two: a recovery cut short)


def find_bags(paths) -> list[Path]:
    """Bag directories among ``paths``: each is a bag (has metadata.yaml) or is searched for bags. A directory with
    storage files but no metadata.yaml (a recording cut short) is returned too, so that reading it says why. Hidden
    folders are not searched (``recover``'s scratch folder is one)."""
    bags = []
    for path in map(Path, paths):
        if (path / 'metadata.yaml').exists() or not path.is_dir():
            bags.append(path)
        else:
            found = {meta.parent for meta in path.rglob('metadata.yaml')}
            found |= {file.parent for pattern in STORAGE_PATTERNS for file in path.rglob(pattern)}
            bags += sorted(bag for bag in found if not any(part[0] == '.' for part in bag.relative_to(path).parts))
    return bags


def ingest(bag_paths, cache_dir, config: IngestConfig | None = None, skip_bad: bool = False,
           progress: bool = True, recover: bool = False) -> IngestReport:
    """Append the bags under ``bag_paths`` to the cache at ``cache_dir``; see the module docstring. ``recover``:
    first rebuild each bag that was never closed from its storage file (``data.recover``)."""
    config = config or IngestConfig()
    report = IngestReport(cache=str(cache_dir))
    writer = CacheWriter(cache_dir, config.settings(), config.image_size)
    pool = ThreadPoolExecutor(_DECODE_THREADS)
    try:
        bar = tqdm(find_bags(bag_paths), unit='bag', disable=not progress)
        for bag in bar:
            key = str(bag.resolve())
            try:
                if recover and bag.is_dir() and not (bag / 'metadata.yaml').exists():
                    report.recovered.append(recover_bag(bag).summary())
                    if progress:
                        bar.write(report.recovered[-1])
                fingerprint = _fingerprint(bag)
                if writer.index['bags'].get(key, {}).get('fingerprint') == fingerprint:
                    report.skipped += 1
                    continue
                entry = _ingest_bag(bag, config, writer, pool)
            except BagError as err:
                writer.rollback()
                if not skip_bad:
                    raise
                report.failed.append(str(err))
                bar.write(f'skipping bad bag: {err}')
                continue
            writer.commit_bag(key, {'fingerprint': fingerprint, **entry})
            report.ingested += 1
            bar.set_postfix(frames=writer.frame_count)
    finally:
        pool.shutdown(cancel_futures=True)
        writer.close()
    _summarise(report, cache_dir)
    return report


def _fingerprint(bag: Path) -> list:
    if not bag.is_dir():
        raise BagError(bag, 'not a rosbag2 directory')
    stats = [(item.name, item.stat()) for item in sorted(bag.iterdir())]
    return [[name, stat.st_size, stat.st_mtime_ns] for name, stat in stats]


def _stamp(message, time_source: str) -> int:
    header = getattr(message.msg, 'header', None) if time_source == 'header' else None
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        return header.stamp.sec * 10**9 + header.stamp.nanosec
    return message.stamp_ns


class _VectorTopic:
    """Vectors of one topic (commands or states) with their times; the dimension locks on first use."""

    def __init__(self, spec: ActionSpec, cache_dim: int | None):
        self.spec = dataclasses.replace(spec, dim=spec.dim or cache_dim)
        self.times, self.values = [], []

    def add(self, message, stamp: int) -> None:
        vector = action_from_message(message.msg, self.spec)
        if self.spec.dim is None:
            self.spec = dataclasses.replace(self.spec, dim=vector.size)
        self.times.append(stamp)
        self.values.append(vector)


class _FrameSink:
    """Decodes, checks and resizes a bag's images on worker threads, and appends them in bag order.

    The caller keeps reading and deserialising meanwhile: PIL decoding, numpy copies and torch resizing
    release the GIL, so the two halves of the work overlap. Only the caller's thread appends.
    """

    def __init__(self, bag: Path, writer: CacheWriter, size: int, pool: ThreadPoolExecutor):
        self.bag, self.writer, self.size, self.pool = bag, writer, size, pool
        self.shape = None  # of the bag's first image; every other one must match it
        self.batch, self.pending = [], deque()

    def add(self, message) -> None:
        if self.shape is None:
            self.shape = self._decode(message).shape
        self.batch.append(message)
        if len(self.batch) == _RESIZE_BATCH:
            self._submit()

    def finish(self) -> None:
        if self.batch:
            self._submit()
        while self.pending:
            self._append_oldest()

    def _submit(self) -> None:
        self.pending.append(self.pool.submit(self._decode_and_resize, self.batch))
        self.batch = []
        if len(self.pending) > _BATCHES_IN_FLIGHT:
            self._append_oldest()

    def _append_oldest(self) -> None:
        self.writer.append('frames.bin', self.pending.popleft().result())  # re-raises a worker's BagError

    def _decode_and_resize(self, messages: list) -> np.ndarray:
        images = np.empty((len(messages), *self.shape), np.uint8)  # (B, H, W, 3)
        for row, message in enumerate(messages):
            images[row] = self._decode(message)
        return resize_rgb_batch(images, self.size)  # (B, S, S, 3)

    def _decode(self, message) -> np.ndarray:
        try:
            rgb = image_to_rgb(message.msg)
            if self.shape is not None and rgb.shape != self.shape:
                raise ImageDecodeError(f'image size changed from {self.shape[1]}x{self.shape[0]} to '
                                       f'{rgb.shape[1]}x{rgb.shape[0]}')
        except ImageDecodeError as err:
            raise BagError(self.bag, str(err), message.topic, message.index) from err
        except (AttributeError, TypeError) as err:
            raise _not_standard(self.bag, message, err) from err
        return rgb


def _not_standard(bag: Path, message, error: Exception) -> BagError:
    """A message without the fields its type has in ROS: the bag carries its own (damaged or custom) definition
    of the type, and rosbags decoded it by that one."""
    return BagError(bag, f'cannot read {type(message.msg).__name__}: {error} (the definition of its type stored in '
                    'the bag is not the standard one)', message.topic, message.index)


def _ingest_bag(bag: Path, config: IngestConfig, writer: CacheWriter, pool: ThreadPoolExecutor) -> dict:
    """Decode, align and append one bag; returns its index entry (the caller commits it)."""
    image_topic, action_topic = resolve_topic(config.image_topic), resolve_topic(config.action_topic)
    state_topic = resolve_topic(config.state_topic) if config.state_topic else None
    commands = _VectorTopic(config.action, writer.index['action_dim'])
    states = _VectorTopic(config.state, writer.index['state_dim'] or None) if state_topic else None
    vector_topics = {action_topic: commands, state_topic: states}
    first_frame, image_times = writer.frame_count, []
    frames = _FrameSink(bag, writer, config.image_size, pool)

    with BagReader(bag) as reader:
        for message in reader.messages([image_topic, action_topic] + ([state_topic] if state_topic else [])):
            stamp = _stamp(message, config.time_source)
            if message.topic == image_topic:
                frames.add(message)
                image_times.append(stamp)
                continue
            try:
                vector_topics[message.topic].add(message, stamp)
            except ActionError as err:
                raise BagError(bag, str(err), message.topic, message.index) from err
            except (AttributeError, TypeError) as err:
                raise _not_standard(bag, message, err) from err
        frames.finish()

    required = [(image_topic, image_times), (action_topic, commands.times)]
    for topic, times in required + ([(state_topic, states.times)] if states else []):
        if not times:
            raise BagError(bag, 'no messages', topic)
    image_times = np.asarray(image_times, np.int64)
    try:
        image_period_ns = median_period_ns(image_times)
    except ValueError as err:
        raise BagError(bag, str(err), image_topic) from None
    episodes = _append_episodes(writer, config, image_times, first_frame, commands, states, image_period_ns)
    if not episodes:
        raise BagError(bag, 'no frame at or after the first command', action_topic)
    cache_period = writer.index['control_period'] or episodes[0]['period']
    for episode in episodes:
        if abs(episode['period'] / cache_period - 1) > _PERIOD_TOLERANCE:
            raise BagError(bag, f"frame period {episode['period']:.4f} s is not the cache's {cache_period:.4f} s; "
                           'set control_period to resample every bag onto one period', image_topic)

    writer.index['control_period'] = cache_period
    writer.index['action_dim'] = commands.spec.dim
    writer.index['state_dim'] = states.spec.dim if states else 0
    return {'frames': [first_frame, len(image_times)], 'episodes': episodes,
            'image_period': image_period_ns / 1e9}


def _append_episodes(writer: CacheWriter, config: IngestConfig, image_times: np.ndarray, first_frame: int,
                     commands: _VectorTopic, states: _VectorTopic | None, image_period_ns: float) -> list:
    """Align each episode of the bag and append its steps; returns their index entries."""
    command_times, actions = np.asarray(commands.times, np.int64), np.asarray(commands.values, np.float32)
    state_times = np.asarray(states.times, np.int64) if states else None
    state_values = np.asarray(states.values, np.float32) if states else None
    episodes = []
    for rows in split_at_gaps(image_times, config.split_gap and config.split_gap * 1e9):
        period_ns = (config.control_period * 1e9 if config.control_period
                     else refined_period_ns(image_times[rows], image_period_ns))
        aligned = align_episode(image_times, rows, command_times, period_ns, config.frame_tolerance, state_times,
                                config.command_offset)
        if aligned is None:
            continue
        episodes.append({'steps': [writer.step_count, len(aligned.frame_rows)], 'period': period_ns / 1e9})
        writer.append('step_frame.bin', first_frame + aligned.frame_rows)
        writer.append('step_ok.bin', aligned.frame_ok.astype(np.uint8))
        writer.append('step_action.bin', actions[aligned.action_rows])
        if states:
            writer.append('step_state.bin', state_values[aligned.state_rows])
    return episodes


def _summarise(report: IngestReport, cache_dir) -> None:
    if not report.ingested and not report.skipped:
        return
    cache = TrainingCache(cache_dir)
    steps = np.concatenate([np.arange(e.step_start, e.step_start + e.step_count) for e in cache.episodes])
    report.episodes, report.frames, report.steps = len(cache.episodes), cache.index['frames'], len(steps)
    report.seconds = sum(episode.step_count * episode.period for episode in cache.episodes)
    report.control_rate = 1.0 / cache.control_period
    report.action_stats = ActionStats.from_actions(cache.actions[steps])


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog='lewm-ingest', description=__doc__.split('\n\n')[0])
    parser.add_argument('bags', nargs='+', help='bag directories, or directories searched for bags')
    parser.add_argument('--out', required=True, help='cache directory (created or extended)')
    parser.add_argument('--config', help='YAML file with IngestConfig fields (action: {fields, joints, dim})')
    parser.add_argument('--skip-bad', action='store_true', help='report and skip bad bags instead of stopping')
    parser.add_argument('--recover', action='store_true',
                        help='rebuild bags that were never closed (no metadata.yaml: a recorder killed, a full disk) '
                        'from their storage files first, keeping the originals as *.unclosed')
    parser.add_argument('--image-topic')
    parser.add_argument('--action-topic')
    parser.add_argument('--state-topic')
    parser.add_argument('--size', dest='image_size', type=int, help='square cache image size in pixels')
    parser.add_argument('--control-period', type=float, help='seconds (default: refined median image period)')
    parser.add_argument('--split-gap', type=float, help='split episodes at image gaps longer than this (s)')
    parser.add_argument('--time-source', choices=TIME_SOURCES)
    parser.add_argument('--command-offset', type=float,
                        help='a step takes the latest command at or before this fraction of the step (default 0.5)')
    parser.add_argument('--action-fields', nargs='+', help="e.g. linear.x angular.z, or 'velocity'")
    parser.add_argument('--action-joints', nargs='+', help='joint names to select, in order')
    return parser.parse_args(argv)


def config_from_args(args) -> IngestConfig:
    """YAML config (if any) overridden by the flags that were given."""
    settings = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    for name in ('image_topic', 'action_topic', 'state_topic', 'image_size', 'control_period', 'split_gap',
                 'time_source', 'command_offset'):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    action = settings.setdefault('action', {})
    if args.action_fields:
        action['fields'] = args.action_fields
    if args.action_joints:
        action['joints'] = args.action_joints
    return IngestConfig(**settings)


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        report = ingest(args.bags, args.out, config_from_args(args), skip_bad=args.skip_bad, recover=args.recover)
    except ValueError as err:  # bad bag, bad settings or a cache built otherwise
        print(f'lewm-ingest: error: {err}\n(the cache is unchanged by the failed bag)', file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
