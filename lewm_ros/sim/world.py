"""The Gymnasium-style contract every simulated world follows (no gymnasium dependency).

A world has a true low-dimensional ``state`` (what ``get_state``/``set_state`` exchange and the
``state`` topic carries) and a goal that is itself a state: the goal image is the rendering of the
goal state, so evaluation can take any recorded state as a goal. Observations returned by
``reset``/``step`` are that state vector; images come from ``render``, which is only paid for
when asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


def wrap_angle(angle):
    """Angles mapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


@dataclass(frozen=True)
class ActionSpace:
    """A box of actions with a name per dimension (joint names for JointTrajectory commands)."""

    low: np.ndarray
    high: np.ndarray
    names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.low.shape

    def clip(self, action) -> np.ndarray:
        return np.clip(np.asarray(action, dtype=np.float64), self.low, self.high)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Twist:
    """How a world's arm takes Cartesian velocities, as a real arm's twist controller does: the twist component
    each leading action dimension drives, in ``frame``, and its units per action unit (m/s or rad/s); the
    dimensions past them (a gripper) come on their own topic, in action units."""

    fields: tuple[str, ...]
    per_unit: tuple[float, ...]
    frame: str

    def __post_init__(self):
        if len(self.fields) != len(self.per_unit):
            raise ValueError(f'one unit per twist field, got {self.fields} / {self.per_unit}')

    def to_action(self, twist_values: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """The action commanded by twist components (in ``fields`` order) and the remaining dimensions."""
        return np.concatenate([np.asarray(twist_values, np.float64) / self.per_unit, np.asarray(rest, np.float64)])


@dataclass(frozen=True)
class JointReading:
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray


class World(ABC):
    """Base class: episode bookkeeping, goal handling and the step/reset contract.

    Subclasses say how states are sampled, advanced, rendered and compared to the goal.
    """

    name: str
    tasks: tuple[str, ...]
    action_space: ActionSpace
    control_period: float  # seconds of simulated time per step
    success_threshold: float  # goal_distance at or below which the task counts as solved (see ``solved``)
    options: tuple[str, ...] = ()  # keyword arguments of the constructor beyond task, image_size and max_steps
    restores_exactly = True  # set_state(get_state()) reproduces the next step bit for bit
    twist: Twist | None = None  # an arm that takes Cartesian velocity commands (twist_stamped), see ``Twist``

    @classmethod
    def check_options(cls, task: str, **options) -> None:
        """Raise ValueError when ``options`` (constructor keywords) do not apply to ``task``; cheap, builds
        nothing (sim_node checks a parameter update with it before it rebuilds the world)."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise ValueError(f'{cls.name} takes no option {", ".join(unknown)} (its options: {list(cls.options)})')

    def __init__(self, task: str, image_size: int = 64, max_steps: int | None = None):
        if task not in self.tasks:
            raise ValueError(f'{self.name}: unknown task {task!r}, expected one of {self.tasks}')
        if image_size < 1:
            raise ValueError(f'image_size must be positive, got {image_size}')
        self.task = task
        self.image_size = image_size
        self.max_steps = max_steps
        self.rng = np.random.default_rng()
        self.goal = None
        self.steps = 0

    # --- what a world implements -------------------------------------------------------
    @abstractmethod
    def get_state(self) -> np.ndarray:
        """Copy of the full low-dimensional state."""

    @abstractmethod
    def set_state(self, state) -> None:
        """Restore a state returned by ``get_state`` (or recorded on the ``state`` topic)."""

    @abstractmethod
    def render_state(self, state, size: int | None = None) -> np.ndarray:
        """HxWx3 uint8 image of ``state`` without changing the world."""

    @abstractmethod
    def goal_distance(self, state, goal) -> float:
        """Task distance between a state and a goal state (units documented per world)."""

    @abstractmethod
    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random valid start state."""

    @abstractmethod
    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A random goal state that the current state does not already satisfy."""

    @abstractmethod
    def _advance(self, action: np.ndarray) -> None:
        """Apply one already-clipped action for one control period."""

    def solved(self, state, goal) -> bool:
        """Whether ``state`` solves ``goal``; worlds with more than a distance criterion override it."""
        return self.goal_distance(state, goal) <= self.success_threshold

    def official_solved(self, state, goal) -> bool:
        """The benchmark's own success check, where it differs from ``solved`` (lewm-eval reports both)."""
        return self.solved(state, goal)

    def goal_cost(self, state, goal) -> float:
        """How far ``state`` is from solving ``goal``, 1 at the edge of success: the cost a planner with the true
        simulator as its model minimises (lewm-eval --oracle). Worlds with more than a distance criterion add
        their other terms on the same scale."""
        return self.goal_distance(state, goal) / self.success_threshold

    def joint_state(self) -> JointReading | None:
        """Joint positions/velocities for a joint_states topic, or None for worlds without joints."""
        return None

    # --- the shared contract -----------------------------------------------------------
    @property
    def state(self) -> np.ndarray:
        return self.get_state()

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``options`` may fix ``state`` and/or ``goal`` instead of sampling them."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        options = options or {}
        self.set_state(options['state'] if 'state' in options else self.sample_state(self.rng))
        self.set_goal(options['goal'] if 'goal' in options else self.sample_goal(self.rng))
        self.steps = 0
        return self.get_state(), self._info()

    def step(self, action):
        """Clip ``action`` to the action space and advance one control period."""
        if self.goal is None:
            raise RuntimeError(f'{self.name}: call reset() (or set_goal) before step()')
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            raise ValueError(f'{self.name}: action must be finite with shape {self.action_space.shape}, '
                             f'got {action!r}')
        self._advance(self.action_space.clip(action))
        self.steps += 1
        info = self._info()
        truncated = self.max_steps is not None and self.steps >= self.max_steps
        return self.get_state(), float(info['success']), info['success'], truncated, info

    def set_goal(self, goal) -> None:
        """Set the goal as a state (velocity entries, if any, do not matter)."""
        self.goal = np.array(goal, dtype=np.float64)

    def distance(self) -> float:
        return self.goal_distance(self.get_state(), self.goal)

    def success(self) -> bool:
        return self.solved(self.get_state(), self.goal)

    def render(self, size: int | None = None) -> np.ndarray:
        return self.render_state(self.get_state(), size)

    def goal_image(self, size: int | None = None) -> np.ndarray:
        return self.render_state(self.goal, size)

    def close(self) -> None:  # noqa: B027 (an optional hook, not an abstract method)
        """Release rendering resources (nothing to release by default)."""

    def _info(self) -> dict:
        return {'success': bool(self.success()), 'distance': self.distance()}
