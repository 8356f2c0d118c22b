"""planner_node: look at a camera, plan in the world model's latent space towards a goal image, command a robot.

A managed (lifecycle) node: ``configure`` loads the checkpoint, warms the planner up and subscribes; ``activate``
starts commanding; ``deactivate`` sends one hold command and stops; ``cleanup`` frees the model. With
``autostart`` (the default) it configures and activates itself at start-up; with ``autostart: false`` a lifecycle
manager (nav2's, or ``ros2 lifecycle set /planner_node configure``) drives it.

Subscribes (relative names, each a parameter): ``image`` (sensor_msgs/Image, or CompressedImage with
``compressed``; QoS sensor-data or reliable, depth 1: only the latest frame is kept), ``goal_image``
(sensor_msgs/Image from a latched or a plain publisher, both heard; or the ``goal_image_file`` parameter; a goal
that differs from the current one starts a new episode) and, for position commands, ``joint_states``.
Publishes ``command`` (``command_type``: Float64MultiArray, JointTrajectory, TwistStamped or Twist),
``diagnostics`` (diagnostic_msgs/DiagnosticArray: state and time in it, plan time, frame age, cost, surprise,
device; after every plan and once a second) and ``surprise`` (std_msgs/Float32, the latent prediction error of
the last executed action block).

Timing: in real time (default) a timer publishes one command per control period from the current plan and
planning runs on a worker thread (lewm_ros.planning.worker), so neither frames nor commands wait for it; while a
plan is being computed the robot holds. In lock step (``lock_step: true``, for a simulator that steps once per
command: evaluation, tests, demos) the node answers each new frame (a new header stamp) with exactly one command,
after the plan it needs: results then do not depend on how fast this machine plans.

Safety: every command goes through one ``Actuation`` (scale, clamp to ``action_low``/``action_high``, hold), and
the predictor's history records what was sent. The node holds (zero velocity; for ``action_kind: position`` the
measured joint positions, or nothing while they are unknown) while it has no goal or no plan yet, when the
freshest frame is older than ``watchdog_timeout``, when a requested plan has not come within it, and when a plan
is not finite (reported). ``enabled: false`` is a dry run. Parameters are validated (``ros2 param describe``
shows each one's range); live ones change at the next plan, the others at the next configure.

    planner_node --ros-args --params-file config/planner.yaml
"""

import gc
import hashlib
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State as StateMsg
from PIL import Image as PILImage
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32

from lewm_ros.data.commands import COMMAND_TYPES, check_command_type
from lewm_ros.data.images import ImageDecodeError, image_to_rgb, resize_rgb
from lewm_ros.model.checkpoint import CheckpointError, load_checkpoint
from lewm_ros.nodes.conversions import command_class, command_msg, stamped_header
from lewm_ros.nodes.parameters import ParameterBinding
from lewm_ros.nodes.spinning import run_node
from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.planning import ACTION_KINDS, MPC, Actuation, CEMConfig, MPCConfig, PlanWorker
from lewm_ros.settings import check_settings, setting

IMAGE_QOS = {'sensor_data': QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability),
             'reliable': QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)}
# A latched goal publisher needs a transient-local subscription; a plain one (``ros2 topic pub``) is incompatible
# with that, so a second, volatile best-effort subscription hears every publisher. Duplicates are dropped.
GOAL_QOS = (QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE),
            QoSProfile(depth=1, durability=DurabilityPolicy.VOLATILE, reliability=ReliabilityPolicy.BEST_EFFORT))
DEVICES = ('auto', 'cpu', 'cuda')


