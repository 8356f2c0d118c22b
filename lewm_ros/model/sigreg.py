"""SIGReg: push embeddings towards an isotropic Gaussian with the Epps–Pulley test.

Embeddings are projected on M random unit directions. For each 1-D projection x_1..x_N the
Epps–Pulley statistic compares the empirical characteristic function with the standard normal's,
phi(t) = exp(-t^2/2), weighted by phi itself:

    T = N * integral_{-t_max}^{t_max} phi(t) * |mean_n exp(i t x_n) - phi(t)|^2 dt

The integrand is even in t, so it is evaluated on K knots in [0, t_max] with trapezoid weights
doubled (2*dt inside, dt at both ends). SIGReg is the mean of T over directions and time steps.

Distributed mode: every rank draws the same directions (seeded from the shared training step) and
the cos/sin means are averaged across ranks before squaring, so K ranks with batch N give exactly
the value of one process with batch K*N.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward also sums the incoming gradients over ranks."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone()
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.clone()
        dist.all_reduce(summed)
        return summed


def random_directions(dim: int, count: int, step: int | None, seed: int, device, dtype) -> torch.Tensor:
    """(dim, count) unit columns; a given (seed, step) yields the same directions on every rank."""
    generator = None
    if step is not None:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    directions = torch.randn(dim, count, generator=generator)  # (D, M), on the CPU for rank-independence
    directions = directions / directions.norm(dim=0, keepdim=True)
    return directions.to(device=device, dtype=dtype, non_blocking=True)


class SIGReg(nn.Module):
    def __init__(self, directions: int = 1024, knots: int = 17, t_max: float = 3.0, seed: int = 0):
        super().__init__()
        self.directions, self.seed = directions, seed
        t = torch.linspace(0.0, t_max, knots)  # (K,)
        dt = t_max / (knots - 1)
        weights = torch.full((knots,), 2 * dt)
        weights[0] = weights[-1] = dt
        phi = torch.exp(-0.5 * t**2)  # (K,) characteristic function of N(0, 1)
        self.register_buffer('t', t, persistent=False)
        self.register_buffer('phi', phi, persistent=False)
        self.register_buffer('weighted_phi', weights * phi, persistent=False)

    def forward(self, emb: torch.Tensor, step: int | None = None, distributed: bool = False) -> torch.Tensor:
        """emb: (N, D) or (T, N, D) with N samples per time step -> scalar.

        step seeds the directions (required in distributed mode; None draws from torch's global RNG).
        """
        if emb.dim() == 2:
            emb = emb.unsqueeze(0)  # (1, N, D)
        distributed = distributed and dist.is_available() and dist.is_initialized()
        if distributed and step is None:
            raise ValueError('distributed SIGReg needs the shared training step to seed its directions')
        if emb.dtype in (torch.float16, torch.bfloat16):
            emb = emb.float()  # a small difference of means: never in half precision
        directions = random_directions(emb.shape[-1], self.directions, step, self.seed, emb.device, emb.dtype)
        x_t = (emb @ directions).unsqueeze(-1) * self.t  # (T, N, M, K)
        cos_mean = torch.cos(x_t).mean(dim=1)  # (T, M, K)
        sin_mean = torch.sin(x_t).mean(dim=1)  # (T, M, K)
        n = emb.shape[1]
        if distributed:
            # Every rank back-propagates the same global statistic, so the summed gradient is
            # world_size times each rank's share; DDP's gradient averaging divides it back out,
            # leaving exactly the single-process gradient.
            world = dist.get_world_size()
            cos_mean = _AllReduceSum.apply(cos_mean) / world
            sin_mean = _AllReduceSum.apply(sin_mean) / world
            n = n * world
        err = (cos_mean - self.phi) ** 2 + sin_mean**2  # (T, M, K)
        statistic = n * (err * self.weighted_phi).sum(dim=-1)  # (T, M)
        return statistic.mean()
