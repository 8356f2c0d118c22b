"""Reacher (simulator.py: the DeepMind Control Suite's reacher model, LeWM's protocol), its PD expert
(policies.py), and what the package knows about it: pairs not solved at the start, the arm teleported or
recoloured, its joints probed."""

import numpy as np

from lewm_ros.sim.reacher.policies import ReacherExpert
from lewm_ros.sim.reacher.simulator import Reacher
from lewm_ros.sim.registry import Perturbation, Probe, Subset, WorldSpec


def unsolved(world, start, goal) -> bool:
    return not world.solved(start, goal)


def joint_targets(states: np.ndarray) -> np.ndarray:
    """The two joint angles as cos and sin: the shoulder turns without limit, so its raw angle is not linear."""
    return np.column_stack([np.cos(states[:, :2]), np.sin(states[:, :2])])


SPEC = WorldSpec(
    simulator=Reacher,
    experts={'reach': ReacherExpert},
    probe=Probe(('shoulder_cos', 'wrist_cos', 'shoulder_sin', 'wrist_sin'), joint_targets, unit=None),
    # random torques leave the arm near where it was over many 25-step windows: those pairs start solved
    pairs_start_solved=True,
    subsets={'unsolved': Subset(unsolved, filtered=True,
                                doc='a joint more than 0.05 rad (the shoulder by the shortest angle) from its goal '
                                    'at the start')},
    perturbation=Perturbation('arm_color', (60, 200, 255), teleported=slice(0, 2), min_jump=1.0),
)
