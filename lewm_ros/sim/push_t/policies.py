"""Push-T's policies: the benchmark's weak collection policy and a scripted pushing expert."""

from __future__ import annotations

import numpy as np

from lewm_ros.sim.policies import NoisyExpert, RandomPolicy
from lewm_ros.sim.push_t.simulator import ACTION_SCALE, angle_error, to_world
from lewm_ros.sim.world import wrap_angle


class PushTWeakPolicy(RandomPolicy):
    """The benchmark's collection policy: a uniform relative action whose target is kept within
    ``reach`` px of the block on each axis, so the agent stays near the block and bumps it often."""

    reach = 100.0

    def act(self) -> np.ndarray:
        world = self.world
        agent, block = world.agent.position, world.block.position
        target = np.clip(np.asarray(agent) + ACTION_SCALE * super().act(), np.asarray(block) - self.reach,
                         np.asarray(block) + self.reach)
        return world.action_space.clip((target - agent) / ACTION_SCALE)


class PushTExpert(NoisyExpert):
    """Pushes the T towards its target pose: behind the block, then through it, off-centre to turn it.

    Each step it picks a push direction ``d`` and a lateral offset of the contact from the centre of
    mass: far from the target pose it pushes along the centre's way to the target, the offset turning
    the block as it goes (a push off the centre line exerts a torque); close to the target position
    but not its angle it pushes across the lever of the bar's end to turn the block. The contact is
    found by casting the agent's disc along ``d`` onto the block (pymunk's segment query). The agent
    goes round the block at a safe radius when the block lies between it and the contact.
    A new target pose of its own is drawn once the block sits within 15 px and 15 degrees of it.
    """

    noise = 0.15
    orbit = 100.0  # px from the block's centre of mass: clear of the T (75 px) plus the agent (15)
    standoff = 6.0  # px behind the contact where the agent starts a push
    push_depth = 25.0  # px per step the push target lies inside the block
    turn_gain = 40.0  # px of lateral contact offset per radian of angle error
    max_offset = 45.0

    def reached(self, state: np.ndarray) -> bool:  # the block's pose only: where the agent is does not matter
        world = self.world
        return bool(np.linalg.norm(world.block_com(state) - world.block_com(self.target)) < 15.0
                    and angle_error(state[4], self.target[4]) < np.deg2rad(15.0))

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        world = self.world
        agent, com = state[:2], world.block_com(state)
        to_goal = world.block_com(self.target) - com
        turn = wrap_angle(self.target[4] - state[4])
        distance = np.linalg.norm(to_goal)
        if distance > 40.0 or (distance > 12.0 and abs(turn) < np.deg2rad(12.0)):
            direction = to_goal / np.linalg.norm(to_goal)
            offset = np.clip(self.turn_gain * turn, -self.max_offset, self.max_offset)
        else:  # in place: push across the lever arm of the bar's end
            lever = to_world(state[2:5], (60.0, 15.0)) - com
            direction = np.sign(turn) * np.array([-lever[1], lever[0]]) / np.linalg.norm(lever)
            offset = np.sign(turn) * np.linalg.norm(lever) * 0.8
        # Pushing along d at a contact offset o * n (n = d turned +90 degrees) gives torque -o (y down).
        normal = np.array([-direction[1], direction[0]])
        aim = com - offset * normal
        contact = world.disc_contact(aim - direction * self.orbit * 1.5, aim)
        if contact is None:  # the offset missed the block: aim at the centre
            contact = world.disc_contact(com - direction * self.orbit * 1.5, com)
        start = contact - direction * self.standoff
        behind = agent - contact
        if np.dot(behind, direction) < 2.0 and abs(np.dot(behind, normal)) < 10.0:
            waypoint = contact + direction * self.push_depth  # in line behind the contact: push
        elif world.disc_contact(agent, start) is None:
            waypoint = start  # a clear way to the push position
        else:  # go round the block, on the side the agent already is
            radial = agent - com
            radial /= max(np.linalg.norm(radial), 1e-6)
            to_start = start - com
            side = np.sign(radial[0] * to_start[1] - radial[1] * to_start[0]) or 1.0
            tangent = side * np.array([-radial[1], radial[0]])
            waypoint = com + self.orbit * radial * 1.1 + tangent * self.orbit * 0.8
        return (waypoint - agent - 0.1 * state[5:7]) / ACTION_SCALE * 2.0


