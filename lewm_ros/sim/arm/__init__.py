"""The planar arm (simulator.py, MuJoCo) with its reach and push experts (policies.py): the world of the shipped
checkpoint, make demo and the launch file's default."""

import numpy as np

from lewm_ros.sim.arm.policies import ArmPushExpert, ArmReachExpert
from lewm_ros.sim.arm.simulator import PlanarArm
from lewm_ros.sim.registry import Probe, WorldSpec


def joint_targets(states: np.ndarray) -> np.ndarray:
    """The two joint angles as cos and sin: the shoulder turns without limit, so its raw angle is not linear."""
    return np.column_stack([np.cos(states[:, :2]), np.sin(states[:, :2])])


SPEC = WorldSpec(
    simulator=PlanarArm,
    experts={'reach': ArmReachExpert, 'push': ArmPushExpert},
    probe=Probe(('shoulder_cos', 'elbow_cos', 'shoulder_sin', 'elbow_sin'), joint_targets, unit=None),
)
