"""What lewm-eval runs on each pair: the planner, the oracle (the planner's loop and search with the true simulator
as its model), a uniformly random policy (the floor) and the episode's recorded actions (the ceiling).

A policy is ``begin(world, pair)`` at the start of an episode, then ``act(world)`` once per control step.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.planning.cem import CEMConfig
from lewm_ros.planning.mpc import MPC, Actuation, MPCConfig, Plan, PlanRequest
from lewm_ros.sim.policies import RandomPolicy
from lewm_ros.sim.registry import make_world
from lewm_ros.sim.world import World


class PlannerPolicy:
    """An MPC in its receding-horizon loop: observe, replan when it asks, act. The planner sees camera frames
    and an encoded goal image; the oracle (``SimulatorMPC``) sees the true state and the goal state."""

    def __init__(self, mpc: MPC):
        self.mpc = mpc
        self.sees_states = isinstance(mpc, SimulatorMPC)
        self.plan_seconds: list[float] = []  # decision time of every plan made

    def begin(self, world: World, pair) -> None:
        self.mpc.reset()
        self.mpc.set_goal(world.goal if self.sees_states else world.goal_image())

    def act(self, world: World) -> np.ndarray:
        self.mpc.observe(world.get_state() if self.sees_states else world.render())
        if self.mpc.needs_plan:
            self.plan_seconds.append(self.mpc.replan().seconds)
        return self.mpc.act()


class SimulatorMPC(MPC):
    """The MPC's loop and search with the true simulator as its model: the same CEM over the same action blocks
    and horizon, replanned as often, warm-started the same way, but in raw action units and with every candidate
    rolled out in a private copy of the world from the true state, its cost the world's ``goal_cost`` towards the
    goal state (after the last block, or the closest one). What a perfect world model would give this search: the
    gap to the planner is the model's, the gap to replay the search's."""

    def __init__(self, world: World, checkpoint: Checkpoint, actuation: Actuation, cem: CEMConfig,
                 config: MPCConfig):
        self.sim = make_world(world.name, world.task, image_size=8)
        super().__init__(checkpoint, actuation, cem, replace(config, solver='cem', capture='none'), torch.device('cpu'))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, np.float32)

    def denormalise(self, actions: np.ndarray) -> np.ndarray:
        return np.asarray(actions, np.float32)

    def set_goal(self, state: np.ndarray) -> None:
        self.goal = np.asarray(state, np.float64)
        self.sim.set_goal(self.goal)  # once: every rollout of this episode is towards it

    def block_costs(self, start: np.ndarray, candidates: torch.Tensor) -> np.ndarray:
        """candidates (N, H, K) raw action blocks -> (N, H) goal costs after each block, rolled out from ``start``."""
        costs = np.empty(candidates.shape[:2])
        for n, blocks in enumerate(candidates.double().numpy()):
            self.sim.set_state(start)
            for h, block in enumerate(blocks):  # (K,)
                for action in block.reshape(self.frameskip, -1):
                    self.sim.step(action)
                costs[n, h] = self.sim.goal_cost(self.sim.get_state(), self.goal)
        return costs

    def solve(self, request: PlanRequest) -> Plan:
        started, config = time.perf_counter(), request.config
        start = request.frames[-1]  # the true state at the request's step

        def cost(candidates: torch.Tensor) -> torch.Tensor:  # (N, H, K) -> (N,), as LatentCost weighs distances
            per_block = self.block_costs(start, candidates)  # (N, H)
            reached = per_block[:, -1] if config.objective == 'final' else per_block.min(axis=1)
            return torch.as_tensor(reached + config.intermediate_weight * per_block.mean(axis=1))

        warm = None if request.warm_start is None else torch.as_tensor(request.warm_start)  # (H, K)
        mean, final_cost = request.cem.plan(cost, warm, request.horizon, seed=self.noise_seed(request))  # (H, K)
        arrival = (len(mean) if config.objective == 'final'
                   else int(self.block_costs(start, mean[None])[0].argmin()) + 1)
        actions = np.clip(mean.reshape(-1, self.action_dim).numpy(), *request.actuation.model_limits)  # (H*fs, A)
        return Plan(request.step, request.episode, mean.numpy(), actions.astype(np.float32), arrival,
                    float(final_cost), None, time.perf_counter() - started)


class UniformPolicy:
    """Uniform actions over the action space, a fresh seed per episode."""

    def __init__(self, seed: int):
        self.seed = seed

    def begin(self, world: World, pair) -> None:
        self.random = RandomPolicy(world, self.seed)
        self.seed += 1

    def act(self, world: World) -> np.ndarray:
        return self.random.act()


class ReplayPolicy:
    """The episode's own recorded actions from the start step on (then no action): the protocol's ceiling."""

    def begin(self, world: World, pair) -> None:
        self.actions, self.step = np.asarray(pair.actions, np.float64), 0
        self.rest = np.zeros(world.action_space.shape)

    def act(self, world: World) -> np.ndarray:
        self.step += 1
        return self.actions[self.step - 1] if self.step <= len(self.actions) else self.rest
