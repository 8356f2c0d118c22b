"""Offline LeWM trainer: ``lewm-train --config training/configs/NAME.yaml [key=value ...]``.

A plain PyTorch loop. The YAML maps 1:1 onto dataclasses: ``preset`` picks the starting ModelConfig,
``model`` overrides its fields, ``train`` is TrainConfig, ``data`` is DataConfig and ``prior`` the
optional action prior's PriorTrainConfig (defaults live in those dataclasses only). Overrides use dotted
keys: ``train.steps=200 model.predictor.depth=2``.

Outputs in ``train.out_dir``: ``last.safetensors`` (weights + optimiser state, every
``checkpoint_every`` steps, atomic), ``model.safetensors`` (final weights, for the planner),
``metrics.csv``, ``curves.png``, ``config.yaml``. ``--resume`` continues from ``last.safetensors``.
With ``prior.enabled: true`` the goal-conditioned action prior is then trained on the frozen model and
stored in ``model.safetensors``; ``prior.init_from=CKPT`` trains only the prior of an existing checkpoint.

Reproducibility: a step's batch and dropout noise are functions of (seed, rank, step) alone, and
SIGReg's directions of the step, so a resumed run retraces the uninterrupted one exactly on CPU.

Multi-GPU: ``torchrun --nproc_per_node=K -m lewm_ros.training.train --config ...`` runs DDP with
the distributed SIGReg (K ranks with batch N regularise like one batch of K*N); only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from lewm_ros.data.actions import ActionStats
from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.clips import ClipDataset
from lewm_ros.data.ingest import IngestConfig, ingest
from lewm_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lewm_ros.model.config import ModelConfig, dataclass_from_dict, preset
from lewm_ros.model.world_model import WorldModel
from lewm_ros.training.prior import PriorTrainConfig, train_prior
from lewm_ros.training.probe import linear_probe, r_squared


@dataclass
class DataConfig:
    cache: str = ''  # training cache directory; created from `bags` when those are given
    bags: list[str] = field(default_factory=list)  # bag directories to ingest into `cache` first
    ingest: dict = field(default_factory=dict)  # IngestConfig fields (image_size comes from the model)
    val_fraction: float = 0.1  # share of episodes held out, split by episode
    prefetch: int = 4  # batches prepared ahead by background threads


@dataclass
class TrainConfig:
    steps: int = 10_000
    epochs: float = 0.0  # > 0: the run's length in epochs of the training clips, instead of `steps`
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 1e-3
    warmup_fraction: float = 0.01  # of the schedule's horizon: linear warm-up, then cosine to zero
    # > 0: the cosine's horizon in epochs, when it is longer than the run (the official recipe schedules 100
    # epochs and stops after 10, so the learning rate stays near its peak); 0: the run's own length
    schedule_epochs: float = 0.0
    grad_clip: float = 1.0
    bf16: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on the CPU as well: 1.45x the fp32 steps/s of the small preset on a 2-core AMD EPYC with
    # AVX512-BF16 (training/bench_train.py --cpu-bf16); CPUs without native bf16 may run it slower
    cpu_bf16: bool = False
    device: str = 'auto'  # auto | cpu | cuda
    seed: int = 0
    log_every: int = 10
    val_every: int = 500
    val_batches: int = 4
    checkpoint_every: int = 1000
    out_dir: str = 'runs/default'

    def __post_init__(self):
        positive = ('steps', 'batch_size', 'log_every', 'val_every', 'val_batches', 'checkpoint_every')
        bad = [name for name in positive if getattr(self, name) < 1]
        if bad:
            raise ValueError(f'train.{", train.".join(bad)} must be >= 1')
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip > 0 and 0 <= self.warmup_fraction < 1):
            raise ValueError('need lr > 0, weight_decay >= 0, grad_clip > 0 and 0 <= warmup_fraction < 1')
        if self.epochs < 0 or self.schedule_epochs < 0:
            raise ValueError('train.epochs and train.schedule_epochs must be >= 0 (0: not used)')


@dataclass
class RunConfig:
    preset: str = 'small'
    model: ModelConfig = field(default_factory=lambda: preset('small'))
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    action_dim_from_data: bool = True  # model.action_dim not given: take the cache's
    prior: PriorTrainConfig = field(default_factory=PriorTrainConfig)

    def to_dict(self) -> dict:
        return {'preset': self.preset, 'model': self.model.to_dict(), 'train': dataclasses.asdict(self.train),
                'data': dataclasses.asdict(self.data), 'prior': dataclasses.asdict(self.prior)}


class TrainingDivergedError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------- config

def _set_dotted(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split('.')
    for key in parents:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ValueError(f'override {dotted!r}: {key!r} is not a section')
    tree[leaf] = value


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def load_config(path: str | None = None, overrides: list[str] = ()) -> RunConfig:
    raw = {}
    if path:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    for item in overrides:
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'override {item!r} is not key=value')
        _set_dotted(raw, key, yaml.safe_load(value))
    unknown = sorted(set(raw) - {'preset', 'model', 'train', 'data', 'prior'})
    if unknown:
        raise ValueError(f'unknown top-level config key(s) {unknown}; known: preset, model, train, data, prior')
    name = raw.get('preset', 'small')
    model_overrides = raw.get('model') or {}
    model = ModelConfig.from_dict(_merge(preset(name).to_dict(), model_overrides))
    return RunConfig(name, model, dataclass_from_dict(TrainConfig, raw.get('train') or {}, 'train'),
                     dataclass_from_dict(DataConfig, raw.get('data') or {}, 'data'),
                     action_dim_from_data='action_dim' not in model_overrides,
                     prior=dataclass_from_dict(PriorTrainConfig, raw.get('prior') or {}, 'prior'))


# ------------------------------------------------------------------------------------------------ data

def prepare_data(cfg: RunConfig, action_stats: ActionStats | None, is_main: bool):
    """Ingest bags if asked (rank 0), open the cache, build the by-episode train/val split."""
    data, model = cfg.data, cfg.model
    if not data.cache:
        raise ValueError('data.cache is required (the training cache, or where to ingest data.bags)')
    if data.bags and is_main:
        ingest_cfg = IngestConfig(**{**data.ingest, 'image_size': model.image_size})
        print(ingest(data.bags, data.cache, ingest_cfg).summary(), flush=True)
    if dist.is_initialized():
        dist.barrier()
    cache = TrainingCache(data.cache)
    if cache.image_size != model.image_size:
        raise ValueError(f'cache {data.cache} holds {cache.image_size} px frames; the model expects {model.image_size}')
    if cfg.action_dim_from_data:
        model.action_dim = cache.action_dim
    elif cache.action_dim != model.action_dim:
        raise ValueError(f'cache {data.cache} has {cache.action_dim}-D actions; model.action_dim is {model.action_dim}')
    common = dict(history=model.history, frameskip=model.frameskip, val_fraction=data.val_fraction,
                  action_stats=action_stats)
    train_set = ClipDataset(cache, split='train', **common)
    val_set = ClipDataset(cache, split='val', **{**common, 'action_stats': train_set.action_stats})
    if not len(train_set):
        raise ValueError(f'cache {data.cache}: no training clip spans {model.history + 1} frames at stride '
                         f'{model.frameskip}; record longer episodes or lower model.frameskip')
    return cache, train_set, val_set


class Batches:
    """Background threads prepare the batch of each step; a step's batch depends on (seed, rank, step) only."""

    def __init__(self, dataset: ClipDataset, batch_size: int, seed: int, rank: int, device, ahead: int):
        self.dataset, self.batch_size, self.seed, self.rank, self.device = dataset, batch_size, seed, rank, device
        self.pool = ThreadPoolExecutor(max(1, min(ahead, 4)))
        self.ahead, self.pending = max(1, ahead), {}

    def _make(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        clip = self.dataset.batch(rng.integers(0, len(self.dataset), self.batch_size))
        tensors = {k: torch.from_numpy(v) for k, v in clip.items()}
        if self.device.type == 'cuda':
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors

    def get(self, step: int) -> dict[str, torch.Tensor]:
        for s in range(step, step + self.ahead):
            if s not in self.pending:
                self.pending[s] = self.pool.submit(self._make, s)
        batch = self.pending.pop(step).result()
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------- training

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


@torch.no_grad()
def validate(model: WorldModel, val_set: ClipDataset, train_set: ClipDataset, cfg: RunConfig) -> dict[str, float]:
    """Held-out losses (fixed batches and SIGReg directions) beside two baselines (copying the last frame,
    other clips' actions), embedding spread, and a linear state probe."""
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(1234)
    shuffle = torch.Generator().manual_seed(1234)
    sums, embeddings, states = {'pred': 0.0, 'sigreg': 0.0, 'pred_copy': 0.0, 'pred_shuffled': 0.0}, [], []
    for _ in range(cfg.train.val_batches):
        clip = {k: torch.from_numpy(v).to(device) for k, v in val_set.sample(cfg.train.batch_size, rng).items()}
        emb = model.encode(clip['frames'])  # (B, T, D)
        for key, value in prediction_errors(model, emb, clip['actions'], shuffle).items():
            sums[key] += value
        sums['sigreg'] += float(model.sigreg(emb.transpose(0, 1), step=0))
        embeddings.append(emb.flatten(0, 1).float().cpu())
        if 'state' in clip:
            states.append(clip['state'].flatten(0, 1).float().cpu())
    emb = torch.cat(embeddings)  # (N, D)
    std = emb.std(dim=0)  # (D,)
    metrics = {k: v / cfg.train.val_batches for k, v in sums.items()}
    metrics.update(emb_std_min=float(std.min()), emb_std_mean=float(std.mean()))
    if states:
        metrics['probe_r2'] = probe_r2(model, train_set, emb, torch.cat(states), cfg.train.batch_size, device)
    model.train()
    return metrics


def prediction_errors(model: WorldModel, emb: torch.Tensor, actions: torch.Tensor,
                      shuffle: torch.Generator) -> dict[str, float]:
    """Prediction MSE of clips' embeddings emb (B, T, D) from their actions (B, T, K), beside two baselines it
    must beat: copying the last frame (``pred_copy``) and predicting from other clips' actions (``pred_shuffled``)."""
    actions = actions[:, :-1]  # (B, T-1, K)
    other = actions[torch.randperm(len(actions), generator=shuffle).to(actions.device)]  # (B, T-1, K)
    mse = torch.nn.functional.mse_loss
    return {'pred': float(mse(model.predict(emb[:, :-1], actions), emb[:, 1:])),
            'pred_copy': float(mse(emb[:, :-1], emb[:, 1:])),
            'pred_shuffled': float(mse(model.predict(emb[:, :-1], other), emb[:, 1:]))}


def probe_r2(model, train_set, val_emb, val_state, batch_size, device) -> float:
    """R^2 of a least-squares linear probe fitted on training frames, scored on held-out frames."""
    rng = np.random.default_rng(4321)
    fit_emb, fit_state = [], []
    for _ in range(max(1, 2048 // (batch_size * (model.cfg.history + 1)))):
        clip = train_set.sample(batch_size, rng)
        fit_emb.append(model.encode(torch.from_numpy(clip['frames']).to(device)).flatten(0, 1).float().cpu().numpy())
        fit_state.append(clip['state'].reshape(-1, clip['state'].shape[-1]))
    truth = val_state.double().numpy()  # (N, S)
    predicted = linear_probe(np.concatenate(fit_emb), np.concatenate(fit_state), val_emb.numpy())  # (N, S)
    return r_squared(predicted, truth)


class MetricsLog:
    COLUMNS = ('step', 'split', 'lr', 'total', 'pred', 'sigreg', 'grad_norm', 'clips_per_s',
               'emb_std_min', 'emb_std_mean', 'probe_r2', 'pred_copy', 'pred_shuffled')

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if resume_step and path.exists():  # drop rows logged after the checkpoint we resume from
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r['step']) <= resume_step]
        with open(path, 'w', newline='') as f:
            writer = csv.DictWriter(f, self.COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(path.parent / 'tensorboard'))
        except ImportError:  # TensorBoard is optional
            self.tensorboard = None

    def write(self, step: int, split: str, values: dict[str, float]):
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, self.COLUMNS).writerow({'step': step, 'split': split, **values})
        if self.tensorboard:
            for key, value in values.items():
                self.tensorboard.add_scalar(f'{split}/{key}', value, step)


