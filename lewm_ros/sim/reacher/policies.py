"""Reacher's scripted expert: a PD torque controller in joint space, the shoulder taking the short way round.

Not how the benchmark's data is collected (uniform random torques, as the official code does: ``lewm-collect
--policy random``); it is the expert every world has, for tests and for collecting goal-directed data.
"""

from __future__ import annotations

import numpy as np

from lewm_ros.sim.policies import NoisyExpert
from lewm_ros.sim.reacher.simulator import joint_errors


class ReacherExpert(NoisyExpert):
    stiffness = 4.0  # action units (of the +-1 torque range) per rad of error
    damping = 0.6  # action units per rad/s

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        return self.stiffness * joint_errors(state, self.target) - self.damping * np.asarray(state[2:4])
