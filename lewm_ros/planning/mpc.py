"""Receding-horizon latent MPC: the history the predictor needs, the plan being executed, and when to replan.

Time runs in raw control steps; the model's step is one action block = ``frameskip`` raw steps. At raw
step ``s`` the caller ``observe``s the freshest frame and then ``act``s: the robot command for the next raw action
of the current plan, or the hold command, recorded as executed in the model's units. ``Actuation`` is the one
place that scales, clamps and holds, so what the predictor's history says was executed is what the robot got.
A plan made at step ``s`` conditions on the frames at ``s, s - frameskip, s - 2 * frameskip`` and the action
blocks executed between them.

Planning can run on another thread (``lewm_ros.planning.worker``): ``request`` snapshots what a plan needs (cheap,
under the caller's lock), ``solve`` does the work from the snapshot alone, and ``install`` adopts the result,
skipping the raw steps executed while it was being computed. ``replan`` does all three in one go.

Modes (``MPCConfig.mode``):
- ``paper``: execute the whole ``horizon * frameskip``-step plan, then replan (the public LeWM code).
- ``receding``: replan every ``execute_steps`` raw steps with the full horizon, from the freshest frame.
  With a cost on the last embedding only it tends to put arrival off (Two-Room: 92% vs 98% for ``paper``);
  ``intermediate_weight`` > 0 counters that.
- ``shrinking``: replan every ``execute_steps`` raw steps, but keep the arrival time of the first plan: the
  horizon shrinks to the blocks left until it, then a new full-horizon plan starts. Paper mode's commitment
  with fresh frames.

Objectives (``MPCConfig.objective``): ``final`` costs the last predicted embedding (the paper's); ``closest``
costs the block that comes closest to the goal and executes the plan only up to it, then replans (Two-Room:
a plan passes by goals 25 steps away far more often than it ends on them).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.planning.cem import CEM, OBJECTIVES, CEMConfig, LatentCost, normalised_bounds
from lewm_ros.settings import check_settings, setting

MODES = ('paper', 'receding', 'shrinking')
SOLVERS = ('auto', 'cem', 'prior+cem', 'prior')
# auto's quick search where the checkpoint has an action prior: prior+cem at 16 x 4 x 1 scored within 5 points of cem
# at the node's 64 x 8 x 3 on the arm (92% / 92%) and Two-Room (98% / 98%) at a quarter of its time (make solvers);
# Cube affords and gains from the full budget (prior_budget cem; docs/cube.md)
QUICK_PRIOR_BUDGET = {'samples': 16, 'elites': 4, 'iterations': 1}
PRIOR_BUDGETS = ('quick', 'cem')
CAPTURES = ('none', 'compile')
ACTION_KINDS = ('velocity', 'position')
PAPER_LOOP = {'mode': 'paper', 'objective': 'final', 'solver': 'cem'}  # the public LeWM code's, with PAPER_SEARCH


@dataclass
class MPCConfig:
    """The control loop around the search (ROS parameters ``mpc.*``)."""

    mode: str = setting('paper', 'paper: execute whole plans; receding: replan every execute_steps; shrinking: '
                        "replan every execute_steps towards the first plan's arrival time", choices=MODES, live=True)
    execute_steps: int = setting(5, 'raw actions executed per plan in receding and shrinking modes', low=1,
                                 high=10_000, live=True)
    intermediate_weight: float = setting(0.0, 'cost weight of the mean distance over all predicted blocks (> 0 '
                                         'also costs the path, not only its end)', low=0.0, high=1e6, live=True)
    objective: str = setting('final', "final: cost after the last block (the paper's); closest: after the block "
                             'closest to the goal, executed up to it', choices=OBJECTIVES, live=True)
    solver: str = setting('auto', 'auto: prior+cem (at prior_budget) where the checkpoint has an action prior, '
                          'else cem; cem: the search alone; prior+cem: '
                          "the action prior draws prior_share of the first round's candidates (its mean among "
                          "them) and the plan is never worse than the prior's mean; prior: the prior's mean, no "
                          'search (about a millisecond); the prior modes need a checkpoint with an action prior',
                          choices=SOLVERS, live=True)
    prior_share: float = setting(0.75, "prior+cem: share of the first round's candidates drawn from the action prior; "
                                 "the rest come from the search's own start (the previous plan, cem.init_std), so a "
                                 'prior that is wrong costs samples, not the plan', low=0.0, high=1.0, live=True)
    prior_budget: str = setting('quick', "solver auto's search where the checkpoint has an action prior: quick: "
                                'prior+cem at 16 x 4 x 1, whatever cem.samples, elites and iterations say; cem: at '
                                'theirs', choices=PRIOR_BUDGETS, live=True)
    capture: str = setting('none', 'none: the eager rollout; compile: torch.compile the predictor rollout (on a GPU '
                           'with CUDA graphs, mode reduce-overhead), compiled once per input shape: the first plans '
                           'are slow, warm_up pays for the main one', choices=CAPTURES)

    def search(self, cem: CEMConfig, has_prior: bool) -> tuple[str, CEMConfig]:
        """The solver this config runs for a checkpoint with or without an action prior, and its search."""
        if self.solver != 'auto':
            return self.solver, cem
        if not has_prior:
            return 'cem', cem
        return 'prior+cem', cem if self.prior_budget == 'cem' else dataclasses.replace(cem, **QUICK_PRIOR_BUDGET)

    def validate(self, has_prior: bool | None = None) -> None:
        """Raise ValueError with the reason; ``has_prior``: whether the checkpoint has an action prior."""
        check_settings(self, 'mpc.')
        if has_prior is False and self.solver not in ('auto', 'cem'):
            raise ValueError(f'mpc.solver {self.solver} needs a checkpoint with an action prior (train one with '
                             "lewm-train's prior section); this checkpoint has none")


@dataclass(frozen=True)
class Actuation:
    """What the robot takes: its units, its limits and how it holds still.

    The model plans in the raw units of its training data; the robot gets ``scale`` x those, clamped to ``low`` /
    ``high`` (robot units). Holding is zero velocity, or, for position actions, the measured position (unknown
    until measured: then nothing is commanded).
    """

    low: np.ndarray  # (A,) robot units
    high: np.ndarray  # (A,)
    scale: np.ndarray | float = 1.0  # robot units per model unit: one for every dimension, or (A,)
    kind: str = 'velocity'

    def __post_init__(self):
        low, high = np.asarray(self.low, np.float64).reshape(-1), np.asarray(self.high, np.float64).reshape(-1)
        if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise ValueError(f'action limits need finite low <= high per dimension, got {low.tolist()} / '
                             f'{high.tolist()}')
        scale = np.asarray(self.scale, np.float64).reshape(-1)
        if scale.size not in (1, low.size) or not (np.isfinite(scale).all() and (scale > 0).all()) or \
                self.kind not in ACTION_KINDS:
            raise ValueError(f'need a scale > 0 (one, or one per each of the {low.size} dimensions) and kind in '
                             f'{ACTION_KINDS}, got {scale.tolist()} / {self.kind!r}')
        object.__setattr__(self, 'low', low)
        object.__setattr__(self, 'high', high)
        object.__setattr__(self, 'scale', np.broadcast_to(scale, low.shape).copy())

    @property
    def model_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The limits in the model's raw units (A,), (A,)."""
        return self.low / self.scale, self.high / self.scale

    def command(self, action: np.ndarray) -> np.ndarray:
        """A planned action (A,) in model units -> the robot command (A,), within the limits; a non-finite action
        is refused (ValueError: the MPC never installs one, so this is a bug's last stop, not a clamp's job)."""
        action = np.asarray(action, np.float64)
        if not np.isfinite(action).all():
            raise ValueError(f'action {action.tolist()} is not finite: refusing to command it')
        return np.clip(action * self.scale, self.low, self.high)

    def hold(self, measured: np.ndarray | None = None) -> np.ndarray | None:
        """The command that holds still: zero velocity, or the measured position (None while unknown)."""
        if self.kind == 'velocity':
            return np.clip(np.zeros_like(self.low), self.low, self.high)
        return None if measured is None else np.clip(np.asarray(measured, np.float64), self.low, self.high)

    def to_model(self, command: np.ndarray) -> np.ndarray:
        """A robot command (A,) -> the model's raw units."""
        return np.asarray(command, np.float64) / self.scale


