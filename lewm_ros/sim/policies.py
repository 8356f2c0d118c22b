"""Data-collection policies: uniform random, and scripted noisy experts with privileged state.

An expert heads for the world's goal; once there it picks a fresh goal of its own (the world's
goal is unchanged), so fixed-length episodes keep moving instead of idling at the goal — idle
frames teach a world model little. Gaussian noise (a fraction of the action range) makes the
data cover more than the expert's ideal paths.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from lewm_ros.sim.world import World


class RandomPolicy:
    """Independent uniform actions over the whole action space."""

    def __init__(self, world: World, seed=None):
        self.world = world
        self.rng = np.random.default_rng(seed)

    def act(self) -> np.ndarray:
        return self.world.action_space.sample(self.rng)


class NoisyExpert(ABC):
    """Goal-seeking expert; subclasses give the noise-free action towards ``self.target``."""

    noise = 0.2  # noise std as a fraction of the half action range

    def __init__(self, world: World, seed=None, retarget: bool = True):
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.retarget = retarget
        self.target = world.goal.copy()

    def new_target(self) -> None:
        """Pick a fresh target of the expert's own (the world's goal is unchanged)."""
        self.target = self.world.sample_goal(self.rng)

    def reached(self, state: np.ndarray) -> bool:
        """Whether ``state`` has reached the current target (then a new one is drawn)."""
        return self.world.solved(state, self.target)

    def act(self) -> np.ndarray:
        space = self.world.action_space
        state = self.world.get_state()
        if self.retarget and self.reached(state):
            self.new_target()
        half_range = (space.high - space.low) / 2.0
        noise = self.rng.normal(0.0, self.noise, size=space.shape) * half_range
        return space.clip(self.clean_action(state) + noise)

    @abstractmethod
    def clean_action(self, state: np.ndarray) -> np.ndarray:
        """The noise-free action from ``state`` towards ``self.target``."""
