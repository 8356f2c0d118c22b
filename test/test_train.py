"""The trainer end to end: bags -> ingest -> train -> checkpoint, resume after SIGKILL, DDP, NaN stop."""

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim.collect import CollectSettings, collect
from lewm_ros.tools.run_config import load_config
from lewm_ros.tools.train import TrainingDivergedError, train

CHECK_PREDICTOR = Path(__file__).parents[1] / 'training' / 'check_predictor.py'

TINY_MODEL = {
    'encoder': {'channels': [8, 16, 32, 32], 'width': 32},
    'embed_dim': 32, 'projector_hidden': 64, 'sigreg_directions': 128,
    'predictor': {'depth': 2, 'heads': 2, 'head_dim': 16, 'mlp_dim': 64},
}


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_data')
    settings = CollectSettings(world='two_room', task='navigate', policy='expert', steps=60, image_size=64)
    collect(settings, episodes=6, out=root / 'bags', progress=False)
    return root / 'bags'


def write_config(tmp_path, bags, out, **train_overrides):
    config = {
        'preset': 'small',
        'model': TINY_MODEL,
        'data': {'cache': str(tmp_path / 'cache'), 'bags': [str(bags)], 'val_fraction': 0.3,
                 'ingest': {'state_topic': 'state', 'action': {'dim': 2}, 'state': {}}},
        'train': {'steps': 40, 'batch_size': 16, 'lr': 1e-3, 'warmup_fraction': 0.05, 'device': 'cpu',
                  'log_every': 5, 'val_every': 20, 'val_batches': 2, 'checkpoint_every': 10,
                  'out_dir': str(out), **train_overrides},
    }
    path = tmp_path / f'{out.name}.yaml'
    path.write_text(yaml.safe_dump(config))
    return path


def run_trainer(config, *extra, timeout=300):
    return subprocess.run([sys.executable, '-m', 'lewm_ros.tools.train', '--config', str(config),
                           '--no-progress', *extra], capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def params_of(path):
    return load_checkpoint(path).model.state_dict()


def test_end_to_end_loss_goes_down_and_checkpoint_reloads(tmp_path, bags):
    out = tmp_path / 'run'
    cfg = load_config(str(write_config(tmp_path, bags, out)))
    final, model = train(cfg, progress=False)

    for name in ('model.safetensors', 'last.safetensors', 'metrics.csv', 'curves.png', 'config.yaml'):
        assert (out / name).is_file(), name
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    train_rows = [r for r in rows if r['split'] == 'train']
    assert float(train_rows[-1]['total']) < float(train_rows[0]['total'])
    val_rows = [r for r in rows if r['split'] == 'val']
    assert val_rows and all(r['probe_r2'] for r in val_rows), 'validation must probe the state topic'
    assert all(float(r['pred']) >= 0 and float(r['emb_std_min']) > 0 for r in val_rows)
    assert all(float(r['pred_copy']) > 0 and float(r['pred_shuffled']) > 0 for r in val_rows)

    ckpt = load_checkpoint(final)
    assert ckpt.metadata['step'] == 40 and ckpt.metadata['data']['val_episodes'] >= 1
    assert ckpt.config.action_dim == 2 and ckpt.config.embed_dim == 32
    frames = torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model.encode(frames), model.encode(frames), rtol=0, atol=0)

    # the diagnostic script reads the same checkpoint and cache: the baselines and one R^2 per state variable
    check = subprocess.run([sys.executable, str(CHECK_PREDICTOR), '--checkpoint', str(final), '--cache',
                            str(tmp_path / 'cache'), '--fit-cache', str(tmp_path / 'cache'), '--world', 'two_room',
                            '--clips', '32'], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert 'copying the last frame' in check.stdout and "other clips' actions" in check.stdout
    lines = dict(line.split(': ', 1) for line in check.stdout.splitlines() if 'R^2: ' in line)
    for probe in ('linear probe R^2', '10-nearest-neighbour R^2'):
        r2 = dict(item.split() for item in lines[probe].split(', '))
        assert set(r2) == {'x', 'y'} and all(float(v) <= 1 for v in r2.values()), check.stdout


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, bags):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    done = run_trainer(write_config(tmp_path, bags, straight))
    assert done.returncode == 0, done.stderr

    config = write_config(tmp_path, bags, killed)
    process = subprocess.Popen([sys.executable, '-m', 'lewm_ros.tools.train', '--config', str(config),
                                '--no-progress'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / 'last.safetensors').exists():
        assert process.poll() is None and time.monotonic() < deadline, 'trainer ended before its first checkpoint'
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(killed / 'last.safetensors').metadata['step']
    assert killed_at < 40, 'the run was meant to be killed mid-way'

    resumed = run_trainer(config, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    expected, got = params_of(straight / 'model.safetensors'), params_of(killed / 'model.safetensors')
    for name in expected:  # bitwise: batches, dropout and SIGReg directions are functions of the step
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_ddp_with_two_gloo_processes(tmp_path, bags):
    out = tmp_path / 'ddp'
    config = write_config(tmp_path, bags, out, steps=10, val_every=10)
    # Own session, so that a hung run takes its ranks down with it on timeout.
    process = subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
         '-m', 'lewm_ros.tools.train', '--config', str(config), '--no-progress'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, 'OMP_NUM_THREADS': '1'})
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-3000:]
    assert 'x2' in stdout  # the run reports two ranks
    ckpt = load_checkpoint(out / 'model.safetensors')
    assert ckpt.metadata['step'] == 10
    assert all(torch.isfinite(v).all() for v in ckpt.model.state_dict().values() if v.is_floating_point())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, bags, monkeypatch):
    out = tmp_path / 'nan'
    cfg = load_config(str(write_config(tmp_path, bags, out)))
    real_loss = WorldModel.loss

    def poisoned(self, clip, step=None, distributed=False):
        terms = real_loss(self, clip, step, distributed)
        if step >= 25:
            terms['total'] = terms['total'] * float('nan')
        return terms

    monkeypatch.setattr(WorldModel, 'loss', poisoned)
    with pytest.raises(TrainingDivergedError, match=r'NaN/inf between steps 20 and 30'):
        train(cfg, progress=False)
    good = load_checkpoint(out / 'last.safetensors')
    assert good.metadata['step'] == 20
    assert all(torch.isfinite(v).all() for v in good.model.state_dict().values() if v.is_floating_point())
    assert not (out / 'model.safetensors').exists()


