"""Latent MPC: the CEM solver, the latent cost, the receding-horizon state, the planning thread and the control loop
around them (torch only, no ROS)."""

from lewm_ros.planning.cem import BUDGETS, CEM, PAPER_SEARCH, CEMConfig, LatentCost, normalised_bounds, parse_budget
from lewm_ros.planning.mpc import ACTION_KINDS, MODES, MPC, PAPER_LOOP, Actuation, MPCConfig, Plan, PlanRequest
from lewm_ros.planning.worker import PlanWorker

__all__ = ['ACTION_KINDS', 'BUDGETS', 'CEM', 'MODES', 'MPC', 'PAPER_LOOP', 'PAPER_SEARCH', 'Actuation', 'CEMConfig',
           'LatentCost', 'MPCConfig', 'Plan', 'PlanRequest', 'PlanWorker', 'normalised_bounds', 'parse_budget']
