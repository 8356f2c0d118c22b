"""What the trainer watches: held-out losses beside the baselines a predictor must beat, the embedding spread (the
collapse alarm), a linear probe of the state, and the metrics log with its plot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from lewm_ros.data.clips import ClipDataset
from lewm_ros.model.world_model import WorldModel
from lewm_ros.tools.probe import linear_probe, r_squared
from lewm_ros.tools.run_config import RunConfig


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
