"""Cross-entropy method over normalised action blocks, batched on the model's device, and the latent cost.

``CEM.plan`` is the whole optimisation, in the spirit of TD-MPC2's ``_plan``: sample candidates around a
Gaussian, score them all in one batched call, refit the Gaussian to the elites, return its mean. The loop
never synchronises with the host (no ``.item()``, no ``.cpu()``, no branching on tensor values), so on a GPU
every iteration is queued without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from lewm_ros.model.world_model import WorldModel
from lewm_ros.settings import check_settings, setting

CostFn = Callable[[torch.Tensor], torch.Tensor]  # candidates (N, H, K) -> costs (N,)


@dataclass
class CEMConfig:
    """The search: how many candidates, how many rounds, how far ahead (ROS parameters ``cem.*``).

    The defaults are the planner node's: 64 x 8 x 3 plans in about a tenth of a second on one CPU core and scored
    within 3 points of the paper's 300 x 30 x 30 on the arm and Two-Room (make solvers); ``PAPER_SEARCH`` is the
    paper's."""

    samples: int = setting(64, 'candidate action sequences scored per iteration (the paper: 300)', low=2,
                           high=100_000, live=True)
    elites: int = setting(8, 'best candidates the Gaussian is refitted to (the paper: 30)', low=1, live=True)
    iterations: int = setting(3, 'CEM rounds per plan (the paper: 30 on Push-T, 10 elsewhere)', low=1,
                              high=1000, live=True)
    horizon: int = setting(5, 'action blocks planned ahead (frameskip control steps each)', low=1, high=100,
                           live=True)
    init_std: float = setting(1.0, 'initial sampling std, normalised action units', low=1e-6, high=100.0, live=True)
    min_std: float = setting(0.05, 'std floor that keeps the search from collapsing in the first rounds', low=0.0,
                             high=100.0, live=True)
    noise_beta: float = setting(0.0, 'sampling noise with power spectrum 1/f^beta over time: 0 = white (the '
                                "paper's), 2-3 = time-correlated (iCEM), reaches far goals", low=0.0, high=4.0,
                                live=True)
    seed: int = setting(0, "seed of the search's noise; a plan's noise is a function of (seed, control step)",
                        low=0, high=2**31 - 1, live=True)

    def validate(self) -> None:
        """Raise ValueError with the reason when a value is invalid."""
        check_settings(self, 'cem.')
        if self.elites > self.samples:
            raise ValueError(f'cem.elites must be <= cem.samples, got {self.elites} / {self.samples}')
        if self.min_std > self.init_std:
            raise ValueError(f'cem.min_std must be <= cem.init_std, got {self.min_std} / {self.init_std}')


# The paper's search (the public LeWM code): 300 candidates, 30 elites, 30 rounds over 5 blocks, white noise
# around the mean action.
PAPER_SEARCH = {'samples': 300, 'elites': 30, 'iterations': 30, 'horizon': 5, 'init_std': 1.0, 'noise_beta': 0.0}
BUDGETS = {'node': (CEMConfig.samples, CEMConfig.elites, CEMConfig.iterations),
           'paper': (PAPER_SEARCH['samples'], PAPER_SEARCH['elites'], PAPER_SEARCH['iterations'])}


def parse_budget(text: str) -> tuple[int, int, int]:
    """A CEM budget (samples, elites, iterations) by name (``node``, ``paper``) or as 'SAMPLESxELITESxITERATIONS'
    (e.g. '16x4x1')."""
    if text in BUDGETS:
        return BUDGETS[text]
    parts = text.split('x')
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f'bad CEM budget {text!r}: want {" or ".join(BUDGETS)} or SAMPLESxELITESxITERATIONS, '
                         'e.g. 64x8x3')
    samples, elites, iterations = (int(part) for part in parts)
    return samples, elites, iterations


def normalised_bounds(low, high, normalise: Callable[[np.ndarray], np.ndarray], frameskip: int, device=None):
    """Raw per-dimension limits (A,) -> bounds (K,) of one normalised action block (K = frameskip * A).

    normalise: raw actions -> the model's units (``Checkpoint.normalise``).
    """
    low, high = normalise(np.asarray(low, np.float32)), normalise(np.asarray(high, np.float32))  # (A,), (A,)
    return (torch.as_tensor(np.tile(low, frameskip), device=device),  # (K,)
            torch.as_tensor(np.tile(high, frameskip), device=device))  # (K,)


