"""Where the package's files are, however it was installed (source checkout, pip, colcon with or without
``--symlink-install``)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = PACKAGE_DIR / 'checkpoints' / 'arm_reach_small.safetensors'


def share_path(relative: str) -> Path:
    """A file of ``share/lewm_ros`` (``config/planner.yaml``, ``training/configs/small.yaml``, ``launch/...``).

    The source tree's when the package runs from a checkout (plain, editable or symlinked), else the install
    prefix's: pip and colcon both put ``share/`` three levels above ``lib/pythonX.Y/site-packages/lewm_ros``.
    """
    source, parents = PACKAGE_DIR.parent, PACKAGE_DIR.parents
    candidates = ([source / relative] if (source / 'package.xml').is_file() else []) + \
        ([parents[3] / 'share' / 'lewm_ros' / relative] if len(parents) > 3 else [])
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f'{relative} is neither in a lewm_ros source tree nor under share/lewm_ros '
                            f'(looked at {", ".join(map(str, candidates))})')
