"""The trainer's configuration: one YAML mapped 1:1 onto dataclasses, with dotted ``key=value`` overrides.

``preset`` picks the starting ModelConfig, ``model`` overrides its fields, ``train`` is TrainConfig, ``data`` is
DataConfig, ``prior`` the optional action prior's PriorTrainConfig and ``decoder`` the optional frame decoder's
DecoderTrainConfig (defaults live in those dataclasses only).
A world's own configuration is its ``train.yaml`` (``lewm-train --world NAME``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lewm_ros.model.config import ModelConfig, dataclass_from_dict, preset
from lewm_ros.sim.registry import world_spec
from lewm_ros.tools.decoder import DecoderTrainConfig
from lewm_ros.tools.prior import PriorTrainConfig


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
    device: str = 'auto'  # auto | cpu | cuda (lewm_ros.model.device)
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
    decoder: DecoderTrainConfig = field(default_factory=DecoderTrainConfig)

    def to_dict(self) -> dict:
        return {'preset': self.preset, 'model': self.model.to_dict(), 'train': dataclasses.asdict(self.train),
                'data': dataclasses.asdict(self.data), 'prior': dataclasses.asdict(self.prior),
                'decoder': dataclasses.asdict(self.decoder)}

    @property
    def init_from(self) -> str:
        """The trained checkpoint whose optional parts alone are trained ('': train the world model first)."""
        sources = {part.init_from for part in (self.prior, self.decoder) if part.init_from}
        if len(sources) > 1:
            raise ValueError(f'prior.init_from and decoder.init_from name different checkpoints: {sorted(sources)}')
        return sources.pop() if sources else ''


def world_config(name: str) -> Path:
    """The training configuration of a world (lewm_ros/sim/NAME/train.yaml)."""
    return world_spec(name).folder / 'train.yaml'


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
    sections = ('preset', 'model', 'train', 'data', 'prior', 'decoder')
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f'unknown top-level config key(s) {unknown}; known: {", ".join(sections)}')
    name = raw.get('preset', 'small')
    model_overrides = raw.get('model') or {}
    model = ModelConfig.from_dict(_merge(preset(name).to_dict(), model_overrides))
    return RunConfig(name, model, dataclass_from_dict(TrainConfig, raw.get('train') or {}, 'train'),
                     dataclass_from_dict(DataConfig, raw.get('data') or {}, 'data'),
                     action_dim_from_data='action_dim' not in model_overrides,
                     prior=dataclass_from_dict(PriorTrainConfig, raw.get('prior') or {}, 'prior'),
                     decoder=dataclass_from_dict(DecoderTrainConfig, raw.get('decoder') or {}, 'decoder'))


