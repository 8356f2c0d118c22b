"""planner_node: look at a camera, plan in the world model's latent space towards a goal image, command a robot.

Subscribes (relative names, each a parameter): ``image`` (sensor_msgs/Image, or CompressedImage with
``compressed``; QoS sensor-data or reliable, depth 1: only the latest frame is kept), ``goal_image``
(sensor_msgs/Image, latched or not; or the ``goal_image_file`` parameter; a new goal starts a new episode) and,
for position commands only, ``joint_states``.
Publishes ``command`` (``command_type``: Float64MultiArray, JointTrajectory, TwistStamped or Twist),
``diagnostics`` (diagnostic_msgs/DiagnosticArray: state and time in it, plan time, frame age, cost, surprise,
device; after every plan and once a second) and ``surprise`` (std_msgs/Float32, the latent prediction error of the last
executed action block).

Threads: subscriptions only decode and cache the latest frame; a timer publishes one command per control
period from the current plan; planning runs on a worker thread of its own, woken when the MPC wants a plan,
so neither frames nor commands ever wait for it. One lock guards the MPC state; the planning itself runs
outside it (lewm_ros.planning.mpc: request / solve / install).

Safety: every command is clamped to ``action_low``/``action_high``. The node holds (zero velocity; for
``action_kind: position`` the measured joint positions, or nothing while they are unknown) while it has no
goal or no plan yet, when the freshest frame is older than ``watchdog_timeout``, when a requested plan has not
come within it, and when a plan is not finite (reported). ``enabled: false`` is a dry run: it plans and
reports but publishes no command. Parameters are validated; the ``cem.*``, ``mpc.*``, action, watchdog,
``enabled`` and goal-file parameters may change live (next plan), the others are fixed at start-up.

    planner_node --ros-args --params-file config/planner.yaml
"""

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from PIL import Image as PILImage
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32

from lewm_ros.data.actions import TWIST_FIELDS
from lewm_ros.data.images import ImageDecodeError, image_to_rgb, resize_rgb
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.nodes.conversions import COMMAND_CLASSES, command_msg, header
from lewm_ros.nodes.spinning import init, spin_until_signal
from lewm_ros.planning import MPC, CEMConfig, MPCConfig

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / 'checkpoints' / 'arm_reach_small.safetensors'
IMAGE_QOS = {'sensor_data': QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability),
             'reliable': QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)}
DEVICES = ('auto', 'cpu', 'cuda')
ACTION_KINDS = ('velocity', 'position')


