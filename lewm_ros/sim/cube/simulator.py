"""OGBench-Cube (``cube-single``, LeWM's swm/OGBCube-v0): a UR5e with a Robotiq 2F-85 gripper moves a cube.

The scene, the arm's controller and the collection oracle are the benchmark's own (the ``ogbench`` package, which
builds them offline); the state, goals, rendering and stepping are ours, to the LeWM protocol:

- Actions: 5-D in [-1, 1] per 0.05 s step: the end effector's (pinch site's) dx, dy, dz up to 0.05 m, dyaw up to
  0.3 rad and a change of gripper opening up to 1. ogbench clips the target pose to the workspace
  [0.25, -0.35, 0.02]..[0.6, 0.35, 0.35] and turns it into joint position targets for the PD actuators by
  differential IK; then 25 physics steps of 0.002 s. (The action itself is clipped to [-1, 1] by ``World.step``.)
- State (``get_state``/``set_state``, the ``state`` topic): MuJoCo ``qpos`` (21: 6 arm joints, 8 gripper joints,
  the cube's free joint: xyz, then a wxyz quaternion) then ``qvel`` (20). A goal is a state; the goal image is
  its rendering.
- Success: the cube within 0.04 m of the goal state's cube position, orientation ignored.
- Frames: camera ``front_pixels``, the arm opaque (LeWM's data, not ogbench's 10%-alpha arm), the target marker
  invisible. Shadows, reflections, the skybox and multisampling are off at every size: the scene's 185k triangles
  rendered at about 2.5 frames/s with ogbench's defaults on one core here, and about 35 without them.

Two departures from ogbench's stepping, so that a state alone decides the next step (``set_state(get_state())``
reproduces it bit for bit, which the oracle's rollouts need): the solver's warm start is cleared before each
step, and positions-derived quantities are refreshed after it (ogbench reads the pinch site one substep late).
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # after the MUJOCO_GL default
from ogbench.manipspace import lie
from ogbench.manipspace.envs.cube_env import CubeEnv

from lewm_ros.sim.mujoco_camera import MujocoCamera, MujocoFrames
from lewm_ros.sim.world import ActionSpace, JointReading, Twist, World

CAMERA = 'front_pixels'
CONTROL_PERIOD = 0.05
MAX_MOVE, MAX_YAW = 0.05, 0.3  # m and rad per step at action 1 (ogbench's action range)
SUBSTEPS = 25  # physics steps of 0.002 s
CUBE_HALF_SIZE = 0.02
GRIPPER_JOINT = 'right_driver_joint'  # the driver joint: 0 open .. 0.8 rad closed
CUBE_QPOS = slice(14, 21)  # the cube's free joint in qpos: xyz, then wxyz
MAX_RENDER_SIZE = 512


def cube_position(state) -> np.ndarray:
    return np.asarray(state)[CUBE_QPOS][:3]


def cube_distance(state, goal) -> float:
    """Metres between the cube's positions in two states (the task distance)."""
    return float(np.linalg.norm(cube_position(state) - cube_position(goal)))


