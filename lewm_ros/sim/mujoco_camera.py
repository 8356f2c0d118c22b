"""Frames of a MuJoCo scene from one of its cameras, at any size, for the MuJoCo worlds (arm, cube).

Shadows, reflections and the skybox are off: they cost more than the rest of the frame on a CPU and show the model
nothing it needs. ``render_state`` draws any state (a goal, say) without touching the simulation's own data.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # after the MUJOCO_GL default


class MujocoCamera:
    def __init__(self, model: mujoco.MjModel, camera: str):
        self.model, self.camera = model, camera
        self._scratch = mujoco.MjData(model)  # renders other states undisturbed
        self._renderers: dict[int, mujoco.Renderer] = {}

    def render(self, data: mujoco.MjData, size: int) -> np.ndarray:
        """(size, size, 3) uint8 frame of ``data`` as it is."""
        if size not in self._renderers:
            renderer = mujoco.Renderer(self.model, size, size)
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                         mujoco.mjtRndFlag.mjRND_SKYBOX):
                renderer.scene.flags[flag] = False
            self._renderers[size] = renderer
        renderer = self._renderers[size]
        renderer.update_scene(data, camera=self.camera)
        return renderer.render().copy()

    def render_qpos(self, qpos, size: int) -> np.ndarray:
        """The frame of the positions ``qpos`` (nq,), computed on a scratch copy."""
        self._scratch.qpos[:] = np.asarray(qpos, dtype=np.float64)[:self.model.nq]
        mujoco.mj_kinematics(self.model, self._scratch)
        mujoco.mj_camlight(self.model, self._scratch)
        return self.render(self._scratch, size)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


class MujocoFrames:
    """``render``, ``render_state`` and ``close`` of a World simulated in ``self.data`` and seen by ``self.camera``
    (mixed in before World)."""

    camera: MujocoCamera
    data: mujoco.MjData
    image_size: int

    def render_state(self, state, size: int | None = None) -> np.ndarray:
        return self.camera.render_qpos(state, size or self.image_size)

    def render(self, size: int | None = None) -> np.ndarray:
        return self.camera.render(self.data, size or self.image_size)

    def close(self) -> None:
        self.camera.close()
