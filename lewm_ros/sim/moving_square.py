"""A minimal synthetic world for tests and preset selection: a square driven by velocity actions.

No physics engine and no rendering library: clips are drawn straight into numpy arrays, so they cost
nothing next to the model step and exercise the whole JEPA loss (frames + action blocks).
"""

from __future__ import annotations

import numpy as np
import torch

SIDE = 10  # px at 64 px resolution
SPEED = 1.5  # px per raw action of magnitude 1
COLOUR = (255, 60, 20)


def moving_square_clips(rng: np.random.Generator, batch: int, size: int = 64, frames: int = 4, frameskip: int = 5):
    """Returns {'frames': (B, T, S, S, 3) uint8, 'actions': (B, T, frameskip*2) float32,
    'positions': (B, T, 2) float32 top-left corner in pixels}, actions in [-1, 1]."""
    side, speed = SIDE * size // 64, SPEED * size / 64
    images = np.zeros((batch, frames, size, size, 3), np.uint8)
    actions = rng.uniform(-1, 1, (batch, frames, frameskip, 2))
    positions = np.zeros((batch, frames, 2), np.float32)
    pos = rng.uniform(0, size - side, (batch, 2))
    for t in range(frames):
        positions[:, t] = pos
        for i, (x, y) in enumerate(pos.astype(int)):
            images[i, t, y : y + side, x : x + side] = COLOUR
        pos = np.clip(pos + speed * actions[:, t].sum(axis=1), 0, size - side)
    return {
        'frames': torch.from_numpy(images),
        'actions': torch.from_numpy(actions.reshape(batch, frames, -1).astype(np.float32)),
        'positions': torch.from_numpy(positions),
    }
