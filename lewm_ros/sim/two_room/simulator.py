"""Two-Room: the LeWM/PLDM navigation world, drawn analytically with numpy at any resolution.

Geometry follows the published 224 px layout. Coordinates are in 224-px units, pixel ``j`` of a
224 px image covering ``[j, j + 1)``:

- white background; black border lines (4 px) at 10–14 and 210–214 on both axes, running across
  the whole image as in the reference renderer;
- a central vertical wall ``[107, 117)`` (centre 112, thickness 10) with one door: rows
  ``[35, 63)`` (centre 49, half-extent 14);
- the agent is a red Gaussian dot (standard deviation = radius = 7); the target is not drawn: the
  goal image is the agent drawn at the goal position, as in the paper.

Dynamics as in the reference: ``position += clip(action, -1, 1) * 5``, the centre kept ``radius``
away from the borders and the wall; the door test looks at the centre's y with a 1.75 px margin,
as the reference does. Success: agent within 16 px of the goal.

At other resolutions each pixel shows the fraction of its area covered by lines and wall (what
an area-average downsampling of the 224 px image would give), and the dot is evaluated at pixel
centres without re-normalisation, so sub-pixel positions stay visible at 64 px.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lewm_ros.sim.world import ActionSpace, World

SIZE = 224.0
BORDER_LINES = ((10.0, 14.0), (210.0, 214.0))
WALL = (107.0, 117.0)
WALL_CENTRE = 112.0
DOOR = (35.0, 63.0)
DOOR_CENTRE = 49.0
DOOR_MARGIN = 1.75
AGENT_RADIUS = 7.0
SPEED = 5.0
SUCCESS_DISTANCE = 16.0
# Where the agent's centre may be: inside the border lines, one radius away from them.
FREE_LOW = BORDER_LINES[0][1] + AGENT_RADIUS
FREE_HIGH = BORDER_LINES[1][0] - AGENT_RADIUS
# The band the centre may only cross through the door.
WALL_BAND = (WALL[0] - AGENT_RADIUS, WALL[1] + AGENT_RADIUS)


def _coverage(start: float, stop: float, size: int) -> np.ndarray:
    """Fraction of each of ``size`` pixels (spanning 0..224) that lies inside ``[start, stop)``."""
    scale = SIZE / size
    edges = np.arange(size + 1) * scale
    overlap = np.clip(np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start), 0.0, None)
    return overlap / scale


@lru_cache(maxsize=8)
def _background(size: int) -> np.ndarray:
    """(size, size) float32 brightness in [0, 1] of the static scene: lines and wall."""
    lines = np.maximum(*(_coverage(a, b, size) for a, b in BORDER_LINES))
    wall_columns = _coverage(*WALL, size)
    door_rows = _coverage(*DOOR, size)
    walls = (1.0 - door_rows)[:, None] * wall_columns[None, :]
    darkness = np.maximum(np.maximum(lines[None, :], lines[:, None]), walls)
    background = (1.0 - darkness).astype(np.float32)
    background.setflags(write=False)
    return background


def in_door(y: float) -> bool:
    return DOOR[0] - DOOR_MARGIN <= y <= DOOR[1] + DOOR_MARGIN


def room_of(x: float) -> int:
    """0 for the left room, 1 for the right one."""
    return int(x >= WALL_CENTRE)


class TwoRoom(World):
    """State: agent position (x, y) in 224-px units. Action: velocity in [-1, 1]^2 (x right, y down)."""

    name = 'two_room'
    tasks = ('navigate',)
    control_period = 0.1
    success_threshold = SUCCESS_DISTANCE
    action_space = ActionSpace(low=-np.ones(2), high=np.ones(2), names=('x', 'y'))

    def __init__(self, task: str = 'navigate', image_size: int = 64, max_steps: int | None = None,
                 agent_color=(255, 0, 0)):
        super().__init__(task, image_size, max_steps)
        self.agent_color = np.asarray(agent_color, dtype=np.float32)
        self.position = np.array([60.0, 112.0])

    def get_state(self) -> np.ndarray:
        return self.position.copy()

    def set_state(self, state) -> None:
        self.position = np.array(state, dtype=np.float64)[:2]

    def goal_distance(self, state, goal) -> float:
        return float(np.hypot(*(np.asarray(state)[:2] - np.asarray(goal)[:2])))

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform over the free space of both rooms (never inside the wall band)."""
        while True:
            position = rng.uniform(FREE_LOW, FREE_HIGH, size=2)
            if not WALL_BAND[0] < position[0] < WALL_BAND[1]:
                return position

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        while True:
            goal = self.sample_state(rng)
            if self.goal_distance(self.position, goal) > SUCCESS_DISTANCE:
                return goal

    def _advance(self, action: np.ndarray) -> None:
        self.position = self.move(self.position, action * SPEED)

    @staticmethod
    def move(position: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Move by ``delta`` and resolve collisions with the borders and the wall."""
        x, y = np.clip(position + delta, FREE_LOW, FREE_HIGH)
        if WALL_BAND[0] < x < WALL_BAND[1] and not in_door(y):
            if WALL_BAND[0] < position[0] < WALL_BAND[1]:
                # Already in the doorway: slide along it rather than through its frame.
                y = np.clip(y, DOOR[0] - DOOR_MARGIN, DOOR[1] + DOOR_MARGIN)
            else:
                x = WALL_BAND[0] if room_of(position[0]) == 0 else WALL_BAND[1]
        return np.array([x, y])

    def render_state(self, state, size: int | None = None) -> np.ndarray:
        size = size or self.image_size
        centres = (np.arange(size) + 0.5) * (SIZE / size)
        x, y = np.asarray(state, dtype=np.float64)[:2]
        two_sigma_sq = 2.0 * AGENT_RADIUS**2
        alpha = np.outer(np.exp(-((centres - y) ** 2) / two_sigma_sq),
                         np.exp(-((centres - x) ** 2) / two_sigma_sq)).astype(np.float32)
        background = _background(size)
        image = (background * (1.0 - alpha) * 255.0)[..., None] + alpha[..., None] * self.agent_color
        return np.rint(image).astype(np.uint8)