@dataclass
class PlanRequest:
    """Everything one plan needs, snapshot at raw step ``step``: ``solve`` reads nothing else."""

    step: int
    episode: int
    frames: np.ndarray  # (n, S, S, 3) uint8 frames at stride frameskip, oldest first, the last at ``step``
    blocks: np.ndarray  # (n-1, K) normalised action blocks executed between them
    goal: torch.Tensor  # (D,) goal embedding
    warm_start: np.ndarray | None  # (horizon, K) the previous plan shifted to ``step``
    horizon: int
    cem: CEM
    config: MPCConfig
    actuation: Actuation
    solver: str = 'cem'  # what MPCConfig.solver resolved to (auto: by the checkpoint)
    stamp: object = None  # the caller's tag of the frame at ``step`` (planner_node: its header stamp)


@dataclass
class Plan:
    step: int
    episode: int
    blocks: np.ndarray  # (H, K) normalised
    actions: np.ndarray  # (H * frameskip, A) raw model units, within the actuation's limits
    arrival: int  # blocks to execute: up to the predicted closest approach (objective closest), else H
    cost: float
    surprise: float | None  # latent prediction error of the block executed last, None without history
    seconds: float
    goal_distance: float | None = None  # latent cost of the frame planned from (squared L2 to the goal)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.blocks).all() and np.isfinite(self.cost))


