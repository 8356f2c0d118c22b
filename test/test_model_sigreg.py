"""SIGReg against an independent Epps–Pulley evaluation, its floor, collapse detection, and DDP."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lewm_ros.model.sigreg import SIGReg


def epps_pulley_dense(x: np.ndarray) -> float:
    """N * integral over [-3, 3] of phi(t) |ecf(t) - phi(t)|^2, by dense trapezoid quadrature."""
    t = np.linspace(-3.0, 3.0, 30_001)
    ecf = np.exp(1j * np.outer(t, x)).mean(axis=1)
    phi = np.exp(-0.5 * t**2)
    return len(x) * np.trapezoid(phi * np.abs(ecf - phi) ** 2, t)


@pytest.mark.parametrize(
    'sampler',
    [
        lambda rng: rng.normal(0.0, 1.0, 1024),
        lambda rng: rng.normal(0.3, 0.5, 256),
        lambda rng: rng.normal(1.0, 2.0, 64),
        lambda rng: rng.uniform(-2.0, 2.0, 512),
        lambda rng: rng.exponential(1.0, 300),
    ],
)
def test_matches_dense_quadrature_on_1d_samples(sampler):
    x = sampler(np.random.default_rng(7))
    # In 1-D the only unit directions are +-1 and the statistic is even in x.
    ours = float(SIGReg(directions=8).double()(torch.from_numpy(x).view(-1, 1)))
    reference = epps_pulley_dense(x)
    # The 17-knot trapezoid's absolute error is ~2e-4; it only matters for statistics far below the
    # Gaussian floor (~1), so the bound is 1e-3 relative with a 2e-4 absolute allowance.
    assert ours == pytest.approx(reference, rel=1e-3, abs=2e-4)


def test_floor_for_gaussian_and_100x_for_collapse():
    torch.manual_seed(0)
    sigreg = SIGReg()
    n, d = 2048, 64
    gaussian = float(sigreg(torch.randn(n, d)))
    constant = float(sigreg(torch.full((n, d), 0.5)))
    rank_one = float(sigreg(torch.randn(n, 1) * torch.randn(1, d) / d**0.5))
    # E[T] under the null is integral phi (1 - phi^2) dt ~ 1.06, whatever N.
    assert 0.5 < gaussian < 2.0
    assert constant > 100 * gaussian
    assert rank_one > 100 * gaussian


def test_gradient_steps_on_sigreg_alone_spread_a_collapsed_batch():
    torch.manual_seed(0)
    emb = (torch.full((256, 16), 0.2) + 1e-3 * torch.randn(256, 16)).requires_grad_()
    sigreg = SIGReg(directions=256)
    optimiser = torch.optim.Adam([emb], lr=0.05)
    start = sigreg(emb).item()
    for _ in range(60):
        optimiser.zero_grad()
        sigreg(emb).backward()
        optimiser.step()
    assert emb.detach().std(dim=0).min() > 0.3, 'per-dimension std should grow from 1e-3'
    assert sigreg(emb).item() < start / 10


def test_same_step_same_directions_different_step_different():
    sigreg = SIGReg(directions=64)
    emb = torch.rand(128, 8)
    assert float(sigreg(emb, step=3)) == float(sigreg(emb, step=3))
    assert float(sigreg(emb, step=3)) != float(sigreg(emb, step=4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, emb: torch.Tensor, out: dict):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        shard = emb.chunk(world, dim=1)[rank].clone().requires_grad_()
        value = SIGReg(directions=128)(shard, step=11, distributed=True)
        value.backward()
        out[rank] = (float(value), shard.grad.clone())
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batch():
    torch.manual_seed(0)
    emb = torch.randn(4, 96, 16) * torch.linspace(0.5, 1.5, 16)  # (T, N, D), a non-Gaussian spread
    whole = emb.clone().requires_grad_()
    expected = SIGReg(directions=128)(whole, step=11)
    expected.backward()

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank_main, args=(2, _free_port(), emb, out), nprocs=2, join=True)
        results = dict(out)

    for rank in (0, 1):
        assert results[rank][0] == pytest.approx(float(expected), rel=1e-5)
    # Each rank's gradient is world_size times its share (DDP's averaging divides that back out).
    summed = torch.cat([results[0][1], results[1][1]], dim=1) / 2
    torch.testing.assert_close(summed, whole.grad, rtol=1e-4, atol=1e-7)
