"""The planner's control loop without ROS: what to command at each tick, and why it holds.

``ControlLoop`` owns the MPC, its planning thread (``PlanWorker``) and the one lock they share. The node feeds it
frames, goals and joint positions and asks it, per tick, for a ``Tick``: the loop's state and the command to send
(None: send nothing). Time comes in as ``now`` (monotonic seconds), so every rule below is testable without a
clock or a ROS graph (test/test_control.py).

Timing:
- real time: a timer ticks once per control period; planning runs on the worker beside it and the robot holds
  while the first plan is being computed;
- lock step (a simulator that steps once per command): each new frame (a new header stamp) gets exactly one
  command, after the plan it needs; the frame's arrival ticks, and so does the plan's (or its error's).

Holds (the hold command: zero velocity, or the measured joint positions for position actions, or nothing while
they are unknown): no goal yet, no plan yet, the freshest frame older than the watchdog (the history is then
restarted), a requested plan not back within the watchdog, a plan that is not finite; a dry run (``enabled``
false) plans and decides but sends nothing.

Episodes: a new goal, ``start_episode`` or activation starts one; it ends, holding until the next one starts,
when ``goal_plans`` plans in a row start within ``goal_tolerance`` of the goal (the latent cost of the frame
itself: ``reached``), when ``max_duration`` runs out (``timeout``) or on ``stop_episode`` (``stopped``). In lock
step an ended episode sends nothing (a hold command would step the world). ``LoopStatus.episode`` names the
episode's state: idle, planning, reached, stopped or timeout; ``LoopStatus.state`` says why it holds.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lewm_ros.planning.cem import CEMConfig
from lewm_ros.planning.mpc import MPC, Actuation, MPCConfig, Plan, PlanRequest
from lewm_ros.planning.worker import PlanWorker

INACTIVE = 'inactive'
WAITING_FOR_GOAL = 'waiting for a goal'
WAITING_FOR_PLAN = 'waiting for a plan'
PLANNING = 'planning (lock step)'
RUNNING = 'running'
DRY_RUN = 'dry run'
HOLD_NO_FRAME = 'hold: no fresh frame'
HOLD_STALLED = 'hold: planner stalled'
HOLD_NOT_FINITE = 'hold: plan not finite'
HOLDS = (HOLD_NO_FRAME, HOLD_STALLED, HOLD_NOT_FINITE)
REACHED = 'hold: goal reached'
STOPPED = 'hold: stopped'
TIMED_OUT = 'hold: timed out'
ENDINGS = {REACHED: 'reached', STOPPED: 'stopped', TIMED_OUT: 'timeout'}  # state -> the episode's state


@dataclass(frozen=True)
class LoopSettings:
    lock_step: bool = False
    watchdog_timeout: float = 1.0  # s without a fresh frame or a requested plan before holding
    enabled: bool = True  # false: a dry run
    goal_tolerance: float = 0.0  # latent cost at which the goal counts as reached (0: never)
    goal_plans: int = 2  # plans in a row within goal_tolerance
    max_duration: float = 0.0  # s an episode may take before it ends as a timeout (0: no limit)


@dataclass(frozen=True)
class Tick:
    """What one tick decided: the loop's state, and the command to send (None: send nothing)."""

    state: str
    command: np.ndarray | None


@dataclass(frozen=True)
class LoopStatus:
    """A consistent snapshot for diagnostics."""

    state: str
    state_for_s: float
    frame_age_s: float  # inf before the first frame
    plans: int
    goals: int
    last_plan: Plan | None
    episode_s: float = 0.0  # since the episode's first tick

    @property
    def episode(self) -> str:
        """The episode's state: idle (inactive or no goal), planning, reached, stopped or timeout."""
        return 'idle' if self.state in (INACTIVE, WAITING_FOR_GOAL) else ENDINGS.get(self.state, 'planning')

    @property
    def level(self) -> str:
        """'ok' while commanding (or planning for it) and once reached, 'error' while holding for a fault, else
        'warn'."""
        return ('ok' if self.state in (RUNNING, DRY_RUN, PLANNING, REACHED) else 'error' if self.state in HOLDS
                else 'warn')

    def values(self) -> dict[str, object]:
        """Key / values for a diagnostics message: times in ms, the last plan's figures."""
        values = {'episode': self.episode, 'state': self.state, 'state_for_s': round(self.state_for_s, 2),
                  'episode_s': round(self.episode_s, 2), 'plans': self.plans, 'goals': self.goals,
                  'frame_age_ms': round(self.frame_age_s * 1000, 1) if math.isfinite(self.frame_age_s) else 'none'}
        plan = self.last_plan
        if plan is not None:
            values.update(plan_time_ms=round(plan.seconds * 1000, 2), cost=plan.cost, horizon=len(plan.blocks),
                          arrival=plan.arrival, surprise='none' if plan.surprise is None else plan.surprise,
                          goal_distance='none' if plan.goal_distance is None else plan.goal_distance)
        return values


