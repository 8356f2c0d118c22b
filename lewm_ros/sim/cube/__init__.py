"""OGBench-Cube on a simulated UR5e with a Robotiq 2F-85 (simulator.py; the ``ogbench`` package's scene), the
benchmark's noisy oracle (policies.py), and what the package knows about it: evaluation pairs not solved at the
start and what each pair asks (pick up, put down, ...), the cube teleported or recoloured, the cube and the arm
probed."""

import numpy as np

from lewm_ros.sim.cube.policies import CubeOracle
from lewm_ros.sim.cube.simulator import CUBE_QPOS, Cube, cube_distance, cube_position
from lewm_ros.sim.registry import Perturbation, Probe, Subset, WorldSpec


def unsolved(world, start, goal) -> bool:
    return not world.solved(start, goal)


RESTING_Z = 0.03  # m: the cube's centre rests 0.02 m above the table; higher, something holds it up


def pair_kind(start, goal) -> str:
    """What a pair asks of the arm: nothing (solved at the start), or to pick the cube up, put it down, carry it
    from one hold to another, or push it along the table."""
    if cube_distance(start, goal) <= Cube.success_threshold:  # as Cube.solved
        return 'solved at the start'
    lifted = (cube_position(start)[2] > RESTING_Z, cube_position(goal)[2] > RESTING_Z)
    return {(False, True): 'pick up', (True, False): 'put down', (True, True): 'carry', (False, False): 'push'}[lifted]


def probe_targets(states: np.ndarray) -> np.ndarray:
    """The cube's position and the six arm joints (bounded: linear-readable)."""
    return np.column_stack([states[:, CUBE_QPOS][:, :3], states[:, :6]])


SPEC = WorldSpec(
    simulator=Cube,
    experts={'single': CubeOracle},
    probe=Probe(('cube_x', 'cube_y', 'cube_z', 'shoulder_pan', 'shoulder_lift', 'elbow', 'wrist_1', 'wrist_2',
                 'wrist_3'), probe_targets, unit='m'),
    # The paper's pairs include those whose cube already sits at its goal at the start (in play data the cube rests
    # through most 25-step windows); the unsolved ones are the honest subset.
    pairs_start_solved=True,
    subsets={'unsolved': Subset(unsolved, filtered=True, doc='the cube more than 0.04 m from its goal at the start')},
    pair_kind=pair_kind,
    perturbation=Perturbation('cube_color', (60, 90, 255), teleported=slice(14, 17), min_jump=0.1),
    # tuned is the node's planner.yaml: with the action prior that make cube trains, solver auto runs prior+cem at
    # 64 x 8 x 3 (mpc.prior_budget cem). Tried on pairs drawn with --seed 1 (docs/cube.md), not on the reported ones.
    tuned_reason='the node settings are also the tuned ones: on the 35 unsolved pairs drawn with --seed 1, with the '
                 'prior on goals 1-5 blocks ahead (seeds 0 / 1), prior+cem at 64 x 8 x 3 solved 20 / 19, at 16 x 4 x 1 '
                 '16 / 16, the prior alone 15 / 18 (a prior of 1024 x 3 units trained 6000 steps: 17 / 20, 16 / 17 and '
                 '19 / 19); with the prior on goals 5 blocks ahead (seed 0) prior+cem at 16 x 4 x 1 15, at 64 x 8 x 3 '
                 '13, the search alone at 64 x 8 x 3 4',
)
