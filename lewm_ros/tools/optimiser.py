"""One optimisation step and what it needs: the learning-rate schedule, mixed precision, and the optimiser's state
as safetensors (resumable checkpoints hold no pickle)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lewm_ros.tools.run_config import TrainConfig


@dataclass(frozen=True)
class Schedule:
    """The run's length and learning-rate curve in optimiser steps: linear warm-up, then a cosine to zero
    over ``horizon`` steps, of which the run takes ``steps`` (the official recipe stops at a tenth)."""

    lr: float
    steps: int
    warmup: int
    horizon: int

    @classmethod
    def of(cls, cfg: TrainConfig, train_clips: int, ranks: int = 1) -> Schedule:
        per_epoch = max(1, math.ceil(train_clips / (cfg.batch_size * ranks)))  # every rank draws its own batch
        steps = max(1, round(cfg.epochs * per_epoch)) if cfg.epochs else cfg.steps
        horizon = max(steps, round(cfg.schedule_epochs * per_epoch)) if cfg.schedule_epochs else steps
        return cls(cfg.lr, steps, max(1, int(cfg.warmup_fraction * horizon)), horizon)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * step / self.warmup
        progress = (step - self.warmup) / max(1, self.horizon - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def optimiser_tensors(optimiser: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Optimiser state as flat named tensors (safetensors) plus JSON-able parameter groups."""
    state = optimiser.state_dict()
    tensors = {f'optim.{index}.{name}': value for index, slots in state['state'].items()
               for name, value in slots.items()}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state['param_groups']]
    return tensors, groups


def restore_optimiser(optimiser: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]):
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split('.', 2)
        state.setdefault(int(index), {})[name] = value
    optimiser.load_state_dict({'state': state, 'param_groups': groups})


def bf16_enabled(device: torch.device, tc: TrainConfig) -> bool:
    """Whether the config asks for bf16 autocast on this device."""
    return tc.bf16 if device.type == 'cuda' else tc.cpu_bf16


def autocast(device: torch.device, tc: TrainConfig):
    """The training step's mixed-precision context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_enabled(device, tc))


def train_step(model, optimiser, clip, step: int, tc: TrainConfig, schedule: Schedule, amp,
               distributed: bool = False):
    """One optimisation step; returns the loss terms and the gradient norm as device tensors."""
    for group in optimiser.param_groups:
        group['lr'] = schedule.lr_at(step)
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.manual_seed((tc.seed * 1_000_003 + step) * 1_009 + rank)  # dropout noise: a function of (seed, step, rank)
    with amp:
        terms = model(clip, step=step, distributed=distributed)
    optimiser.zero_grad(set_to_none=True)
    terms['total'].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    optimiser.step()
    return terms, grad_norm
