"""LeWorldModel: encoder + BatchNorm projector + action-conditioned predictor, trained end to end.

Two losses only: next-embedding prediction and SIGReg. No EMA, no stop-gradient, no target network:
the targets are the same embeddings the predictor reads, and gradients flow through both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .encoder import build_encoder
from .layers import Projector
from .predictor import Predictor
from .sigreg import SIGReg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.encoder)
        self.projector = Projector(cfg.encoder.width, cfg.projector_hidden, cfg.embed_dim)
        self.predictor = Predictor(cfg)
        self.sigreg = SIGReg(cfg.sigreg_directions, cfg.sigreg_knots, cfg.sigreg_t_max)
        # uint8 -> ImageNet-normalised float folded into one scale and shift per channel
        std = torch.tensor(IMAGENET_STD)
        self.register_buffer('pixel_scale', (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_shift', (-torch.tensor(IMAGENET_MEAN) / std).view(1, 3, 1, 1), persistent=False)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 RGB frames (*lead, S, S, 3) -> embeddings (*lead, D)."""
        size = self.cfg.image_size
        if frames.dtype != torch.uint8 or frames.shape[-3:] != (size, size, 3):
            raise ValueError(
                f'encode expects uint8 RGB frames of shape (..., {size}, {size}, 3), '
                f'got {frames.dtype} {tuple(frames.shape)}'
            )
        lead = frames.shape[:-3]
        images = frames.reshape(-1, size, size, 3).permute(0, 3, 1, 2)  # (N, 3, S, S), channels-last memory
        images = images.float() * self.pixel_scale + self.pixel_shift  # (N, 3, S, S)
        emb = self.projector(self.encoder(images))  # (N, D)
        return emb.reshape(*lead, -1)  # (*lead, D)

    def predict(self, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """emb (B, T, D) of frames 0..T-1, normalised action blocks (B, T, K) -> (B, T, D) of frames 1..T."""
        return self.predictor(emb, actions)

    def rollout(self, emb_history: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Autoregressive imagination, batched over B candidate action sequences.

        emb_history: (1 or B, T0, D) embeddings of the observed frames, oldest first.
        actions: (B, T0 - 1 + H, K) normalised action blocks: the T0 - 1 blocks executed between the
        observed frames, then the H candidate blocks. Returns the H predicted embeddings (B, H, D).
        """
        B, T0 = actions.shape[0], emb_history.shape[1]
        horizon = actions.shape[1] - (T0 - 1)
        if horizon < 1:
            raise ValueError(f'need {T0 - 1} past action blocks plus at least one candidate, got {actions.shape[1]}')
        context = emb_history[:, -self.cfg.history :].expand(B, -1, -1)  # (B, T, D)
        predictions = []
        for h in range(horizon):
            T = context.shape[1]
            step_actions = actions[:, T0 + h - T : T0 + h]  # (B, T, K), aligned with the context frames
            next_emb = self.predict(context, step_actions)[:, -1:]  # (B, 1, D)
            predictions.append(next_emb)
            context = torch.cat([context, next_emb], dim=1)[:, -self.cfg.history :]  # (B, <=history, D)
        return torch.cat(predictions, dim=1)  # (B, H, D)

    def forward(self, clip: Mapping[str, torch.Tensor], step: int | None = None, distributed: bool = False):
        """The training loss (``loss``), so that DistributedDataParallel's hooks see the call."""
        return self.loss(clip, step, distributed)

    def loss(self, clip: Mapping[str, torch.Tensor], step: int | None = None, distributed: bool = False):
        """clip['frames'] (B, T, S, S, 3) uint8, clip['actions'] (B, T, K) normalised -> loss terms.

        The predictor reads the first T-1 frames and predicts frames 1..T-1; SIGReg regularises the
        embeddings of all T frames, per time step. `step` seeds SIGReg's directions (shared by ranks).
        """
        emb = self.encode(clip['frames'])  # (B, T, D)
        pred = self.predict(emb[:, :-1], clip['actions'][:, :-1])  # (B, T-1, D)
        pred_loss = F.mse_loss(pred, emb[:, 1:])
        sigreg = self.sigreg(emb.transpose(0, 1), step=step, distributed=distributed)  # over (T, B, D)
        total = pred_loss + self.cfg.sigreg_weight * sigreg
        return {'total': total, 'pred': pred_loss, 'sigreg': sigreg}
