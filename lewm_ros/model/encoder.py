"""Frame encoders: a ViT (the paper's) and a small CNN (the fast preset).

Both map normalised images (N, 3, S, S) to features (N, width); the world model adds the BatchNorm
projector on top. Frames are encoded independently.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .layers import MLP, SelfAttention

HF_INIT_STD = 0.02  # the Hugging Face ViT's initializer_range


def hf_init(module: nn.Module) -> None:
    """The Hugging Face ViT's init: truncated-normal weights (std 0.02), zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=HF_INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, width // heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))  # (N, P+1, W)
        return x + self.mlp(self.norm2(x))  # (N, P+1, W)


class ViTEncoder(nn.Module):
    """ViT trained from scratch; the embedding is the last layer's CLS token."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f'image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}')
        patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patchify = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos = nn.Parameter(torch.randn(1, patches + 1, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(cfg.width, cfg.heads, cfg.mlp_dim) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        if cfg.init == 'hf':
            self.apply(hf_init)
            for parameter in (self.cls, self.pos):
                nn.init.trunc_normal_(parameter, std=HF_INIT_STD)
        elif cfg.init != 'torch':
            raise ValueError(f"unknown encoder init {cfg.init!r}; choose 'torch' or 'hf'")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patchify(images).flatten(2).transpose(1, 2)  # (N, P, W)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos  # (N, P+1, W)
        for block in self.blocks:
            x = block(x)  # (N, P+1, W)
        return self.norm(x[:, 0])  # (N, W)


class CNNEncoder(nn.Module):
    """Stride-2 conv stages with GELU, then flatten -> Linear: keeps where things are in the frame."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers, in_ch = [], 3
        for out_ch in cfg.channels:
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1), nn.GELU()]
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        side = cfg.image_size >> len(cfg.channels)
        if side < 1 or cfg.image_size % (1 << len(cfg.channels)):
            raise ValueError(f'image_size {cfg.image_size} must be divisible by 2**{len(cfg.channels)}')
        self.head = nn.Linear(in_ch * side * side, cfg.width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images).flatten(1))  # (N, W)


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    if cfg.kind == 'vit':
        return ViTEncoder(cfg)
    if cfg.kind == 'cnn':
        return CNNEncoder(cfg)
    raise ValueError(f"unknown encoder kind {cfg.kind!r}; choose 'vit' or 'cnn'")
