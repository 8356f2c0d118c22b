"""What the planner sees and imagines, as pictures for a person (no ROS: the node publishes them as Images).

``debug_view``: the camera frame the plan answered beside the goal, enlarged, with a few lines of text (cost,
plan time, frame age, state) beneath. ``imagined_strip``: the decoded predicted frames of the chosen plan, one per
action block, left to right. Frames are enlarged by an integer factor (nearest neighbour) so a 64 px model input
reads at about ``PANEL`` px in rqt_image_view or Foxglove.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL = 256  # px, the side a model-sized frame is enlarged to (at least)
GAP = 4  # px between panels
LINE = 14  # px per text line (PIL's built-in bitmap font is 11 px high)


def enlarge(frame: np.ndarray, side: int = PANEL) -> np.ndarray:
    """(S, S, 3) uint8 -> (S*f, S*f, 3), f the smallest integer factor reaching ``side`` (at least 1)."""
    factor = max(1, -(-side // frame.shape[0]))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)


def side_by_side(frames: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Frames of one height (H, W_i, 3) -> (H, sum W_i + gaps, 3), separated by dark grey columns."""
    height = frames[0].shape[0]
    column = np.full((height, gap, 3), 40, np.uint8)
    parts = [part for frame in frames for part in (column, frame)][1:]
    return np.concatenate(parts, axis=1)


def debug_view(frame: np.ndarray, goal: np.ndarray | None, lines: list[str]) -> np.ndarray:
    """camera | goal (S, S, 3) uint8 each, enlarged, with ``lines`` of text beneath -> (H, W, 3) uint8.
    No goal yet: its panel is black."""
    camera = enlarge(frame)
    goal_panel = enlarge(goal) if goal is not None else np.zeros_like(camera)
    panels = side_by_side([camera, goal_panel])
    canvas = Image.new('RGB', (panels.shape[1], panels.shape[0] + LINE * (len(lines) + 1) + GAP), (20, 20, 20))
    canvas.paste(Image.fromarray(panels), (0, 0))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    draw.text((GAP, 2), 'camera', fill=(255, 255, 0), font=font)
    draw.text((camera.shape[1] + 2 * GAP, 2), 'goal', fill=(255, 255, 0), font=font)
    for row, text in enumerate(lines):
        draw.text((GAP, panels.shape[0] + GAP + row * LINE), text, fill=(230, 230, 230), font=font)
    return np.asarray(canvas)


def imagined_strip(frames: np.ndarray, step_label: str = 'block') -> np.ndarray:
    """Decoded predictions (H, S, S, 3) uint8, one per block -> one enlarged strip (S*f, H*(S*f + gap), 3),
    each panel labelled with its block number."""
    panels = [enlarge(frame, PANEL // 2) for frame in frames]
    strip = Image.fromarray(side_by_side(panels))
    draw, font = ImageDraw.Draw(strip), ImageFont.load_default()
    for block, panel in enumerate(panels):
        draw.text((block * (panel.shape[1] + GAP) + 2, 2), f'{step_label} {block + 1}', fill=(255, 255, 0), font=font)
    return np.asarray(strip)
