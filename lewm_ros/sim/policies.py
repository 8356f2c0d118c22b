"""Data-collection policies: uniform random, and scripted noisy experts with privileged state.

An expert heads for the world's goal; once there it picks a fresh goal of its own (the world's
goal is unchanged), so fixed-length episodes keep moving instead of idling at the goal — idle
frames teach a world model little. Gaussian noise (a fraction of the action range) makes the
data cover more than the expert's ideal paths.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from lewm_ros.sim.push_t import ACTION_SCALE, angle_error, to_world
from lewm_ros.sim.two_room import DOOR_CENTRE, SIZE, SPEED, WALL_BAND, WALL_CENTRE, room_of
from lewm_ros.sim.world import World, wrap_angle


class RandomPolicy:
    """Independent uniform actions over the whole action space."""

    def __init__(self, world: World, seed=None):
        self.world = world
        self.rng = np.random.default_rng(seed)

    def act(self) -> np.ndarray:
        return self.world.action_space.sample(self.rng)


class NoisyExpert(ABC):
    """Goal-seeking expert; subclasses give the noise-free action towards ``self.target``."""

    noise = 0.2  # noise std as a fraction of the half action range

    def __init__(self, world: World, seed=None, retarget: bool = True):
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.retarget = retarget
        self.target = world.goal.copy()

    def new_target(self) -> None:
        """Pick a fresh target of the expert's own (the world's goal is unchanged)."""
        self.target = self.world.sample_goal(self.rng)

    def reached(self, state: np.ndarray) -> bool:
        """Whether ``state`` has reached the current target (then a new one is drawn)."""
        return self.world.solved(state, self.target)

    def act(self) -> np.ndarray:
        space = self.world.action_space
        state = self.world.get_state()
        if self.retarget and self.reached(state):
            self.new_target()
        half_range = (space.high - space.low) / 2.0
        noise = self.rng.normal(0.0, self.noise, size=space.shape) * half_range
        return space.clip(self.clean_action(state) + noise)

    @abstractmethod
    def clean_action(self, state: np.ndarray) -> np.ndarray:
        """The noise-free action from ``state`` towards ``self.target``."""


class TwoRoomExpert(NoisyExpert):
    """Straight to the target in the same room; otherwise line up with the door, then cross.

    Some of its own targets (``careless``, never the world's goal) it heads for in a straight line, walls or
    not, and gives up on after ``patience`` steps. Those are drawn from the image widened by a quarter on
    each side, so that about half lie beyond the border lines and the agent ends pressed against a border
    or into a corner. A careful expert never touches a wall or border, and a world model that has never
    seen one stop the agent imagines walking through it: measured, most failed plans ended pressed against
    the wall (careful data) or in a corner (careless targets in the free space only), the model predicting
    the goal there.
    """

    noise = 0.3
    door_alignment = 4.0  # px of door-centre misalignment tolerated before crossing
    careless = 0.3  # fraction of its own targets headed for in a straight line
    patience = 30  # steps before it gives up on a careless target

    def __init__(self, world: World, seed=None, retarget: bool = True):
        super().__init__(world, seed, retarget)
        self.straight, self.steps_on_target = False, 0

    def new_target(self) -> None:
        self.straight, self.steps_on_target = self.rng.random() < self.careless, 0
        if self.straight:
            self.target = self.rng.uniform(-SIZE / 4, 1.25 * SIZE, size=2)
        else:
            super().new_target()

    def act(self) -> np.ndarray:
        self.steps_on_target += 1
        if self.straight and self.retarget and self.steps_on_target > self.patience:
            self.new_target()
        return super().act()

    def clean_action(self, state: np.ndarray) -> np.ndarray:
        position = state[:2]
        side = room_of(position[0])
        if self.straight or side == room_of(self.target[0]):
            waypoint = self.target[:2]
        elif abs(position[1] - DOOR_CENTRE) > self.door_alignment:
            approach = WALL_BAND[side] + (3.0 if side else -3.0)  # just in front of the doorway
            waypoint = np.array([approach, DOOR_CENTRE])
        else:
            waypoint = np.array([2 * WALL_CENTRE - position[0], DOOR_CENTRE])  # straight through
        return (waypoint - position) / SPEED


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


_EXPERTS = {('two_room', 'navigate'): TwoRoomExpert,
            ('arm', 'reach'): ArmReachExpert,
            ('arm', 'push'): ArmPushExpert,
            ('push_t', 'push'): PushTExpert}
_RANDOM = {'push_t': PushTWeakPolicy}  # a world's own random collection policy, where it has one
POLICIES = ('expert', 'random')


def make_policy(kind: str, world: World, seed=None):
    """``kind`` is 'expert' or 'random'; the expert is chosen by the world's name and task.

    ``seed``: anything ``np.random.default_rng`` takes (an int, a SeedSequence, or None).
    """
    if kind == 'random':
        return _RANDOM.get(world.name, RandomPolicy)(world, seed)
    if kind == 'expert':
        return _EXPERTS[(world.name, world.task)](world, seed)
    raise ValueError(f'unknown policy {kind!r}, expected one of {POLICIES}')
