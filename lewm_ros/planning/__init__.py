"""Latent MPC: the CEM solver, the latent cost, the receding-horizon state and the planning thread (torch only,
no ROS)."""

from lewm_ros.planning.cem import CEM, CEMConfig, LatentCost, normalised_bounds
from lewm_ros.planning.mpc import ACTION_KINDS, MODES, MPC, Actuation, MPCConfig, Plan, PlanRequest
from lewm_ros.planning.worker import PlanWorker

__all__ = ['ACTION_KINDS', 'CEM', 'MODES', 'MPC', 'Actuation', 'CEMConfig', 'LatentCost', 'MPCConfig', 'Plan',
           'PlanRequest', 'PlanWorker', 'normalised_bounds']
