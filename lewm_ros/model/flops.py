"""Matrix FLOPs of the world model from its config (2 per multiply-add; norms and activations left out).

Used to turn measured throughput into achieved TFLOP/s and MFU (training/gpu_check.py); checked against
PyTorch's own FLOP counter in the tests.
"""

from __future__ import annotations

from .config import ModelConfig


def first_layer_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs of the encoder's first layer on one frame (its backward needs no input gradient)."""
    e = cfg.encoder
    if e.kind == 'vit':
        return 2 * (e.image_size // e.patch_size) ** 2 * 3 * e.patch_size**2 * e.width
    side = e.image_size // 2
    return 2 * side * side * e.channels[0] * 3 * 16


def encoder_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs of encoding one frame, projector included."""
    e = cfg.encoder
    if e.kind == 'vit':
        patches = (e.image_size // e.patch_size) ** 2
        n, w = patches + 1, e.width  # tokens (CLS included), width
        block = 2 * n * w * 3 * w + 2 * 2 * n * n * w + 2 * n * w * w + 2 * 2 * n * w * e.mlp_dim
        flops = first_layer_flops(cfg) + e.depth * block
    else:
        flops, side, in_ch = 0, e.image_size, 3
        for out_ch in e.channels:
            side //= 2
            flops += 2 * side * side * out_ch * in_ch * 16  # 4 x 4 kernels
            in_ch = out_ch
        flops += 2 * in_ch * side * side * e.width
    return flops + 2 * (e.width * cfg.projector_hidden + cfg.projector_hidden * cfg.embed_dim)


def predictor_flops(cfg: ModelConfig, tokens: int) -> int:
    """Forward FLOPs of one predictor call on a sequence of ``tokens`` time steps (per sequence)."""
    p, d = cfg.predictor, cfg.embed_dim
    inner = p.heads * p.head_dim
    per_token = (2 * d * 6 * d + 2 * d * 3 * inner + 2 * 2 * tokens * inner + 2 * inner * d
                 + 2 * 2 * d * p.mlp_dim)
    embed = 2 * (cfg.action_block_dim * p.action_embed_hidden + p.action_embed_hidden * 4 * d + 4 * d * d)
    head = 2 * 2 * d * cfg.projector_hidden
    return tokens * (p.depth * per_token + embed + head)


def training_step_flops(cfg: ModelConfig, batch: int) -> int:
    """FLOPs of one optimisation step on ``batch`` clips of history + 1 frames: forward and backward
    (backward = 2 x forward, less the input gradient of the first layer), and SIGReg's projections (onto random
    directions that need no gradient: backward = 1 x forward)."""
    frames = batch * (cfg.history + 1)
    forward = frames * encoder_flops(cfg) + batch * predictor_flops(cfg, cfg.history)
    sigreg = 2 * frames * cfg.embed_dim * cfg.sigreg_directions
    return 3 * forward - frames * first_layer_flops(cfg) + 2 * sigreg