def plot_curves(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))

    def series(split, key):
        points = [(int(r['step']), float(r[key])) for r in rows if r['split'] == split and r[key] not in ('', None)]
        return tuple(zip(*points, strict=True)) if points else ((), ())

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for split, style in (('train', '-'), ('val', 'o-')):
        for key in ('pred', 'sigreg'):
            axes[0].plot(*series(split, key), style, label=f'{split} {key}', markersize=3)
    for key, label in (('pred_copy', 'val: copy the last frame'), ('pred_shuffled', "val: other clips' actions")):
        axes[0].plot(*series('val', key), 'x--', label=label, markersize=4)
    axes[0].set_yscale('log')
    axes[0].set_title('losses')
    axes[1].plot(*series('val', 'emb_std_min'), 'o-', label='min per-dim std')
    axes[1].plot(*series('val', 'emb_std_mean'), 'o-', label='mean per-dim std')
    axes[1].set_title('held-out embedding spread (collapse alarm)')
    axes[2].plot(*series('val', 'probe_r2'), 'o-', label='state probe R^2')
    axes[2].set_title('linear probe of the state (held out)')
    for ax in axes:
        ax.set_xlabel('step')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name not in ('auto', 'cpu', 'cuda'):
        raise ValueError(f"train.device must be auto, cpu or cuda, got {name!r}")
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('train.device is cuda but no CUDA device is available')
    use_cuda = name == 'cuda' or (name == 'auto' and torch.cuda.is_available())
    return torch.device(f'cuda:{local_rank}') if use_cuda else torch.device('cpu')