class ControlLoop:
    def __init__(self, mpc: MPC, settings: LoopSettings,
                 on_plan: Callable[[Plan, bool, Tick | None, PlanRequest], None],
                 on_error: Callable[[Exception, Tick | None], None]):
        """on_plan(plan, not_finite, tick, request) and on_error(error, tick) report from the planning thread; in
        lock step ``tick`` is what the plan (or its failure) decided for the waiting frame; ``request.stamp`` is
        the stamp ``set_frame`` gave the frame the plan started from."""
        self.mpc, self.settings, self.on_plan, self.on_error = mpc, settings, on_plan, on_error
        self.lock = threading.Lock()
        self.worker = PlanWorker(mpc, self.lock, self._planned, self._failed)
        self.active = False
        self.frame: np.ndarray | None = None  # (S, S, 3) uint8, the latest
        self.frame_time, self.frame_stamp, self.acted_stamp = -math.inf, None, None
        self.joint_positions: np.ndarray | None = None
        self.goal_digest: bytes | None = None
        self.not_finite = False  # the last plan could not be executed
        self.last_plan: Plan | None = None
        self.plans = self.goals = 0
        self.ended: str | None = None  # REACHED, STOPPED or TIMED_OUT: the episode is over
        self.episode_start: float | None = None  # its first tick
        self.within = 0  # plans in a row within goal_tolerance
        self.state, self.state_since = INACTIVE, time.monotonic()

    # --- inputs -----------------------------------------------------------------------------------
    def set_frame(self, frame: np.ndarray, stamp, now: float) -> Tick | None:
        """The freshest camera frame (S, S, 3) uint8 with its header stamp; in lock step, the tick it causes."""
        with self.lock:
            self.frame, self.frame_time, self.frame_stamp = frame, now, stamp
        return self.tick(now) if self.settings.lock_step else None

    def set_goal(self, goal: np.ndarray) -> bool:
        """A goal image (S, S, 3) uint8; a new one (not a repeat) starts an episode. Returns whether it was new."""
        digest = hashlib.sha1(goal.tobytes()).digest()
        with self.lock:
            if digest == self.goal_digest:
                return False
            self.goal_digest, self.goals = digest, self.goals + 1
            self.mpc.set_goal(goal)
            self._begin()
        return True

    def set_joint_positions(self, positions: np.ndarray) -> None:
        with self.lock:
            self.joint_positions = np.asarray(positions, np.float64)

    def configure(self, cem: CEMConfig, config: MPCConfig, actuation: Actuation, settings: LoopSettings) -> None:
        """New search, loop, actuation and loop settings, from the next plan on; a switch between commanding and a
        dry run restarts the episode (what a dry run planned never happened)."""
        with self.lock:
            if settings.enabled != self.settings.enabled:
                self._begin()
            self.mpc.configure(cem, config, actuation)
            self.settings = settings

    # --- lifecycle --------------------------------------------------------------------------------
    def activate(self) -> None:
        with self.lock:
            self._begin()  # what the robot did while inactive is not in the history
            self.active = True

    def start_episode(self) -> str | None:
        """A new episode on the current goal; the reason when it cannot start (None: started)."""
        with self.lock:
            if not self.active:
                return 'the node is not active (lifecycle activate first)'
            if self.mpc.goal is None:
                return 'no goal yet: publish a goal image first'
            self._begin()
        return None

    def stop_episode(self, now: float) -> Tick | None:
        """End the episode as stopped (the goal kept); the tick to send now (the hold)."""
        with self.lock:
            self.ended = STOPPED
        return self.tick(now)

    def deactivate(self, now: float) -> np.ndarray | None:
        """Stop commanding; the last command to send: the hold (None: nothing, a dry run or no position known)."""
        with self.lock:
            self.active = False
            self._set_state(INACTIVE, now)
            return self.mpc.actuation.hold(self.joint_positions) if self.settings.enabled else None

    def stop(self) -> None:
        """Stop the planning thread (a plan in progress finishes first)."""
        self.worker.stop()

    # --- the tick ---------------------------------------------------------------------------------
    def tick(self, now: float) -> Tick | None:
        """Decide this tick's command (None while inactive, or in lock step when the frame needs nothing)."""
        with self.lock:
            if not self.active:
                return None
            tick = self._decide(now)
            if tick is None:
                return None
            self._set_state(tick.state, now)
        return tick if self.settings.enabled else Tick(tick.state, None)

    def _decide(self, now: float) -> Tick | None:
        mpc, settings = self.mpc, self.settings
        hold = mpc.actuation.hold(self.joint_positions)
        if self.ended is None and mpc.goal is not None:
            self.episode_start = now if self.episode_start is None else self.episode_start
            if 0 < settings.max_duration < now - self.episode_start:
                self.ended = TIMED_OUT
        if self.ended is not None or mpc.goal is None:  # (in lock step a hold command would step the world)
            return Tick(self.ended or WAITING_FOR_GOAL, None if settings.lock_step else hold)
        if settings.lock_step:
            return self._decide_lock_step()
        if now - self.frame_time > settings.watchdog_timeout:
            mpc.reset()  # the history has a gap: start it again from the next frame
            return Tick(HOLD_NO_FRAME, hold)
        mpc.observe(self.frame)
        if mpc.needs_plan and not self.worker.busy:
            self.worker.submit(self._request(), now)
        stalled = self.worker.waited(now) > settings.watchdog_timeout
        command = mpc.act(hold=stalled or not settings.enabled, measured=self.joint_positions)
        state = (HOLD_STALLED if stalled else HOLD_NOT_FINITE if self.not_finite else DRY_RUN if not settings.enabled
                 else WAITING_FOR_PLAN if mpc.holding else RUNNING)
        return Tick(state, command)

    def _decide_lock_step(self) -> Tick | None:
        """One command per new frame, after the plan it needs."""
        mpc = self.mpc
        if self.frame_stamp == self.acted_stamp:
            return None  # this frame has had its command (or none came yet): the world has not stepped
        mpc.observe(self.frame)
        if mpc.needs_plan and not self.not_finite:
            if not self.worker.busy:
                self.worker.submit(self._request())
            return Tick(PLANNING, None)
        self.acted_stamp = self.frame_stamp
        not_finite, self.not_finite = self.not_finite, False  # held once; the next frame plans again
        command = mpc.act(hold=not_finite or not self.settings.enabled, measured=self.joint_positions)
        return Tick(HOLD_NOT_FINITE if not_finite else DRY_RUN if not self.settings.enabled else RUNNING, command)

    # --- the planning thread's reports ------------------------------------------------------------
    def _request(self) -> PlanRequest:
        request = self.mpc.request()
        request.stamp = self.frame_stamp
        return request

    def _planned(self, plan: Plan, installed: bool, request: PlanRequest) -> None:
        with self.lock:
            current = plan.episode == self.mpc.episode
            self.not_finite = not installed and current  # (a stale plan is no fault)
            self.last_plan, self.plans = plan, self.plans + 1
            tolerance = self.settings.goal_tolerance
            if current and tolerance > 0 and plan.goal_distance is not None:
                self.within = self.within + 1 if plan.goal_distance <= tolerance else 0
                if self.within >= self.settings.goal_plans and self.ended is None:
                    self.ended = REACHED
            not_finite = self.not_finite
        self.on_plan(plan, not_finite, self.tick(time.monotonic()) if self.settings.lock_step else None, request)

    def _failed(self, error: Exception) -> None:
        with self.lock:
            self.not_finite = True
        self.on_error(error, self.tick(time.monotonic()) if self.settings.lock_step else None)

    # --- helpers (under the lock) -----------------------------------------------------------------
    def _restart(self) -> None:
        self.mpc.reset()
        self.acted_stamp = None  # the current frame has had no command in this episode

    def _begin(self) -> None:
        """A new episode: nothing ended, its clock starts at the next tick."""
        self._restart()
        self.ended, self.episode_start, self.within = None, None, 0

    def _set_state(self, state: str, now: float) -> None:
        if state != self.state:
            self.state, self.state_since = state, now

    def status(self, now: float) -> LoopStatus:
        with self.lock:
            return LoopStatus(self.state, now - self.state_since, now - self.frame_time, self.plans, self.goals,
                              self.last_plan, 0.0 if self.episode_start is None else now - self.episode_start)
