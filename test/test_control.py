"""The planner's control loop without ROS: every hold reason, real time and lock step, with time given as numbers."""

import threading

import numpy as np
import pytest
import torch

from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.planning import MPC, Actuation, CEMConfig, MPCConfig
from lewm_ros.planning.control import (
    DRY_RUN,
    HOLD_NO_FRAME,
    HOLD_NOT_FINITE,
    HOLD_STALLED,
    INACTIVE,
    PLANNING,
    REACHED,
    RUNNING,
    STOPPED,
    TIMED_OUT,
    WAITING_FOR_GOAL,
    WAITING_FOR_PLAN,
    ControlLoop,
    LoopSettings,
)

WATCHDOG = 1.0
HOLD = [0.0, 0.0]  # zero velocity


def frame(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)


class Reports:
    """What the loop reports from its planning thread."""

    def __init__(self):
        self.plans, self.errors, self.ticks = [], [], []
        self.event = threading.Event()

    def on_plan(self, plan, not_finite, tick, request):
        self.plans.append((plan, not_finite))
        self.ticks.append(tick)
        self.event.set()

    def on_error(self, error, tick):
        self.errors.append(error)
        self.ticks.append(tick)
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(30), 'no report from the planning thread'
        self.event.clear()


class GatedMPC(MPC):
    """An MPC whose plans wait for ``gate``: a plan that takes as long as the test says."""

    gate: threading.Event

    def solve(self, request):
        assert self.gate.wait(30)
        return super().solve(request)


def make_loop(checkpoint, lock_step=False, enabled=True, mpc_class=MPC, kind='velocity', mode='paper', **settings):
    low, high = ([-1.0, -1.0], [1.0, 1.0]) if kind == 'velocity' else ([-3.0, -3.0], [3.0, 3.0])
    mpc = mpc_class(load_checkpoint(checkpoint), Actuation(low, high, kind=kind),
                    CEMConfig(samples=8, elites=2, iterations=1, horizon=2), MPCConfig(mode=mode, execute_steps=1))
    reports = Reports()
    loop = ControlLoop(mpc, LoopSettings(lock_step, WATCHDOG, enabled, **settings), reports.on_plan,
                       reports.on_error)
    loop.activate()
    return loop, reports


@pytest.fixture
def loops():
    made = []
    yield made
    for loop in made:
        loop.stop()


def test_nothing_is_commanded_while_inactive_and_deactivating_returns_the_hold(tiny_checkpoint, loops):
    loop, _ = make_loop(tiny_checkpoint)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=0.0)
    assert loop.tick(0.0).state == WAITING_FOR_PLAN
    np.testing.assert_array_equal(loop.deactivate(now=0.1), HOLD)
    assert loop.tick(0.2) is None and loop.state == INACTIVE


def test_without_a_goal_it_holds_in_real_time_and_sends_nothing_in_lock_step(tiny_checkpoint, loops):
    real_time, _ = make_loop(tiny_checkpoint)
    lock_step, _ = make_loop(tiny_checkpoint, lock_step=True)
    loops.extend([real_time, lock_step])
    real_time.set_frame(frame(0), 'stamp', now=0.0)
    tick = real_time.tick(0.0)
    assert tick.state == WAITING_FOR_GOAL
    np.testing.assert_array_equal(tick.command, HOLD)
    tick = lock_step.set_frame(frame(0), 'stamp', now=0.0)  # a hold would step a lock-step world: nothing
    assert tick.state == WAITING_FOR_GOAL and tick.command is None


def test_real_time_holds_until_the_first_plan_then_executes_it(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=0.0)
    tick = loop.tick(0.0)  # submits the plan and holds while it is computed
    assert tick.state == WAITING_FOR_PLAN
    np.testing.assert_array_equal(tick.command, HOLD)
    reports.wait()
    (plan, not_finite), = reports.plans
    assert not not_finite and reports.ticks == [None]  # in real time only the timer ticks
    loop.set_frame(frame(1), 'stamp', now=0.1)
    tick = loop.tick(0.1)
    assert tick.state == RUNNING
    np.testing.assert_allclose(tick.command, plan.actions[1], rtol=1e-6)  # step 0 went by holding


def test_a_stale_frame_holds_and_restarts_the_history(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint)
    loops.append(loop)
    loop.set_goal(frame(99))
    tick = loop.tick(0.0)  # no frame yet at all
    assert tick.state == HOLD_NO_FRAME
    loop.set_frame(frame(0), 'stamp', now=1.0)
    assert loop.tick(1.0).state == WAITING_FOR_PLAN
    reports.wait()
    for step in range(1, 4):
        assert loop.tick(1.0 + 0.1 * step).state == RUNNING  # the frame is still fresh enough
    assert loop.mpc.step == 4
    tick = loop.tick(1.0 + WATCHDOG + 0.01)
    assert tick.state == HOLD_NO_FRAME
    np.testing.assert_array_equal(tick.command, HOLD)
    assert loop.mpc.step == 0 and loop.mpc.plan is None  # the history has a gap: it starts again