def test_schedule_follows_the_official_curve_for_an_epoch_count():
    """10 epochs of a 100-epoch cosine with 1% warm-up, as the official recipe (epoch = 10 steps here)."""
    from lewm_ros.tools.optimiser import Schedule
    from lewm_ros.tools.run_config import TrainConfig

    lr = 5e-5
    schedule = Schedule.of(TrainConfig(epochs=10, schedule_epochs=100, warmup_fraction=0.01, lr=lr, batch_size=128),
                           train_clips=1280 - 5)
    assert (schedule.steps, schedule.horizon, schedule.warmup) == (100, 1000, 10)
    total, warmup = 1000, 10
    for step in (0, 3, 9, 10, 50, 99):  # the official per-step rule, written out
        expected = lr * step / warmup if step < warmup else \
            lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert schedule.lr_at(step) == pytest.approx(expected, rel=1e-12)
    assert schedule.lr_at(99) > 0.97 * lr  # stopped early: the rate stays near its peak
    plain = Schedule.of(TrainConfig(steps=200, warmup_fraction=0.05, lr=lr), train_clips=10)
    assert (plain.steps, plain.horizon) == (200, 200) and plain.lr_at(199) < 1e-3 * lr
    assert Schedule.of(TrainConfig(epochs=10, batch_size=128), train_clips=1280, ranks=2).steps == 50


def test_action_prior_and_frame_decoder_train_on_the_frozen_model(tmp_path, bags):
    out = tmp_path / 'with_prior'
    config = write_config(tmp_path, bags, out)
    raw = yaml.safe_load(config.read_text())
    raw['prior'] = {'enabled': True, 'horizon': 3, 'hidden': 64, 'steps': 300, 'batch_size': 64}
    config.write_text(yaml.safe_dump(raw))
    result = run_trainer(config)
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(out / 'model.safetensors')
    assert ckpt.prior is not None and ckpt.prior.cfg.horizon == 3
    report = ckpt.metadata['prior']['report']
    assert report['train_nll_end'] < report['train_nll_start'] - 0.1  # training lowers its loss
    assert report['train_relative_mse'] < 0.9  # its mean fits the actions better than the mean action
    assert np.isfinite(report['relative_mse'])  # held out: 2 episodes here, too few to test generalisation
    torch.testing.assert_close(ckpt.model.state_dict(), params_of(out / 'last.safetensors'))  # the model is frozen

    # then a frame decoder for the same checkpoint: the world model and the prior stay as they were
    with_decoder = tmp_path / 'with_decoder'
    result = run_trainer(config, f'decoder.init_from={out / "model.safetensors"}', f'train.out_dir={with_decoder}',
                         'decoder.channels=[16,16,8,8]', 'decoder.steps=300', 'decoder.batch_size=32')
    assert result.returncode == 0, result.stderr
    assert 'frame decoder: held-out pixel MSE' in result.stdout
    decoded = load_checkpoint(with_decoder / 'model.safetensors')
    torch.testing.assert_close(decoded.model.state_dict(), ckpt.model.state_dict())  # no gradient reached it
    torch.testing.assert_close(decoded.prior.state_dict(), ckpt.prior.state_dict())
    assert decoded.metadata['prior'] == ckpt.metadata['prior']
    report = decoded.metadata['decoder']
    # it reads the frame from the latents (a 40-step model, 300 decoder steps: measured 0.48x the mean frame's)
    assert report['train_mse_end'] < 0.9 * report['train_mse_start'], report
    assert report['val_mse'] < 0.8 * report['mean_frame_mse'], report
    frames = decoded.decoder.frames(decoded.model.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)))
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == torch.uint8


