"""Push-T (swm/PushT-v1): the simulator (simulator.py), the benchmark's weak collection policy and a scripted
expert (policies.py), and what the package knows about it: block-moved evaluation pairs, the block teleported or
recoloured, the agent and block probed."""

import numpy as np

from lewm_ros.sim.push_t.policies import PushTExpert, PushTWeakPolicy
from lewm_ros.sim.push_t.simulator import PushT
from lewm_ros.sim.registry import Perturbation, Probe, Subset, WorldSpec


def block_moved(world, start, goal) -> bool:
    return world.block_moved(start, goal)


def probe_targets(states: np.ndarray) -> np.ndarray:
    """Agent xy, block xy, and the block angle as cos and sin (which are linear-readable)."""
    return np.column_stack([states[:, :4], np.cos(states[:, 4]), np.sin(states[:, 4])])


SPEC = WorldSpec(
    simulator=PushT,
    experts={'push': PushTExpert},
    random_policy=PushTWeakPolicy,
    probe=Probe(('agent_x', 'agent_y', 'block_x', 'block_y', 'block_cos', 'block_sin'), probe_targets),
    # In most standard pairs the block moves (about 5 in 6 of expert pairs): a filter of them keeps n near 50.
    subsets={'block_moved': Subset(block_moved, filtered=True,
                                   doc='the block moves more than 20 px or turns more than 20 degrees')},
    perturbation=Perturbation('block_color', (220, 60, 60), teleported=slice(2, 5)),
)
