"""sim_node: a simulated world (lewm_ros.sim) behind the topics a camera-equipped robot offers.

Publishes (relative names; types and QoS in ``lewm_ros.sim.topics``): ``image`` (sensor_msgs/Image rgb8),
``state`` (std_msgs/Float64MultiArray, the true low-dimensional state), ``success`` (std_msgs/Bool),
``joint_states`` (worlds with joints) and ``goal_image`` (latched: transient-local, sent at every reset).
Subscribes: ``command`` as Float64MultiArray, JointTrajectory (first point's velocities, by joint name),
TwistStamped or Twist, per ``command_type`` (``lewm_ros.data.commands``). A world with a Cartesian arm (its
``twist``: the UR5e of ``cube``) takes twists in its units (m/s, rad/s) and frame, as a real arm's twist controller
does, and its gripper's part on ``gripper_command`` (Float64MultiArray); the last twist holds until the next.
Commands are clamped to the world's limits; malformed ones (NaN, wrong length, unknown joints, another frame)
are logged and ignored.
Service ``~/reset`` (std_srvs/Trigger, ``sim_node/reset`` under the namespace): new episode with the next seed.
Setting ``seed``, ``task`` or a world option (``goal_span``) also starts a new episode; ``reset_on_success`` and
``episode_steps`` start the next one by themselves, so a live demo keeps getting new goals.

Modes:
- real time (default): every 1/``rate_hz`` s the world steps once with the latest command, held
  (zero before the first), and the new frame is published;
- lock step (``lock_step: true``): each valid command (not a gripper's part) steps the world once and the
  resulting frame is published at once; until an episode's first command its start frame is republished at
  ``rate_hz`` for late subscribers, with the same stamp (a frame's stamp is its simulated time, so a lock-step
  planner tells steps apart).

    sim_node --ros-args --params-file config/sim.yaml --params-file lewm_ros/sim/arm/sim.yaml
"""

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from lewm_ros.data.actions import ActionError, ActionSpec, action_from_message
from lewm_ros.data.commands import command_spec
from lewm_ros.nodes.conversions import (
    command_class,
    float_array_msg,
    message_class,
    qos_profile,
    rgb_to_image_msg,
    ros_message,
    stamped_header,
)
from lewm_ros.nodes.parameters import ParameterBinding
from lewm_ros.nodes.spinning import run_node
from lewm_ros.sim.config import SimConfig
from lewm_ros.sim.topics import COMMAND_QOS, SIM_TOPICS


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim_node', **kwargs)
        self.parameters = ParameterBinding(self, {'': SimConfig}, check=lambda configs: configs[0].validate(),
                                           apply=lambda configs: self._apply(configs[0]))
        (self.config,) = self.parameters.check()
        config = self.config
        self.world = config.make_world()
        names = self.world.action_space.names
        self.twist = self.world.twist if config.command_type.startswith('twist') else None
        self.spec = command_spec(config.command_type, names, twist_fields=self.twist.fields if self.twist else ())
        self.action = np.zeros(self.world.action_space.shape)
        self.episode_seed = config.seed
        self.waiting_for_first_command = True
        self.stamp_ns = 0  # simulated time of the current frame

        self.publishers_by_topic = {topic: self.create_publisher(message_class(msgtype), topic, qos_profile(qos))
                                    for topic, (msgtype, qos) in SIM_TOPICS.items()
                                    if topic != 'joint_states' or self.world.joint_state() is not None}
        self.create_subscription(command_class(config.command_type), 'command', self._on_command,
                                 qos_profile(COMMAND_QOS))
        if self.spec.dim < len(names):  # a twist-driven arm's gripper
            self.gripper_spec = ActionSpec(dim=len(names) - self.spec.dim)
            self.create_subscription(Float64MultiArray, 'gripper_command', self._on_gripper, qos_profile(COMMAND_QOS))
        self.create_service(Trigger, '~/reset', self._on_reset)  # private: another node may offer a reset too
        self.create_timer(1.0 / config.rate_hz, self._on_timer)
        self.start_episode()

    # --- episodes -------------------------------------------------------------------------
    def start_episode(self) -> None:
        self.world.reset(seed=self.episode_seed)
        self.action[:] = 0.0
        self.waiting_for_first_command = True
        self.stamp_ns = self.get_clock().now().nanoseconds
        self.publishers_by_topic['goal_image'].publish(
            rgb_to_image_msg(self.world.goal_image(), self.stamp_ns, self.config.frame_id))
        self.publish_frame()
        self.get_logger().info(f'episode: world {self.world.name}, task {self.world.task}, '
                               f'seed {self.episode_seed}')

    def next_episode(self) -> None:
        self.episode_seed += 1
        self.start_episode()

    def _on_reset(self, request, response):
        self.next_episode()
        response.success = True
        response.message = f'task {self.world.task}, seed {self.episode_seed}'
        return response

    # --- stepping -------------------------------------------------------------------------
    def _on_command(self, msg) -> None:
        try:
            action = action_from_message(msg, self.spec)
            if self.twist is not None:
                frame = msg.header.frame_id if hasattr(msg, 'header') else ''
                if frame not in ('', self.twist.frame):
                    raise ActionError(f'a twist in frame {frame!r}: this arm takes {self.twist.frame!r}')
                action = self.twist.to_action(action, self.action[self.spec.dim:])
        except ActionError as err:
            self.get_logger().warning(f'ignoring command: {err}', throttle_duration_sec=1.0)
            return
        self.action = self.world.action_space.clip(action)
        self.waiting_for_first_command = False
        if self.config.lock_step:
            self.step()

    def _on_gripper(self, msg) -> None:
        try:
            gripper = action_from_message(msg, self.gripper_spec)
        except ActionError as err:
            self.get_logger().warning(f'ignoring gripper command: {err}', throttle_duration_sec=1.0)
            return
        self.action = self.world.action_space.clip(np.concatenate([self.action[:self.spec.dim], gripper]))

    def _on_timer(self) -> None:
        if not self.config.lock_step:
            self.step()
        elif self.waiting_for_first_command:
            self.publish_frame()

    def step(self) -> None:
        self.world.step(self.action)
        self.stamp_ns += round(self.world.control_period * 1e9)
        self.publish_frame()  # the step's own outcome, also when the next episode follows
        config = self.config
        if (config.reset_on_success and self.world.success()) or \
                (config.episode_steps and self.world.steps >= config.episode_steps):
            self.next_episode()

    def publish_frame(self) -> None:
        publish, stamp = self.publishers_by_topic, self.stamp_ns
        publish['image'].publish(rgb_to_image_msg(self.world.render(), stamp, self.config.frame_id))
        publish['state'].publish(float_array_msg(self.world.get_state()))
        publish['success'].publish(Bool(data=self.world.success()))
        if 'joint_states' in publish:
            joints = self.world.joint_state()
            publish['joint_states'].publish(ros_message(
                'sensor_msgs/msg/JointState', header=stamped_header(stamp), name=list(joints.names),
                position=joints.position, velocity=joints.velocity))

    # --- parameters -----------------------------------------------------------------------
    def _apply(self, config: SimConfig) -> None:
        """Adopt a validated config (only live fields can differ); a new task, seed or world option resets."""
        previous, self.config = self.config, config
        rebuild = (config.task, config.world_options()) != (previous.task, previous.world_options())
        if rebuild:
            self.world.close()
            self.world = config.make_world()
        if config.seed != previous.seed:
            self.episode_seed = config.seed
        if rebuild or config.seed != previous.seed:
            self.start_episode()


def main(args=None) -> int:
    return run_node(SimNode, args, __doc__, cleanup=lambda node: node.world.close())


if __name__ == '__main__':
    raise SystemExit(main())
