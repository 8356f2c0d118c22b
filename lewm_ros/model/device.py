"""Where torch runs: the one place a device name ('auto', 'cpu', 'cuda') becomes a torch device."""

from __future__ import annotations

import torch

DEVICES = ('auto', 'cpu', 'cuda')


def resolve_device(name: str, index: int = 0) -> torch.device:
    """'auto' (CUDA when torch sees it, else the CPU), 'cpu' or 'cuda' -> a torch device; ``index``: the CUDA
    device (a DDP rank's local rank). Raises ValueError with the reason for an unknown name or absent CUDA."""
    if name not in DEVICES:
        raise ValueError(f'device must be one of {list(DEVICES)}, got {name!r}')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device is cuda but torch sees no CUDA device (use auto or cpu)')
    if name == 'cpu' or not torch.cuda.is_available():
        return torch.device('cpu')
    return torch.device('cuda', index)
