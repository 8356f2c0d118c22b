"""The arm's scripted experts: joint-space reaching, and pushing the cube from behind."""

from __future__ import annotations

import numpy as np

from lewm_ros.sim.policies import NoisyExpert
from lewm_ros.sim.world import wrap_angle


class ArmReachExpert(NoisyExpert):
    """Proportional control in joint space, the shoulder taking the short way round."""

    gain = 1.0  # fraction of the joint error closed per control period (before clipping)

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        error = wrap_angle(self.target[:2] - state[:2])
        error[1] = self.target[1] - state[1]  # the elbow is limited: no wrapping
        return self.gain * error / self.world.control_period


class ArmPushExpert(NoisyExpert):
    """Fingertip behind the cube (opposite the goal), then push along the cube-to-goal line.

    Fingertip velocities become joint velocities through the damped inverse Jacobian.
    """

    noise = 0.15
    speed = 0.3  # m/s of the fingertip
    aligned = 0.02  # m: close enough to the push position to start pushing

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        world = self.world
        cube = world.cube_position(state)
        fingertip = world.fingertip(state)
        to_goal = world.cube_position(self.target) - cube
        push_direction = to_goal / max(np.linalg.norm(to_goal), 1e-6)
        behind = cube - world.push_standoff() * push_direction
        offset = fingertip - cube
        if np.linalg.norm(fingertip - behind) < self.aligned:
            waypoint = cube + push_direction * world.push_standoff()
        elif offset @ push_direction > -0.5 * world.push_standoff():
            # On the wrong side: go round the cube, on the side the fingertip already is.
            side = np.array([-push_direction[1], push_direction[0]])
            side *= np.sign(offset @ side) or 1.0
            waypoint = cube + 2.0 * world.push_standoff() * (side - push_direction)
        else:
            waypoint = behind
        velocity = waypoint - fingertip
        velocity *= min(self.speed, np.linalg.norm(velocity) / world.control_period) / max(
            np.linalg.norm(velocity), 1e-6)
        jacobian = world.jacobian(state)
        joint_velocity = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + 1e-3 * np.eye(2), velocity)
        # Scale rather than clip per joint, which would bend the fingertip's path.
        return joint_velocity / max(1.0, np.max(np.abs(joint_velocity) / world.action_space.high))


