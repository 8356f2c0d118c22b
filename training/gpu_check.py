"""One command for a GPU machine: training throughput and MFU, planning, encoding, DDP (torch only, no ROS).

    python training/gpu_check.py                      # the paper preset on the first CUDA device, < 8 min
    python training/gpu_check.py --device cpu --quick # the same checks on a toy budget, < 1 min (the tests)

Measures, in one run, and prints a table plus a JSON file (``--out``):

- training the ``paper`` preset: steps/s and clips/s at batch 128 with bf16 autocast, the model FLOPs of a
  step counted from the config (lewm_ros.model.flops), achieved TFLOP/s and MFU against the device's dense
  bf16 peak (named below; unknown devices get no MFU);
- planning with the ``paper`` preset at 300 x 30 x 30, H 5: our plan (lewm_ros.planning.MPC) eager and, on
  CUDA, captured (``mpc.capture: compile``: torch.compile with CUDA graphs), and the official-style loop
  (lewm_ros.planning.official), measured in the same run, and the ratios;
- encode throughput of 224 px frames;
- with more than one visible GPU, a short DDP smoke test (NCCL, SIGReg in distributed mode).

Weights are random: the cost of a step or a plan does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_plan import measure, measure_official  # training/bench_plan.py: a script's folder is first on sys.path

from lewm_ros.model.config import preset
from lewm_ros.model.flops import encoder_flops, training_step_flops
from lewm_ros.model.world_model import WorldModel
from lewm_ros.planning.cem import PAPER_SEARCH, CEMConfig

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by a substring of the device name.
PEAK_TFLOPS = {'H200': 989.4, 'H100 SXM': 989.4, 'H100 80GB HBM3': 989.4, 'H100 PCIe': 756.0, 'H100 NVL': 835.0,
               'A100': 312.0, 'L40S': 362.0, 'L4': 121.0, 'A10G': 70.0, 'RTX 4090': 165.2}


def device_peak(name: str) -> float | None:
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def synchronise(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``fn`` after one warm-up call."""
    fn()
    synchronise(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronise(device)
    return (time.perf_counter() - started) / repeats


def random_clip(cfg, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    size, steps = cfg.image_size, cfg.history + 1
    return {'frames': torch.randint(0, 256, (batch, steps, size, size, 3), dtype=torch.uint8, device=device),
            'actions': torch.randn(batch, steps, cfg.action_block_dim, device=device)}


def check_training(cfg, device: torch.device, batch: int, steps: int) -> dict:
    model = WorldModel(cfg).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3, fused=device.type == 'cuda')
    amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=device.type == 'cuda')
    clip = random_clip(cfg, batch, device)

    def step():
        with amp:
            loss = model(clip, step=0)['total']
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()

    seconds = timed(step, device, steps)
    flops = training_step_flops(cfg, batch)
    result = {'batch': batch, 'steps_timed': steps, 'steps_per_s': 1 / seconds, 'clips_per_s': batch / seconds,
              'gflop_per_step': flops / 1e9, 'achieved_tflops': flops / seconds / 1e12}
    peak = device_peak(torch.cuda.get_device_name(device)) if device.type == 'cuda' else None
    result['peak_tflops'], result['mfu'] = peak, (result['achieved_tflops'] / peak if peak else None)
    return result


def check_planning(cfg, device: torch.device, cem: CEMConfig, plans: int) -> dict:
    """Our plan eager, and captured on CUDA (torch.compile with CUDA graphs; checked against the eager rollout
    on CPU by the test suite), and the official-style loop, each from one fresh frame per plan, timed as
    training/bench_plan.py times them: p50 ms of ours, mean ms of the official loop, and the ratios."""
    model = WorldModel(cfg).to(device).eval()
    eager = float(np.median(measure(model, cem, plans, math.inf)))
    captured = float(np.median(measure(model, cem, plans, math.inf, 'compile'))) if device.type == 'cuda' else None
    theirs = float(np.mean(measure_official(model, cem, plans, math.inf)))
    return {'budget': f'{cem.samples}x{cem.elites}x{cem.iterations}, H {cem.horizon}', 'plans': plans,
            'ours_ms_p50': 1000 * eager, 'captured_ms_p50': captured and 1000 * captured,
            'official_ms': 1000 * theirs, 'official_over_ours': theirs / eager,
            'official_over_captured': captured and theirs / captured}


