"""Does a checkpoint's predictor beat copying the last frame, and does it read the actions? (a diagnostic script)

    python training/check_predictor.py --checkpoint runs/push_t_small/model.safetensors \
        --cache out/push_t/cache_heldout --fit-cache out/push_t/cache --world push_t

On clips of ``--cache`` (say, held-out episodes ingested on their own): the prediction MSE beside copying the
last frame's embedding and predicting from other clips' actions (the trainer's validation baselines,
lewm_ros.tools.validation.prediction_errors), and the R^2 per state variable of a linear probe fitted on
``--fit-cache`` frames, beside a 10-nearest-neighbour read-out from the same frames (what it reads and the
linear probe does not is coded nonlinearly; what neither reads is not in the embedding). A predictor no better
than copying plans no better than a random policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lewm_ros.data.actions import ActionStats
from lewm_ros.data.clips import ClipDataset
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.sim.registry import WORLDS, world_spec
from lewm_ros.tools.probe import linear_probe, nearest_neighbour_probe, r_squared
from lewm_ros.tools.validation import prediction_errors


@torch.no_grad()
def check(checkpoint: Path, cache: Path, fit_cache: Path, world: str, clips: int = 512, fit_clips: int = 4096,
          seed: int = 0) -> dict:
    ckpt = load_checkpoint(checkpoint)
    model, cfg = ckpt.model.eval(), ckpt.config
    stats = ActionStats(ckpt.action_mean, ckpt.action_std)
    rng, shuffle = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    probe = world_spec(world).probe

    def sample(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        data = ClipDataset(path, cfg.history, cfg.frameskip, split='all', action_stats=stats).sample(count, rng)
        emb = model.encode(torch.from_numpy(data['frames']))  # (B, T, D)
        states = probe.targets(data['state'].reshape(-1, data['state'].shape[-1]))  # (B*T, P)
        return emb, torch.from_numpy(data['actions']), states

    emb, actions, states = sample(cache, clips)
    report = prediction_errors(model, emb, actions, shuffle)
    fit_emb, _, fit_states = sample(fit_cache, fit_clips)
    fit_emb, emb = fit_emb.flatten(0, 1).numpy(), emb.flatten(0, 1).numpy()  # (B*T, D)
    for key, read_out in (('probe_r2', linear_probe), ('neighbour_r2', nearest_neighbour_probe)):
        r2 = r_squared(read_out(fit_emb, fit_states, emb), states, per_column=True)  # (P,)
        report[key] = dict(zip(probe.names, r2.round(3).tolist(), strict=True))
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--cache', required=True, type=Path, help='clips to score (e.g. held-out episodes)')
    parser.add_argument('--fit-cache', required=True, type=Path, help='frames to fit the linear probe on')
    parser.add_argument('--world', required=True, choices=sorted(WORLDS), help='names the probed state variables')
    parser.add_argument('--clips', type=int, default=512, help='clips of --cache to score')
    parser.add_argument('--fit-clips', type=int, default=4096, help='clips of --fit-cache the probes are fitted on')
    args = parser.parse_args(argv)
    report = check(args.checkpoint, args.cache, args.fit_cache, args.world, args.clips, args.fit_clips)
    print(f"prediction MSE {report['pred']:.4f}; copying the last frame {report['pred_copy']:.4f} "
          f"({report['pred_copy'] / report['pred']:.2f}x the prediction's); other clips' actions "
          f"{report['pred_shuffled']:.4f} ({report['pred_shuffled'] / report['pred']:.2f}x)")
    print('linear probe R^2: ' + ', '.join(f'{k} {v:.2f}' for k, v in report['probe_r2'].items()))
    print('10-nearest-neighbour R^2: ' + ', '.join(f'{k} {v:.2f}' for k, v in report['neighbour_r2'].items()))
    return report


if __name__ == '__main__':
    main()