def test_prior_goals_drawn_up_to_its_horizon_score_only_the_blocks_before_them(tmp_path):
    from lewm_ros.model.checkpoint import Checkpoint
    from lewm_ros.model.prior import ActionPrior
    from lewm_ros.tools.prior import PriorExamples, PriorTrainConfig

    from .test_data_clips import build_cache
    from .tiny import tiny_config

    cache = build_cache(tmp_path, [40])  # one frame per step: step g is row g
    ckpt = Checkpoint(WorldModel(tiny_config(16, action_dim=2)), np.zeros(2, np.float32), np.ones(2, np.float32))
    stride, horizon = ckpt.config.frameskip, 3
    embeddings = torch.arange(40.0)[:, None].repeat(1, 4)  # (F, D): row g's embedding is g

    def draw(min_goal_blocks):
        examples = PriorExamples(cache, embeddings, ckpt, PriorTrainConfig(horizon=horizon,
                                 min_goal_blocks=min_goal_blocks), 'all', 0.1)
        history, goal, target, scored = examples.batch(np.arange(200) % len(examples), np.random.default_rng(0))
        ahead = (goal[:, 0] - history[:, -1, 0]) / stride  # (B,) blocks from the last observed frame to the goal
        return history, ahead, target, scored

    history, ahead, target, scored = draw(1)
    assert set(ahead.tolist()) == {1.0, 2.0, 3.0}  # every distance up to the horizon
    np.testing.assert_array_equal(scored[..., 0], torch.arange(horizon) < ahead[:, None])  # the blocks before it
    # the targets are the blocks from the last observed frame on: block j's first action is step last + stride * j
    first_actions = target[:, :, 0].numpy()  # (B, H): the first action's first dimension, normalised (mean 0, std 1)
    np.testing.assert_allclose(first_actions, history[:, -1, :1].numpy() + stride * np.arange(horizon))
    _, ahead, _, fixed = draw(0)
    assert set(ahead.tolist()) == {3.0} and bool(fixed.all())  # 0: always the horizon, every block scored

    mean, std = torch.zeros_like(target), torch.full_like(target, 0.5)
    moved = target + 100 * (1 - scored)  # blocks past the goal: whatever the data did there does not count
    assert ActionPrior.nll(mean, std, moved, scored) == ActionPrior.nll(mean, std, target, scored)
    assert ActionPrior.nll(mean, std, moved, fixed) > ActionPrior.nll(mean, std, target, fixed)
    per_dim = 0.5 * ((target - mean) / std).square() + std.log()  # (B, H, K)
    torch.testing.assert_close(ActionPrior.nll(mean, std, target, scored),  # the mean over the scored blocks
                               per_dim[scored.expand_as(target).bool()].mean())
    with pytest.raises(ValueError, match='min_goal_blocks'):
        PriorTrainConfig(horizon=3, min_goal_blocks=4)


def test_cpu_bf16_autocasts_the_step_and_keeps_fp32_weights():
    from lewm_ros.model.config import ModelConfig
    from lewm_ros.tools.optimiser import Schedule, autocast, train_step
    from lewm_ros.tools.run_config import TrainConfig

    cfg = ModelConfig.from_dict({**TINY_MODEL, 'encoder': {**TINY_MODEL['encoder'], 'kind': 'cnn', 'image_size': 64}})
    model = WorldModel(cfg).train()
    frames = torch.randint(0, 256, (8, 4, 64, 64, 3), dtype=torch.uint8)
    cpu = torch.device('cpu')
    with autocast(cpu, TrainConfig()):  # off by default on the CPU
        assert model.encode(frames).dtype == torch.float32
    tc = TrainConfig(cpu_bf16=True, lr=1e-3, batch_size=8)
    with autocast(cpu, tc):
        assert model.encode(frames).dtype == torch.bfloat16

    optimiser = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    head_before = model.encoder.head.weight.detach().clone()
    clip = {'frames': frames, 'actions': torch.randn(8, 4, cfg.action_block_dim)}
    terms, grad_norm = train_step(model, optimiser, clip, 5, tc, Schedule(tc.lr, 10, 1, 10), autocast(cpu, tc))
    assert torch.isfinite(terms['total']) and torch.isfinite(grad_norm)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast computes in bf16, stores fp32
    assert not torch.equal(head_before, model.encoder.head.weight)
