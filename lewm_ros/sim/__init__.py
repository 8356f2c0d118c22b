"""Simulated worlds with a Gymnasium-style API, and the policies that collect data in them.

One package per world (``arm``, ``two_room``, ``push_t``), registered in ``registry.WORLDS``. No ROS runtime
here: sim_node (lewm_ros.nodes) and lewm-collect wrap these worlds.
"""

from lewm_ros.sim.registry import POLICIES, WORLDS, WorldSpec, make_policy, make_world, world_spec
from lewm_ros.sim.world import ActionSpace, JointReading, World

__all__ = ['POLICIES', 'WORLDS', 'ActionSpace', 'JointReading', 'World', 'WorldSpec', 'make_policy', 'make_world',
           'world_spec']
