"""Latent MPC: the CEM solver, the latent cost and the receding-horizon state (torch only, no ROS)."""

from lewm_ros.planning.cem import CEM, CEMConfig, LatentCost, normalised_bounds
from lewm_ros.planning.mpc import MODES, MPC, MPCConfig, Plan, PlanRequest

__all__ = ['CEM', 'MODES', 'MPC', 'CEMConfig', 'LatentCost', 'MPCConfig', 'Plan', 'PlanRequest', 'normalised_bounds']
