"""sim_node: a simulated world (lewm_ros.sim) behind the topics a camera-equipped robot offers.

Publishes (relative names; types and QoS in ``lewm_ros.sim.topics``): ``image`` (sensor_msgs/Image rgb8),
``state`` (std_msgs/Float64MultiArray, the true low-dimensional state), ``success`` (std_msgs/Bool),
``joint_states`` (arm only) and ``goal_image`` (latched: transient-local, sent at every reset).
Subscribes: ``command`` as Float64MultiArray, JointTrajectory (first point's velocities, by joint name),
TwistStamped or Twist, per ``command_type`` (``lewm_ros.data.commands``). Commands are clamped to the world's
limits; malformed ones (NaN, wrong length, unknown joints) are logged and ignored.
Service ``reset`` (std_srvs/Trigger): new episode with the next seed. Setting ``seed``, ``task`` or
``goal_span`` also starts a new episode; ``reset_on_success`` and ``episode_steps`` start the next one by
themselves, so a live demo keeps getting new goals.

Modes:
- real time (default): every 1/``rate_hz`` s the world steps once with the latest command, held
  (zero before the first), and the new frame is published;
- lock step (``lock_step: true``): each valid command steps the world once and the resulting frame is published
  at once; until an episode's first command its start frame is republished at ``rate_hz`` for late subscribers,
  with the same stamp (a frame's stamp is its simulated time, so a lock-step planner tells steps apart).

    sim_node --ros-args --params-file config/sim.yaml
"""

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from lewm_ros.data.actions import ActionError, action_from_message
from lewm_ros.data.commands import COMMAND_TYPES, command_spec
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
from lewm_ros.settings import check_settings, setting
from lewm_ros.sim.registry import WORLDS, make_world, world_class
from lewm_ros.sim.topics import COMMAND_QOS, SIM_TOPICS


@dataclass
class SimConfig:
    """sim_node's parameters, one to one."""

    world: str = setting('arm', 'world to simulate', choices=tuple(sorted(WORLDS)))
    task: str = setting('', "task of the world ('' = its first: arm reach, two_room navigate, push_t push); a "
                        'change resets', live=True)
    seed: int = setting(0, 'seed of the first episode (the reset service moves to the next); a change resets',
                        low=0, high=2**31 - 1, live=True)
    goal_span: float = setting(0.0, 'arm reach: goals within this many radians of the start per joint, one '
                               "plan's reach (0 = anywhere); a change resets", low=0.0, high=10.0, live=True)
    image_size: int = setting(64, 'rendered image side in pixels', low=8, high=512)
    rate_hz: float = setting(10.0, 'steps per second in real time (each step is the world\'s own control '
                             'period); lock step: how often a waiting start frame is republished', low=0.1,
                             high=1000.0)
    lock_step: bool = setting(False, 'one world step per received command instead of stepping at rate_hz')
    command_type: str = setting('float64_multi_array', 'command message type', choices=tuple(sorted(COMMAND_TYPES)))
    frame_id: str = setting('camera', 'frame_id of the published images')
    reset_on_success: bool = setting(False, 'start the next episode (next seed) once the task is solved',
                                     live=True)
    episode_steps: int = setting(0, 'start the next episode after this many steps (0 = never)', low=0,
                                 high=10**9, live=True)

    def validate(self) -> None:
        check_settings(self)
        tasks = world_class(self.world).tasks
        if self.task and self.task not in tasks:
            raise ValueError(f'task must be one of {list(tasks)} for world {self.world}, got {self.task!r}')
        if self.goal_span and (self.world, self.task or tasks[0]) != ('arm', 'reach'):
            raise ValueError(f'goal_span applies to the arm reach task only, got world {self.world} task '
                             f'{self.task or tasks[0]}')

    def make_world(self):
        return make_world(self.world, self.task or None, image_size=self.image_size,
                          **({'goal_span': self.goal_span} if self.goal_span else {}))


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim_node', **kwargs)
        self.parameters = ParameterBinding(self, {'': SimConfig}, check=lambda configs: configs[0].validate(),
                                           apply=lambda configs: self._apply(configs[0]))
        (self.config,) = self.parameters.check()
        config = self.config
        self.world = config.make_world()
        self.spec = command_spec(config.command_type, self.world.action_space.names)
        self.action = np.zeros(self.world.action_space.shape)
        self.episode_seed = config.seed
        self.waiting_for_first_command = True
        self.stamp_ns = 0  # simulated time of the current frame

        self.publishers_by_topic = {topic: self.create_publisher(message_class(msgtype), topic, qos_profile(qos))
                                    for topic, (msgtype, qos) in SIM_TOPICS.items()
                                    if topic != 'joint_states' or self.world.joint_state() is not None}
        self.create_subscription(command_class(config.command_type), 'command', self._on_command,
                                 qos_profile(COMMAND_QOS))
        self.create_service(Trigger, 'reset', self._on_reset)
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
        except ActionError as err:
            self.get_logger().warning(f'ignoring command: {err}', throttle_duration_sec=1.0)
            return
        self.action = self.world.action_space.clip(action)
        self.waiting_for_first_command = False
        if self.config.lock_step:
            self.step()

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
        """Adopt a validated config (only live fields can differ); a new task, seed or goal span resets."""
        previous, self.config = self.config, config
        if (config.task, config.goal_span) != (previous.task, previous.goal_span):
            self.world.close()
            self.world = config.make_world()
        if config.seed != previous.seed:
            self.episode_seed = config.seed
        if (config.task, config.goal_span, config.seed) != (previous.task, previous.goal_span, previous.seed):
            self.start_episode()


def main(args=None) -> int:
    return run_node(SimNode, args, __doc__, cleanup=lambda node: node.world.close())


if __name__ == '__main__':
    raise SystemExit(main())
