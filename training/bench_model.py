"""Forward+backward throughput of the model presets (a benchmark script, not a test).

    python training/bench_model.py [--batch 128] [--seconds 10] [--device cpu|cuda|auto]
    python training/bench_model.py --learn 120      # also: does each 64 px candidate still learn?

Prints clips/s (one clip = history + 1 frames and their action blocks) for each preset, plus the
candidates the `small` preset was chosen from. On CUDA it runs in bf16 autocast. With --learn, each
64 px candidate trains for that many seconds on moving-square clips and is scored by a linear probe
of the square's position from frozen embeddings (R^2) and by its held-out prediction R^2
(1 - prediction MSE / embedding variance). Imports only torch, numpy and lewm_ros' ROS-free core,
so it runs on a GPU machine without ROS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lewm_ros.model.config import EncoderConfig, ModelConfig, PredictorConfig, preset
from lewm_ros.model.device import DEVICES, resolve_device
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim.moving_square import moving_square_clips
from lewm_ros.tools.probe import r_squared


def candidates() -> dict[str, ModelConfig]:
    """The presets plus the alternatives measured when choosing `small`."""
    vit64 = ModelConfig(
        encoder=EncoderConfig(kind='vit', image_size=64, width=128, patch_size=8, depth=6, heads=4, mlp_dim=512),
        predictor=PredictorConfig(depth=4, heads=4, head_dim=32, mlp_dim=512),
        embed_dim=128, projector_hidden=512,
    )
    cnn_narrow = preset('small')
    cnn_narrow.encoder.channels, cnn_narrow.encoder.width = (16, 32, 64, 64), 64
    cnn_narrow.embed_dim, cnn_narrow.projector_hidden = 64, 256
    cnn_narrow.predictor.depth, cnn_narrow.predictor.mlp_dim, cnn_narrow.predictor.head_dim = 2, 256, 16
    return {'paper': preset('paper'), 'small': preset('small'), 'vit64 (rejected)': vit64,
            'cnn-narrow (rejected)': cnn_narrow}


def measure(cfg: ModelConfig, batch: int, seconds: float, device: torch.device) -> tuple[float, float]:
    """Returns (clips/s, parameters in millions) for AdamW training steps on random clips."""
    model = WorldModel(cfg).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size, steps = cfg.image_size, cfg.history + 1
    clip = {
        'frames': torch.randint(0, 256, (batch, steps, size, size, 3), dtype=torch.uint8, device=device),
        'actions': torch.randn(batch, steps, cfg.action_block_dim, device=device),
    }
    amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=device.type == 'cuda')

    def train_step(step: int):
        with amp:
            loss = model.loss(clip, step=step)['total']
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for step in range(3):  # warm-up: allocator, kernels
        train_step(step)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        train_step(done)
        done += 1
        if device.type == 'cuda' and done % 10 == 0:
            torch.cuda.synchronize()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return done * batch / elapsed, sum(p.numel() for p in model.parameters()) / 1e6


def learn(cfg: ModelConfig, seconds: float, batch: int = 64) -> dict[str, float]:
    """Train on moving squares for a wall-clock budget; score the frozen embeddings."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = WorldModel(cfg).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        loss = model.loss(moving_square_clips(rng, batch, cfg.image_size), step=steps)['total']
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        steps += 1
    model.eval()
    with torch.no_grad():
        fit, test = (moving_square_clips(rng, 512, cfg.image_size) for _ in range(2))
        emb_fit, emb_test = model.encode(fit['frames']), model.encode(test['frames'])  # (B, T, D)
        pred = model.predict(emb_test[:, :-1], test['actions'][:, :-1])  # (B, T-1, D)
    x_fit = torch.cat([emb_fit.flatten(0, 1), torch.ones(emb_fit.shape[0] * emb_fit.shape[1], 1)], 1)
    x_test = torch.cat([emb_test.flatten(0, 1), torch.ones(emb_test.shape[0] * emb_test.shape[1], 1)], 1)
    probe = torch.linalg.lstsq(x_fit, fit['positions'].flatten(0, 1)).solution
    return {
        'steps': steps,
        'probe_r2': r_squared(x_test @ probe, test['positions'].flatten(0, 1)),
        'pred_r2': r_squared(pred.flatten(0, 1), emb_test[:, 1:].flatten(0, 1)),
        'min_std': float(emb_test.flatten(0, 1).std(0).min()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--device', default='auto', choices=DEVICES)
    parser.add_argument('--only', nargs='*', help='restrict to these candidate names')
    parser.add_argument('--learn', type=float, default=0, metavar='SECONDS',
                        help='also train each 64 px candidate this long on moving squares and score it')
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f'device={device} threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}')
    print(f"{'config':24s} {'params(M)':>9s} {'clips/s':>9s} {'steps/s':>8s}")
    for name, cfg in candidates().items():
        if args.only and name.split()[0] not in args.only:
            continue
        clips_per_s, params = measure(cfg, args.batch, args.seconds, device)
        print(f'{name:24s} {params:9.2f} {clips_per_s:9.1f} {clips_per_s / args.batch:8.3f}', flush=True)
    if args.learn:
        print(f'\nlearning check: {args.learn:.0f} s of training on moving squares, batch 64, CPU')
        print(f"{'config':24s} {'steps':>6s} {'probe R2':>9s} {'pred R2':>8s} {'min std':>8s}")
        for name, cfg in candidates().items():
            if cfg.image_size != 64 or (args.only and name.split()[0] not in args.only):
                continue
            r = learn(cfg, args.learn)
            scores = f"{r['steps']:6d} {r['probe_r2']:9.3f} {r['pred_r2']:8.3f} {r['min_std']:8.3f}"
            print(f'{name:24s} {scores}', flush=True)


if __name__ == '__main__':
    main()
