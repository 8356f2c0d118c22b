"""A planar two-link arm on a table (MuJoCo, our own MJCF), seen from above.

Actions are **joint velocities** in rad/s, bounded by the actuators' ``ctrlrange`` (±1.5 rad/s).
Why joint velocities rather than end-effector deltas:

- they are what a ros2_control forward velocity controller takes (Float64MultiArray) and what
  a JointTrajectory point's ``velocities`` carry, so the same commands drive a real arm;
- every action is valid everywhere: no inverse kinematics and no singularities at a stretched or
  folded arm, where end-effector deltas are ill-defined;
- from a top-down camera a joint velocity is a rigid rotation of the links, which is simple for a
  world model to learn from pixels.

Velocity actuators track the command (``implicitfast`` keeps the stiff damping stable with 5
substeps of 20 ms per 0.1 s control step). The shoulder turns freely and its angle is wrapped to
[-π, π); the elbow is limited to ±2.6 rad so the arm never folds onto itself.

Tasks (distances in metres; the arm reaches 0.40 m, the image spans 0.92 m):

- ``reach``: state ``(shoulder, elbow, their velocities)``; the goal is an arm pose shown in the
  goal image (the target is not drawn). Success: fingertip within ``0.05 m`` of the goal pose's
  fingertip (about 3.5 px at 64 px, an eighth of the reach).
- ``push``: state ``(shoulder, elbow, cube x, cube y, cube yaw, then the 5 velocities)``; the goal
  image shows the cube at its goal with the fingertip just behind it. Success: cube centre within
  ``0.04 m`` of its goal position (half the cube's 0.08 m side).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # after the MUJOCO_GL default

from lewm_ros.sim.mujoco_camera import MujocoCamera, MujocoFrames
from lewm_ros.sim.world import ActionSpace, JointReading, World, wrap_angle

ASSET = Path(__file__).with_name('planar_arm.xml')
CAMERA = 'top'
SUBSTEPS = 5
ARM_JOINTS = ('shoulder', 'elbow')
ELBOW_SAMPLE_LIMIT = 2.4  # sample poses a little inside the elbow's ±2.6 rad range
CUBE_HALF_SIZE = 0.04
CUBE_RADII = (0.18, 0.32)  # cube positions are sampled in this ring around the base
PUSH_DISTANCES = (0.08, 0.18)  # how far a push goal lies from the cube's start


class PlanarArm(MujocoFrames, World):
    name = 'arm'
    tasks = ('reach', 'push')
    success_thresholds: ClassVar[dict[str, float]] = {'reach': 0.05, 'push': 0.04}
    options = ('goal_span',)

    def __init__(self, task: str = 'reach', image_size: int = 64, max_steps: int | None = None,
                 goal_span: float | None = None):
        """goal_span: reach goals lie within this many radians of the current pose on each joint (None:
        anywhere). Like the LeWM protocol's goals 25 steps ahead, it keeps goals within one plan's reach."""
        super().__init__(task, image_size, max_steps)
        self.check_options(task, **({} if goal_span is None else {'goal_span': goal_span}))
        self.goal_span = goal_span
        spec = mujoco.MjSpec.from_file(str(ASSET))
        if task == 'reach':
            spec.delete(spec.body('cube'))
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.camera = MujocoCamera(self.model, CAMERA)
        self.success_threshold = self.success_thresholds[task]
        self.control_period = SUBSTEPS * self.model.opt.timestep
        ctrl_range = self.model.actuator_ctrlrange
        self.action_space = ActionSpace(low=ctrl_range[:, 0].copy(), high=ctrl_range[:, 1].copy(),
                                        names=ARM_JOINTS)
        self.link_lengths = (float(self.model.body('forearm').pos[0]),
                             float(self.model.body('fingertip').pos[0]))
        self._free_hinges = [self.model.jnt_qposadr[j] for j in range(self.model.njnt)
                             if self.model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
                             and not self.model.jnt_limited[j]]

    @classmethod
    def check_options(cls, task: str, **options) -> None:
        super().check_options(task, **options)
        span = options.get('goal_span')
        if span is not None and not (task == 'reach' and span > 0):
            raise ValueError(f'goal_span applies to the arm reach task and must be positive, got task {task!r} '
                             f'and goal_span {span}')

    # --- kinematics (shared with the experts) -------------------------------------------
    def fingertip(self, arm_angles) -> np.ndarray:
        shoulder, elbow = arm_angles[0], arm_angles[1]
        upper, fore = self.link_lengths
        return np.array([upper * np.cos(shoulder) + fore * np.cos(shoulder + elbow),
                         upper * np.sin(shoulder) + fore * np.sin(shoulder + elbow)])

    def jacobian(self, arm_angles) -> np.ndarray:
        """d fingertip / d (shoulder, elbow), (2, 2)."""
        shoulder, elbow = arm_angles[0], arm_angles[1]
        upper, fore = self.link_lengths
        s1, c1 = np.sin(shoulder), np.cos(shoulder)
        s12, c12 = np.sin(shoulder + elbow), np.cos(shoulder + elbow)
        return np.array([[-upper * s1 - fore * s12, -fore * s12],
                         [upper * c1 + fore * c12, fore * c12]])

    def inverse_kinematics(self, point, elbow_sign: float = 1.0) -> np.ndarray | None:
        """Arm angles putting the fingertip on ``point``, or None when it is out of reach."""
        upper, fore = self.link_lengths
        cos_elbow = (point @ point - upper**2 - fore**2) / (2.0 * upper * fore)
        if abs(cos_elbow) > 1.0:
            return None
        elbow = elbow_sign * np.arccos(cos_elbow)
        shoulder = np.arctan2(point[1], point[0]) - np.arctan2(fore * np.sin(elbow),
                                                               upper + fore * np.cos(elbow))
        return np.array([wrap_angle(shoulder), elbow])

    def cube_position(self, state) -> np.ndarray:
        return np.asarray(state)[2:4]

    # --- World ---------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def set_state(self, state) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.model.nq + self.model.nv,):
            raise ValueError(f'arm/{self.task}: state must have {self.model.nq + self.model.nv} entries, '
                             f'got shape {state.shape}')
        self.data.qpos[:] = state[:self.model.nq]
        self.data.qvel[:] = state[self.model.nq:]
        self.data.ctrl[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def joint_state(self) -> JointReading:
        return JointReading(ARM_JOINTS, self.data.qpos[:2].copy(), self.data.qvel[:2].copy())

    def goal_distance(self, state, goal) -> float:
        if self.task == 'reach':
            return float(np.linalg.norm(self.fingertip(state) - self.fingertip(goal)))
        return float(np.linalg.norm(self.cube_position(state) - self.cube_position(goal)))

    def _random_arm_angles(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-ELBOW_SAMPLE_LIMIT, ELBOW_SAMPLE_LIMIT)])

    def _random_cube_position(self, rng: np.random.Generator) -> np.ndarray:
        radius, bearing = rng.uniform(*CUBE_RADII), rng.uniform(-np.pi, np.pi)
        return radius * np.array([np.cos(bearing), np.sin(bearing)])

    def _at_rest(self, qpos) -> np.ndarray:
        return np.concatenate([qpos, np.zeros(self.model.nv)])

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        if self.task == 'reach':
            return self._at_rest(self._random_arm_angles(rng))
        cube = self._random_cube_position(rng)
        while True:  # the fingertip must start clear of the cube
            arm = self._random_arm_angles(rng)
            if np.linalg.norm(self.fingertip(arm) - cube) > 3 * CUBE_HALF_SIZE:
                return self._at_rest(np.concatenate([arm, cube, [rng.uniform(-np.pi / 4, np.pi / 4)]]))

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        state = self.get_state()
        while True:
            if self.task == 'reach' and self.goal_span:
                angles = state[:2] + rng.uniform(-self.goal_span, self.goal_span, 2)
                angles[1] = np.clip(angles[1], -ELBOW_SAMPLE_LIMIT, ELBOW_SAMPLE_LIMIT)
                goal = self._at_rest(np.array([wrap_angle(angles[0]), angles[1]]))
            elif self.task == 'reach':
                goal = self._at_rest(self._random_arm_angles(rng))
            else:
                goal = self._push_goal(rng, self.cube_position(state))
            if goal is not None and self.goal_distance(state, goal) > 2 * self.success_threshold:
                return goal

    def _push_goal(self, rng: np.random.Generator, cube) -> np.ndarray | None:
        """Cube moved by a random push; the arm poses just behind it, as at the end of a push."""
        bearing = rng.uniform(-np.pi, np.pi)
        direction = np.array([np.cos(bearing), np.sin(bearing)])
        target = cube + rng.uniform(*PUSH_DISTANCES) * direction
        if not CUBE_RADII[0] <= np.linalg.norm(target) <= CUBE_RADII[1]:
            return None
        arm = self.inverse_kinematics(target - self.push_standoff() * direction, rng.choice([-1.0, 1.0]))
        if arm is None or abs(arm[1]) > ELBOW_SAMPLE_LIMIT:
            return None
        return self._at_rest(np.concatenate([arm, target, [0.0]]))

    def push_standoff(self) -> float:
        """Distance from the cube centre at which the fingertip touches its face."""
        return CUBE_HALF_SIZE + float(self.model.geom('fingertip').size[0]) + 0.01

    def _advance(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        self.data.qpos[self._free_hinges] = wrap_angle(self.data.qpos[self._free_hinges])
        # mj_step leaves positions-derived quantities one substep behind qpos: refresh them so the
        # rendered frame is exactly the reported state (and set_state reproduces it).
        mujoco.mj_forward(self.model, self.data)
