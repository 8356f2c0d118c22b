"""Push-T: push a T-shaped block with a disc, the benchmark LeWM reports first (swm/PushT-v1).

Our own pymunk (>= 7) implementation of the stable-worldmodel ``PushT-v1`` world (itself the
diffusion-policy Push-T), matched to it numerically. Units are pixels of the 512 x 512 workspace, y
pointing down as in the image.

- The agent is a kinematic disc (radius 15): collisions never slow it, it passes through the walls,
  and a PD controller (k_p 100, k_v 20) steers it towards ``target = position + 100 * action`` over 10
  physics steps of 0.01 s per 10 Hz control step (the target is computed once per control step).
- The block is a T (bar 120 x 30, stem 30 x 90, mass 1) whose position is the middle of the bar's
  outer edge; space damping 0 removes its velocity at every physics step, so it moves only while
  pushed (quasi-static pushing). Contacts have no friction and no restitution, as in the reference
  (which sets ``friction`` on the bodies, where pymunk ignores it).
- Four static wall segments (radius 2) between 5 and 506 only stop the block.
- State ``(agent x, agent y, block x, block y, block angle mod 2 pi, agent vx, agent vy)``.
  ``set_state`` places the bodies and runs one physics step with the stored agent velocity, as the
  reference does (the agent may land a few pixels off when it moves).
- Success: ``||(agent xy, block xy) - goal||_2 < 20`` (one 4-D norm) and the block angle within
  pi/9 of the goal's, angles compared modulo 2 pi.
- Frames: the fixed light-green goal T at (256, 256, pi/4) under the block and agent in every
  frame (it is scenery, not the evaluation goal, which is a state shown by the goal image), drawn at
  512 px and resized to 224 px as the reference does, then area-resized to ``image_size``.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pymunk

from lewm_ros.sim.world import ActionSpace, World

WORKSPACE = 512
RENDER_SIZE = 224
ACTION_SCALE = 100.0  # px of target offset per unit action
KP, KV = 100.0, 20.0
DT = 0.01
SUBSTEPS = 10  # physics steps per 10 Hz control step
AGENT_RADIUS = 15.0
T_SCALE = 30.0
BAR = ((-2 * T_SCALE, T_SCALE), (2 * T_SCALE, T_SCALE), (2 * T_SCALE, 0.0), (-2 * T_SCALE, 0.0))
STEM = ((-T_SCALE / 2, T_SCALE), (-T_SCALE / 2, 4 * T_SCALE), (T_SCALE / 2, 4 * T_SCALE), (T_SCALE / 2, T_SCALE))
WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
WALL_RADIUS = 2.0
GOAL_POSE = (256.0, 256.0, np.pi / 4)  # the drawn goal T
AGENT_START = (50.0, 450.0)
BLOCK_START = (100.0, 400.0)
SUCCESS_DISTANCE = 20.0
SUCCESS_ANGLE = np.pi / 9
# Colours (RGB): CSS names the reference uses; pymunk's debug drawing fills shapes lighter than
# their outline colour, which these reproduce.
BACKGROUND = (255, 255, 255)
GOAL_GREEN = (144, 238, 144)  # LightGreen
BLOCK_FILL, BLOCK_EDGE = (143, 163, 184), (119, 136, 153)  # LightSlateGray outline
AGENT_FILL, AGENT_EDGE = (78, 126, 255), (65, 105, 225)  # RoyalBlue outline
WALL_GREY = (211, 211, 211)  # LightGray
EDGE_PX = 4  # outline width at 512 px


def to_world(pose, points) -> np.ndarray:
    """Points (..., 2) in the block's body coordinates -> workspace pixels, for a block pose (x, y, angle)."""
    x, y, angle = pose
    c, s = np.cos(angle), np.sin(angle)
    return np.asarray(points, dtype=np.float64) @ np.array([[c, s], [-s, c]]) + (x, y)


def t_outline(pose) -> list[np.ndarray]:
    """The T's two rectangles (bar, stem) as (4, 2) world-pixel polygons for a pose (x, y, angle)."""
    return [to_world(pose, part) for part in (BAR, STEM)]


def angle_error(a, b) -> float:
    """Absolute angle difference modulo 2 pi, in [0, pi]."""
    d = abs(float(a) - float(b)) % (2 * np.pi)
    return min(d, 2 * np.pi - d)


def _fixed(points, shift: int) -> np.ndarray:
    """Pixel coordinates as OpenCV's fixed-point integers with ``shift`` fractional bits."""
    return np.rint(np.asarray(points) * (1 << shift)).astype(np.int32)


@cache
def _scenery() -> np.ndarray:
    """The 512 px background with the goal T, drawn once (read-only)."""
    canvas = np.empty((WORKSPACE, WORKSPACE, 3), np.uint8)
    canvas[:] = BACKGROUND
    cv2.fillPoly(canvas, [_fixed(p, 4) for p in t_outline(GOAL_POSE)], GOAL_GREEN, cv2.LINE_8, 4)
    canvas.setflags(write=False)
    return canvas


