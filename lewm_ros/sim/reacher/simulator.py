"""Reacher (the DeepMind Control Suite's, LeWM's swm/ReacherDMControl-v0): a torque-driven two-link arm from above.

The model is ``dm_control``'s own (its MJCF and assets, built offline), stepped with plain MuJoCo as its Physics
steps it; the protocol is LeWM's:

- Actions: the two joint torques in [-1, 1] (the motors' ctrlrange, gear 0.05); one step holds the action for
  two physics steps of 0.02 s (0.04 s).
- State (``get_state``/``set_state``, the ``state`` topic): shoulder and wrist angles, then their velocities. The
  shoulder turns without limit (its angle is kept as MuJoCo integrates it, unwrapped); the wrist is limited to
  +-160 degrees. A goal is a state; the goal image is its rendering. Starts and goals are drawn as dm_control
  draws them: the shoulder uniform in [-pi, pi], the wrist uniform in its range, at rest.
- Frames: camera ``fixed`` (top-down), the target sphere not drawn (the goal is the arm pose in the goal image).
- Success (``solved``): both joints within 0.05 rad of the goal's, the shoulder by the shortest angle (a turn of
  2 pi is the same pose). The official check compares the raw angles, so an arm one turn away fails it:
  ``official_solved`` keeps that criterion, for reporting beside ours.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # after the MUJOCO_GL default
from dm_control.suite import reacher as dm_reacher

from lewm_ros.sim.mujoco_camera import MujocoCamera, MujocoFrames
from lewm_ros.sim.world import ActionSpace, JointReading, World, wrap_angle

CAMERA = 'fixed'
ACTION_REPEAT = 2  # physics steps of 0.02 s per control step
JOINTS = ('shoulder', 'wrist')
TOLERANCE = 0.05  # rad, per joint


def joint_errors(state, goal) -> np.ndarray:
    """(shoulder, wrist) angle errors, the shoulder's by the shortest way round (the wrist is limited)."""
    error = np.asarray(goal, np.float64)[:2] - np.asarray(state, np.float64)[:2]
    return np.array([wrap_angle(error[0]), error[1]])


class Reacher(MujocoFrames, World):
    name = 'reacher'
    tasks = ('reach',)
    success_threshold = TOLERANCE
    action_space = ActionSpace(low=-np.ones(2), high=np.ones(2), names=JOINTS)

    def __init__(self, task: str = 'reach', image_size: int = 64, max_steps: int | None = None):
        super().__init__(task, image_size, max_steps)
        xml, assets = dm_reacher.get_model_and_assets()
        self.model = mujoco.MjModel.from_xml_string(xml.decode(), assets)
        self.model.geom_rgba[self.model.geom('target').id, 3] = 0.0  # the goal is shown by the goal image
        self.data = mujoco.MjData(self.model)
        self.control_period = ACTION_REPEAT * self.model.opt.timestep
        self.camera = MujocoCamera(self.model, CAMERA)
        self._arm_material = self.model.geom_matid[self.model.geom('arm').id]  # 'self': the two links only
        self._wrist_range = self.model.jnt_range[self.model.joint('wrist').id].copy()

    # --- World ---------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def set_state(self, state) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (4,) or not np.all(np.isfinite(state)):
            raise ValueError(f'reacher: a state is 4 finite numbers (shoulder, wrist, their velocities), got '
                             f'shape {state.shape}')
        self.data.qpos[:], self.data.qvel[:] = state[:2], state[2:]
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def goal_distance(self, state, goal) -> float:
        """The larger of the two joint errors in rad (the shoulder's by the shortest angle)."""
        return float(np.abs(joint_errors(state, goal)).max())

    def official_solved(self, state, goal) -> bool:
        """The official check: both raw joint angles within 0.05 rad, the shoulder's turns counted."""
        return bool(np.all(np.abs(np.asarray(goal)[:2] - np.asarray(state)[:2]) <= TOLERANCE))

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """At rest, the shoulder uniform in [-pi, pi], the wrist uniform in its range (as dm_control draws it)."""
        return np.array([rng.uniform(-np.pi, np.pi), rng.uniform(*self._wrist_range), 0.0, 0.0])

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        state = self.get_state()
        while True:
            goal = self.sample_state(rng)
            if not self.solved(state, goal):
                return goal

    def _advance(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action
        self.data.qacc_warmstart[:] = 0.0  # the state alone decides the step (the wrist limit's solver warm start)
        mujoco.mj_step(self.model, self.data, nstep=ACTION_REPEAT)
        mujoco.mj_forward(self.model, self.data)  # the frame shows the state reached, not the one before the last step

    def joint_state(self) -> JointReading:
        return JointReading(JOINTS, self.data.qpos.copy(), self.data.qvel.copy())

    # --- the perturbation lewm-physics applies ----------------------------------------------------
    @property
    def arm_color(self) -> np.ndarray:
        """The links' colour, 0..255 per channel (float: what it is set to comes back exactly)."""
        return self.model.mat_rgba[self._arm_material, :3].astype(np.float64) * 255

    @arm_color.setter
    def arm_color(self, rgb) -> None:
        self.model.mat_rgba[self._arm_material, :3] = np.asarray(rgb, np.float64) / 255
