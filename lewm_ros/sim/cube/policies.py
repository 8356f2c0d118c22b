"""OGBench-Cube's collection policy: the benchmark's noisy Markov oracle in play mode.

The oracle (ogbench's ``CubeMarkovOracle``) picks the cube up, carries it to its target and puts it down, then
moves the arm to a random final pose; in play mode a new random target follows whenever it is done. Each episode
draws a noise level xi ~ U(0, 0.1) and adds Gaussian noise of std [xi, xi, xi, 3 xi, 10 xi] to the oracle's action,
clipped to [-1, 1], as LeWM's data was collected.
"""

from __future__ import annotations

import numpy as np
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

from lewm_ros.sim.policies import NoisyExpert

NOISE_SHAPE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])  # x xi, per action dimension


class _SeededOracle(CubeMarkovOracle):
    """ogbench's oracle drawing its final pose from our generator (its own draws from numpy's global one)."""

    def __init__(self, env, rng: np.random.Generator):
        super().__init__(env=env)
        self.rng = rng

    def reset(self, ob=None, info=None):
        self._done, self._step = False, 0
        self._final_pos = self.rng.uniform(*self._env._arm_sampling_bounds)
        self._final_yaw = self.rng.uniform(-np.pi, np.pi)


class CubeOracle(NoisyExpert):
    """The noisy oracle heading for ``self.target`` (first the world's goal), a new one of its own when done."""

    def __init__(self, world, seed=None, retarget: bool = True):
        super().__init__(world, seed, retarget)
        self.sigma = self.rng.uniform(0.0, 0.1) * NOISE_SHAPE
        self.oracle = _SeededOracle(world.env, self.rng)
        self._aim()

    def _aim(self) -> None:
        self.world.set_target(self.target)
        self.oracle.reset()

    def new_target(self) -> None:
        super().new_target()
        self._aim()

    def act(self) -> np.ndarray:
        if self.retarget and self.oracle.done:
            self.new_target()
        return np.clip(self.clean_action(self.world.get_state()) + self.rng.normal(0.0, self.sigma), -1.0, 1.0)

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        """The oracle's action from the simulator's current state (it reads ogbench's privileged information)."""
        return self.oracle.select_action(None, self.world.env.compute_ob_info())
