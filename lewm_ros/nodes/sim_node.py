"""sim_node: a simulated world (lewm_ros.sim) behind the topics a camera-equipped robot offers.

Publishes (relative names): ``image`` (sensor_msgs/Image rgb8), ``state`` (std_msgs/Float64MultiArray,
the true low-dimensional state), ``success`` (std_msgs/Bool), ``joint_states`` (arm only) and
``goal_image`` (latched: transient-local, sent at every reset).
Subscribes: ``command`` as Float64MultiArray, JointTrajectory (first point's velocities, by joint
name) or TwistStamped, per ``command_type`` (mapping: lewm_ros.sim.commands). Commands are clamped to
the world's limits; malformed ones (NaN, wrong length, unknown joints) are logged and ignored.
Service ``reset`` (std_srvs/Trigger): new episode with the next seed. Setting the ``seed`` or ``task``
parameter also starts a new episode with that seed or task.

Modes:
- real time (default): every 1/``rate_hz`` s the world steps once with the latest command, held
  (zero before the first), and the new frame is published;
- lock step (``lock_step: true``): each valid command steps the world once and the resulting frame is
  published at once; until an episode's first command, its start frame is republished at ``rate_hz``
  so late subscribers get it. Deterministic, for tests and evaluation.
"""

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from lewm_ros.data.actions import ActionError, action_from_message
from lewm_ros.nodes.conversions import COMMAND_CLASSES, float_array_msg, header, rgb_to_image_msg
from lewm_ros.nodes.spinning import init, spin_until_signal
from lewm_ros.sim.commands import COMMAND_TYPES, command_spec
from lewm_ros.sim.registry import WORLDS, make_world, world_class

# name -> (default, description); fixed after start-up unless listed in _LIVE
_PARAMETERS = {
    'world': ('arm', f'world to simulate: {sorted(WORLDS)}'),
    'task': ('', "task of the world ('' = its first: arm reach, two_room navigate); live: resets"),
    'seed': (0, 'seed of the first episode; live: resets with this seed'),
    'image_size': (64, 'rendered image side in pixels (8..512)'),
    'rate_hz': (10.0, 'frame/step rate; real time: the control rate (the world is simulated at its own '
                      'control period per step)'),
    'lock_step': (False, 'one world step per received command instead of stepping at rate_hz'),
    'command_type': ('float64_multi_array', f'command message type: {sorted(COMMAND_TYPES)}'),
    'frame_id': ('camera', 'frame_id of the published images'),
    'goal_span': (0.0, 'arm reach: goals within this many radians of the start per joint (0 = anywhere)'),
}
_LIVE = ('task', 'seed')


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim_node', **kwargs)
        for name, (default, description) in _PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                      read_only=name not in _LIVE))
        problem = self._validate({name: self.get_parameter(name).value for name in _PARAMETERS})
        if problem:
            raise ValueError(f'sim_node: {problem}')
        self.add_on_set_parameters_callback(self._check_update)
        self.add_post_set_parameters_callback(self._apply_update)

        param = self._param
        self.lock_step = param('lock_step')
        goal_span = {'goal_span': param('goal_span')} if param('goal_span') else {}
        self.world = make_world(param('world'), param('task') or None, image_size=param('image_size'), **goal_span)
        self.spec = command_spec(param('command_type'), self.world.action_space.names)
        self.action = np.zeros(self.world.action_space.shape)
        self.episode_seed = param('seed')
        self.waiting_for_first_command = True

        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, 'image', 10)
        self.goal_pub = self.create_publisher(Image, 'goal_image', latched)
        self.state_pub = self.create_publisher(Float64MultiArray, 'state', 10)
        self.success_pub = self.create_publisher(Bool, 'success', 10)
        self.joint_pub = (self.create_publisher(JointState, 'joint_states', 10)
                          if self.world.joint_state() is not None else None)
        self.create_subscription(COMMAND_CLASSES[param('command_type')], 'command', self._on_command, 10)
        self.create_service(Trigger, 'reset', self._on_reset)
        self.create_timer(1.0 / param('rate_hz'), self._on_timer)
        self.start_episode()

    def _param(self, name):
        return self.get_parameter(name).value

    # --- episodes -------------------------------------------------------------------------
    def start_episode(self) -> None:
        self.world.reset(seed=self.episode_seed)
        self.action[:] = 0.0
        self.waiting_for_first_command = True
        self.goal_pub.publish(rgb_to_image_msg(self.world.goal_image(), self.get_clock().now().to_msg(),
                                               self._param('frame_id')))
        self.publish_frame()
        self.get_logger().info(f'episode: world {self.world.name}, task {self.world.task}, '
                               f'seed {self.episode_seed}')

    def _on_reset(self, request, response):
        self.episode_seed += 1
        self.start_episode()
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
        if self.lock_step:
            self.step()

    def _on_timer(self) -> None:
        if not self.lock_step:
            self.step()
        elif self.waiting_for_first_command:
            self.publish_frame()

    def step(self) -> None:
        self.world.step(self.action)
        self.publish_frame()

    def publish_frame(self) -> None:
        stamp = self.get_clock().now().to_msg()
        self.image_pub.publish(rgb_to_image_msg(self.world.render(), stamp, self._param('frame_id')))
        self.state_pub.publish(float_array_msg(self.world.get_state()))
        self.success_pub.publish(Bool(data=self.world.success()))
        if self.joint_pub is not None:
            joints = self.world.joint_state()
            self.joint_pub.publish(JointState(header=header(stamp), name=list(joints.names),
                                              position=joints.position.tolist(),
                                              velocity=joints.velocity.tolist()))

    # --- parameters -----------------------------------------------------------------------
    @staticmethod
    def _validate(values: dict) -> str | None:
        """Why these parameter values are invalid, or None."""
        world = values.get('world', 'arm')
        if world not in WORLDS:
            return f'world must be one of {sorted(WORLDS)}, got {world!r}'
        tasks = world_class(world).tasks
        if values.get('task') and values['task'] not in tasks:
            return f'task must be one of {tasks} for world {world}, got {values["task"]!r}'
        if 'image_size' in values and not 8 <= values['image_size'] <= 512:
            return f'image_size must be in 8..512, got {values["image_size"]}'
        if values.get('goal_span') and not (world == 'arm' and values.get('task', 'reach') in ('', 'reach')
                                            and values['goal_span'] > 0):
            return f'goal_span applies to the arm reach task and must be >= 0, got {values["goal_span"]}'
        if 'seed' in values and values['seed'] < 0:
            return f'seed must be >= 0, got {values["seed"]}'
        if 'rate_hz' in values and not values['rate_hz'] > 0:
            return f'rate_hz must be positive, got {values["rate_hz"]}'
        if values.get('command_type', 'float64_multi_array') not in COMMAND_TYPES:
            return f'command_type must be one of {sorted(COMMAND_TYPES)}, got {values["command_type"]!r}'
        return None

    def _check_update(self, parameters) -> SetParametersResult:
        values = {'world': self.world.name, **{p.name: p.value for p in parameters}}
        problem = self._validate(values)
        return SetParametersResult(successful=problem is None, reason=problem or '')

    def _apply_update(self, parameters) -> None:
        names = {p.name for p in parameters}
        if 'task' in names:
            self.world.close()
            self.world = make_world(self.world.name, self._param('task') or None,
                                    image_size=self._param('image_size'))
        if 'seed' in names:
            self.episode_seed = self._param('seed')
        if names & set(_LIVE):
            self.start_episode()


def main(args=None) -> None:
    init(args)
    node = None
    try:
        node = SimNode()
        spin_until_signal(node)
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.world.close()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
