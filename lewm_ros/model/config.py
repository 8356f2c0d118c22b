"""Model configuration: one dataclass per component, two named presets.

Training YAMLs and checkpoints map onto these 1:1 (``to_dict`` / ``from_dict``); there is no second
set of defaults anywhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class EncoderConfig:
    kind: Literal['vit', 'cnn'] = 'vit'
    image_size: int = 224
    width: int = 192  # feature width before the projector (ViT width / CNN output width)
    # ViT
    patch_size: int = 14
    depth: int = 12
    heads: int = 3
    mlp_dim: int = 768
    # CNN: output channels of the stride-2 conv stages
    channels: tuple[int, ...] = (32, 64, 128, 128)
    # 'torch': PyTorch's default layer init; 'hf': the Hugging Face ViT's (truncated normal std 0.02 for
    # weights, CLS token and positions, zero biases), which the official LeWM encoder uses
    init: Literal['torch', 'hf'] = 'torch'


@dataclass
class PredictorConfig:
    depth: int = 6
    heads: int = 16
    head_dim: int = 64
    mlp_dim: int = 2048
    dropout: float = 0.1  # 0 drops Push-T success 96 -> 78 in the paper
    action_embed_hidden: int = 10  # the narrow first layer of the action embedder
    # 'dit': the standard DiT AdaLN-zero block; 'official': the official LeWM block, which adds an affine
    # LayerNorm inside attention and feed-forward, after the modulation, and has no qkv bias
    block: Literal['dit', 'official'] = 'dit'
    pos_init_std: float = 0.02  # the learned positional embedding's init (official: 1.0, plain randn)
    # Predict the change from each input embedding (its output layer starting at zero, so an untrained
    # predictor copies the last frame) rather than the next embedding itself, as the paper's does. For Push-T,
    # where consecutive frames differ little and the paper's form was found no better than copying the last
    # frame (docs/push_t.md); what it adds alone, with the same data, is not measured.
    residual: bool = False


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    embed_dim: int = 192  # D: the latent the losses and the planner work in
    projector_hidden: int = 2048  # projector and pred_proj: D -> hidden -> BN -> GELU -> D
    action_dim: int = 2  # A: raw action dimensions
    frameskip: int = 5  # raw actions per action block
    history: int = 3  # frames the predictor sees
    sigreg_weight: float = 0.1  # lambda
    sigreg_directions: int = 1024  # M
    sigreg_knots: int = 17
    sigreg_t_max: float = 3.0

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    @property
    def action_block_dim(self) -> int:
        return self.frameskip * self.action_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        raw = dict(raw)
        encoder = dataclass_from_dict(EncoderConfig, raw.pop('encoder', {}), 'encoder')
        predictor = dataclass_from_dict(PredictorConfig, raw.pop('predictor', {}), 'predictor')
        return dataclass_from_dict(cls, raw, 'model', encoder=encoder, predictor=predictor)


def dataclass_from_dict(cls, raw: dict[str, Any], where: str, **fixed):
    """``cls(**raw, **fixed)``, refusing unknown keys with a message that lists the known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f'unknown {where} config key(s) {unknown}; known: {sorted(names)}')
    if 'channels' in raw:
        raw = {**raw, 'channels': tuple(raw['channels'])}
    return cls(**raw, **fixed)


def paper_config(action_dim: int = 2) -> ModelConfig:
    """The paper's LeWM as the official code builds it: ViT-Tiny/14 at 224 px with the Hugging Face init,
    6 official predictor blocks; 18.03M parameters at A = 2."""
    return ModelConfig(encoder=EncoderConfig(init='hf'), predictor=PredictorConfig(block='official', pos_init_std=1.0),
                       action_dim=action_dim)


def small_config(action_dim: int = 2) -> ModelConfig:
    """Fast CPU preset: 64 px, 4-stage stride-2 CNN, width 128, 4 predictor blocks; ~2M parameters.

    Chosen by measurement on 2 CPU cores (training/bench_model.py, docs/guide.md, Presets).
    """
    return ModelConfig(
        encoder=EncoderConfig(kind='cnn', image_size=64, width=128, channels=(32, 64, 128, 128)),
        predictor=PredictorConfig(depth=4, heads=4, head_dim=32, mlp_dim=512, dropout=0.1),
        embed_dim=128,
        projector_hidden=512,
        action_dim=action_dim,
    )


PRESETS = {'paper': paper_config, 'small': small_config}


def preset(name: str, action_dim: int = 2) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f'unknown preset {name!r}; choose one of {sorted(PRESETS)}')
    return PRESETS[name](action_dim=action_dim)