class MPC:
    """The receding-horizon loop (history, plan, replanning, warm start) around a latent search with the world model.

    Subclasses may search with another model of the world: they override ``set_goal``, ``solve`` and, when they
    search in other action units than the model's, ``normalise`` and ``denormalise`` (lewm-eval's oracle).
    """

    def __init__(self, checkpoint: Checkpoint, actuation: Actuation, cem: CEMConfig | None = None,
                 config: MPCConfig | None = None, device: torch.device | None = None):
        """device: where the search runs (default: the model's)."""
        self.model, self.checkpoint = checkpoint.model, checkpoint
        self.device = device or next(self.model.parameters()).device
        cfg = self.model.cfg
        self.frameskip, self.history, self.action_dim = cfg.frameskip, cfg.history, cfg.action_dim
        self.goal: torch.Tensor | None = None  # (D,)
        self.episode = 0
        self._compiled_rollout = None
        self.configure(cem or CEMConfig(), config or MPCConfig(), actuation)
        self.reset()

    def configure(self, cem: CEMConfig, config: MPCConfig, actuation: Actuation | None = None) -> None:
        """New search and loop settings (and actuation); they take effect at the next plan."""
        config.validate(self.checkpoint.prior is not None)
        if actuation is not None:
            if actuation.low.shape != (self.action_dim,):
                raise ValueError(f'action limits must have {self.action_dim} values each, got '
                                 f'{actuation.low.tolist()} / {actuation.high.tolist()}')
            self.actuation = actuation
        bounds = normalised_bounds(*self.actuation.model_limits, self.normalise, self.frameskip, self.device)
        self.solver, search = config.search(cem, self.checkpoint.prior is not None)
        self.cem, self.config = CEM(search, *bounds, self.action_dim), config

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw actions (..., A) in model units -> the units the search runs in (the model's z-scores)."""
        return self.checkpoint.normalise(raw)

    def denormalise(self, actions: np.ndarray) -> np.ndarray:
        """The search's units -> raw model units (..., A)."""
        return self.checkpoint.denormalise(actions)

    def reset(self) -> None:
        """Forget the history and the plan (new episode, or frames stopped coming); the goal stays."""
        self.episode += 1
        self.step = 0
        self.frames: dict[int, np.ndarray] = {}  # raw step -> (S, S, 3) uint8
        self.actions: dict[int, np.ndarray] = {}  # raw step -> (A,) normalised action executed at it
        self.plan: Plan | None = None
        self.queue = np.zeros((0, self.action_dim), np.float32)  # (n, A) raw model actions still to execute
        self.deadline: int | None = None  # shrinking mode: raw step by which the current plan arrives
        self.holding = True

    @torch.inference_mode()
    def set_goal(self, frame: np.ndarray) -> None:
        """Encode the goal image (S, S, 3) uint8 once; the next plan uses it."""
        self.goal = self.model.encode(torch.as_tensor(frame, device=self.device))  # (D,)

    # --- the control tick -------------------------------------------------------------------
    def observe(self, frame: np.ndarray) -> None:
        """The freshest frame (S, S, 3) uint8 at the current step (a second call replaces it)."""
        self.frames[self.step] = frame

    def act(self, hold: bool = False, measured: np.ndarray | None = None) -> np.ndarray | None:
        """The robot command (A,) for this step: the plan's next action, or the hold command when no plan is left
        or ``hold`` is set (the plan is kept, but its actions still go by). None when holding a position that
        is not measured yet: nothing is commanded, and the step breaks the predictor's history."""
        planned = len(self.queue) > 0 and not hold
        command = self.actuation.command(self.queue[0]) if planned else self.actuation.hold(measured)  # (A,)
        self.queue = self.queue[1:]
        self.holding = not planned
        if command is not None:
            self.actions[self.step] = self.normalise(self.actuation.to_model(command))  # (A,)
        self.step += 1
        oldest = self.step - self.history * self.frameskip
        for kept in (self.frames, self.actions):
            for step in [step for step in kept if step < oldest]:
                del kept[step]
        return command

    @property
    def needs_plan(self) -> bool:
        if self.goal is None or self.step not in self.frames:
            return False
        if self.plan is None or not len(self.queue):
            return True
        executed = self.step - self.plan.step
        return self.config.mode != 'paper' and executed >= self.config.execute_steps

    # --- planning ---------------------------------------------------------------------------
    def request(self) -> PlanRequest:
        """Snapshot for a plan from the current step."""
        fs, step = self.frameskip, self.step
        frame_steps = [step]
        while len(frame_steps) <= self.history and self._has_block_before(frame_steps[0]):
            frame_steps.insert(0, frame_steps[0] - fs)
        frames = np.stack([self.frames[s] for s in frame_steps])  # (n, S, S, 3)
        blocks = np.array([np.concatenate([self.actions[s + i] for i in range(fs)]) for s in frame_steps[:-1]],
                          np.float32).reshape(-1, fs * self.action_dim)  # (n-1, K)
        horizon = self.cem.config.horizon
        if self.config.mode == 'shrinking':
            if self.deadline is None or self.deadline <= step:
                self.deadline = step + horizon * fs
            horizon = min(horizon, math.ceil((self.deadline - step) / fs))
        return PlanRequest(step, self.episode, frames, blocks, self.goal, self._warm_start(step, horizon), horizon,
                           self.cem, self.config, self.actuation, self.solver)

    def _has_block_before(self, step: int) -> bool:
        return step - self.frameskip in self.frames and all(s in self.actions
                                                            for s in range(step - self.frameskip, step))

    def _warm_start(self, step: int, horizon: int) -> np.ndarray | None:
        """The previous plan from ``step`` on, cut or padded with 0 (the mean action) to ``horizon`` blocks."""
        if self.plan is None:
            return None
        raw = self.plan.blocks.reshape(-1, self.action_dim)[step - self.plan.step:]  # (n, A) normalised
        shifted = np.zeros((horizon * self.frameskip, self.action_dim), np.float32)  # (H*fs, A)
        kept = min(len(raw), len(shifted))
        shifted[:kept] = raw[:kept]
        return shifted.reshape(horizon, -1)  # (H, K)

    @torch.inference_mode()
    def solve(self, request: PlanRequest) -> Plan:
        """The plan for ``request``, from the request alone: it can run beside ``observe``/``act``/``configure``.

        The search's noise is a function of (``cem.seed``, the request's step), so a plan does not depend on how
        many plans or parameter updates came before it.
        """
        started = time.perf_counter()
        device, T = self.device, self.history
        emb, blocks, observed, past = self._context(request)
        n = emb.shape[0]
        cost = LatentCost(self.model, observed, past, request.goal, request.config.intermediate_weight,
                          request.config.objective, self._rollout(request.config.capture))
        warm = None if request.warm_start is None else torch.as_tensor(request.warm_start, device=device)  # (H, K)
        seed = self.noise_seed(request)
        solver, cem = request.solver, request.cem
        if solver == 'cem':
            mean, final_cost = cem.plan(cost, warm, request.horizon, seed=seed)  # (H, K), ()
        else:
            prior_mean, prior_std = self._prior(observed, request.goal, request.horizon)  # (H, K), (H, K)
            if solver == 'prior':
                mean = prior_mean.clamp(cem.low, cem.high)  # (H, K)
                final_cost = cost(mean[None])[0]  # ()
            else:
                std = prior_std.clamp(cem.config.min_std, cem.config.init_std)  # (H, K)
                mean, final_cost = cem.plan(cost, warm, request.horizon, seed=seed, keep_best=True,
                                            proposal=(prior_mean, std, request.config.prior_share))
        arrival = cost.arrival(mean)  # ()
        surprise = None
        if n >= 2:  # how wrong the model was about the frame the last executed block led to
            context = slice(max(0, n - 1 - T), n - 1)
            predicted = self.model.predict(emb[context][None], blocks[context][None])[0, -1]  # (D,)
            surprise = float((predicted - emb[-1]).square().sum())
        goal_distance = float((emb[-1] - request.goal).square().sum())
        blocks_out = mean.cpu().numpy()  # (H, K)
        raw = self.denormalise(blocks_out.reshape(-1, self.action_dim))  # (H*fs, A)
        actions = np.clip(raw, *request.actuation.model_limits).astype(np.float32)  # (H*fs, A)
        return Plan(request.step, request.episode, blocks_out, actions, int(arrival), float(final_cost), surprise,
                    time.perf_counter() - started, goal_distance)

    def _context(self, request: PlanRequest):
        """The request's frames encoded (n, D) and blocks (n-1, K); the last ``history`` of them as the predictor
        reads them: observed (1, T0, D), past (1, T0-1, K)."""
        emb = self.model.encode(torch.as_tensor(request.frames, device=self.device))  # (n, D)
        blocks = torch.as_tensor(request.blocks, device=self.device)  # (n-1, K)
        first = max(0, emb.shape[0] - self.history)
        return emb, blocks, emb[first:][None], blocks[first:][None]

    @torch.inference_mode()
    def imagine(self, request: PlanRequest, plan: Plan) -> torch.Tensor:
        """What the model predicts ``plan`` (made for ``request``) leads to: embeddings (H, D), one per block. For
        looking (the node decodes them); one extra rollout of one candidate, paid only when asked."""
        _, _, observed, past = self._context(request)
        actions = torch.cat([past, torch.as_tensor(plan.blocks, device=self.device)[None]], dim=1)  # (1, T0-1+H, K)
        return self.model.rollout(observed, actions)[0]  # (H, D)

    @staticmethod
    def noise_seed(request: PlanRequest) -> int:
        """The search's noise for a plan is a function of (cem.seed, the request's step) alone."""
        return request.cem.config.seed * 1_000_003 + request.step

    def _rollout(self, capture: str):
        """The predictor rollout the cost calls: the model's own, or its compiled form (made once, then kept)."""
        if capture == 'none':
            return self.model.rollout
        if self._compiled_rollout is None:
            mode = 'reduce-overhead' if self.device.type == 'cuda' else None  # reduce-overhead: CUDA graphs
            self._compiled_rollout = torch.compile(self.model.rollout, mode=mode, dynamic=False)
        return self._compiled_rollout

    def _prior(self, observed: torch.Tensor, goal: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The action prior's mean and std (horizon, K) for observed (1, T0, D) and goal (D,): blocks past the
        prior's own horizon are the data's mean action (0) with the search's initial std."""
        mean, std = self.checkpoint.prior(observed, goal[None])  # (1, Hp, K) each
        mean, std = mean[0, :horizon], std[0, :horizon]  # (<=H, K)
        missing = horizon - mean.shape[0]
        if missing > 0:
            mean = torch.cat([mean, mean.new_zeros(missing, mean.shape[1])])  # (H, K)
            std = torch.cat([std, std.new_full((missing, std.shape[1]), self.cem.config.init_std)])  # (H, K)
        return mean, std

    def install(self, plan: Plan) -> bool:
        """Adopt ``plan`` minus the steps executed since its request; False (and nothing to execute) when it
        is not finite or was made before a reset."""
        if plan.episode != self.episode:
            return False
        if not plan.finite:
            self.plan, self.queue = None, self.queue[:0]
            return False
        self.plan, self.queue = plan, plan.actions[self.step - plan.step:plan.arrival * self.frameskip]
        return True

    def warm_up(self) -> None:
        """One throw-away plan on blank frames: the first plan pays for lazy initialisation."""
        size, K, D = self.model.cfg.image_size, self.frameskip * self.action_dim, self.model.cfg.embed_dim
        self.solve(PlanRequest(0, self.episode, np.zeros((self.history, size, size, 3), np.uint8),
                               np.zeros((self.history - 1, K), np.float32), torch.zeros(D, device=self.device),
                               None, self.cem.config.horizon, self.cem, self.config, self.actuation, self.solver))

    def replan(self) -> Plan:
        """Plan from the current step now (single-threaded use: tests, benchmarks, offline evaluation)."""
        plan = self.solve(self.request())
        self.install(plan)
        return plan
