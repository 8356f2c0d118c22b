"""The worlds, and everything the package knows about each one.

A world is one package under ``lewm_ros/sim/`` that holds its simulator, its policies and a ``SPEC``
(``WorldSpec``): its evaluation subsets and what a pair asks of the robot, its violation-of-expectation
perturbation and probe targets, and the reason its evaluation planner differs from its node settings. Beside them,
three parameter files: ``planner.yaml`` (planner_node values for this world, layered by the launch file),
``sim.yaml`` (sim_node values) and ``train.yaml`` (``lewm-train --world NAME``). Adding a world is adding that
package and one line to ``WORLDS``; ``test/test_world_contract.py`` then checks it against the contract every
world meets.

Worlds are imported on demand, so that Two-Room works on a machine without MuJoCo or pymunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from lewm_ros.settings import node_parameters
from lewm_ros.sim.policies import RandomPolicy
from lewm_ros.sim.world import World

WORLDS = {'arm': 'lewm_ros.sim.arm', 'two_room': 'lewm_ros.sim.two_room', 'push_t': 'lewm_ros.sim.push_t',
          'cube': 'lewm_ros.sim.cube', 'reacher': 'lewm_ros.sim.reacher'}
POLICIES = ('expert', 'random')
PLANNERS = ('node', 'tuned', 'paper')
# The paper's planner (the public LeWM code): CEM 300 x 30 x 30 over 5 blocks from white noise around the mean
# action, the cost after the last block, the whole plan executed before the next.
PAPER_PLANNER = {'cem': {'samples': 300, 'elites': 30, 'iterations': 30, 'horizon': 5, 'init_std': 1.0,
                         'noise_beta': 0.0},
                 'mpc': {'mode': 'paper', 'objective': 'final', 'solver': 'cem'}}


@dataclass(frozen=True)
class Subset:
    """Evaluation pairs that need what the world is about (beside its standard pairs)."""

    accept: Callable[[World, np.ndarray, np.ndarray], bool]  # (world, start state, goal state) -> in the subset?
    filtered: bool  # True: the standard pairs that qualify (most do); False: drawn apart until enough qualify
    doc: str


@dataclass(frozen=True)
class Perturbation:
    """What a violation-of-expectation event changes: the object's colour, or where it is (lewm-physics)."""

    colour_attribute: str  # the simulator's attribute holding the object's colour
    new_colour: tuple[int, int, int]
    teleported: slice  # the state entries a teleport redraws, position first
    min_jump: float = 60.0  # how far a teleport moves the object at least, in the state's units (px, m)


@dataclass(frozen=True)
class Probe:
    """What a state probe reads from the embeddings (the trainer's validation, lewm-physics, check_predictor)."""

    names: tuple[str, ...]
    targets: Callable[[np.ndarray], np.ndarray]  # states (N, S) -> (N, len(names))
    unit: str | None = 'px'  # of the first two targets, a position (None: they are not one, no RMSE printed)


@dataclass(frozen=True)
class WorldSpec:
    simulator: type[World]
    experts: dict[str, type]  # task -> its scripted expert (a NoisyExpert)
    probe: Probe
    random_policy: type = RandomPolicy  # the world's own random collection policy
    subsets: dict[str, Subset] = field(default_factory=dict)
    # the protocol's standard pairs include pairs already solved at the start (then a subset should drop them)
    pairs_start_solved: bool = False
    perturbation: Perturbation | None = None
    # what a pair asks of the robot: (start, goal) states -> a short name; eval tables break success down by it
    pair_kind: Callable[[np.ndarray, np.ndarray], str] | None = None
    # lewm-eval --planner tuned: these cem.* / mpc.* values over planner.yaml's, and why they differ
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    tuned_reason: str = 'the node settings (planner.yaml) are also the tuned ones'

    @property
    def name(self) -> str:
        return self.simulator.name

    @property
    def folder(self) -> Path:
        return Path(import_module(self.simulator.__module__).__file__).parent

    def parameters(self, node: str) -> dict:
        """``node``'s ROS parameters in this world's file (``planner`` or ``sim``), sections nested."""
        return node_parameters(self.folder / f'{node}.yaml')

    def planner(self, which: str) -> dict[str, dict[str, Any]]:
        """The search and the loop around it as {'cem': {...}, 'mpc': {...}} field values over the defaults:
        ``node`` what planner_node runs in this world, ``tuned`` what its evaluation runs, ``paper`` the paper's."""
        if which not in PLANNERS:
            raise ValueError(f'planner must be one of {PLANNERS}, got {which!r}')
        if which == 'paper':
            return {section: dict(values) for section, values in PAPER_PLANNER.items()}
        node = self.parameters('planner')
        settings = {section: dict(node.get(section, {})) for section in ('cem', 'mpc')}
        if which == 'tuned':
            for section, values in self.tuned.items():
                settings[section].update(values)
        return settings


def world_spec(name: str) -> WorldSpec:
    if name not in WORLDS:
        raise ValueError(f'unknown world {name!r}, expected one of {sorted(WORLDS)}')
    return import_module(WORLDS[name]).SPEC


def world_class(name: str) -> type[World]:
    return world_spec(name).simulator


def make_world(name: str, task: str | None = None, **kwargs) -> World:
    """A world by name; ``task`` defaults to the world's first task (arm: reach)."""
    cls = world_class(name)
    return cls(task=task or cls.tasks[0], **kwargs)


def make_policy(kind: str, world: World, seed=None):
    """``kind`` is 'expert' (the world's scripted expert for its task) or 'random' (its collection policy).

    ``seed``: anything ``np.random.default_rng`` takes (an int, a SeedSequence, or None).
    """
    spec = world_spec(world.name)
    if kind == 'random':
        return spec.random_policy(world, seed)
    if kind == 'expert':
        return spec.experts[world.task](world, seed)
    raise ValueError(f'unknown policy {kind!r}, expected one of {POLICIES}')