class Cube(MujocoFrames, World):
    name = 'cube'
    tasks = ('single',)
    control_period = CONTROL_PERIOD
    success_threshold = 0.04
    action_space = ActionSpace(low=-np.ones(5), high=np.ones(5), names=('dx', 'dy', 'dz', 'dyaw', 'gripper'))
    # As a UR5e's twist_controller takes it: m/s and rad/s about z in the arm's base frame (here the scene's
    # frame: the arm stands at its origin), the gripper's opening change on its own topic.
    twist = Twist(fields=('linear.x', 'linear.y', 'linear.z', 'angular.z'), per_unit=(1.0, 1.0, 1.0, 6.0),
                  frame='base')  # MAX_MOVE and MAX_YAW per CONTROL_PERIOD

    def __init__(self, task: str = 'single', image_size: int = 64, max_steps: int | None = None):
        super().__init__(task, image_size, max_steps)
        if image_size > MAX_RENDER_SIZE:
            raise ValueError(f'cube renders at most {MAX_RENDER_SIZE} px, got {image_size}')
        self.env = CubeEnv(env_type='single', ob_type='pixels', mode='data_collection', pixel_transparent_arm=False,
                           visualize_info=False, width=image_size, height=image_size)
        self.env.reset(seed=0)  # builds and compiles the scene
        self.model, self.data = self.env.model, self.env.data
        self.model.vis.quality.offsamples = 0  # no multisampling (with no shadows: the same look at every size)
        self.model.vis.global_.offwidth = self.model.vis.global_.offheight = MAX_RENDER_SIZE
        self.camera = MujocoCamera(self.model, CAMERA)
        self._cube_geoms = np.array(self.env._cube_geom_ids_list[0])
        self._arm_qpos = self.model.jnt_qposadr[self.env._arm_joint_ids]
        self._arm_dofs = self.model.jnt_dofadr[self.env._arm_joint_ids]
        self._joint_names = (*(self.model.joint(j).name.split('/')[-1] for j in self.env._arm_joint_ids), GRIPPER_JOINT)
        self._gripper = self.model.joint(f'ur5e/robotiq/{GRIPPER_JOINT}')
        self._target_mocap = self.env._cube_target_mocap_ids[0]

    # --- World ---------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def set_state(self, state) -> None:
        state = np.asarray(state, dtype=np.float64)
        nq, nv = self.model.nq, self.model.nv
        if state.shape != (nq + nv,) or not np.all(np.isfinite(state)):
            raise ValueError(f'cube: a state is {nq + nv} finite numbers (qpos then qvel), got shape {state.shape}')
        self.data.qpos[:], self.data.qvel[:] = state[:nq], state[nq:]
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def goal_distance(self, state, goal) -> float:
        """Metres between the cube's positions."""
        return cube_distance(state, goal)

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """The arm at a random pose above the table (gripper down, open), the cube at rest somewhere on it."""
        qpos = np.zeros(self.model.nq)
        qpos[self._arm_qpos] = self._arm_pose(rng)
        qpos[CUBE_QPOS] = self._cube_pose(rng)
        return np.concatenate([qpos, np.zeros(self.model.nv)])

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """The cube moved elsewhere on the table (more than two success radii), the arm at a new random pose."""
        state = self.get_state()
        while True:
            goal = self.sample_state(rng)
            if self.goal_distance(state, goal) > 2 * self.success_threshold:
                return goal

    def _arm_pose(self, rng: np.random.Generator) -> np.ndarray:
        """Joint angles putting the pinch site at a random point of ogbench's start box, pointing down at a random
        yaw."""
        env = self.env
        rotation = lie.SO3.from_z_radians(rng.uniform(-np.pi, np.pi)) @ env._effector_down_rotation
        pinch = lie.SE3.from_rotation_and_translation(rotation, rng.uniform(*env._arm_sampling_bounds))
        attach = pinch @ env._T_pa
        return env._ik.solve(pos=attach.translation(), quat=attach.rotation().wxyz, curr_qpos=env._home_qpos)

    def _cube_pose(self, rng: np.random.Generator) -> np.ndarray:
        """Resting on the table in ogbench's object box, at a random yaw."""
        xy, yaw = rng.uniform(*self.env._object_sampling_bounds), rng.uniform(0, 2 * np.pi)
        return np.concatenate([xy, [CUBE_HALF_SIZE], lie.SO3.from_z_radians(yaw).wxyz])

    def _advance(self, action: np.ndarray) -> None:
        env = self.env
        env.set_control(action)  # ogbench: the target pose, clipped to the workspace, through the IK to ctrl
        env.pre_step()
        self.data.qacc_warmstart[:] = 0.0  # the state alone decides the step
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        mujoco.mj_forward(self.model, self.data)  # positions-derived quantities of the reported state
        mujoco.mj_rnePostConstraint(self.model, self.data)  # contact forces (the oracle reads the gripper's)
        env.post_step()

    def joint_state(self) -> JointReading:
        positions = np.append(self.data.qpos[self._arm_qpos], self.data.qpos[self._gripper.qposadr[0]])
        velocities = np.append(self.data.qvel[self._arm_dofs], self.data.qvel[self._gripper.dofadr[0]])
        return JointReading(self._joint_names, positions, velocities)

    # --- the oracle's target (a mocap body, never drawn) --------------------------------------------
    def set_target(self, goal) -> None:
        """Put ogbench's target marker, which its oracle heads for, at the goal state's cube pose."""
        pose = np.asarray(goal)[CUBE_QPOS]
        self.data.mocap_pos[self._target_mocap], self.data.mocap_quat[self._target_mocap] = pose[:3], pose[3:]

    # --- rendering -------------------------------------------------------------------------------
    @property
    def cube_color(self) -> tuple[int, int, int]:
        return tuple(round(255 * float(c)) for c in self.model.geom_rgba[self._cube_geoms[0], :3])

    @cube_color.setter
    def cube_color(self, rgb) -> None:
        self.model.geom_rgba[self._cube_geoms, :3] = np.asarray(rgb, np.float32) / 255.0

    def close(self) -> None:
        super().close()
        self.env.close()