class PushT(World):
    """State (agent xy, block xy, block angle, agent velocity xy); action: relative target in [-1, 1]^2."""

    name = 'push_t'
    tasks = ('push',)
    control_period = SUBSTEPS * DT
    success_threshold = SUCCESS_DISTANCE
    action_space = ActionSpace(low=-np.ones(2), high=np.ones(2), names=('x', 'y'))
    restores_exactly = False  # set_state runs one physics step with the stored velocity, as the reference does

    def __init__(self, task: str = 'push', image_size: int = 64, max_steps: int | None = None,
                 block_color=BLOCK_FILL):
        super().__init__(task, image_size, max_steps)
        self.block_color = tuple(int(c) for c in block_color)
        self.space = pymunk.Space()
        self.space.gravity = 0, 0
        self.space.damping = 0.0
        self.space.add(*(pymunk.Segment(self.space.static_body, a, b, WALL_RADIUS) for a, b in WALLS))
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self.space.add(self.agent, pymunk.Circle(self.agent, AGENT_RADIUS))
        # The reference sums the bar's moment twice (it passes the bar's vertices for the stem too).
        self.block = pymunk.Body(1.0, 2 * pymunk.moment_for_poly(1.0, BAR))
        bar, stem = pymunk.Poly(self.block, BAR), pymunk.Poly(self.block, STEM)
        self.block.center_of_gravity = ((bar.center_of_gravity.x + stem.center_of_gravity.x) / 2,
                                        (bar.center_of_gravity.y + stem.center_of_gravity.y) / 2)
        self.space.add(self.block, bar, stem)
        self.set_state(np.array([256.0, 400.0, 400.0, 100.0, 0.0, 0.0, 0.0]))

    def get_state(self) -> np.ndarray:
        return np.array([*self.agent.position, *self.block.position, self.block.angle % (2 * np.pi),
                         *self.agent.velocity])

    def set_state(self, state) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape[-1] not in (5, 7) or not np.all(np.isfinite(state)):
            raise ValueError(f'push_t: a state is 5 or 7 finite numbers, got {state!r}')
        self.agent.velocity = tuple(state[5:7]) if len(state) == 7 else (0.0, 0.0)
        self.agent.position = tuple(state[:2])
        self.block.angle = float(state[4])
        self.block.position = tuple(state[2:4])
        self.space.step(DT)  # as the reference: let the placement take effect

    def _advance(self, action: np.ndarray) -> None:
        target = np.asarray(self.agent.position) + ACTION_SCALE * action
        for _ in range(SUBSTEPS):
            velocity = np.asarray(self.agent.velocity)
            acceleration = KP * (target - np.asarray(self.agent.position)) - KV * velocity
            self.agent.velocity = tuple(velocity + acceleration * DT)
            self.space.step(DT)

    def goal_distance(self, state, goal) -> float:
        """The 4-D distance of (agent xy, block xy) in workspace pixels."""
        return float(np.linalg.norm(np.asarray(state)[:4] - np.asarray(goal)[:4]))

    def solved(self, state, goal) -> bool:
        return (self.goal_distance(state, goal) < SUCCESS_DISTANCE
                and angle_error(state[4], goal[4]) < SUCCESS_ANGLE)

    def goal_cost(self, state, goal) -> float:
        """The 4-D distance over 20 px plus the angle error over 20 degrees: each term 1 at its success limit."""
        return self.goal_distance(state, goal) / SUCCESS_DISTANCE + angle_error(state[4], goal[4]) / SUCCESS_ANGLE

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        agent = rng.uniform(*AGENT_START, size=2)
        block = rng.uniform(*BLOCK_START, size=2)
        return np.array([*agent, *block, rng.uniform(-2 * np.pi, 2 * np.pi), 0.0, 0.0])

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        while True:
            goal = self.sample_state(rng)
            if not self.solved(self.get_state(), goal):
                return goal

    def block_moved(self, start, goal) -> bool:
        """Whether the block moves more than 20 px or turns more than 20 degrees from start to goal."""
        start, goal = np.asarray(start), np.asarray(goal)
        return bool(np.linalg.norm(goal[2:4] - start[2:4]) > 20.0
                    or angle_error(start[4], goal[4]) > np.deg2rad(20.0))

    def block_com(self, state) -> np.ndarray:
        """The block's centre of mass in workspace pixels for the block pose of ``state``."""
        return to_world(state[2:5], tuple(self.block.center_of_gravity))

    def disc_contact(self, start, end) -> np.ndarray | None:
        """Where the agent's centre first touches the block moving from ``start`` to ``end`` (None: never)."""
        hits = [shape.segment_query(tuple(start), tuple(end), AGENT_RADIUS) for shape in self.block.shapes]
        hits = [hit for hit in hits if hit is not None]
        if not hits:
            return None
        alpha = min(hit.alpha for hit in hits)
        return np.asarray(start) + alpha * (np.asarray(end) - np.asarray(start))

    def render_state(self, state, size: int | None = None) -> np.ndarray:
        size = size or self.image_size
        state = np.asarray(state, dtype=np.float64)
        canvas = _scenery().copy()
        shift = 4  # sub-pixel vertex precision (1/16 px)
        for part in t_outline(state[2:5]):
            cv2.fillPoly(canvas, [_fixed(part, shift)], self.block_color, cv2.LINE_8, shift)
            cv2.polylines(canvas, [_fixed(part, shift)], True, BLOCK_EDGE, EDGE_PX, cv2.LINE_8, shift)
        centre, radius = tuple(int(v) for v in _fixed(state[:2], shift)), int(_fixed(AGENT_RADIUS, shift))
        cv2.circle(canvas, centre, radius, AGENT_FILL, -1, cv2.LINE_8, shift)
        cv2.circle(canvas, centre, radius - EDGE_PX * (1 << shift) // 2, AGENT_EDGE, EDGE_PX, cv2.LINE_8, shift)
        for a, b in WALLS:
            cv2.line(canvas, a, b, WALL_GREY, 2 * int(WALL_RADIUS))
        frame = cv2.resize(canvas, (RENDER_SIZE, RENDER_SIZE), interpolation=cv2.INTER_LINEAR)
        if size != RENDER_SIZE:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        return frame