@lru_cache(maxsize=16)
def _coloured_amplitudes(steps: int, beta: float, device: torch.device) -> torch.Tensor:
    """(F,) amplitude per rfft frequency: 1/f^(beta/2), scaled so that irfft of unit Gaussian coefficients has
    unit variance per step. The same for every CEM iteration and plan, so computed once."""
    freqs = torch.fft.rfftfreq(steps, device=device)  # (F,)
    freqs[0] = freqs[1] if steps > 1 else 1.0  # the constant component scaled as the slowest oscillation
    scale = freqs ** (-beta / 2)  # (F,)
    # variance of each step x steps^2: scale^2 from the constant and (even steps) Nyquist terms, whose imaginary
    # parts irfft drops, and 4 scale^2 from every other frequency (it stands for itself and its mirror)
    weights = torch.full_like(scale, 4.0)
    weights[0] = 1.0
    if steps % 2 == 0:
        weights[-1] = 1.0
    return scale * (steps / (weights * scale.square()).sum().sqrt())  # (F,)


def coloured_noise(samples: int, steps: int, dims: int, beta: float, generator: torch.Generator,
                   device=None) -> torch.Tensor:
    """(samples, steps, dims) unit-variance Gaussian noise with power spectrum 1/f^beta along ``steps``.

    beta = 0 is white noise; larger beta correlates neighbouring steps, so a sampled action sequence keeps a
    direction and can travel as far as the goal (iCEM, Pinneri et al. 2020). Built in the frequency domain.
    """
    if beta == 0:
        return torch.randn(samples, steps, dims, generator=generator, device=device)
    amplitudes = _coloured_amplitudes(steps, beta, torch.device(device or 'cpu'))  # (F,)
    spectrum = torch.randn(samples, dims, len(amplitudes), 2, generator=generator, device=device)  # (N, A, F, 2)
    noise = torch.fft.irfft(torch.view_as_complex(spectrum) * amplitudes, n=steps)  # (N, A, T)
    return noise.transpose(1, 2)  # (N, T, A)