def train(cfg: RunConfig, resume: bool = False, progress: bool = True) -> tuple[Path, WorldModel]:
    """Runs the loop; returns the final checkpoint path and the trained model.

    Raises TrainingDivergedError on a NaN/inf loss, leaving the last good checkpoint in place.
    """
    world, rank, local_rank = (int(os.environ.get(k, d)) for k, d in (('WORLD_SIZE', 1), ('RANK', 0),
                                                                    ('LOCAL_RANK', 0)))
    device = resolve_device(cfg.train.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    is_main, tc = rank == 0, cfg.train
    out = Path(tc.out_dir)
    last_path = out / 'last.safetensors'

    resumed = None
    if resume:
        try:
            resumed = load_checkpoint(last_path)
        except CheckpointError as err:
            raise SystemExit(f'--resume: {err}') from None
    stats = ActionStats(resumed.action_mean, resumed.action_std) if resumed else None
    cache, train_set, val_set = prepare_data(cfg, stats, is_main)
    stats = train_set.action_stats
    if resumed and resumed.config != cfg.model:
        raise SystemExit(f'--resume: {last_path} was trained with another model config')

    torch.manual_seed(tc.seed)
    model = WorldModel(cfg.model)
    start_step = 0
    if resumed:
        model.load_state_dict(resumed.model.state_dict())
        start_step = int(resumed.metadata['step'])
    model.to(device).train()
    ddp_model = model
    if world > 1:
        if device.type == 'cuda':
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    optimiser = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                  fused=device.type == 'cuda')
    if resumed:
        restore_optimiser(optimiser, resumed.extra, resumed.metadata['optimizer_param_groups'])

    data_summary = {'cache': str(cache.root), 'episodes': len(cache.episodes),
                    'train_episodes': len(train_set.episodes), 'val_episodes': len(val_set.episodes),
                    'train_clips': len(train_set), 'control_period': cache.control_period,
                    'ingest': cache.index.get('settings', {})}

    def save(path: Path, step: int, with_optimiser: bool):
        extra, groups = optimiser_tensors(optimiser) if with_optimiser else ({}, None)
        metadata = {'step': step, 'config': cfg.to_dict(), 'data': data_summary}
        if groups is not None:
            metadata['optimizer_param_groups'] = groups
        save_checkpoint(path, model, stats.mean, stats.std, metadata=metadata, extra_tensors=extra)

    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        log = MetricsLog(out / 'metrics.csv', start_step)
        params = sum(p.numel() for p in model.parameters())
        print(f'{params / 1e6:.2f}M parameters on {device} x{world}; {len(train_set)} training clips from '
              f'{len(train_set.episodes)} episodes, {len(val_set.episodes)} held out', flush=True)
    amp = autocast(device, tc)
    batches = Batches(train_set, tc.batch_size, tc.seed, rank, device, cfg.data.prefetch)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    totals = torch.zeros(4, device=device)  # running sums of total, pred, sigreg, grad norm
    schedule = Schedule.of(tc, len(train_set), world)
    bar = tqdm(range(start_step, schedule.steps), initial=start_step, total=schedule.steps,
               disable=not (progress and is_main),
               unit='step', dynamic_ncols=True)
    window_start, window_steps, last_good = time.perf_counter(), 0, start_step
    try:
        for step in bar:
            terms, grad_norm = train_step(ddp_model, optimiser, batches.get(step), step, tc, schedule, amp,
                                          world > 1)
            # Accumulate on the device: no host sync per step; checked at every log and checkpoint.
            nonfinite |= ~torch.isfinite(terms['total'].detach()) | ~torch.isfinite(grad_norm)
            totals += torch.stack([terms['total'].detach(), terms['pred'].detach(), terms['sigreg'].detach(),
                                   grad_norm.detach()]).float()
            window_steps += 1
            done = step + 1
            at_checkpoint = done % tc.checkpoint_every == 0 or done == schedule.steps
            if done % tc.log_every == 0 or at_checkpoint or done % tc.val_every == 0:
                if bool(nonfinite):
                    raise TrainingDivergedError(
                        f'loss became NaN/inf between steps {last_good} and {done}; stopped. The last good '
                        f'checkpoint is {last_path if last_path.exists() else "(none yet)"}'
                        + (f' (step {last_good})' if last_path.exists() else ''))
                mean = (totals / window_steps).tolist()
                elapsed = time.perf_counter() - window_start
                values = {'lr': schedule.lr_at(step), 'total': mean[0], 'pred': mean[1], 'sigreg': mean[2],
                          'grad_norm': mean[3], 'clips_per_s': window_steps * tc.batch_size * world / elapsed}
                if is_main:
                    log.write(done, 'train', values)
                    bar.set_postfix(pred=f'{mean[1]:.4f}', sigreg=f'{mean[2]:.3f}',
                                    clips_s=f"{values['clips_per_s']:.0f}")
                totals.zero_()
                window_start, window_steps = time.perf_counter(), 0
            if is_main and (done % tc.val_every == 0 or done == schedule.steps) and len(val_set):
                metrics = validate(model, val_set, train_set, cfg)
                log.write(done, 'val', metrics)
                if metrics['emb_std_min'] < 0.05:
                    bar.write(f'collapse alarm at step {done}: an embedding dimension has held-out std '
                              f"{metrics['emb_std_min']:.4f}")
                if metrics['pred'] >= metrics['pred_copy']:
                    bar.write(f"step {done}: the predictor does no better than copying the last frame (val pred "
                              f"{metrics['pred']:.4f}, copy {metrics['pred_copy']:.4f}); train longer, or try "
                              'model.predictor.residual=true')
                bar.write(f'step {done}: ' + ', '.join(f'val {k} {v:.4f}' for k, v in metrics.items()))
            if at_checkpoint:
                if is_main:
                    save(last_path, done, with_optimiser=True)
                last_good = done
    finally:
        batches.close()
        bar.close()
    final = out / 'model.safetensors'
    if is_main:
        save(final, schedule.steps, with_optimiser=False)
        plot_curves(out / 'metrics.csv', out / 'curves.png')
        print(f'wrote {final}, {out / "curves.png"} and {out / "metrics.csv"}', flush=True)
    return final, model


