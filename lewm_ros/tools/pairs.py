"""The LeWM protocol's start and goal pairs: from held-out episode bags (the goal a fixed number of steps after the
start in the same episode) or from a world's own sampler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lewm_ros.data.bags import BagReader
from lewm_ros.sim.world import World


@dataclass
class Pair:
    bag: str
    start_step: int
    start: list[float]
    goal: list[float]
    actions: list[list[float]] | None = None  # the episode's recorded actions from the start step on


@dataclass
class Episode:
    bag: str
    states: np.ndarray  # (T + 1, S) recorded true states
    actions: np.ndarray | None  # (T, A) recorded actions (Float64MultiArray commands), None without them


def _topic(reader: BagReader, topic: str) -> str | None:
    return next((t for t in reader.topics if t.lstrip('/') == topic.lstrip('/')), None)


def load_episode(bag: Path, state_topic: str = 'state', command_topic: str = 'command') -> Episode:
    """One held-out episode bag: its true states and, when recorded as Float64MultiArray, its actions."""
    with BagReader(bag) as reader:
        name = _topic(reader, state_topic)
        if name is None:
            raise ValueError(f'{bag}: no {state_topic!r} topic; held-out episodes need the true state '
                             '(lewm-collect writes it)')
        states = np.array([np.asarray(m.msg.data, np.float64) for m in reader.messages([name])])
        command = _topic(reader, command_topic)
        actions = None
        if command is not None and reader.topics[command] == 'std_msgs/msg/Float64MultiArray':
            actions = np.array([np.asarray(m.msg.data, np.float64) for m in reader.messages([command])])
        return Episode(str(bag), states, actions)


def sample_pairs(world: World, episodes: list[Episode], count: int, offset: int, rng: np.random.Generator,
                 accept=None, keep_solved: bool = False) -> list[Pair]:
    """``count`` (start, goal offset steps later) pairs; pairs already solved at the start only with
    ``keep_solved`` (a protocol that counts them, WorldSpec.pairs_start_solved)."""
    usable = [episode for episode in episodes if len(episode.states) > offset]
    if not usable:
        raise ValueError(f'no held-out episode is longer than the goal offset ({offset} steps)')
    pairs = []
    for _ in range(1000 * count):
        if len(pairs) == count:
            break
        episode = usable[rng.integers(len(usable))]
        step = int(rng.integers(len(episode.states) - offset))
        start, goal = episode.states[step], episode.states[step + offset]
        if (not keep_solved and world.solved(start, goal)) or (accept and not accept(world, start, goal)):
            continue
        actions = None if episode.actions is None else episode.actions[step:].tolist()
        pairs.append(Pair(episode.bag, step, start.tolist(), goal.tolist(), actions))
    if len(pairs) < count:
        raise ValueError(f'found only {len(pairs)} of {count} acceptable pairs in the held-out episodes')
    return pairs


def world_pairs(world: World, count: int, seed: int, accept=None) -> list[Pair]:
    """Pairs from ``world.reset(seed=seed + i)``: the world's own start and goal distributions."""
    pairs, index = [], seed
    while len(pairs) < count:
        start, _ = world.reset(seed=index)
        if not accept or accept(world, start, world.goal):
            pairs.append(Pair(f'reset(seed={index})', 0, start.tolist(), world.goal.tolist()))
        index += 1
    return pairs
