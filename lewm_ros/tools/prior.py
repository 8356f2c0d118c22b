"""Training the goal-conditioned action prior on a frozen world model (``lewm-train`` ``prior:`` section).

Examples are clips of the training cache: the ``history`` frames the planner would observe, the goal =
the frame ``horizon`` blocks after the last of them (or a number of blocks drawn from ``min_goal_blocks``
to ``horizon``), and the target = the action blocks that led there, in the checkpoint's normalised units.
Every frame of the cache is encoded once by the frozen model, so a step is one small MLP pass: minutes on
2 CPU cores. The split into training and validation episodes is the world model's (by episode key).
Reported, on the blocks up to the goal: the held-out Gaussian NLL, and the held-out mean squared error of
the prior's mean against that of the data's mean action (0): below 1 means the prior knows something about
where the actions go.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lewm_ros.data.actions import ActionStats
from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.clips import ClipDataset
from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.model.prior import ActionPrior, PriorConfig, scored_mean


@dataclass
class PriorTrainConfig:
    enabled: bool = False  # train a prior after the world model (or on `init_from`)
    init_from: str = ''  # a trained checkpoint: train only its prior (the world model's run is skipped)
    horizon: int = 5  # blocks; match the planner's cem.horizon
    # 0: the goal is always `horizon` blocks ahead; k: drawn from k..horizon blocks ahead, the blocks past it unscored.
    # A receding-horizon loop keeps its goal as it nears it, so the prior also sees goals closer than its horizon.
    min_goal_blocks: int = 0
    hidden: int = 512
    depth: int = 2
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encode_batch: int = 512

    def __post_init__(self):
        if min(self.horizon, self.hidden, self.depth, self.steps, self.batch_size, self.encode_batch) < 1:
            raise ValueError('prior horizon, hidden, depth, steps, batch_size and encode_batch must be >= 1')
        if not 0 <= self.min_goal_blocks <= self.horizon:
            raise ValueError(f'prior.min_goal_blocks must be 0 (the goal always horizon blocks ahead) or 1..horizon '
                             f'({self.horizon}), got {self.min_goal_blocks}')
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError('need prior.lr > 0 and prior.weight_decay >= 0')

    def model_config(self) -> PriorConfig:
        return PriorConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PriorConfig)})


class PriorExamples:
    """(history embeddings, goal embedding, target blocks, scored blocks) gathered from a split of the cache."""

    def __init__(self, cache: TrainingCache, embeddings: torch.Tensor, ckpt: Checkpoint, cfg: PriorTrainConfig,
                 split: str, val_fraction: float):
        self.history, self.horizon, self.embeddings = ckpt.config.history, cfg.horizon, embeddings
        self.min_goal_blocks = cfg.min_goal_blocks or cfg.horizon
        # clips of history + horizon frames: the observed ones, then the horizon blocks to the farthest goal
        self.clips = ClipDataset(cache, history=self.history + self.horizon - 1, frameskip=ckpt.config.frameskip,
                                 split=split, val_fraction=val_fraction,
                                 action_stats=ActionStats(ckpt.action_mean, ckpt.action_std))

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, indices: np.ndarray, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """history (B, T, D), goal (B, D), target (B, H, K), scored (B, H, 1): the blocks up to the goal."""
        _, rows, blocks = self.clips.locate(indices)  # (B, T + H) frame rows, (B, T + H, K)
        emb = self.embeddings[torch.as_tensor(rows)]  # (B, T + H, D)
        target = torch.as_tensor(blocks[:, self.history - 1:self.history - 1 + self.horizon])  # (B, H, K)
        if self.min_goal_blocks == self.horizon:  # no draw: the random numbers a fixed goal used before stay the same
            ahead = torch.full((len(indices),), self.horizon)  # (B,) blocks from the last observed frame to the goal
        else:
            ahead = torch.as_tensor(rng.integers(self.min_goal_blocks, self.horizon + 1, len(indices)))  # (B,)
        goal = emb[torch.arange(len(indices)), self.history - 1 + ahead]  # (B, D)
        scored = (torch.arange(self.horizon) < ahead[:, None]).unsqueeze(-1).to(target.dtype)  # (B, H, 1)
        return emb[:, :self.history], goal, target, scored


@torch.inference_mode()
def encode_cache(ckpt: Checkpoint, cache: TrainingCache, batch: int, progress: bool) -> torch.Tensor:
    """(F, D) embeddings of every frame of the cache, by the frozen model."""
    model, device = ckpt.model.eval(), next(ckpt.model.parameters()).device
    chunks = []
    for start in tqdm(range(0, len(cache.frames), batch), desc='encoding the cache', unit='batch',
                      disable=not progress):
        frames = np.array(cache.frames[start:start + batch])  # a writable copy of the read-only memory map, for torch
        chunks.append(model.encode(torch.as_tensor(frames, device=device)))
    return torch.cat(chunks).float().cpu()


def fit_on_frozen(module: torch.nn.Module, batch_loss, steps: int, lr: float, weight_decay: float, desc: str,
                  progress: bool) -> tuple[float, float]:
    """Train ``module`` (a part beside a frozen world model: the prior, the frame decoder) for ``steps`` AdamW steps
    with a cosine to zero; ``batch_loss()`` draws a batch and returns its loss. Returns the mean training loss over
    the first and the last tenth (at most 100 steps each); leaves ``module`` in eval mode."""
    optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    bar = tqdm(range(steps), desc=desc, unit='step', disable=not progress)
    losses = []
    for step in bar:
        for group in optimiser.param_groups:  # cosine to zero
            group['lr'] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        loss = batch_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if step % 100 == 0:
            bar.set_postfix(loss=f'{loss.item():.4g}')
    module.eval()
    window = max(1, min(100, steps // 10))
    return float(np.mean(losses[:window])), float(np.mean(losses[-window:]))


def train_prior(ckpt: Checkpoint, cache_dir, cfg: PriorTrainConfig, val_fraction: float = 0.1, seed: int = 0,
                progress: bool = True, embeddings: torch.Tensor | None = None) -> tuple[ActionPrior, dict]:
    """A trained ``ActionPrior`` for ``ckpt`` (frozen) and a report of its held-out fit.
    embeddings: (F, D) of every cache frame, when already computed."""
    cache = TrainingCache(cache_dir)
    if embeddings is None:
        embeddings = encode_cache(ckpt, cache, cfg.encode_batch, progress)
    train_set, val_set = (PriorExamples(cache, embeddings, ckpt, cfg, split, val_fraction)
                          for split in ('train', 'val'))
    if not len(train_set):
        raise ValueError(f'cache {cache_dir}: no clip spans {ckpt.config.history + cfg.horizon} frames at stride '
                         f'{ckpt.config.frameskip}; lower prior.horizon or record longer episodes')
    torch.manual_seed(seed)
    prior = ActionPrior(cfg.model_config(), ckpt.config.embed_dim, ckpt.config.history, ckpt.config.action_block_dim)
    rng = np.random.default_rng(seed)

    def batch_loss() -> torch.Tensor:
        history, goal, target, scored = train_set.batch(rng.integers(0, len(train_set), cfg.batch_size), rng)
        return ActionPrior.nll(*prior(history, goal), target, scored)

    start, end = fit_on_frozen(prior, batch_loss, cfg.steps, cfg.lr, cfg.weight_decay, 'action prior', progress)
    report = {'train_examples': len(train_set), 'val_examples': len(val_set), 'steps': cfg.steps,
              'train_nll_start': start, 'train_nll_end': end}
    check = val_set if len(val_set) else train_set
    with torch.inference_mode():
        def fit(examples: PriorExamples, rng: np.random.Generator) -> tuple[float, float, float]:
            """NLL, mean squared error of the prior's mean and of the data's mean action, on the scored blocks."""
            history, goal, target, scored = examples.batch(rng.integers(0, len(examples), 4096), rng)
            mean, std = prior(history, goal)
            return (float(ActionPrior.nll(mean, std, target, scored)),
                    float(scored_mean((mean - target).square(), scored)), float(scored_mean(target.square(), scored)))

        _, mse, mean_mse = fit(train_set, np.random.default_rng(seed + 2))
        report['train_relative_mse'] = mse / max(mean_mse, 1e-12)
        report['val_nll'], report['val_mse'], report['mean_action_mse'] = fit(check, np.random.default_rng(seed + 1))
    report['relative_mse'] = report['val_mse'] / max(report['mean_action_mse'], 1e-12)
    return prior, report
