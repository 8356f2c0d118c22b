"""The tiny world model the tests build: thousands of parameters, for plumbing rather than learning."""

from pathlib import Path

import torch

from lewm_ros.model.checkpoint import save_checkpoint
from lewm_ros.model.config import ModelConfig, preset
from lewm_ros.model.decoder import DecoderConfig, FrameDecoder
from lewm_ros.model.world_model import WorldModel

# stride-2 CNN layers down to 4 px: 16 px frames (unit tests) or the simulated worlds' 64 px ones
CHANNELS = {16: (8, 16), 64: (8, 8, 16, 16)}


def tiny_config(image_size: int = 16, **overrides) -> ModelConfig:
    cfg = preset('small')
    cfg.encoder.image_size, cfg.encoder.channels, cfg.encoder.width = image_size, CHANNELS[image_size], 32
    cfg.embed_dim, cfg.projector_hidden = 32, 64
    cfg.predictor.depth, cfg.predictor.heads, cfg.predictor.head_dim, cfg.predictor.mlp_dim = 2, 2, 16, 64
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def randomise_modulation(model: WorldModel, std: float = 0.2) -> WorldModel:
    """Leave the AdaLN-zero initialisation (where actions have no effect), so actions and later blocks matter."""
    for block in model.predictor.blocks:
        torch.nn.init.normal_(block.modulation[1].weight, std=std)
        torch.nn.init.normal_(block.modulation[1].bias, std=std)
    return model


def save_tiny(path: Path, image_size: int = 16, seed: int = 0, acting: bool = True, decoder: bool = False,
              **overrides) -> Path:
    """A randomly initialised tiny model as a checkpoint (actions z-scored with mean 0, std 1); ``acting``: its
    actions change its predictions, as a trained model's do; ``decoder``: with an (untrained) frame decoder."""
    torch.manual_seed(seed)
    cfg = tiny_config(image_size, **overrides)
    model = WorldModel(cfg)
    if acting:
        randomise_modulation(model, std=0.5)
    frames = FrameDecoder(DecoderConfig((8, 8)), cfg.embed_dim, image_size) if decoder else None
    return save_checkpoint(path, model.eval(), [0.0] * cfg.action_dim, [1.0] * cfg.action_dim, decoder=frames)
