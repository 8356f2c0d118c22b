"""Two-Room's scripted expert: through the door when the target is in the other room."""

from __future__ import annotations

import numpy as np

from lewm_ros.sim.policies import NoisyExpert
from lewm_ros.sim.two_room.simulator import DOOR_CENTRE, SIZE, SPEED, WALL_BAND, WALL_CENTRE, room_of
from lewm_ros.sim.world import World


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


