"""planner_node: look at a camera, plan in the world model's latent space towards a goal image, command a robot.

A managed (lifecycle) node: ``configure`` loads the checkpoint, warms the planner up and subscribes; ``activate``
starts commanding; ``deactivate`` and shutdown (Ctrl-C too) send one hold command; ``cleanup`` frees the model.
With ``autostart`` (the default) it configures and activates itself; else a lifecycle manager drives it.

Subscribes (relative names, each a parameter): ``image`` (Image, or CompressedImage with ``compressed``; QoS
sensor-data or reliable, depth 1), ``goal_image`` (Image, latched or not; or the ``goal_image_file`` parameter; a
new goal starts an episode) and, for position commands, ``joint_states``. Publishes ``command`` (``command_type``:
Float64MultiArray, JointTrajectory, TwistStamped or Twist; a twist-driven arm's gripper on ``gripper_topic``),
``diagnostics`` (DiagnosticArray: state, plan time, frame age, cost, surprise, device; after every plan and once
a second), ``surprise`` (Float32, the latent prediction error of the last executed action block) and
``~/status`` (DiagnosticStatus, latched: the episode's state, idle, planning, reached, stopped or timeout, as the
message, why it holds as the value ``state``; on every change). Only while someone subscribes, once per plan and
with the stamp of the camera frame the plan answered: ``~/debug_image`` (camera | goal with the cost, plan time,
frame age and state) and ``~/imagined`` (the chosen plan's predicted frames, one per block, drawn by the
checkpoint's frame decoder). Services (std_srvs/Trigger): ``~/start`` a new episode on the current goal,
``~/stop`` hold now and keep the goal.

What to command and when to hold is ``lewm_ros.planning.control.ControlLoop``'s decision (real time or lock step,
and every hold reason are documented there); this node is the ROS plumbing around it. Parameters are validated
(``ros2 param describe``); live ones change at the next plan, the others at the next configure.

    planner_node --ros-args --params-file config/planner.yaml
"""

import gc
import threading
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, Float64MultiArray
from std_srvs.srv import Trigger

from lewm_ros.data.images import ImageDecodeError, image_to_rgb, read_image_file, resize_rgb
from lewm_ros.model.checkpoint import CheckpointError, load_checkpoint
from lewm_ros.model.device import resolve_device
from lewm_ros.nodes.conversions import (
    GOAL_QOS,
    IMAGE_QOS,
    LATCHED_QOS,
    command_class,
    command_msg,
    diagnostics_msg,
    float_array_msg,
    status_msg,
)
from lewm_ros.nodes.parameters import ParameterBinding
from lewm_ros.nodes.plan_views import PlanViews
from lewm_ros.nodes.spinning import run_node
from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.planning import MPC, CEMConfig, MPCConfig
from lewm_ros.planning.control import ControlLoop, Tick
from lewm_ros.planning.planner_config import PlannerConfig

SECTIONS = {'': PlannerConfig, 'cem.': CEMConfig, 'mpc.': MPCConfig}


class PlannerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('planner_node', **kwargs)
        self.checkpoint = self.loop = self.command_pub = self.gripper_pub = self.device = self.image_size = None
        self._entities, self._warned = [], {}  # log message -> when it was last logged
        self.goal_image, self._status_key, self._status_lock = None, None, threading.Lock()
        self.parameters = ParameterBinding(self, SECTIONS, check=self._check, apply=self._apply, fixed=self._fixed)
        self.config, _, _ = self.parameters.check()
        self.startup_error = 'configure raised'  # replaced by the reason when it fails as it should
        if self.config.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ValueError(self.startup_error)
            self.trigger_activate()

    def _check(self, configs) -> None:
        config, cem, mpc_config = configs
        config.validate(self.checkpoint.config.action_dim if self.checkpoint is not None else None)
        cem.validate()
        mpc_config.validate(self.checkpoint.prior is not None if self.checkpoint is not None else None)

    def _fixed(self, name: str) -> str | None:
        if self.loop is None:
            return None  # unconfigured: taken at the next configure
        return f'{name} is applied at configure: deactivate and clean the node up (or restart it) to change it'

    def _apply(self, configs) -> None:
        config, cem, mpc_config = configs
        goal_changed = config.goal_image_file and config.goal_image_file != self.config.goal_image_file
        if self.loop is not None:
            self.loop.configure(cem, mpc_config, config.actuation(), config.loop_settings())
        self.config = config
        if goal_changed and self.loop is not None:
            self._set_goal(read_image_file(config.goal_image_file, self.image_size))

    def on_configure(self, state) -> TransitionCallbackReturn:
        config, cem, mpc_config = self.parameters.configs()
        try:
            config.validate()
            device = resolve_device(config.device)
            checkpoint = load_checkpoint(config.checkpoint or DEFAULT_CHECKPOINT, device)
            config.validate(checkpoint.config.action_dim)
            mpc_config.validate(checkpoint.prior is not None)
            goal = read_image_file(config.goal_image_file, checkpoint.config.image_size) if config.goal_image_file \
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
        mpc = MPC(checkpoint, config.actuation(), cem, mpc_config)
        mpc.warm_up()  # the first plan pays for lazy initialisation: not the first real one
        self.loop = ControlLoop(mpc, config.loop_settings(), self._on_plan, self._on_plan_error)
        self._create_entities(config)
        if goal is not None:
            self._set_goal(goal)
        self.get_logger().info(f'configured: planning with {checkpoint.path} on {device}: {mpc.solver} '
                               f'{mpc.cem.config}, {mpc_config}')
        return super().on_configure(state)

    def _create_entities(self, config: PlannerConfig) -> None:
        frames = MutuallyExclusiveCallbackGroup()  # decoding never waits for the control tick, nor it for them
        control = MutuallyExclusiveCallbackGroup()
        self.command_pub = self.create_lifecycle_publisher(command_class(config.command_type), config.command_topic,
                                                           10)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, 'diagnostics', 10)
        self.surprise_pub = self.create_publisher(Float32, 'surprise', 10)
        self.status_pub = self.create_publisher(DiagnosticStatus, '~/status', LATCHED_QOS)
        self.views = PlanViews(self)
        # a goal publisher is heard by the subscription of its durability; the other one's 'incompatible QoS' is
        # expected, not worth a warning
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
        self._entities = [
            self.command_pub, self.diagnostics_pub, self.surprise_pub, self.status_pub, *self.views.publishers,
            self.create_subscription(CompressedImage if config.compressed else Image, config.image_topic,
                                     self._on_image, IMAGE_QOS[config.image_qos], callback_group=frames),
            *(self.create_subscription(Image, config.goal_topic, self._on_goal, qos, callback_group=frames,
                                       event_callbacks=quiet) for qos in GOAL_QOS),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=control),
            self.create_service(Trigger, '~/start', self._on_start, callback_group=control),
            self.create_service(Trigger, '~/stop', self._on_stop, callback_group=control),
        ]
        if config.gripper_topic:
            self.gripper_pub = self.create_lifecycle_publisher(Float64MultiArray, config.gripper_topic, 10)
            self._entities.append(self.gripper_pub)
        if not config.lock_step:  # in lock step frames and plans tick the loop
            self._entities.append(self.create_timer(1.0 / config.control_rate, self._on_timer, callback_group=control))
        if config.action_kind == 'position':
            self._entities.append(self.create_subscription(JointState, config.joint_states_topic,
                                                           self._on_joint_states, 10, callback_group=frames))

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.loop.activate()
        self.get_logger().info('active: commanding')
        result = super().on_activate(state)  # activates the command publisher
        self._report_status()
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._hold()
        self.get_logger().info('inactive: holding, no more commands')
        self._report_status()
        return super().on_deactivate(state)

    def _on_start(self, request, response):
        reason = self.loop.start_episode()
        response.success, response.message = reason is None, reason or 'started a new episode on the current goal'
        self.get_logger().info(f'~/start: {response.message}')
        self._send(self.loop.tick(time.monotonic()))
        return response

    def _on_stop(self, request, response):
        self._send(self.loop.stop_episode(time.monotonic()))
        response.success, response.message = True, 'stopped: holding; the goal is kept (~/start resumes)'
        self.get_logger().info(f'~/stop: {response.message}')
        self._report_status()
        return response

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.stop()
        self.get_logger().info('cleaned up: model released')
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.stop()
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Hold the robot, stop planning, drop the subscriptions, publishers and timers, free the model (any state)."""
        self._hold()
        if self.loop is not None:
            self.loop.stop()
        destroy = {'Subscription': self.destroy_subscription, 'Publisher': self.destroy_publisher,
                   'LifecyclePublisher': self.destroy_lifecycle_publisher, 'Timer': self.destroy_timer,
                   'Service': self.destroy_service}
        for entity in self._entities:
            destroy[type(entity).__name__](entity)
        self._entities, self.loop, self.checkpoint, self.command_pub, self.gripper_pub = [], None, None, None, None
        gc.collect()
        if self.device is not None and self.device.type == 'cuda':
            torch.cuda.empty_cache()

    # --- inputs -----------------------------------------------------------------------------------
    def _decode(self, msg, what: str) -> np.ndarray | None:
        try:
            return np.array(resize_rgb(image_to_rgb(msg), self.image_size))  # a copy: msg buffers get reused
        except ImageDecodeError as err:
            self.warn(f'ignoring {what}: {err}')
            return None

    def warn(self, message: str, every: float = 2.0) -> None:
        """A warning at most once per ``every`` seconds per message (rclpy throttles per call site: one bad stream
        would hide another)."""
        now = time.monotonic()
        if message not in self._warned or now - self._warned[message] > every:
            self._warned[message] = now
            self.get_logger().warning(message)

    def _on_image(self, msg) -> None:
        frame, loop = self._decode(msg, 'image'), self.loop
        if frame is not None and loop is not None:  # (None: released while the message was on its way)
            self._send(loop.set_frame(frame, (msg.header.stamp.sec, msg.header.stamp.nanosec), time.monotonic()))

    def _on_goal(self, msg) -> None:
        goal = self._decode(msg, 'goal image')
        if goal is not None:
            self._set_goal(goal)

    def _set_goal(self, goal: np.ndarray) -> None:
        if self.loop is not None and self.loop.set_goal(goal):  # False for a repeat (both subscriptions hear it)
            self.goal_image = goal
            self.get_logger().info('new goal')
            self._publish_diagnostics()

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if all(joint in names for joint in self.config.joint_names) and len(msg.position) == len(names) and \
                self.loop is not None:
            self.loop.set_joint_positions([msg.position[names.index(joint)] for joint in self.config.joint_names])

    # --- outputs ----------------------------------------------------------------------------------
    def _on_timer(self) -> None:
        if self.loop is not None:
            self._send(self.loop.tick(time.monotonic()))

    def _send(self, tick: Tick | None) -> None:
        if tick is not None:
            self._publish(tick.command)
            self._report_status()

    def _report_status(self) -> None:
        """Publish ``~/status`` when the episode's state or the reason for it changed."""
        loop = self.loop
        if loop is None:
            return
        with self._status_lock:  # ticks come from the timer, frames and the planning thread
            status = loop.status(time.monotonic())
            if (status.episode, status.state) != self._status_key:
                self._status_key = status.episode, status.state
                self.status_pub.publish(status_msg(status, self.device))

    def _hold(self) -> None:
        """Command a hold once, while the publishers are still active (a UR twist_controller keeps the last twist)."""
        if self.loop is not None:
            self._publish(self.loop.deactivate(time.monotonic()))

    def _publish(self, command: np.ndarray | None) -> None:
        config, publisher = self.config, self.command_pub
        if command is None or publisher is None or not publisher.is_activated:
            return
        arm, gripper = config.split(command)
        if gripper is not None:  # first: a lock-step sim steps on the command
            self.gripper_pub.publish(float_array_msg(gripper))
        publisher.publish(command_msg(
            config.command_type, arm, self.get_clock().now().nanoseconds, config.joint_names,
            positions=config.action_kind == 'position', duration_s=1.0 / config.control_rate,
            frame_id=config.command_frame, twist_fields=config.twist_fields))

    def _on_plan(self, plan, not_finite: bool, tick: Tick | None, request) -> None:
        if not_finite:
            self.get_logger().error(f'plan is not finite (cost {plan.cost}): holding', throttle_duration_sec=5.0)
        if plan.surprise is not None:
            self.surprise_pub.publish(Float32(data=plan.surprise))
        self._publish_diagnostics()
        self._send(tick)
        loop, checkpoint = self.loop, self.checkpoint
        if loop is not None and checkpoint is not None:  # (None: released meanwhile)
            self.views.publish(plan, request, loop, self.goal_image, checkpoint.decoder)

    def _on_plan_error(self, err: Exception, tick: Tick | None) -> None:
        self.get_logger().error(f'planning failed: {err}', throttle_duration_sec=5.0)
        self._send(tick)

    def _publish_diagnostics(self) -> None:
        loop = self.loop
        if loop is None:
            return
        self.diagnostics_pub.publish(diagnostics_msg(loop.status(time.monotonic()), self.device,
                                                     self.get_clock().now().nanoseconds))


def main(args=None) -> int:
    return run_node(PlannerNode, args, __doc__, lambda: MultiThreadedExecutor(num_threads=2), cleanup=PlannerNode.stop)


if __name__ == '__main__':
    raise SystemExit(main())
