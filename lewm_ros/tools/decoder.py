"""Training the frame decoder on a frozen world model (``lewm-train`` ``decoder:`` section).

Every frame of the training cache is encoded once by the frozen model (the action prior's ``encode_cache``);
the decoder then learns embedding -> frame with a pixel mean-squared error. The embeddings are plain tensors
computed without gradient, so nothing can reach the encoder or the predictor. Episodes are split into training
and held-out ones as for the world model. Reported: the held-out pixel MSE and PSNR, beside the MSE of the
mean training frame (what a decoder that knows nothing would score).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lewm_ros.data.cache import TrainingCache
from lewm_ros.data.clips import validation_keys
from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.model.decoder import DecoderConfig, FrameDecoder
from lewm_ros.tools.prior import encode_cache, fit_on_frozen


@dataclass
class DecoderTrainConfig:
    enabled: bool = False  # train a decoder after the world model (or on `init_from`)
    init_from: str = ''  # a trained checkpoint: train only its decoder (the world model's run is skipped)
    channels: list[int] = field(default_factory=lambda: list(DecoderConfig.channels))
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    encode_batch: int = 512

    def __post_init__(self):
        if min(self.steps, self.batch_size, self.encode_batch) < 1 or not self.lr > 0:
            raise ValueError('decoder steps, batch_size and encode_batch must be >= 1 and decoder.lr > 0')

    def model_config(self) -> DecoderConfig:
        return DecoderConfig(tuple(self.channels))


def frame_rows(cache: TrainingCache, keys: set[str], keep: bool) -> np.ndarray:
    """Frame rows of the episodes whose key is in ``keys`` (keep) or is not (not keep)."""
    steps = [np.arange(ep.step_start, ep.step_start + ep.step_count) for ep in cache.episodes
             if (ep.key in keys) == keep]
    return np.unique(cache.step_frame[np.concatenate(steps)]) if steps else np.zeros(0, np.int64)


def pixels(cache: TrainingCache, rows: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) float frames in [0, 1]."""
    return torch.as_tensor(np.asarray(cache.frames[np.sort(rows)]), dtype=torch.float32) / 255


def train_decoder(ckpt: Checkpoint, cache_dir, cfg: DecoderTrainConfig, val_fraction: float = 0.1, seed: int = 0,
                  progress: bool = True, embeddings: torch.Tensor | None = None) -> tuple[FrameDecoder, dict]:
    """A trained ``FrameDecoder`` for ``ckpt`` (frozen) and a report of its held-out reconstruction.
    embeddings: (F, D) of every cache frame, when already computed."""
    cache = TrainingCache(cache_dir)
    if embeddings is None:
        embeddings = encode_cache(ckpt, cache, cfg.encode_batch, progress)  # (F, D), no gradient
    held_out = validation_keys(cache, val_fraction)
    train_rows, val_rows = frame_rows(cache, held_out, keep=False), frame_rows(cache, held_out, keep=True)
    if not len(val_rows):
        val_rows = train_rows
    torch.manual_seed(seed)
    decoder = FrameDecoder(cfg.model_config(), ckpt.config.embed_dim, ckpt.config.image_size)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(train_rows, min(len(train_rows), 1024), replace=False))
    mean_frame = pixels(cache, sample).mean(0)  # (S, S, 3)
    decoder.start_at(embeddings[sample], mean_frame)

    def batch_loss() -> torch.Tensor:
        rows = np.sort(rng.choice(train_rows, cfg.batch_size))
        return (decoder(embeddings[rows]) - pixels(cache, rows)).square().mean()

    start, end = fit_on_frozen(decoder, batch_loss, cfg.steps, cfg.lr, 0.0, 'frame decoder', progress)
    check = np.sort(np.random.default_rng(seed + 1).choice(val_rows, min(len(val_rows), 1024), replace=False))
    with torch.inference_mode():
        target = pixels(cache, check)
        mse = float((decoder(embeddings[check]) - target).square().mean())
        baseline = float((mean_frame - target).square().mean())
    report = {'train_frames': len(train_rows), 'val_frames': len(val_rows), 'steps': cfg.steps,
              'train_mse_start': start, 'train_mse_end': end,
              'val_mse': mse, 'val_psnr_db': 10 * math.log10(1 / max(mse, 1e-12)), 'mean_frame_mse': baseline,
              'config': dataclasses.asdict(cfg)}
    return decoder, report
