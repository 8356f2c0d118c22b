"""What the latent space knows about a world: violation of expectation and a linear state probe.

    lewm-physics --checkpoint runs/two_room/model.safetensors --out out/two_room/physics
    lewm-physics --world push_t --checkpoint runs/push_t_small/model.safetensors --out out/push_t/physics

Violation of expectation: the same expert trajectories are rendered three ways — unperturbed, with the
moving object's colour changed from the event on, and with it teleported at the event (the world then
carries on under the same actions). The object is the agent in Two-Room and the T block in Push-T, as
in the paper. Latent surprise at a frame is the model's prediction error
``||pred(z_{<t}, a_{<t}) - z_t||^2``. A JEPA that models dynamics should be surprised by the teleport
much more than by the colour change, which breaks no physics. Paired t-tests compare each perturbed
trajectory with its own unperturbed version at the event frame.

Probe: a least-squares linear map from frozen embeddings to the true state (Two-Room: the agent's x, y;
Push-T: agent x, y, block x, y and the block angle as cos, sin), fitted on half of the trajectories and
scored on the other half (Pearson r per coordinate; the paper reports 0.996 for Two-Room's position).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from lewm_ros.model.checkpoint import Checkpoint, load_checkpoint
from lewm_ros.sim.registry import WORLDS, make_policy, make_world, world_spec
from lewm_ros.sim.world import World
from lewm_ros.tools.probe import linear_probe

VARIANTS = ('unperturbed', 'colour change', 'teleport')


def expert_trajectory(world: World, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """States (steps+1, S) and actions (steps, A) of one noisy-expert episode."""
    world.reset(seed=seed)
    policy = make_policy('expert', world, seed)
    states, actions = [world.get_state()], []
    for _ in range(steps):
        actions.append(policy.act())
        world.step(actions[-1])
        states.append(world.get_state())
    return np.array(states), np.array(actions)


def render_variant(world: World, states: np.ndarray, actions: np.ndarray, variant: str, event: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Frames (steps+1, S, S, 3) of the trajectory under ``variant``; the change shows from frame ``event``."""
    perturbation = world_spec(world.name).perturbation
    normal_colour = getattr(world, perturbation.colour_attribute)
    moved = perturbation.teleported
    frames = []
    world.set_state(states[0])
    for t in range(len(states)):
        if variant == 'teleport' and t == event:
            jump = world.get_state()
            position = jump[moved][:2].copy()
            while np.linalg.norm(jump[moved][:2] - position) < perturbation.min_jump:
                jump[moved] = world.sample_state(rng)[moved]
            world.set_state(jump)
        if variant == 'colour change' and t == event:
            setattr(world, perturbation.colour_attribute, type(normal_colour)(perturbation.new_colour)
                    if isinstance(normal_colour, tuple) else np.asarray(perturbation.new_colour, np.float32))
        frames.append(world.render() if variant == 'teleport' else world.render_state(states[t]))
        if variant == 'teleport' and t < len(actions):
            world.step(actions[t])
    setattr(world, perturbation.colour_attribute, normal_colour)
    return np.stack(frames)