def add_prior(cfg: RunConfig, progress: bool = True) -> Path:
    """Train the action prior on the run's model (or ``prior.init_from``) and write OUT_DIR/model.safetensors
    with it; the world model's weights are unchanged."""
    source = Path(cfg.prior.init_from or Path(cfg.train.out_dir) / 'model.safetensors')
    ckpt = load_checkpoint(source)
    if not cfg.data.cache:
        raise ValueError('the action prior trains on data.cache: set it')
    if cfg.prior.init_from and cfg.data.bags:  # no world-model run ingested them
        ingest_cfg = IngestConfig(**{**cfg.data.ingest, 'image_size': ckpt.config.image_size})
        print(ingest(cfg.data.bags, cfg.data.cache, ingest_cfg).summary(), flush=True)
    prior, report = train_prior(ckpt, cfg.data.cache, cfg.prior, cfg.data.val_fraction, cfg.train.seed, progress)
    out = Path(cfg.train.out_dir) / 'model.safetensors'
    metadata = {**ckpt.metadata, 'prior': {'config': dataclasses.asdict(cfg.prior), 'report': report}}
    save_checkpoint(out, ckpt.model, ckpt.action_mean, ckpt.action_std, metadata=metadata, prior=prior)
    print(f"action prior: held-out NLL {report['val_nll']:.3f}, mean-squared error {report['val_mse']:.3f} "
          f"against {report['mean_action_mse']:.3f} for the mean action ({report['relative_mse']:.2f}x); "
          f'wrote {out}', flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help='training YAML (training/configs/*.yaml)')
    parser.add_argument('--resume', action='store_true', help='continue from OUT_DIR/last.safetensors')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar (logs still printed)')
    parser.add_argument('overrides', nargs='*', help='dotted key=value overrides, e.g. train.steps=200')
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (OSError, ValueError, TypeError) as err:
        raise SystemExit(f'lewm-train: bad configuration: {err}') from None
    try:
        if not cfg.prior.init_from:
            train(cfg, resume=args.resume, progress=not args.no_progress)
        if cfg.prior.enabled or cfg.prior.init_from:
            add_prior(cfg, progress=not args.no_progress)
    except TrainingDivergedError as err:
        print(f'lewm-train: {err}', file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        with contextlib.suppress(Exception):
            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == '__main__':
    main()
