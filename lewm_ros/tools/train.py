"""Offline LeWM trainer: ``lewm-train --world NAME`` or ``--config FILE.yaml``, then ``[key=value ...]``.

A plain PyTorch loop. The configuration (lewm_ros.tools.run_config) maps one YAML 1:1 onto dataclasses; dotted
keys override it: ``train.steps=200 model.predictor.depth=2``. ``--world NAME`` takes that world's
``lewm_ros/sim/NAME/train.yaml``.

Outputs in ``train.out_dir``: ``last.safetensors`` (weights + optimiser state, every
``checkpoint_every`` steps, atomic), ``model.safetensors`` (final weights, for the planner),
``metrics.csv``, ``curves.png``, ``config.yaml``. ``--resume`` continues from ``last.safetensors``.
With ``prior.enabled: true`` the goal-conditioned action prior, and with ``decoder.enabled: true`` the frame
decoder, are then trained on the frozen model and stored in ``model.safetensors``; ``prior.init_from=CKPT`` or
``decoder.init_from=CKPT`` trains only those parts of an existing checkpoint (the parts it has are kept).

Reproducibility: a step's batch and dropout noise are functions of (seed, rank, step) alone, and
SIGReg's directions of the step, so a resumed run retraces the uninterrupted one exactly on CPU.

Multi-GPU: ``torchrun --nproc_per_node=K -m lewm_ros.tools.train --config ...`` runs DDP with
the distributed SIGReg (K ranks with batch N regularise like one batch of K*N); only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
from lewm_ros.model.device import resolve_device
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim.registry import WORLDS
from lewm_ros.tools.decoder import train_decoder
from lewm_ros.tools.optimiser import Schedule, autocast, optimiser_tensors, restore_optimiser, train_step
from lewm_ros.tools.prior import encode_cache, train_prior
from lewm_ros.tools.run_config import RunConfig, load_config, world_config
from lewm_ros.tools.validation import MetricsLog, plot_curves, validate


class TrainingDivergedError(RuntimeError):
    pass


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


def add_parts(cfg: RunConfig, progress: bool = True) -> Path:
    """Train the enabled optional parts (action prior, frame decoder) on the run's model (or ``init_from``), frozen,
    and write OUT_DIR/model.safetensors with them; the world model's weights and the parts not trained are kept."""
    source = Path(cfg.init_from or Path(cfg.train.out_dir) / 'model.safetensors')
    ckpt = load_checkpoint(source)
    if not cfg.data.cache:
        raise ValueError('the action prior and the frame decoder train on data.cache: set it')
    if cfg.init_from and cfg.data.bags:  # no world-model run ingested them
        ingest_cfg = IngestConfig(**{**cfg.data.ingest, 'image_size': ckpt.config.image_size})
        print(ingest(cfg.data.bags, cfg.data.cache, ingest_cfg).summary(), flush=True)
    embeddings = encode_cache(ckpt, TrainingCache(cfg.data.cache), 512, progress)  # (F, D), once for both
    metadata, prior, decoder = dict(ckpt.metadata), ckpt.prior, ckpt.decoder
    if cfg.prior.enabled or cfg.prior.init_from:
        prior, report = train_prior(ckpt, cfg.data.cache, cfg.prior, cfg.data.val_fraction, cfg.train.seed, progress,
                                    embeddings)
        metadata['prior'] = {'config': dataclasses.asdict(cfg.prior), 'report': report}
        print(f"action prior: held-out NLL {report['val_nll']:.3f}, mean-squared error {report['val_mse']:.3f} "
              f"against {report['mean_action_mse']:.3f} for the mean action ({report['relative_mse']:.2f}x)",
              flush=True)
    if cfg.decoder.enabled or cfg.decoder.init_from:
        decoder, report = train_decoder(ckpt, cfg.data.cache, cfg.decoder, cfg.data.val_fraction, cfg.train.seed,
                                        progress, embeddings)
        metadata['decoder'] = report
        print(f"frame decoder: held-out pixel MSE {report['val_mse']:.4f} (PSNR {report['val_psnr_db']:.1f} dB) "
              f"against {report['mean_frame_mse']:.4f} for the mean frame", flush=True)
    out = Path(cfg.train.out_dir) / 'model.safetensors'
    save_checkpoint(out, ckpt.model, ckpt.action_mean, ckpt.action_std, metadata=metadata, prior=prior,
                    decoder=decoder)
    print(f'wrote {out}', flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--world', choices=sorted(WORLDS),
                        help="a world's training configuration (lewm_ros/sim/WORLD/train.yaml)")
    source.add_argument('--config', help='a training YAML (e.g. training/configs/small.yaml)')
    parser.add_argument('--resume', action='store_true', help='continue from OUT_DIR/last.safetensors')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar (logs still printed)')
    parser.add_argument('overrides', nargs='*', help='dotted key=value overrides, e.g. train.steps=200')
    args = parser.parse_args(argv)
    try:
        cfg = load_config(world_config(args.world) if args.world else args.config, args.overrides)
    except (OSError, ValueError, TypeError) as err:
        raise SystemExit(f'lewm-train: bad configuration: {err}') from None
    try:
        if not cfg.init_from:
            train(cfg, resume=args.resume, progress=not args.no_progress)
        if cfg.prior.enabled or cfg.decoder.enabled or cfg.init_from:
            add_parts(cfg, progress=not args.no_progress)
    except (TrainingDivergedError, ValueError) as err:  # ValueError: the data or the device does not fit the config
        print(f'lewm-train: {err}', file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        with contextlib.suppress(Exception):
            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == '__main__':
    main()