def test_a_plan_that_does_not_come_within_the_watchdog_holds_as_stalled(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, mpc_class=GatedMPC)
    loop.mpc.gate = threading.Event()
    loops.append(loop)
    loop.set_goal(frame(99))
    for step, now in enumerate((0.0, 0.5, 1.0)):
        loop.set_frame(frame(step), 'stamp', now=now)
        assert loop.tick(now).state == WAITING_FOR_PLAN
    loop.set_frame(frame(3), 'stamp', now=1.2)
    tick = loop.tick(1.2)  # 1.2 s since the request
    assert tick.state == HOLD_STALLED
    np.testing.assert_array_equal(tick.command, HOLD)
    loop.mpc.gate.set()
    reports.wait()
    loop.set_frame(frame(4), 'stamp', now=1.3)
    assert loop.tick(1.3).state == RUNNING


def test_a_plan_that_is_not_finite_holds_and_is_reported(tiny_checkpoint, tmp_path, loops):
    from lewm_ros.model.checkpoint import save_checkpoint

    broken = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        broken.model.predictor.pred_proj.net[-1].bias.fill_(float('nan'))  # every prediction is NaN
    path = save_checkpoint(tmp_path / 'nan.safetensors', broken.model, [0.0, 0.0], [1.0, 1.0])
    loop, reports = make_loop(path)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=0.0)
    loop.tick(0.0)
    reports.wait()
    assert reports.plans[0][1]  # reported as not finite
    loop.set_frame(frame(1), 'stamp', now=0.1)
    tick = loop.tick(0.1)
    assert tick.state == HOLD_NOT_FINITE
    np.testing.assert_array_equal(tick.command, HOLD)


def test_a_dry_run_decides_but_sends_nothing_and_commanding_again_starts_afresh(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, enabled=False)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=0.0)
    tick = loop.tick(0.0)
    assert tick.state == DRY_RUN and tick.command is None
    reports.wait()
    assert loop.tick(0.1).command is None and loop.mpc.step == 2
    mpc = loop.mpc
    loop.configure(mpc.cem.config, mpc.config, mpc.actuation, LoopSettings(False, WATCHDOG, True))
    assert loop.mpc.step == 0 and loop.mpc.plan is None  # what the dry run planned never happened


def test_lock_step_answers_each_new_frame_with_one_command_after_its_plan(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, lock_step=True)
    loops.append(loop)
    loop.set_goal(frame(99))
    tick = loop.set_frame(frame(0), stamp=0, now=0.0)
    assert tick.state == PLANNING and tick.command is None  # the plan first
    reports.wait()
    (plan, _), = reports.plans
    (tick,) = reports.ticks  # the plan's arrival answers the waiting frame
    assert tick.state == RUNNING
    np.testing.assert_allclose(tick.command, plan.actions[0], rtol=1e-6)
    assert loop.set_frame(frame(0), stamp=0, now=5.0) is None  # the same frame again: it has had its command
    assert loop.tick(10.0) is None  # and no clock makes it hold or act: no watchdog in lock step
    for step in range(1, 4):  # the next frames: one command each, from the same plan
        tick = loop.set_frame(frame(step), stamp=step, now=10.0 + step)
        assert tick.state == RUNNING
        np.testing.assert_allclose(tick.command, plan.actions[step], rtol=1e-6)
    assert len(reports.plans) == 1


def test_lock_step_holds_once_after_a_failed_plan_then_plans_again(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, lock_step=True)
    loops.append(loop)
    failures = [RuntimeError('CUDA out of memory')]
    solve = loop.mpc.solve

    def failing(request):
        if failures:
            raise failures.pop()
        return solve(request)

    loop.mpc.solve = failing
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), stamp=0, now=0.0)
    reports.wait()
    (tick,) = reports.ticks  # the failure answers the waiting frame: a hold, so the world steps on
    assert reports.errors and tick.state == HOLD_NOT_FINITE
    np.testing.assert_array_equal(tick.command, HOLD)
    tick = loop.set_frame(frame(1), stamp=1, now=0.1)
    assert tick.state == PLANNING
    reports.wait()
    assert reports.ticks[-1].state == RUNNING


