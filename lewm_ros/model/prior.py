"""A goal-conditioned action prior on frozen LeWM latents: where good plans lie, before any search.

From the embeddings of the observed frames and of the goal it predicts a diagonal Gaussian over the next
``horizon`` action blocks, in the model's normalised units. The planner uses its mean as the plan
(``mpc.solver: prior``, one small MLP pass) or seeds the CEM's mean and std with it (``prior+cem``), so
the search starts where the data says the goal's actions are. It is trained after the world model, on
the same cache, with the world model frozen (``lewm_ros.tools.prior``), and is stored in the same
checkpoint (an optional part).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

LOG_STD_RANGE = (-5.0, 2.0)  # std between 0.007 and 7.4 normalised units


def scored_mean(values: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Mean of values (B, H, K) over the blocks where scored (B, H, 1) is 1 (those up to the goal)."""
    return (values * scored).sum() / (scored.sum() * values.shape[-1]).clamp_min(1)


@dataclass
class PriorConfig:
    horizon: int = 5  # action blocks predicted; goals at most this many blocks after the last observed frame
    hidden: int = 512
    depth: int = 2  # hidden layers

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ActionPrior(nn.Module):
    def __init__(self, cfg: PriorConfig, embed_dim: int, history: int, block_dim: int):
        super().__init__()
        if cfg.horizon < 1 or cfg.hidden < 1 or cfg.depth < 1:
            raise ValueError(f'prior horizon, hidden and depth must be >= 1, got {cfg}')
        self.cfg, self.history, self.block_dim = cfg, history, block_dim
        layers, width = [], (history + 2) * embed_dim  # the history, the goal and goal - last frame
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * cfg.horizon * block_dim)
        nn.init.zeros_(self.head.weight)  # start at the data's mean action with unit std
        nn.init.zeros_(self.head.bias)

    def forward(self, history: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """history (B, T0, D) observed embeddings, oldest first (T0 <= history: the oldest one repeated);
        goal (B, D) -> mean and std of the next horizon blocks, each (B, H, K)."""
        if history.shape[1] < self.history:  # the first steps of an episode: fewer frames observed
            pad = history[:, :1].expand(-1, self.history - history.shape[1], -1)
            history = torch.cat([pad, history], dim=1)  # (B, T, D)
        history = history[:, -self.history:]  # (B, T, D)
        x = torch.cat([history.flatten(1), goal, goal - history[:, -1]], dim=1)  # (B, (T+2)*D)
        out = self.head(self.body(x)).view(-1, 2, self.cfg.horizon, self.block_dim)  # (B, 2, H, K)
        return out[:, 0], out[:, 1].clamp(*LOG_STD_RANGE).exp()  # (B, H, K), (B, H, K)

    @staticmethod
    def nll(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Mean Gaussian negative log-likelihood per scored action dimension (constant dropped); mean, std and
        target (B, H, K), scored (B, H, 1): 1 for the blocks up to the goal, 0 past it."""
        return scored_mean(0.5 * ((target - mean) / std).square() + std.log(), scored)
