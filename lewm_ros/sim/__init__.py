"""Simulated worlds with a Gymnasium-style API, and the policies that collect data in them.

No ROS runtime here: the sim_node (lewm_ros.nodes) and the collector wrap these worlds.
"""

from lewm_ros.sim.policies import POLICIES, make_policy
from lewm_ros.sim.registry import WORLDS, make_world
from lewm_ros.sim.world import ActionSpace, JointReading, World

__all__ = ['POLICIES', 'WORLDS', 'ActionSpace', 'JointReading', 'World', 'make_policy', 'make_world']