@dataclass
class PlannerConfig:
    """The node's own parameters, one to one (the search and loop are ``cem.*`` / ``mpc.*``).

    checkpoint: path of a lewm_ros checkpoint; '' = the packaged one (checkpoints/arm_reach_small.safetensors).
    threads: torch CPU threads; 0 = torch's default (one per core). On a small machine shared with the sim or
        camera drivers, 1 avoids OpenMP threads waiting for each other (measured: 8 s instead of 0.13 s per plan).
    action_kind: what the actions are; decides the hold command (zero velocity / measured positions) and
        which JointTrajectory field carries them.
    action_scale: command = scale x planned action (model units -> robot units), then clamped to the limits.
    action_low, action_high: per-dimension command limits (defaults: the simulated arm's ±1.5 rad/s).
    """

    checkpoint: str = ''
    device: str = 'auto'
    threads: int = 0
    image_topic: str = 'image'
    compressed: bool = False
    image_qos: str = 'sensor_data'
    goal_topic: str = 'goal_image'
    goal_image_file: str = ''
    command_topic: str = 'command'
    command_type: str = 'float64_multi_array'
    joint_names: list[str] = field(default_factory=lambda: ['shoulder', 'elbow'])
    action_kind: str = 'velocity'
    joint_states_topic: str = 'joint_states'
    action_scale: float = 1.0
    action_low: list[float] = field(default_factory=lambda: [-1.5, -1.5])
    action_high: list[float] = field(default_factory=lambda: [1.5, 1.5])
    control_rate: float = 10.0
    watchdog_timeout: float = 1.0
    enabled: bool = True

    def validate(self, action_dim: int) -> None:
        """Raise ValueError with the reason when a value is invalid for a model with ``action_dim`` actions."""
        if self.threads < 0:
            raise ValueError(f'threads must be >= 0 (0 = torch default), got {self.threads}')
        if self.device not in DEVICES:
            raise ValueError(f'device must be one of {DEVICES}, got {self.device!r}')
        if self.device == 'cuda' and not torch.cuda.is_available():
            raise ValueError('device is cuda but torch sees no CUDA device')
        if self.image_qos not in IMAGE_QOS:
            raise ValueError(f'image_qos must be one of {sorted(IMAGE_QOS)}, got {self.image_qos!r}')
        if self.command_type not in COMMAND_CLASSES:
            raise ValueError(f'command_type must be one of {sorted(COMMAND_CLASSES)}, got {self.command_type!r}')
        if self.action_kind not in ACTION_KINDS:
            raise ValueError(f'action_kind must be one of {ACTION_KINDS}, got {self.action_kind!r}')
        if self.command_type.startswith('twist') and (self.action_kind == 'position' or action_dim > len(TWIST_FIELDS)):
            raise ValueError(f'a Twist carries at most {len(TWIST_FIELDS)} velocities; the model has {action_dim} '
                             f'{self.action_kind} actions')
        if (self.command_type == 'joint_trajectory' or self.action_kind == 'position') and \
                len(self.joint_names) != action_dim:
            raise ValueError(f'joint_names must name the {action_dim} joints of the action, got {self.joint_names}')
        if len(self.action_low) != action_dim or len(self.action_high) != action_dim or \
                not all(lo <= hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError(f'action_low and action_high need {action_dim} values each with low <= high, '
                             f'got {self.action_low} / {self.action_high}')
        for name in ('action_scale', 'control_rate', 'watchdog_timeout'):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f'{name} must be positive, got {getattr(self, name)}')
        if self.goal_image_file and not Path(self.goal_image_file).is_file():
            raise ValueError(f'goal_image_file {self.goal_image_file!r} does not exist')


_SECTIONS = {'': PlannerConfig, 'cem.': CEMConfig, 'mpc.': MPCConfig}
_LIVE = {'goal_image_file', 'action_scale', 'action_low', 'action_high', 'watchdog_timeout', 'enabled'}


def _is_live(name: str) -> bool:
    return name in _LIVE or name.startswith(('cem.', 'mpc.'))


class PlannerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('planner_node', **kwargs)
        self._declare_parameters()
        config, cem, mpc_config = self._configs({})
        device = config.device if config.device != 'auto' else 'cuda' if torch.cuda.is_available() else 'cpu'
        self.checkpoint = load_checkpoint(config.checkpoint or DEFAULT_CHECKPOINT, device)
        model_cfg = self.checkpoint.config
        config.validate(model_cfg.action_dim)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config, self.device, self.image_size = config, device, model_cfg.image_size
        self.mpc = MPC(self.checkpoint, *self._model_limits(config), cem, mpc_config)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None  # (S, S, 3) uint8, the latest decoded frame
        self._frame_time = -math.inf  # monotonic receive time
        self._joint_positions: np.ndarray | None = None
        self._warned: dict[str, float] = {}  # log message -> when it was last logged
        self._request, self._request_time = None, 0.0
        self._state, self._last_plan, self._plans, self._invalid_plan = 'waiting for a goal', None, 0, False
        self._state_since = time.monotonic()  # when the node entered its current state
        if config.goal_image_file:
            self._set_goal(_read_image(config.goal_image_file, self.image_size))

        frames = MutuallyExclusiveCallbackGroup()  # decoding never waits for the control tick, nor it for them
        self.create_subscription(CompressedImage if config.compressed else Image, config.image_topic,
                                 self._on_image, IMAGE_QOS[config.image_qos], callback_group=frames)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, config.goal_topic, self._on_goal, latched, callback_group=frames)
        if config.action_kind == 'position':
            self.create_subscription(JointState, config.joint_states_topic, self._on_joint_states, 10,
                                     callback_group=frames)
        self.command_pub = self.create_publisher(COMMAND_CLASSES[config.command_type], config.command_topic, 10)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, 'diagnostics', 10)
        self.surprise_pub = self.create_publisher(Float32, 'surprise', 10)
        control = MutuallyExclusiveCallbackGroup()
        self.create_timer(1.0 / config.control_rate, self._on_control, callback_group=control)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=control)

        self.mpc.warm_up()  # the first plan pays for lazy initialisation: not the first real one
        self._wake, self._stopping = threading.Event(), False
        self._worker = threading.Thread(target=self._plan_loop, name='planner', daemon=True)
        self._worker.start()
        self.get_logger().info(f'planning with {self.checkpoint.path} on {device}: {cem}, {mpc_config}')

    # --- parameters -------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for prefix, cls in _SECTIONS.items():
            for item in dataclasses.fields(cls):
                default = item.default_factory() if item.default is dataclasses.MISSING else item.default
                name = prefix + item.name
                self.declare_parameter(name, default, ParameterDescriptor(
                    description=f'see {cls.__name__}.{item.name}' + ('' if _is_live(name) else ' (fixed at start-up)'),
                    read_only=not _is_live(name)))

    def _configs(self, updates: dict):
        """(PlannerConfig, CEMConfig, MPCConfig) from the current parameters with ``updates`` applied."""
        def build(prefix, cls):
            values = {}
            for item in dataclasses.fields(cls):
                name = prefix + item.name
                value = updates[name] if name in updates else self.get_parameter(name).value
                values[item.name] = list(value) if isinstance(value, list | tuple) else value
            return cls(**values)
        return tuple(build(prefix, cls) for prefix, cls in _SECTIONS.items())

    @staticmethod
    def _model_limits(config: PlannerConfig):
        """Command limits in the model's units."""
        return np.divide(config.action_low, config.action_scale), np.divide(config.action_high, config.action_scale)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        try:  # (rclpy itself rejects the read-only ones, those fixed at start-up)
            config, cem, mpc_config = self._configs({p.name: p.value for p in parameters})
            config.validate(self.checkpoint.config.action_dim)
            cem.validate()
            mpc_config.validate()
            goal_changed = config.goal_image_file and config.goal_image_file != self.config.goal_image_file
            goal = _read_image(config.goal_image_file, self.image_size) if goal_changed else None
        except (ValueError, TypeError, OSError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        with self._lock:
            if config.enabled != self.config.enabled:
                self.mpc.reset()  # what was planned in a dry run never happened: start afresh
            self.config = config
            self.mpc.configure(cem, mpc_config, *self._model_limits(config))
        if goal is not None:
            self._set_goal(goal)
        return SetParametersResult(successful=True)

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
        if frame is not None:
            with self._lock:
                self._frame, self._frame_time = frame, time.monotonic()

    def _on_goal(self, msg) -> None:
        goal = self._decode(msg, 'goal image')
        if goal is not None:
            self._set_goal(goal)

    def _set_goal(self, goal: np.ndarray) -> None:
        with self._lock:
            self.mpc.set_goal(goal)
            self.mpc.reset()  # a new goal is a new episode
        self.get_logger().info('new goal')

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if all(joint in names for joint in self.config.joint_names) and len(msg.position) == len(names):
            with self._lock:
                self._joint_positions = np.array([msg.position[names.index(j)] for j in self.config.joint_names])

    # --- control ----------------------------------------------------------------------------------
    def _on_control(self) -> None:
        now = time.monotonic()
        with self._lock:
            config, mpc = self.config, self.mpc
            if mpc.goal is None:
                state, action = 'waiting for a goal', None
            elif now - self._frame_time > config.watchdog_timeout:
                state, action = 'hold: no fresh frame', None
                mpc.reset()  # the history has a gap: start it again from the next frame
            else:
                mpc.observe(self._frame)
                if mpc.needs_plan:
                    self._request, self._request_time = mpc.request(), now
                    self._wake.set()
                stalled = mpc.pending and now - self._request_time > config.watchdog_timeout
                action = mpc.act(hold=stalled or not config.enabled)
                state = ('hold: planner stalled' if stalled else 'hold: plan not finite' if self._invalid_plan
                         else 'dry run' if not config.enabled else 'waiting for a plan' if mpc.holding
                         else 'running')
                if mpc.holding:
                    action = None
            if state != self._state:
                self._state, self._state_since = state, now
            command = self._command(action, config)
        if command is not None and config.enabled:
            self.command_pub.publish(command)

    def _command(self, action: np.ndarray | None, config: PlannerConfig):
        """The message for ``action`` (model units) scaled and clamped, or the hold command for None."""
        if action is None:
            if config.action_kind == 'position':
                if self._joint_positions is None:
                    return None
                action = self._joint_positions
            else:
                action = np.zeros(len(config.action_low))
        else:
            action = np.asarray(action) * config.action_scale
        action = np.clip(action, config.action_low, config.action_high)
        return command_msg(config.command_type, action, self.get_clock().now().to_msg(), config.joint_names,
                           positions=config.action_kind == 'position', duration=1.0 / config.control_rate)

    # --- planning ---------------------------------------------------------------------------------
    def _plan_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            with self._lock:
                request = self._request
            try:
                plan = self.mpc.solve(request)
            except RuntimeError as err:  # e.g. CUDA out of memory: hold, report, try again at the next request
                self.get_logger().error(f'planning failed: {err}', throttle_duration_sec=5.0)
                with self._lock:
                    self.mpc.pending, self._invalid_plan = False, True
                continue
            if self._stopping or not self.context.ok():
                return
            with self._lock:
                installed = self.mpc.install(plan)
                self._invalid_plan = not installed and plan.episode == self.mpc.episode
                self._last_plan, self._plans = plan, self._plans + 1
            if self._invalid_plan:
                self.get_logger().error(f'plan is not finite (cost {plan.cost}): holding',
                                        throttle_duration_sec=5.0)
            if plan.surprise is not None:
                self.surprise_pub.publish(Float32(data=plan.surprise))
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        with self._lock:
            state, plan, plans = self._state, self._last_plan, self._plans
            now = time.monotonic()
            frame_age, state_age = now - self._frame_time, now - self._state_since
        level = (DiagnosticStatus.OK if state in ('running', 'dry run') else
                 DiagnosticStatus.ERROR if state.startswith('hold') else DiagnosticStatus.WARN)
        values = {'state': state, 'state_for_s': round(state_age, 2), 'device': self.device, 'plans': plans,
                  'frame_age_ms': round(frame_age * 1000, 1) if math.isfinite(frame_age) else 'none'}
        if plan is not None:
            values.update(plan_time_ms=round(plan.seconds * 1000, 2), cost=plan.cost, horizon=len(plan.blocks),
                          arrival=plan.arrival,
                          surprise='none' if plan.surprise is None else plan.surprise)
        status = DiagnosticStatus(level=level, name='lewm_ros: planner', message=state, hardware_id=self.device,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diagnostics_pub.publish(DiagnosticArray(header=header(self.get_clock().now().to_msg()), status=[status]))

    def stop(self) -> None:
        """Stop the planning thread (a plan in progress finishes first)."""
        self._stopping = True
        self._wake.set()
        self._worker.join(timeout=30.0)


def _read_image(path: str, size: int) -> np.ndarray:
    with PILImage.open(path) as image:
        return resize_rgb(np.asarray(image.convert('RGB')), size)


def main(args=None) -> None:
    init(args)
    node = None
    try:
        node = PlannerNode()
        spin_until_signal(node, MultiThreadedExecutor(num_threads=2))
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