def test_a_repeated_goal_is_one_episode_and_a_new_one_restarts_it(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint)
    loops.append(loop)
    assert loop.set_goal(frame(99)) and not loop.set_goal(frame(99).copy())
    loop.set_frame(frame(0), 'stamp', now=0.0)
    loop.tick(0.0)
    reports.wait()
    loop.tick(0.1)
    assert loop.goals == 1 and loop.mpc.step == 2
    assert loop.set_goal(frame(98))
    assert loop.goals == 2 and loop.mpc.step == 0 and loop.mpc.plan is None


def test_position_actions_hold_the_measured_joints_and_nothing_while_unknown(tiny_checkpoint, loops):
    loop, _ = make_loop(tiny_checkpoint, kind='position')
    loops.append(loop)
    assert loop.tick(0.0).command is None  # no goal, no joint positions yet: nothing to hold
    loop.set_joint_positions([0.5, -1.0])
    np.testing.assert_array_equal(loop.tick(0.1).command, [0.5, -1.0])
    np.testing.assert_array_equal(loop.deactivate(now=0.2), [0.5, -1.0])


def run_plans(loop, reports, plans: int, now: float = 0.0) -> float:
    """Tick in real time (replanning every step) until ``plans`` more plans have come back; returns the time."""
    target = len(reports.plans) + plans
    while len(reports.plans) < target:
        loop.set_frame(frame(int(now * 10)), 'stamp', now=now)
        loop.tick(now)
        reports.wait()
        now += 0.1
    return now


def test_the_goal_is_reached_after_goal_plans_within_tolerance_and_start_resumes(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, mode='receding', goal_tolerance=1e9, goal_plans=2)
    loops.append(loop)
    loop.set_goal(frame(99))
    now = run_plans(loop, reports, 1)
    assert loop.tick(now).state != REACHED  # one plan within the tolerance is not enough
    now = run_plans(loop, reports, 1, now)
    tick = loop.tick(now)
    assert tick.state == REACHED and loop.status(now).episode == 'reached'
    np.testing.assert_array_equal(tick.command, HOLD)
    plans = len(reports.plans)
    assert loop.tick(now + 0.1).state == REACHED and len(reports.plans) == plans  # it holds, no more plans
    assert loop.start_episode() is None
    assert loop.tick(now + 0.2).state == WAITING_FOR_PLAN and loop.status(now).episode == 'planning'


def test_a_goal_outside_the_tolerance_is_never_reached(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, mode='receding', goal_tolerance=1e-9, goal_plans=1)
    loops.append(loop)
    loop.set_goal(frame(99))
    now = run_plans(loop, reports, 3)
    assert all(plan.goal_distance > 1e-9 for plan, _ in reports.plans)
    assert loop.tick(now).state == RUNNING


def test_an_episode_longer_than_max_duration_ends_as_a_timeout_and_a_new_goal_starts_another(tiny_checkpoint,
                                                                                                loops):
    loop, reports = make_loop(tiny_checkpoint, max_duration=2.0)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=10.0)
    assert loop.tick(10.0).state == WAITING_FOR_PLAN  # the episode's clock starts at its first tick
    reports.wait()
    loop.set_frame(frame(1), 'stamp', now=11.9)
    assert loop.tick(11.9).state == RUNNING
    loop.set_frame(frame(2), 'stamp', now=12.1)
    tick = loop.tick(12.1)
    assert tick.state == TIMED_OUT and loop.status(12.1).episode == 'timeout'
    np.testing.assert_array_equal(tick.command, HOLD)
    loop.set_goal(frame(98))
    assert loop.tick(12.2).state == WAITING_FOR_PLAN


def test_stop_holds_at_once_keeps_the_goal_and_start_resumes(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint)
    loops.append(loop)
    assert 'no goal' in loop.start_episode()
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), 'stamp', now=0.0)
    loop.tick(0.0)
    reports.wait()
    assert loop.tick(0.1).state == RUNNING
    tick = loop.stop_episode(now=0.15)  # the hold to send now, not at the next tick
    assert tick.state == STOPPED and loop.status(0.15).episode == 'stopped'
    np.testing.assert_array_equal(tick.command, HOLD)
    assert loop.tick(0.2).state == STOPPED and loop.mpc.goal is not None
    assert loop.start_episode() is None
    assert loop.tick(0.3).state == WAITING_FOR_PLAN  # a new episode: its first plan
    loop.deactivate(now=0.4)
    assert 'not active' in loop.start_episode()


def test_an_ended_episode_sends_nothing_in_lock_step(tiny_checkpoint, loops):
    loop, reports = make_loop(tiny_checkpoint, lock_step=True)
    loops.append(loop)
    loop.set_goal(frame(99))
    loop.set_frame(frame(0), stamp=0, now=0.0)
    reports.wait()
    tick = loop.stop_episode(now=0.1)
    assert tick.state == STOPPED and tick.command is None  # a hold command would step the world
    assert loop.set_frame(frame(1), stamp=1, now=0.2).command is None
