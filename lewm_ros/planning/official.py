"""The public LeWM planning loop, re-run eagerly on our model: the baseline our planner is timed against.

It does what the authors' code does per plan, so that a ratio against it compares equal work:

- every CEM iteration re-encodes the goal frame and the current frame with the encoder;
- every rollout step re-embeds the whole action prefix with the action embedder and runs the predictor
  on the last ``history`` embeddings (5 predictor calls on windows 1, 2, 3, 3, 3 for a horizon of 5);
- the cost is the squared distance of the last predicted embedding to the goal embedding;
- the elites' mean and unbiased std go to the host (``.cpu().tolist()``) and back every iteration;
- sampling starts from mean 0, std 1 (white noise, no clamping, no std floor) and the plan is the final mean.

Our planner (``CEM`` with ``LatentCost``) encodes once per plan, embeds each candidate's actions once
per predictor call, stays on the device and scores the same ``samples x iterations`` candidates (its
mean is one of them), so both search the same number of action sequences per plan.
"""

from __future__ import annotations

import torch

from lewm_ros.model.world_model import WorldModel


def _rollout_last(model: WorldModel, start: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """start (1, D) embedding, candidates (N, H, K) -> the last predicted embedding (N, D)."""
    predictor, history = model.predictor, model.cfg.history
    context = start[None].expand(candidates.shape[0], 1, -1)  # (N, 1, D)
    for step in range(candidates.shape[1]):
        cond = predictor.action_embedder(candidates[:, : step + 1])  # (N, step+1, D): the whole prefix again
        window = context[:, -history:]  # (N, T, D)
        predicted = predictor.conditioned(window, cond[:, -window.shape[1]:])[:, -1:]  # (N, 1, D)
        context = torch.cat([context, predicted], dim=1)  # (N, step+2, D)
    return context[:, -1]  # (N, D)


@torch.inference_mode()
def official_plan(model: WorldModel, frame: torch.Tensor, goal: torch.Tensor, samples: int = 300,
                  elites: int = 30, iterations: int = 30, horizon: int = 5,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """frame, goal: (S, S, 3) uint8 on the model's device -> plan (horizon, K) normalised action blocks."""
    device, K = frame.device, model.cfg.action_block_dim
    mean = torch.zeros(horizon, K, device=device)  # (H, K)
    std = torch.ones(horizon, K, device=device)  # (H, K)
    for _ in range(iterations):
        goal_emb = model.encode(goal[None])  # (1, D), encoded again every iteration
        start = model.encode(frame[None])  # (1, D)
        noise = torch.randn(samples, horizon, K, generator=generator, device=device)  # (N, H, K)
        candidates = mean + std * noise  # (N, H, K)
        costs = (_rollout_last(model, start, candidates) - goal_emb).square().sum(dim=-1)  # (N,)
        best = candidates[costs.topk(elites, largest=False).indices]  # (E, H, K)
        # the host round trip of the public code: lists on the CPU, then tensors again
        mean = torch.tensor(best.mean(dim=0).cpu().tolist(), device=device)  # (H, K)
        std = torch.tensor(best.std(dim=0).cpu().tolist(), device=device)  # (H, K), unbiased
    return mean
