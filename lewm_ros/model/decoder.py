"""A frame decoder on frozen LeWM latents, for looking only: what the planner imagines, as pictures.

LeWM needs no decoder (the paper trains one on frozen embeddings for visualisation); this one maps an
embedding (D,) back to an RGB frame. It is trained after the world model with the world model frozen
(``lewm_ros.tools.decoder``: the embeddings are computed once, so no gradient can reach the encoder or the
predictor) and stored in the same checkpoint as an optional part. The planner node decodes the predicted
embeddings of its chosen plan into ``~/imagined``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DecoderConfig:
    channels: tuple[int, ...] = (128, 64, 32, 32)  # feature channels before each x2 upsampling stage

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class FrameDecoder(nn.Module):
    """embedding (N, D) -> a (base x base) feature map -> x2 transposed-conv stages -> RGB (N, S, S, 3) in [0, 1].

    The stages predict a change to a learned background (``background``, logits; training starts it at the mean
    frame): most of a robot's camera image is the same in every frame, and a decoder that started from grey
    spent its first thousand steps learning the table. Embeddings are standardised with the training set's
    statistics first (SIGReg makes a trained model's about N(0, 1); a barely trained one's varied by 1e-4)."""

    def __init__(self, cfg: DecoderConfig, embed_dim: int, image_size: int):
        super().__init__()
        channels = tuple(cfg.channels)
        if not channels or min(channels) < 1 or image_size % (1 << len(channels)):
            raise ValueError(f'decoder channels {channels}: need one or more positive widths, and image_size '
                             f'{image_size} divisible by 2**{len(channels)}')
        self.cfg, self.base = cfg, image_size >> len(channels)
        self.stem = nn.Linear(embed_dim, channels[0] * self.base * self.base)
        stages = []
        for width, next_width in zip(channels, channels[1:] + channels[-1:], strict=True):
            stages += [nn.ConvTranspose2d(width, next_width, kernel_size=4, stride=2, padding=1), nn.GELU()]
        self.stages = nn.Sequential(*stages)
        self.to_rgb = nn.Conv2d(channels[-1], 3, kernel_size=3, padding=1)
        self.background = nn.Parameter(torch.zeros(3, image_size, image_size))  # logits (3, S, S)
        self.register_buffer('emb_mean', torch.zeros(embed_dim))  # (D,)
        self.register_buffer('emb_std', torch.ones(embed_dim))  # (D,)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, S, S, 3) float in [0, 1]."""
        x = self.stem((emb - self.emb_mean) / self.emb_std)  # (N, C0 * b * b)
        x = x.view(emb.shape[0], -1, self.base, self.base)  # (N, C0, b, b)
        x = self.to_rgb(self.stages(x)) + self.background  # (N, 3, S, S)
        return torch.sigmoid(x).permute(0, 2, 3, 1)  # (N, S, S, 3)

    def start_at(self, embeddings: torch.Tensor, mean_frame: torch.Tensor) -> None:
        """Fit the standardisation to training embeddings (N, D) and the background to their mean frame (S, S, 3)
        in [0, 1]."""
        with torch.no_grad():
            self.emb_mean.copy_(embeddings.mean(0))
            self.emb_std.copy_(embeddings.std(0).clamp_min(1e-6))
            self.background.copy_(torch.logit(mean_frame.clamp(0.01, 0.99)).permute(2, 0, 1))

    @torch.inference_mode()
    def frames(self, emb: torch.Tensor) -> torch.Tensor:
        """(N, D) -> uint8 frames (N, S, S, 3)."""
        return (self(emb) * 255).round().to(torch.uint8)
