"""sim_node over real DDS, as its own process: lock-step answers, bad commands, reset, parameters."""

import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from lewm_ros.data.images import image_to_rgb  # noqa: E402
from lewm_ros.nodes.sim_node import SimNode  # noqa: E402
from lewm_ros.sim import make_world  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT = 20.0


def start_sim_node(namespace, **parameters):
    arguments = [part for name, value in parameters.items() for part in ('-p', f'{name}:={value}')]
    return subprocess.Popen([sys.executable, '-m', 'lewm_ros.nodes.sim_node', '--ros-args',
                             '-r', f'__ns:=/{namespace}', *arguments])


class Probe:
    """A test node that sends commands and collects what sim_node publishes."""

    def __init__(self, namespace, command_type, sim_process):
        self.sim_process = sim_process
        self.node = rclpy.create_node('probe', namespace=namespace)
        self.images, self.goals = [], []
        self.node.create_subscription(Image, 'image', lambda m: self.images.append(image_to_rgb(m).copy()), 50)
        latched = rclpy.qos.QoSProfile(depth=1, durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Image, 'goal_image', lambda m: self.goals.append(image_to_rgb(m)), latched)
        self.commands = self.node.create_publisher(command_type, 'command', 10)
        self.reset = self.node.create_client(Trigger, 'sim_node/reset')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def wait_for(self, condition, what):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert self.sim_process.poll() is None, f'sim_node exited while waiting for {what}'
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_image(self, expected, what):
        """Wait until a frame equal to ``expected`` arrives; frames before it are dropped."""
        def arrived():
            while self.images:
                if np.array_equal(self.images.pop(0), expected):
                    return True
            return False
        self.wait_for(arrived, what)

    def send(self, msg):
        self.commands.publish(msg)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_lock_step_arm_answers_each_command_with_the_next_frame(ros):
    process = start_sim_node('lockstep_arm', world='arm', lock_step='true', seed=3)
    probe = Probe('lockstep_arm', Float64MultiArray, process)
    world = make_world('arm', 'reach')
    try:
        world.reset(seed=3)
        probe.wait_for_image(world.render(), 'the start frame (seed 3)')
        probe.wait_for(lambda: probe.goals, 'the latched goal image')
        np.testing.assert_array_equal(probe.goals[-1], world.goal_image())
        probe.wait_for(lambda: probe.commands.get_subscription_count(), 'sim_node to subscribe to command')

        probe.send(Float64MultiArray(data=[1.0, -0.5]))
        world.step([1.0, -0.5])
        probe.wait_for_image(world.render(), 'the frame after one command')

        # malformed commands are ignored: the next good one is exactly one more step
        probe.send(Float64MultiArray(data=[float('nan'), 0.0]))
        probe.send(Float64MultiArray(data=[1.0, 0.0, 0.0]))
        probe.send(Float64MultiArray(data=[5.0, -5.0]))  # clamped to ±1.5 rad/s
        world.step([1.5, -1.5])
        probe.wait_for_image(world.render(), 'the frame after a clamped command')
    finally:
        probe.close()
        stop(process)
        world.close()


@pytest.mark.parametrize('name, sent, applied', [
    ('push_t', [3.0, -0.25], [1.0, -0.25]),  # relative targets, clamped to [-1, 1]
    ('cube', [0.5, -2.0, 0.0, 0.3, 1.0], [0.5, -1.0, 0.0, 0.3, 1.0]),  # end-effector deltas and the gripper
    ('reacher', [2.0, -0.5], [1.0, -0.5]),  # joint torques, clamped to the motors' range
])
def test_a_world_runs_in_sim_node_unchanged(ros, name, sent, applied):
    """Another world over real DDS: the frames are the world's, its commands clamped to its action space."""
    process = start_sim_node(f'lockstep_{name}', world=name, lock_step='true', seed=4)
    probe = Probe(f'lockstep_{name}', Float64MultiArray, process)
    world = make_world(name)
    try:
        world.reset(seed=4)
        probe.wait_for_image(world.render(), 'the start frame (seed 4)')
        probe.wait_for(lambda: probe.commands.get_subscription_count(), 'sim_node to subscribe to command')
        probe.send(Float64MultiArray(data=sent))
        world.step(applied)
        probe.wait_for_image(world.render(), 'the frame after a clamped action')
    finally:
        probe.close()
        stop(process)
        world.close()


