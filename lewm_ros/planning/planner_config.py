"""planner_node's parameters as one config dataclass (no ROS here: lewm-eval and the tests build it too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lewm_ros.data.commands import COMMAND_TYPES, check_command_type
from lewm_ros.model.device import DEVICES, resolve_device
from lewm_ros.planning.control import LoopSettings
from lewm_ros.planning.mpc import ACTION_KINDS, Actuation
from lewm_ros.settings import check_settings, setting

IMAGE_QOS = ('sensor_data', 'reliable')  # best effort (hears any camera), or reliable


@dataclass
class PlannerConfig:
    """planner_node's own parameters, one to one (the search and the loop around it are ``cem.*`` / ``mpc.*``).
    The action limits and joint names default to the packaged simulated arm's."""

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
                             'or reliable', choices=IMAGE_QOS)
    goal_topic: str = setting('goal_image', 'goal image topic (sensor_msgs/Image, latched or not)')
    goal_image_file: str = setting('', 'goal image file (png/jpg); the goal topic can replace it', live=True)
    command_topic: str = setting('command', 'command topic')
    command_type: str = setting('float64_multi_array', 'command message type', choices=tuple(COMMAND_TYPES))
    command_frame: str = setting('', 'header frame_id of stamped commands (TwistStamped: the frame the twist is '
                                 'in; a UR twist_controller takes base)')
    twist_fields: list[str] = setting([], 'twist commands: the component each leading action dimension drives '
                                      '(a UR5e: linear.x, linear.y, linear.z, angular.z); the dimensions past '
                                      'them go to gripper_topic; [] = linear.x, linear.y, ... for every one')
    gripper_topic: str = setting('', 'twist commands: Float64MultiArray topic of the action dimensions past '
                                 'twist_fields (a gripper), published just before each twist')
    joint_names: list[str] = setting(['shoulder', 'elbow'], 'joints of the action, in order (JointTrajectory '
                                     'commands; joint_states order for position actions)')
    action_kind: str = setting('velocity', 'what the actions are: decides the hold command (zero velocity or the '
                               'measured positions) and the JointTrajectory field', choices=ACTION_KINDS)
    joint_states_topic: str = setting('joint_states', 'measured joint positions (position actions only)')
    action_scale: list[float] = setting([1.0], 'command = scale x planned action (model units -> robot units), '
                                        'then clamped; one value for every dimension, or one per dimension',
                                        low=1e-9, high=1e9, live=True)
    action_low: list[float] = setting([-1.5, -1.5], 'per-dimension command lower limits, robot units', live=True)
    action_high: list[float] = setting([1.5, 1.5], 'per-dimension command upper limits, robot units', live=True)
    control_rate: float = setting(10.0, 'commands per second in real time, Hz', low=0.1, high=1000.0)
    watchdog_timeout: float = setting(1.0, 'seconds without a fresh frame or a requested plan before holding',
                                      low=0.01, high=3600.0, live=True)
    enabled: bool = setting(True, 'false: dry run (plans and diagnostics, no commands)', live=True)
    goal_tolerance: float = setting(0.0, 'latent cost (squared distance of the frame to the goal in the embedding '
                                    'space) at or below which the goal counts as reached: the episode ends and '
                                    'holds; 0 = never (plan on)', low=0.0, high=1e9, live=True)
    goal_plans: int = setting(2, 'plans in a row that must start within goal_tolerance before the goal counts as '
                              'reached', low=1, high=1000, live=True)
    max_duration: float = setting(0.0, 'seconds an episode may last before it ends as timeout and holds; 0 = no '
                                  'limit', low=0.0, high=1e6, live=True)

    def validate(self, action_dim: int | None = None) -> None:
        """Raise ValueError with the reason when a value is invalid (for a model with ``action_dim`` actions,
        when known)."""
        check_settings(self)
        resolve_device(self.device)  # CUDA asked for and absent
        dim = action_dim or len(self.action_low)
        if not len(self.action_low) == len(self.action_high) == dim:
            raise ValueError(f'action_low and action_high need {dim} values each'
                             + (f' (the model has {dim} actions)' if action_dim else '')
                             + f', got {self.action_low} / {self.action_high}')
        if len(self.action_scale) not in (1, dim):
            raise ValueError(f'action_scale needs one value or {dim}, got {self.action_scale}')
        self.actuation()  # limits and scale
        check_command_type(self.command_type, dim, self.action_kind == 'position', self.twist_fields)
        if bool(self.gripper_topic) != (0 < len(self.twist_fields) < dim):
            raise ValueError(f'gripper_topic takes the action dimensions past twist_fields: set both or neither '
                             f'(twist_fields {self.twist_fields} for {dim} dimensions, gripper_topic '
                             f'{self.gripper_topic!r})')
        if (self.command_type == 'joint_trajectory' or self.action_kind == 'position') and \
                len(self.joint_names) != dim:
            raise ValueError(f'joint_names must name the {dim} joints of the action, got {self.joint_names}')
        if self.goal_image_file and not Path(self.goal_image_file).is_file():
            raise ValueError(f'goal_image_file {self.goal_image_file!r} does not exist')

    def actuation(self) -> Actuation:
        return Actuation(np.array(self.action_low), np.array(self.action_high), self.action_scale, self.action_kind)

    def split(self, command: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A command (A,) -> what command_topic carries, and what gripper_topic does (None: no gripper topic)."""
        if not self.gripper_topic:
            return command, None
        return command[:len(self.twist_fields)], command[len(self.twist_fields):]

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(self.lock_step, self.watchdog_timeout, self.enabled, self.goal_tolerance, self.goal_plans,
                            self.max_duration)