class CEM:
    def __init__(self, config: CEMConfig, low: torch.Tensor, high: torch.Tensor, action_dim: int | None = None):
        """low, high: (K,) normalised bounds of one action block; the search runs on their device.

        action_dim: A, when a block is K / A raw actions in a row (coloured noise then runs over raw steps).
        """
        config.validate()
        self.config, self.low, self.high = config, low, high  # (K,), (K,)
        self.action_dim = action_dim or low.shape[0]
        self.generator = torch.Generator(device=low.device).manual_seed(config.seed)

    @torch.inference_mode()
    def plan(self, cost_fn: CostFn, warm_start: torch.Tensor | None = None, horizon: int | None = None,
             seed: int | None = None, proposal: tuple[torch.Tensor, torch.Tensor, float] | None = None,
             keep_best: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimise ``cost_fn`` over (horizon, K) block sequences; returns the final mean and its cost.

        warm_start: (horizon, K) initial mean (the previous plan, shifted); None starts from 0 (the mean action
        of the training data). The current mean is always one of the candidates, so a good warm start is never
        lost to sampling noise. proposal: (mean (H, K), std (H, K), share) a second Gaussian (the action
        prior's) that draws ``share`` of the first iteration's candidates, its mean among them; the elites then
        come from both. keep_best: return the best candidate scored when it beats the final mean, so the plan is
        never worse than any candidate (the proposal's mean, say); kept on the device: no host sync.
        seed: restart the noise from it (None: carry on).
        """
        cfg, K = self.config, self.low.shape[0]
        if seed is not None:
            self.generator.manual_seed(seed)
        H = horizon or cfg.horizon
        mean = torch.zeros(H, K, device=self.low.device) if warm_start is None else warm_start  # (H, K)
        mean = mean.clamp(self.low, self.high)  # (H, K)
        std = torch.full((H, K), cfg.init_std, device=self.low.device)  # (H, K)
        best, best_cost = mean, torch.tensor(float('inf'), device=mean.device)  # (H, K), ()
        for iteration in range(cfg.iterations):
            noise = coloured_noise(cfg.samples, H * K // self.action_dim, self.action_dim, cfg.noise_beta,
                                   self.generator, mean.device).reshape(cfg.samples, H, K)  # (N, H, K)
            noise[0] = 0.0  # (H, K): candidate 0 is the mean itself
            candidates = mean + std * noise  # (N, H, K)
            if iteration == 0 and proposal is not None:
                drawn = max(1, round(proposal[2] * cfg.samples))  # M: the last M candidates, the first of them
                noise[-drawn] = 0.0  # the proposal's mean
                candidates[-drawn:] = proposal[0] + proposal[1] * noise[-drawn:]  # (M, H, K)
            candidates = candidates.clamp(self.low, self.high)  # (N, H, K)
            costs = cost_fn(candidates)  # (N,)
            ranked = costs.topk(cfg.elites, largest=False)
            elites = candidates[ranked.indices]  # (E, H, K)
            if keep_best:
                better = ranked.values[0] < best_cost  # ()
                best = torch.where(better, elites[0], best)  # (H, K)
                best_cost = torch.where(better, ranked.values[0], best_cost)  # ()
            mean = elites.mean(dim=0)  # (H, K)
            std = elites.std(dim=0, correction=0).clamp_min(cfg.min_std)  # (H, K)
        final_cost = cost_fn(mean[None])[0]  # ()
        if keep_best:
            better = best_cost < final_cost
            return torch.where(better, best, mean), torch.where(better, best_cost, final_cost)
        return mean, final_cost  # (H, K), ()


OBJECTIVES = ('final', 'closest')


def check_objective(objective: str) -> None:
    """Raise ValueError unless ``objective`` is one of ``OBJECTIVES``."""
    if objective not in OBJECTIVES:
        raise ValueError(f'objective must be one of {OBJECTIVES}, got {objective!r}')


class LatentCost:
    """Squared L2 distance between predicted embeddings and the goal embedding, for candidate block sequences.

    The observations and the goal are encoded once by the caller; each call only rolls the predictor out.
    objective ``final`` is the paper's cost: the distance after the last block. ``closest`` is the distance
    after the block that comes closest, so a candidate that passes by the goal anywhere in the horizon
    scores: far from the goal the latent distance is flat, and the end point alone rarely finds the basin.
    intermediate_weight > 0 adds that weight times the mean distance over all predicted blocks, which
    rewards arriving early instead of just in time.
    """

    def __init__(self, model: WorldModel, history: torch.Tensor, past_blocks: torch.Tensor, goal: torch.Tensor,
                 intermediate_weight: float = 0.0, objective: str = 'final', rollout=None):
        """history (1, T0, D) observed embeddings, past_blocks (1, T0-1, K) executed between them, goal (D,).

        rollout: what rolls the predictor out (default ``model.rollout``; the MPC may pass its compiled form)."""
        check_objective(objective)
        self.rollout = rollout or model.rollout
        self.history, self.past_blocks, self.goal = history, past_blocks, goal
        self.intermediate_weight, self.objective = intermediate_weight, objective

    def distances(self, candidates: torch.Tensor) -> torch.Tensor:
        """(N, H, K) -> squared distance to the goal after each block (N, H)."""
        actions = torch.cat([self.past_blocks.expand(candidates.shape[0], -1, -1), candidates], dim=1)  # (N, T0-1+H, K)
        predicted = self.rollout(self.history, actions)  # (N, H, D)
        return (predicted - self.goal).square().sum(dim=-1)  # (N, H)

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        distances = self.distances(candidates)  # (N, H)
        reached = distances[:, -1] if self.objective == 'final' else distances.min(dim=1).values  # (N,)
        return reached + self.intermediate_weight * distances.mean(dim=1)  # (N,)

    def arrival(self, plan: torch.Tensor) -> torch.Tensor:
        """Blocks of ``plan`` (H, K) worth executing: up to its closest approach for ``closest``, all for
        ``final``. A () tensor (no host sync)."""
        if self.objective == 'final':
            return torch.tensor(plan.shape[0], device=plan.device)
        return self.distances(plan[None])[0].argmin() + 1  # ()