def test_joint_trajectory_commands_and_reset_service(ros):
    process = start_sim_node('lockstep_room', world='two_room', lock_step='true', seed=10,
                             command_type='joint_trajectory')
    probe = Probe('lockstep_room', JointTrajectory, process)
    world = make_world('two_room')

    def trajectory(names, velocities):
        return JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(velocities=velocities)])
    try:
        world.reset(seed=10)
        probe.wait_for_image(world.render(), 'the start frame (seed 10)')
        probe.wait_for(lambda: probe.commands.get_subscription_count(), 'sim_node to subscribe to command')
        probe.send(trajectory(['shoulder', 'elbow'], [1.0, 1.0]))  # wrong joint names: ignored
        probe.send(trajectory(['y', 'x'], [0.2, -1.0]))  # joints are matched by name
        world.step([-1.0, 0.2])
        probe.wait_for_image(world.render(), 'the frame after a JointTrajectory command')

        probe.wait_for(lambda: probe.reset.service_is_ready(), 'the reset service')
        future = probe.reset.call_async(Trigger.Request())
        probe.wait_for(future.done, 'the reset answer')
        assert future.result().success and 'seed 11' in future.result().message
        world.reset(seed=11)
        probe.wait_for_image(world.render(), 'the start frame of the next seed')
    finally:
        probe.close()
        stop(process)


def test_parameters_are_validated_and_twist_commands_step(ros):
    with pytest.raises(ValueError, match='world'):
        SimNode(parameter_overrides=[Parameter('world', value='moon')])
    node = SimNode(parameter_overrides=[Parameter('world', value='two_room'), Parameter('lock_step', value=True),
                                        Parameter('command_type', value='twist_stamped')])
    world = make_world('two_room')
    try:
        refused = node.set_parameters([Parameter('task', value='push')])[0]
        assert not refused.successful and 'task' in refused.reason
        refused = node.set_parameters([Parameter('image_size', value=128)])[0]
        assert not refused.successful and 'start-up' in refused.reason
        assert node.set_parameters([Parameter('seed', value=42)])[0].successful
        world.reset(seed=42)
        np.testing.assert_array_equal(node.world.state, world.state)

        command = TwistStamped()
        command.twist.linear.x, command.twist.linear.y = 0.5, -1.0
        node._on_command(command)  # lock step: the command is one step
        world.step([0.5, -1.0])
        np.testing.assert_array_equal(node.world.state, world.state)

        node.config = dataclasses.replace(node.config, lock_step=False)  # real time: commands held, the timer steps
        command.twist.linear.x = -1.0
        node._on_command(command)
        np.testing.assert_array_equal(node.world.state, world.state)
        for _ in range(2):
            node._on_timer()
            world.step([-1.0, -1.0])
        np.testing.assert_array_equal(node.world.state, world.state)
    finally:
        node.world.close()
        node.destroy_node()


def test_the_simulated_ur5e_takes_twists_in_its_base_frame_and_its_gripper_on_its_own_topic(ros):
    """As a UR5e's twist_controller: m/s and rad/s about z in `base`; a twist in another frame is refused."""
    process = start_sim_node('twist_cube', world='cube', lock_step='true', seed=4, command_type='twist_stamped')
    probe = Probe('twist_cube', TwistStamped, process)
    gripper = probe.node.create_publisher(Float64MultiArray, 'gripper_command', 10)
    states = []
    probe.node.create_subscription(Float64MultiArray, 'state', lambda m: states.append(np.array(m.data)), 50)
    world = make_world('cube')

    def stepped(action, what):  # the state, not the frame: a gripper's first step does not show at 64 px
        world.step(action)
        probe.wait_for(lambda: any(np.array_equal(state, world.get_state()) for state in states), what)

    def twist(frame, vx, vz, yaw_rate):
        msg = TwistStamped()
        msg.header.frame_id = frame
        msg.twist.linear.x, msg.twist.linear.z, msg.twist.angular.z = vx, vz, yaw_rate
        msg.twist.angular.x = 9.0  # not a component this arm takes: ignored
        return msg
    try:
        world.reset(seed=4)
        probe.wait_for_image(world.render(), 'the start frame (seed 4)')
        probe.wait_for(lambda: probe.commands.get_subscription_count() and gripper.get_subscription_count(),
                       'sim_node to subscribe to the twist and the gripper')
        gripper.publish(Float64MultiArray(data=[-1.0]))  # close: held for the next twists (no step by itself)
        deadline = time.monotonic() + 0.5
        probe.wait_for(lambda: time.monotonic() > deadline, 'the gripper command to arrive')
        probe.send(twist('tool0', 0.5, 0.0, 0.0))  # another frame: ignored
        probe.send(twist('base', 0.5, -0.25, 1.5))  # 0.025 m forward, 0.0125 m down, 0.075 rad per 0.05 s step
        stepped([0.5, 0.0, -0.25, 0.25, -1.0], 'the state after one twist')
        probe.send(twist('', 2.0, 0.0, 0.0))  # no frame: the arm's own; clamped to 1 m/s (0.05 m per step)
        stepped([1.0, 0.0, 0.0, 0.0, -1.0], 'the state after a clamped twist')
        # the start state (republished until the first step) and two steps: the twist in another frame stepped nothing
        assert len({state.tobytes() for state in states}) == 3
    finally:
        probe.close()
        stop(process)
        world.close()