def check_encoding(cfg, device: torch.device, batch: int, repeats: int) -> dict:
    model = WorldModel(cfg).to(device).eval()
    frames = torch.randint(0, 256, (batch, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, device=device)
    amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=device.type == 'cuda')

    def encode():
        with amp:
            model.encode(frames)

    seconds = timed(encode, device, repeats)
    return {'batch': batch, 'frames_per_s': batch / seconds, 'image_size': cfg.image_size,
            'achieved_tflops': batch * encoder_flops(cfg) / seconds / 1e12}


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('nccl', rank=rank, world_size=world)
    device = torch.device('cuda', rank)
    torch.cuda.set_device(device)
    cfg = preset('paper')
    model = torch.nn.parallel.DistributedDataParallel(WorldModel(cfg).to(device), device_ids=[rank])
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
    torch.manual_seed(rank)
    losses = []
    for step in range(5):
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = model(random_clip(cfg, 16, device), step=step, distributed=True)['total']
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    first = next(model.parameters()).detach().flatten()[:8].clone()
    gathered = [torch.zeros_like(first) for _ in range(world)]
    dist.all_gather(gathered, first)
    if rank == 0:
        queue.put({'gpus': world, 'losses_rank0': losses, 'finite': bool(np.all(np.isfinite(losses))),
                   'replicas_equal': all(torch.equal(gathered[0], g) for g in gathered[1:])})
    dist.destroy_process_group()


def check_ddp() -> dict:
    import socket

    import torch.multiprocessing as mp

    world = torch.cuda.device_count()
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    context = mp.get_context('spawn')
    queue = context.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, port, queue), nprocs=world, start_method='spawn')
    return queue.get()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda', help="'cuda', 'cuda:N' or 'cpu'")
    parser.add_argument('--quick', action='store_true', help='toy budgets (seconds, not minutes): a smoke run')
    parser.add_argument('--out', type=Path, default=Path('out/gpu_check.json'))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu_check: no CUDA device visible; run with --device cpu --quick for a smoke run')
    torch.manual_seed(0)
    cfg = preset('paper')
    quick = args.quick
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else (platform.processor() or 'cpu')
    report = {'device': name, 'torch': torch.__version__, 'preset': 'paper', 'quick': quick,
              'parameters': sum(p.numel() for p in WorldModel(cfg).parameters())}
    print(f"gpu_check on {name} (torch {torch.__version__}), paper preset {report['parameters'] / 1e6:.2f}M "
          f"parameters{', quick' if quick else ''}", flush=True)

    report['training'] = check_training(cfg, device, 2 if quick else 128, 1 if quick else 30)
    t = report['training']
    mfu = f"{100 * t['mfu']:.1f}% of {t['peak_tflops']:g}" if t['mfu'] else 'n/a (unknown peak)'
    print(f"train  batch {t['batch']:>4}: {t['steps_per_s']:8.2f} steps/s {t['clips_per_s']:9.1f} clips/s "
          f"{t['gflop_per_step']:9.1f} GFLOP/step {t['achieved_tflops']:7.2f} TFLOP/s  MFU {mfu}", flush=True)

    cem = CEMConfig(samples=16, elites=4, iterations=2, horizon=5) if quick else CEMConfig(**PAPER_SEARCH)
    report['planning'] = check_planning(cfg, device, cem, 1 if quick else 5)
    p = report['planning']
    captured = (f"captured {p['captured_ms_p50']:9.1f} ms ({p['official_over_captured']:.1f}x)  "
                if p['captured_ms_p50'] else 'captured n/a on CPU  ')
    print(f"plan   {p['budget']}: ours {p['ours_ms_p50']:9.1f} ms  {captured}official-style {p['official_ms']:9.1f} "
          f"ms  ratio {p['official_over_ours']:.1f}x", flush=True)

    report['encoding'] = check_encoding(cfg, device, 2 if quick else 512, 1 if quick else 20)
    e = report['encoding']
    print(f"encode {e['image_size']} px, batch {e['batch']}: {e['frames_per_s']:10.0f} frames/s "
          f"{e['achieved_tflops']:7.2f} TFLOP/s", flush=True)

    if device.type == 'cuda' and torch.cuda.device_count() > 1 and not quick:
        report['ddp'] = check_ddp()
        print(f"ddp    {report['ddp']['gpus']} GPUs: finite losses {report['ddp']['finite']}, "
              f"replicas equal {report['ddp']['replicas_equal']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f'wrote {args.out}')
    return report


if __name__ == '__main__':
    main()
