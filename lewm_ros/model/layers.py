"""Transformer building blocks shared by the ViT encoder and the predictor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention; inner width heads*head_dim may differ from the model width."""

    def __init__(self, width: int, heads: int, head_dim: int, dropout: float = 0.0, causal: bool = False,
                 qkv_bias: bool = True):
        super().__init__()
        self.heads, self.head_dim, self.causal, self.dropout = heads, head_dim, causal, dropout
        self.qkv = nn.Linear(width, 3 * heads * head_dim, bias=qkv_bias)
        self.out = nn.Linear(heads * head_dim, width)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, self.head_dim)  # (B, T, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, T, d)
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)  # (B, T, h*d)
        return self.out_dropout(self.out(y))  # (B, T, W)


class MLP(nn.Sequential):
    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width), nn.Dropout(dropout)
        )


class Projector(nn.Module):
    """in -> hidden -> BatchNorm -> GELU -> out, applied to the last dim of any (..., in) tensor.

    The BatchNorm is what lets SIGReg shape the latent (the ViT's final LayerNorm alone does not).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)  # (..., out)