@dataclass
class PlannerConfig:
    """The node's own parameters, one to one (the search and loop are ``cem.*`` / ``mpc.*``)."""

    checkpoint: str = setting('', "lewm_ros checkpoint (.safetensors); '' = the packaged arm_reach_small")
    device: str = setting('auto', 'torch device for encoding and planning', choices=DEVICES)
    threads: int = setting(0, 'torch CPU threads (0 = one per core); 1 on a small machine shared with the sim '
                           'or camera drivers, where OpenMP threads wait for each other (measured: 8 s instead of '
                           '0.13 s per plan)', low=0, high=1024)
    autostart: bool = setting(True, 'configure and activate at start-up; false: wait for a lifecycle manager')
    lock_step: bool = setting(False, 'answer each new frame (header stamp) with one command, after the plan it '
                              'needs, for simulators that step once per command; false: real time')
    image_topic: str = setting('image', 'camera topic')
    compressed: bool = setting(False, 'the camera topic carries sensor_msgs/CompressedImage (jpeg/png)')
    image_qos: str = setting('sensor_data', 'camera subscription QoS: sensor_data (best effort, hears any camera) '
                             'or reliable', choices=tuple(IMAGE_QOS))
    goal_topic: str = setting('goal_image', 'goal image topic (sensor_msgs/Image, latched or not)')
    goal_image_file: str = setting('', 'goal image file (png/jpg); the goal topic can replace it', live=True)
    command_topic: str = setting('command', 'command topic')
    command_type: str = setting('float64_multi_array', 'command message type', choices=tuple(COMMAND_TYPES))
    joint_names: list[str] = setting(['shoulder', 'elbow'], 'joints of the action, in order (JointTrajectory '
                                     'commands; joint_states order for position actions)')
    action_kind: str = setting('velocity', 'what the actions are: decides the hold command (zero velocity or the '
                               'measured positions) and the JointTrajectory field', choices=ACTION_KINDS)
    joint_states_topic: str = setting('joint_states', 'measured joint positions (position actions only)')
    action_scale: float = setting(1.0, 'command = scale x planned action (model units -> robot units), then '
                                  'clamped', low=1e-9, high=1e9, live=True)
    action_low: list[float] = setting([-1.5, -1.5], 'per-dimension command lower limits, robot units', live=True)
    action_high: list[float] = setting([1.5, 1.5], 'per-dimension command upper limits, robot units', live=True)
    control_rate: float = setting(10.0, 'commands per second in real time, Hz', low=0.1, high=1000.0)
    watchdog_timeout: float = setting(1.0, 'seconds without a fresh frame or a requested plan before holding',
                                      low=0.01, high=3600.0, live=True)
    enabled: bool = setting(True, 'false: dry run (plans and diagnostics, no commands)', live=True)

    def validate(self, action_dim: int | None = None) -> None:
        """Raise ValueError with the reason when a value is invalid (for a model with ``action_dim`` actions,
        when known)."""
        check_settings(self)
        if self.device == 'cuda' and not torch.cuda.is_available():
            raise ValueError('device is cuda but torch sees no CUDA device (use auto or cpu)')
        dim = action_dim or len(self.action_low)
        if not len(self.action_low) == len(self.action_high) == dim:
            raise ValueError(f'action_low and action_high need {dim} values each'
                             + (f' (the model has {dim} actions)' if action_dim else '')
                             + f', got {self.action_low} / {self.action_high}')
        self.actuation()  # limits and scale
        check_command_type(self.command_type, dim, positions=self.action_kind == 'position')
        if (self.command_type == 'joint_trajectory' or self.action_kind == 'position') and \
                len(self.joint_names) != dim:
            raise ValueError(f'joint_names must name the {dim} joints of the action, got {self.joint_names}')
        if self.goal_image_file and not Path(self.goal_image_file).is_file():
            raise ValueError(f'goal_image_file {self.goal_image_file!r} does not exist')

    def actuation(self) -> Actuation:
        return Actuation(np.array(self.action_low), np.array(self.action_high), self.action_scale, self.action_kind)

    def resolved_device(self) -> str:
        return self.device if self.device != 'auto' else 'cuda' if torch.cuda.is_available() else 'cpu'


SECTIONS = {'': PlannerConfig, 'cem.': CEMConfig, 'mpc.': MPCConfig}


class PlannerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('planner_node', **kwargs)
        self._lock = threading.Lock()
        self.checkpoint = self.mpc = self.worker = self.command_pub = None
        self.parameters = ParameterBinding(self, SECTIONS, check=self._check, apply=self._apply, fixed=self._fixed)
        self.config, _, _ = self.parameters.check()
        self.device, self.image_size, self._entities, self._active = None, None, [], False
        self._frame: np.ndarray | None = None  # (S, S, 3) uint8, the latest decoded frame
        self._frame_time, self._frame_stamp, self._acted_stamp = -math.inf, None, None
        self._goal_digest = None
        self._joint_positions: np.ndarray | None = None
        self._warned: dict[str, float] = {}  # log message -> when it was last logged
        self._state, self._state_since = 'unconfigured', time.monotonic()
        self._last_plan, self._plans, self._invalid_plan, self._goals = None, 0, False, 0
        self.startup_error = ''
        if self.config.autostart:
            self.trigger_configure()
            if self._state_id() != StateMsg.PRIMARY_STATE_INACTIVE:
                raise ValueError(self.startup_error)
            self.trigger_activate()

    # --- parameters -------------------------------------------------------------------------------
    def _check(self, configs) -> None:
        config, cem, mpc_config = configs
        config.validate(self.checkpoint.config.action_dim if self.checkpoint is not None else None)
        cem.validate()
        mpc_config.validate(self.checkpoint.prior is not None if self.checkpoint is not None else None)

    def _fixed(self, name: str) -> str | None:
        if self._state_id() == StateMsg.PRIMARY_STATE_UNCONFIGURED:
            return None  # taken at the next configure
        return f'{name} is applied at configure: deactivate and clean the node up (or restart it) to change it'

    def _apply(self, configs) -> None:
        config, cem, mpc_config = configs
        goal_changed = config.goal_image_file and config.goal_image_file != self.config.goal_image_file
        with self._lock:
            if self.mpc is not None:
                if config.enabled != self.config.enabled:
                    self.mpc.reset()  # what was planned in a dry run never happened: start afresh
                    self._acted_stamp = None
                self.mpc.configure(cem, mpc_config, config.actuation())
            self.config = config
        if goal_changed and self.mpc is not None:
            self._set_goal(_read_image(config.goal_image_file, self.image_size))

    # --- lifecycle --------------------------------------------------------------------------------
    def _state_id(self) -> int:
        return self._state_machine.current_state[0]

    def on_configure(self, state) -> TransitionCallbackReturn:
        config, cem, mpc_config = self.parameters.configs()
        try:
            config.validate()
            device = config.resolved_device()
            checkpoint = load_checkpoint(config.checkpoint or DEFAULT_CHECKPOINT, device)
            config.validate(checkpoint.config.action_dim)
            mpc_config.validate(checkpoint.prior is not None)
            goal = _read_image(config.goal_image_file, checkpoint.config.image_size) if config.goal_image_file \
                else None
        except (CheckpointError, ValueError, OSError) as err:
            self.startup_error = f'cannot configure: {err}'
            if not config.autostart:  # else the process reports it once as it exits (spinning.run_node)
                self.get_logger().error(self.startup_error)
            return TransitionCallbackReturn.FAILURE
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config, self.checkpoint, self.device = config, checkpoint, device
        self.image_size = checkpoint.config.image_size
        self.mpc = MPC(checkpoint, config.actuation(), cem, mpc_config)
        self.mpc.warm_up()  # the first plan pays for lazy initialisation: not the first real one
        self.worker = PlanWorker(self.mpc, self._lock, self._on_plan, self._on_plan_error)
        self._create_entities(config)
        if goal is not None:
            self._set_goal(goal)
        self._set_state('inactive')
        self.get_logger().info(f'configured: planning with {checkpoint.path} on {device}: {cem}, {mpc_config}')
        return super().on_configure(state)

    def _create_entities(self, config: PlannerConfig) -> None:
        frames = MutuallyExclusiveCallbackGroup()  # decoding never waits for the control tick, nor it for them
        control = MutuallyExclusiveCallbackGroup()
        self.command_pub = self.create_lifecycle_publisher(command_class(config.command_type), config.command_topic,
                                                           10)
        self._entities = [
            self.create_subscription(CompressedImage if config.compressed else Image, config.image_topic,
                                     self._on_image, IMAGE_QOS[config.image_qos], callback_group=frames),
            *(self.create_subscription(Image, config.goal_topic, self._on_goal, qos, callback_group=frames)
              for qos in GOAL_QOS),
            self.create_publisher(DiagnosticArray, 'diagnostics', 10),
            self.create_publisher(Float32, 'surprise', 10),
            self.create_timer(1.0 / config.control_rate, self._on_control, callback_group=control),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=control),
        ]
        self.diagnostics_pub, self.surprise_pub = self._entities[3], self._entities[4]
        if config.action_kind == 'position':
            self._entities.append(self.create_subscription(JointState, config.joint_states_topic,
                                                           self._on_joint_states, 10, callback_group=frames))

    def on_activate(self, state) -> TransitionCallbackReturn:
        with self._lock:
            self.mpc.reset()  # what the robot did while inactive is not in the history
            self._active, self._acted_stamp = True, None
        self.get_logger().info('active: commanding')
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            hold = self.mpc.actuation.hold(self._joint_positions)
            self._set_state('inactive')
        if hold is not None and self.config.enabled:
            self.command_pub.publish(self._message(hold))  # the publisher is still active: the robot stops
        self.get_logger().info('inactive: holding, no more commands')
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info('cleaned up: model released')
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        """Stop planning, drop subscriptions, publishers and timers, and free the model."""
        if self.worker is not None:
            self.worker.stop()
        for entity in self._entities:
            kind = type(entity).__name__
            {'Subscription': self.destroy_subscription, 'Publisher': self.destroy_publisher,
             'Timer': self.destroy_timer}[kind](entity)
        if self.command_pub is not None:
            self.destroy_lifecycle_publisher(self.command_pub)
            self.command_pub = None
        with self._lock:
            self._entities, self.worker, self.mpc, self.checkpoint, self._active = [], None, None, None, False
            self._goal_digest, self._frame, self._frame_time = None, None, -math.inf
            self._set_state('unconfigured')
        gc.collect()
        if self.device == 'cuda':
            torch.cuda.empty_cache()

    # --- inputs -----------------------------------------------------------------------------------
    def _decode(self, msg, what: str) -> np.ndarray | None:
        try:
            return np.array(resize_rgb(image_to_rgb(msg), self.image_size))  # a copy: msg buffers get reused
        except ImageDecodeError as err:
            # throttled per reason (rclpy throttles per call site: one bad stream would hide another)
            message, now = f'ignoring {what}: {err}', time.monotonic()
            if now - self._warned.get(message, -math.inf) > 2.0:
                self._warned[message] = now
                self.get_logger().warning(message)
            return None

    def _on_image(self, msg) -> None:
        frame = self._decode(msg, 'image')
        if frame is None:
            return
        with self._lock:
            self._frame, self._frame_time = frame, time.monotonic()
            self._frame_stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if self.config.lock_step:
            self._on_control()

    def _on_goal(self, msg) -> None:
        goal = self._decode(msg, 'goal image')
        if goal is not None:
            self._set_goal(goal)

    def _set_goal(self, goal: np.ndarray) -> None:
        digest = hashlib.sha1(goal.tobytes()).digest()  # both goal subscriptions may deliver the same message
        with self._lock:
            if digest == self._goal_digest or self.mpc is None:
                return
            self._goal_digest, self._goals = digest, self._goals + 1
            self.mpc.set_goal(goal)
            self.mpc.reset()  # a new goal is a new episode
            self._acted_stamp = None  # the current frame has had no command in this episode
        self.get_logger().info('new goal')
        self._publish_diagnostics()

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if all(joint in names for joint in self.config.joint_names) and len(msg.position) == len(names):
            with self._lock:
                self._joint_positions = np.array([msg.position[names.index(j)] for j in self.config.joint_names])

    # --- control ----------------------------------------------------------------------------------
    def _on_control(self) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._active:
                return
            config, mpc = self.config, self.mpc
            if mpc.goal is None:  # (in lock step a hold command would step the world: send none)
                state = 'waiting for a goal'
                command = None if config.lock_step else mpc.actuation.hold(self._joint_positions)
            elif config.lock_step:
                state, command = self._lock_step_tick(now)
            elif now - self._frame_time > config.watchdog_timeout:
                state, command = 'hold: no fresh frame', mpc.actuation.hold(self._joint_positions)
                mpc.reset()  # the history has a gap: start it again from the next frame
            else:
                mpc.observe(self._frame)
                if mpc.needs_plan and not self.worker.busy:
                    self.worker.submit(mpc.request(), now)
                stalled = self.worker.waited(now) > config.watchdog_timeout
                command = mpc.act(hold=stalled or not config.enabled, measured=self._joint_positions)
                state = ('hold: planner stalled' if stalled else 'hold: plan not finite' if self._invalid_plan
                         else 'dry run' if not config.enabled else 'waiting for a plan' if mpc.holding
                         else 'running')
            if state is not None:
                self._set_state(state, now)
        if command is not None and config.enabled:
            self.command_pub.publish(self._message(command))

    def _lock_step_tick(self, now: float):
        """One command per new frame, after the plan it needs; (state, command or None). Under the lock."""
        mpc, config = self.mpc, self.config
        if self._frame_stamp == self._acted_stamp:
            return None, None  # this frame has had its command: the world has not stepped yet
        mpc.observe(self._frame)
        if mpc.needs_plan and not self._invalid_plan:
            if not self.worker.busy:
                self.worker.submit(mpc.request(), now)
            return 'planning (lock step)', None
        self._acted_stamp = self._frame_stamp
        invalid, self._invalid_plan = self._invalid_plan, False
        command = mpc.act(hold=invalid or not config.enabled, measured=self._joint_positions)
        return ('hold: plan not finite' if invalid else 'dry run' if not config.enabled else 'running'), command

    def _message(self, command: np.ndarray):
        config = self.config
        return command_msg(config.command_type, command, self.get_clock().now().nanoseconds, config.joint_names,
                           positions=config.action_kind == 'position', duration_s=1.0 / config.control_rate)

    def _set_state(self, state: str, now: float | None = None) -> None:
        if state != self._state:
            self._state, self._state_since = state, time.monotonic() if now is None else now

    # --- planning ---------------------------------------------------------------------------------
    def _on_plan(self, plan, installed: bool) -> None:
        with self._lock:
            if self.mpc is None:
                return
            self._invalid_plan = not installed and plan.episode == self.mpc.episode
            self._last_plan, self._plans = plan, self._plans + 1
        if self._invalid_plan:
            self.get_logger().error(f'plan is not finite (cost {plan.cost}): holding', throttle_duration_sec=5.0)
        if plan.surprise is not None:
            self.surprise_pub.publish(Float32(data=plan.surprise))
        self._publish_diagnostics()
        if self.config.lock_step:
            self._on_control()

    def _on_plan_error(self, err: Exception) -> None:
        self.get_logger().error(f'planning failed: {err}', throttle_duration_sec=5.0)
        with self._lock:
            self._invalid_plan = True

    def _publish_diagnostics(self) -> None:
        with self._lock:
            state, plan, plans, goals = self._state, self._last_plan, self._plans, self._goals
            now = time.monotonic()
            frame_age, state_age = now - self._frame_time, now - self._state_since
        level = (DiagnosticStatus.OK if state in ('running', 'dry run', 'planning (lock step)') else
                 DiagnosticStatus.ERROR if state.startswith('hold') else DiagnosticStatus.WARN)
        values = {'state': state, 'state_for_s': round(state_age, 2), 'device': self.device, 'plans': plans,
                  'goals': goals,
                  'frame_age_ms': round(frame_age * 1000, 1) if math.isfinite(frame_age) else 'none'}
        if plan is not None:
            values.update(plan_time_ms=round(plan.seconds * 1000, 2), cost=plan.cost, horizon=len(plan.blocks),
                          arrival=plan.arrival, surprise='none' if plan.surprise is None else plan.surprise)
        status = DiagnosticStatus(level=level, name='lewm_ros: planner', message=state, hardware_id=str(self.device),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diagnostics_pub.publish(DiagnosticArray(header=stamped_header(self.get_clock().now().nanoseconds),
                                                     status=[status]))

    def stop(self) -> None:
        """Stop planning and release the model, whatever the lifecycle state (process exit, tests)."""
        if self.mpc is not None:
            self._release()


def _read_image(path: str, size: int) -> np.ndarray:
    with PILImage.open(path) as image:
        return resize_rgb(np.asarray(image.convert('RGB')), size)


def main(args=None) -> int:
    return run_node(PlannerNode, args, __doc__, lambda: MultiThreadedExecutor(num_threads=2), cleanup=PlannerNode.stop)


if __name__ == '__main__':
    raise SystemExit(main())