@torch.inference_mode()
def surprise_per_frame(ckpt: Checkpoint, frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Prediction error at each kept frame 1..n-1 (frames at stride frameskip), NaN at frame 0."""
    model, fs = ckpt.model, ckpt.config.frameskip
    kept = frames[::fs]  # (n, S, S, 3)
    n = len(kept)
    blocks = ckpt.normalise(actions[: (n - 1) * fs]).reshape(n - 1, -1)  # (n-1, K)
    emb = model.encode(torch.as_tensor(kept))  # (n, D)
    blocks = torch.as_tensor(blocks, dtype=torch.float32)  # (n-1, K)
    surprise = np.full(n, np.nan)
    for i in range(1, n):
        context = slice(max(0, i - model.cfg.history), i)
        predicted = model.predict(emb[context][None], blocks[context][None])[0, -1]  # (D,)
        surprise[i] = float((predicted - emb[i]).square().sum())
    return surprise


@torch.inference_mode()
def state_probe(ckpt: Checkpoint, frames: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                fit: np.ndarray) -> dict:
    """Linear probe of the targets (N, P) from embeddings; fit on rows ``fit``, scored on the rest (the position
    error is the first two targets', in their unit)."""
    emb = ckpt.model.encode(torch.as_tensor(frames)).double().numpy()  # (N, D)
    predicted, truth = linear_probe(emb[fit], targets[fit], emb[~fit]), targets[~fit]  # (M, P)
    r = {f'pearson_r_{name}': float(np.corrcoef(predicted[:, k], truth[:, k])[0, 1]) for k, name in enumerate(names)}
    position_error = np.sqrt(((predicted[:, :2] - truth[:, :2]) ** 2).sum(axis=1).mean())
    return {**r, 'pearson_r_mean': float(np.mean(list(r.values()))), 'position_rmse': float(position_error),
            'test_frames': int((~fit).sum())}


def plot(curves: dict[str, np.ndarray], event_frame: int, frameskip: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, curve in curves.items():
        predicted = curve[:, 1:]  # frame 0 has no prediction (NaN)
        mean = predicted.mean(axis=0)
        sem = predicted.std(axis=0) / np.sqrt(len(curve))
        steps = np.arange(1, len(mean) + 1) * frameskip
        ax.plot(steps, mean, 'o-', markersize=3, label=variant)
        ax.fill_between(steps, mean - sem, mean + sem, alpha=0.25)
    ax.axvline(event_frame * frameskip, color='k', linestyle='--', linewidth=1, label='event')
    ax.set_xlabel('control step')
    ax.set_ylabel('latent surprise ||pred - z||^2')
    ax.set_yscale('log')
    ax.set_title(f'{title} violation of expectation (mean ± s.e.m.)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    run(argv)


def run(argv=None) -> dict:
    """``main`` returning the results (for tests and scripts)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--world', default='two_room', choices=sorted(WORLDS),
                        help="a world with a violation-of-expectation perturbation (its SPEC's)")
    parser.add_argument('--trajectories', type=int, default=50)
    parser.add_argument('--steps', type=int, default=60, help='control steps per trajectory')
    parser.add_argument('--event-block', type=int, default=6, help='the event shows at kept frame N (step N*frameskip)')
    parser.add_argument('--seed', type=int, default=777_000, help='seeds no training episode used')
    parser.add_argument('--out', type=Path, default=Path('out/two_room/physics'))
    args = parser.parse_args(argv)
    if world_spec(args.world).perturbation is None:  # asked here: the parser imports no world
        parser.error(f'world {args.world} defines no violation-of-expectation perturbation')

    ckpt = load_checkpoint(args.checkpoint)
    world = make_world(args.world, image_size=ckpt.config.image_size)
    probe = world_spec(args.world).probe
    fs, event = ckpt.config.frameskip, args.event_block
    rng = np.random.default_rng(args.seed)
    curves = {variant: [] for variant in VARIANTS}
    probe_frames, probe_positions, probe_fit = [], [], []
    for index in range(args.trajectories):
        states, actions = expert_trajectory(world, args.steps, args.seed + index)
        for variant in VARIANTS:
            frames = render_variant(world, states, actions, variant, event * fs, rng)
            curves[variant].append(surprise_per_frame(ckpt, frames, actions))
            if variant == 'unperturbed':
                probe_frames.append(frames)
                probe_positions.append(probe.targets(states))
                probe_fit.append(np.full(len(frames), index % 2 == 0))
    curves = {variant: np.array(values) for variant, values in curves.items()}  # (trajectories, n)

    at_event = {variant: curve[:, event] for variant, curve in curves.items()}  # (trajectories,)
    before = {variant: np.nanmean(curve[:, 1:event], axis=1) for variant, curve in curves.items()}
    results = {'checkpoint': str(args.checkpoint), 'world': args.world, 'trajectories': args.trajectories,
               'event_step': event * fs, 'seed': args.seed, 'surprise': {}, 'paired_t_tests': {}}
    for variant in VARIANTS:
        results['surprise'][variant] = {'at_event_mean': float(at_event[variant].mean()),
                                        'at_event_sem': float(stats.sem(at_event[variant])),
                                        'before_event_mean': float(before[variant].mean())}
    for variant in VARIANTS[1:]:
        test = stats.ttest_rel(at_event[variant], at_event['unperturbed'])
        results['paired_t_tests'][f'{variant} vs unperturbed'] = {'t': float(test.statistic), 'p': float(test.pvalue)}
    test = stats.ttest_rel(at_event['teleport'], at_event['colour change'])
    results['paired_t_tests']['teleport vs colour change'] = {'t': float(test.statistic), 'p': float(test.pvalue)}
    results['probe'] = state_probe(ckpt, np.concatenate(probe_frames), np.concatenate(probe_positions), probe.names,
                                   np.concatenate(probe_fit))

    print(f"violation of expectation, {args.trajectories} trajectories, event at step {event * fs}")
    for variant, entry in results['surprise'].items():
        print(f"  {variant:14s} surprise at event {entry['at_event_mean']:9.4f} ± {entry['at_event_sem']:.4f}"
              f"   (before the event {entry['before_event_mean']:.4f})")
    for name, test in results['paired_t_tests'].items():
        print(f"  paired t-test {name:28s} t = {test['t']:7.2f}  p = {test['p']:.2e}")
    readings = ', '.join(f"{name} {results['probe']['pearson_r_' + name]:.3f}" for name in probe.names)
    position = f"; position RMSE {results['probe']['position_rmse']:.3g} {probe.unit}" if probe.unit else ''
    print(f'state probe (held-out frames), Pearson r: {readings}{position}')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'physics.json').write_text(json.dumps(results, indent=1))
    plot(curves, event, fs, world.name, args.out / 'surprise.png')
    print(f"wrote {args.out / 'physics.json'} and {args.out / 'surprise.png'}")
    return results


if __name__ == '__main__':
    main()
