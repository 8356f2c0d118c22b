"""Training throughput through the real data path (a benchmark script, not a test).

    python training/bench_train.py --preset small --device cpu            # 2 CPU cores
    python training/bench_train.py --preset small --device cpu --cpu-bf16 # the same with bf16 autocast
    python training/bench_train.py --preset paper --device cuda           # GPU, bf16, prints MFU

Builds a throw-away cache (Two-Room episodes from lewm-collect, ingested at the preset's resolution)
unless --cache is given, then measures separately: the data loader alone (clips/s), training steps on
a batch already on the device (steps/s, clips/s), and the two together as the trainer runs them. On
CUDA it counts the FLOPs of one step with torch's FLOP counter and reports model FLOP utilisation
against the GPU's dense bf16 peak. Needs torch and lewm_ros' ROS-free core only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lewm_ros.data.clips import ClipDataset
from lewm_ros.data.ingest import IngestConfig, ingest
from lewm_ros.model.config import preset
from lewm_ros.model.device import DEVICES, resolve_device
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.tools.optimiser import Schedule, autocast, bf16_enabled, train_step
from lewm_ros.tools.run_config import TrainConfig
from lewm_ros.tools.train import Batches

DENSE_BF16_TFLOPS = {'H100': 989.4, 'H200': 989.4, 'A100': 312.0, 'L4': 121.0}


def build_cache(root: Path, image_size: int, episodes: int) -> Path:
    settings = CollectSettings(world='two_room', task='navigate', policy='expert', steps=100, image_size=image_size)
    collect(settings, episodes, root / 'bags', workers=2, progress=False)
    ingest([root / 'bags'], root / 'cache', IngestConfig(image_size=image_size, action={'dim': 2}), progress=False)
    return root / 'cache'


def timed(fn, seconds: float, sync) -> tuple[int, float]:
    fn(0)  # warm-up
    sync()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        count += 1
        fn(count)
    sync()
    return count, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='small', choices=['small', 'paper'])
    parser.add_argument('--device', default='auto', choices=DEVICES)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--seconds', type=float, default=15.0)
    parser.add_argument('--cache', type=Path, help='an existing training cache at the preset resolution')
    parser.add_argument('--episodes', type=int, default=40, help='episodes in the throw-away cache')
    parser.add_argument('--cpu-bf16', action='store_true', help='bf16 autocast on the CPU (train.cpu_bf16)')
    parser.add_argument('--peak-tflops', type=float, help='dense bf16 peak; default: looked up from the GPU name')
    args = parser.parse_args()

    device = resolve_device(args.device)
    use_cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)
    cfg = preset(args.preset)
    tc = TrainConfig(batch_size=args.batch, lr=5e-5, steps=10**9, device=device.type, cpu_bf16=args.cpu_bf16)
    schedule = Schedule(tc.lr, tc.steps, 1, tc.steps)  # the peak learning rate throughout
    name = torch.cuda.get_device_name() if use_cuda else f'cpu x{torch.get_num_threads()} threads'
    precision = 'bf16' if bf16_enabled(device, tc) else 'fp32'
    print(f'preset={args.preset} device={name} {precision} batch={args.batch} torch={torch.__version__}', flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or build_cache(Path(tmp), cfg.image_size, args.episodes)
        dataset = ClipDataset(cache, history=cfg.history, frameskip=cfg.frameskip, split='all')
        cfg.action_dim = dataset.cache.action_dim
        model = WorldModel(cfg).to(device).train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=use_cuda)
        amp = autocast(device, tc)
        batches = Batches(dataset, args.batch, seed=0, rank=0, device=device, ahead=8 if use_cuda else 2)

        loads, load_s = timed(lambda i: batches.get(i), args.seconds / 3, sync)
        loader_clips = loads * args.batch / load_s
        fixed = batches.get(10**6)
        steps, step_s = timed(lambda i: train_step(model, optimiser, fixed, i, tc, schedule, amp), args.seconds, sync)
        model_steps = steps / step_s
        both, both_s = timed(lambda i: train_step(model, optimiser, batches.get(10**7 + i), i, tc, schedule, amp),
                             args.seconds, sync)
        batches.close()

    print(f'data loader alone      {loader_clips:10.1f} clips/s')
    print(f'training step alone    {model_steps:10.3f} steps/s  {model_steps * args.batch:10.1f} clips/s')
    print(f'loader + training      {both / both_s:10.3f} steps/s  {both / both_s * args.batch:10.1f} clips/s')
    print(f'loader headroom        {loader_clips / (model_steps * args.batch):10.2f}x the model\'s appetite')
    if use_cuda:
        with FlopCounterMode(display=False) as counter:
            train_step(model, optimiser, fixed, 0, tc, schedule, amp)
        flops = counter.get_total_flops()
        peak = args.peak_tflops or next((v for k, v in DENSE_BF16_TFLOPS.items() if k in name), None)
        print(f'FLOPs per step         {flops / 1e12:10.3f} TFLOP')
        achieved = flops * model_steps / 1e12
        print(f'achieved               {achieved:10.1f} TFLOP/s' +
              (f'  MFU {100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s dense bf16' if peak else ''))


if __name__ == '__main__':
    main()
