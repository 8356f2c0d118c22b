"""Action-conditioned causal predictor: next-embedding prediction over a short history.

Each time step's action block conditions every block through DiT-style AdaLN-zero; the modulation
is zero-initialised so actions have no effect at initialisation and are learned in gradually.
Two block variants (``PredictorConfig.block``): the standard DiT block, and the official LeWM block,
which normalises again (affine LayerNorm) after the modulation inside attention and feed-forward and
has no qkv bias. Both are the identity at initialisation (zero gates).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import MLP, Projector, SelfAttention


class ActionEmbedder(nn.Module):
    """One action block (frameskip x A raw actions, flattened) -> one D-dim conditioning vector."""

    def __init__(self, block_dim: int, hidden: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(block_dim, hidden), nn.Linear(hidden, 4 * width), nn.SiLU(), nn.Linear(4 * width, width)
        )

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.net(actions)  # (B, T, D)


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are shifted, scaled and gated by the action."""

    def __init__(self, width: int, heads: int, head_dim: int, mlp_dim: int, dropout: float, official: bool = False):
        super().__init__()
        eps = 1e-6 if official else 1e-5
        self.norm1 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.attn = SelfAttention(width, heads, head_dim, dropout, causal=True, qkv_bias=not official)
        self.norm2 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.mlp = MLP(width, mlp_dim, dropout)
        # official: a second, affine LayerNorm on the modulated input of attention and feed-forward
        self.inner1 = nn.LayerNorm(width) if official else nn.Identity()
        self.inner2 = nn.LayerNorm(width) if official else nn.Identity()
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)  # 6 x (B, T, D)
        x = x + gate1 * self.attn(self.inner1(self.norm1(x) * (1 + scale1) + shift1))  # (B, T, D)
        return x + gate2 * self.mlp(self.inner2(self.norm2(x) * (1 + scale2) + shift2))  # (B, T, D)


class Predictor(nn.Module):
    """(embeddings z_0..z_{T-1}, action blocks a_0..a_{T-1}) -> predictions of z_1..z_T, causally."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        p, width = cfg.predictor, cfg.embed_dim
        self.history = cfg.history
        if p.block not in ('dit', 'official'):
            raise ValueError(f"unknown predictor block {p.block!r}; choose 'dit' or 'official'")
        self.pos = nn.Parameter(torch.randn(1, cfg.history, width) * p.pos_init_std)
        self.action_embedder = ActionEmbedder(cfg.action_block_dim, p.action_embed_hidden, width)
        self.blocks = nn.ModuleList(
            AdaLNBlock(width, p.heads, p.head_dim, p.mlp_dim, p.dropout, official=p.block == 'official')
            for _ in range(p.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.pred_proj = Projector(width, cfg.projector_hidden, width)
        self.residual = p.residual
        if p.residual:  # start as the identity: the prediction is the input embedding plus a zero change
            nn.init.zeros_(self.pred_proj.net[-1].weight)
            nn.init.zeros_(self.pred_proj.net[-1].bias)

    def forward(self, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.conditioned(emb, self.action_embedder(actions))  # (B, T, D)

    def conditioned(self, emb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``forward`` with the action blocks already embedded: cond (B, T, D)."""
        T = emb.shape[1]
        if T > self.history:
            raise ValueError(f'predictor sees at most {self.history} steps, got {T}')
        x = emb + self.pos[:, :T]  # (B, T, D)
        for block in self.blocks:
            x = block(x, cond)  # (B, T, D)
        out = self.pred_proj(self.norm(x))  # (B, T, D)
        return emb + out if self.residual else out
