"""Self-describing, pickle-free checkpoints.

One safetensors file holds the weights (``model.*``), the action normalisation statistics
(``action.mean``, ``action.std``), optional parts trained on the frozen model (``prior.*``, the action
prior; ``decoder.*``, the frame decoder; each with its config in the header) and optional extra tensors
(``extra.*``, the trainer's optimiser state in resumable checkpoints); its string metadata holds the model
config, image size, frameskip and a free-form JSON dict. Loading never unpickles anything, and every failure is one
``CheckpointError`` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .decoder import DecoderConfig, FrameDecoder
from .prior import ActionPrior, PriorConfig
from .world_model import WorldModel

FORMAT = 'lewm_ros.checkpoint.v1'
_PICKLE_MAGIC = (b'PK\x03\x04', b'\x80')  # torch.save zip archive, raw pickle protocol >= 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the file and the reason in the message."""


@dataclass
class Checkpoint:
    model: WorldModel
    action_mean: np.ndarray  # (A,) per raw action dimension
    action_std: np.ndarray  # (A,)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. the trainer's optimiser state
    prior: ActionPrior | None = None  # the optional goal-conditioned action prior (lewm_ros.model.prior)
    decoder: FrameDecoder | None = None  # the optional frame decoder, for looking (lewm_ros.model.decoder)

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    def normalise(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions (..., A) -> the model's z-scored units."""
        return (actions - self.action_mean) / self.action_std

    def denormalise(self, actions: np.ndarray) -> np.ndarray:
        """The model's z-scored actions (..., A) -> raw units."""
        return actions * self.action_std + self.action_mean


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide checkpoints from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    path: str | Path,
    model: WorldModel,
    action_mean,
    action_std,
    metadata: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    prior: ActionPrior | None = None,
    decoder: FrameDecoder | None = None,
) -> Path:
    path = Path(path)
    cfg = model.cfg
    action_mean = np.asarray(action_mean, dtype=np.float32).reshape(-1)
    action_std = np.asarray(action_std, dtype=np.float32).reshape(-1)
    if action_mean.shape != (cfg.action_dim,) or action_std.shape != (cfg.action_dim,):
        raise ValueError(f'action statistics must have shape ({cfg.action_dim},)')
    tensors = {f'model.{k}': v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors['action.mean'] = torch.from_numpy(action_mean)
    tensors['action.std'] = torch.from_numpy(action_std)
    tensors.update({f'extra.{k}': v.detach().cpu().contiguous() for k, v in (extra_tensors or {}).items()})
    for name, part in (('prior', prior), ('decoder', decoder)):
        if part is not None:
            tensors.update({f'{name}.{k}': v.detach().cpu().contiguous() for k, v in part.state_dict().items()})
    header = {
        'format': FORMAT,
        'config': json.dumps(cfg.to_dict()),
        'image_size': str(cfg.image_size),
        'frameskip': str(cfg.frameskip),
        'metadata': json.dumps(metadata or {}),
    }
    for name, part in (('prior', prior), ('decoder', decoder)):
        if part is not None:
            header[f'{name}_config'] = json.dumps(part.cfg.to_dict())
    from safetensors.torch import save_file  # imported here: the model runs where torch alone is installed

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = 'cpu') -> Checkpoint:
    from safetensors import SafetensorError, safe_open  # imported here, as in save_checkpoint
    from safetensors.torch import load_file

    path = Path(path)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f'cannot load checkpoint {path}: {problem}')

    if not path.is_file():
        raise fail('no such file')
    try:  # safetensors parsing never executes anything, whatever the bytes
        with safe_open(str(path), framework='pt') as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        with open(path, 'rb') as f:
            head = f.read(4)
        if head.startswith(_PICKLE_MAGIC):  # only a hint for the message: a safetensors length can start so too
            raise fail('this is a pickle / torch.save file; lewm_ros never unpickles (expected safetensors)') from None
        raise fail(f'not a readable safetensors file (truncated or corrupt?): {e}') from None
    if header.get('format') != FORMAT:
        raise fail(f"not a lewm_ros checkpoint (format {header.get('format')!r}, expected {FORMAT!r})")
    try:
        cfg = ModelConfig.from_dict(json.loads(header['config']))
        metadata = json.loads(header.get('metadata', '{}'))
        action_mean = tensors.pop('action.mean').numpy()
        action_std = tensors.pop('action.std').numpy()
    except (KeyError, ValueError, TypeError) as e:
        raise fail(f'malformed header or statistics: {e}') from None
    if action_mean.shape != (cfg.action_dim,) or action_std.shape != (cfg.action_dim,):
        raise fail(f'action statistics do not have shape ({cfg.action_dim},) as the config says')
    try:
        model = WorldModel(cfg)
    except (ValueError, TypeError, RuntimeError) as e:  # a config no model can be built from
        raise fail(f'its config does not describe a buildable model: {e}') from None
    state = {k.removeprefix('model.'): v for k, v in tensors.items() if k.startswith('model.')}
    extra = {k.removeprefix('extra.'): v for k, v in tensors.items() if k.startswith('extra.')}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        raise fail(
            'weights do not match the architecture in its config '
            f'(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]})'
        )
    model.load_state_dict(state)
    if not (np.isfinite(action_mean).all() and np.isfinite(action_std).all() and (action_std > 0).all()):
        raise fail('action statistics are not finite and positive')
    parts = {  # optional: checkpoints without them load as before
        'prior': ('action prior', lambda config: ActionPrior(PriorConfig(**config), cfg.embed_dim, cfg.history,
                                                              cfg.action_block_dim)),
        'decoder': ('frame decoder', lambda config: FrameDecoder(DecoderConfig(**config), cfg.embed_dim,
                                                                  cfg.image_size))}
    loaded = {}
    for name, (what, build) in parts.items():
        if f'{name}_config' not in header:
            loaded[name] = None
            continue
        try:
            part = build(json.loads(header[f'{name}_config']))
            part.load_state_dict({k.removeprefix(f'{name}.'): v for k, v in tensors.items()
                                  if k.startswith(f'{name}.')})
        except (TypeError, ValueError, RuntimeError) as e:
            raise fail(f'malformed {what}: {e}') from None
        loaded[name] = part.to(device).eval()
    return Checkpoint(model.to(device).eval(), action_mean, action_std, metadata, path, extra, **loaded)
