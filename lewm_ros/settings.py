"""Documented, range-checked config fields: one definition serves the Python API, the training YAMLs and the
ROS parameters (their descriptions, ranges and which ones may change live) without a second copy.

    @dataclass
    class CEMConfig:
        samples: int = setting(64, 'candidate action sequences per iteration', low=2, live=True)

``check_settings(config)`` checks every field's range and choices; a config's own ``validate`` adds the checks
that involve several fields. ``layered_parameters`` reads ROS parameter files into config fields, as a node would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def setting(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
            choices: tuple | None = None, live: bool = False):
    """A dataclass field with its documentation, its allowed range or choices, and whether it may change while
    running (``live``). List defaults are copied per instance."""
    metadata = {'doc': doc, 'low': low, 'high': high, 'choices': choices, 'live': live}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def default_of(item: dataclasses.Field) -> Any:
    return item.default_factory() if item.default is dataclasses.MISSING else item.default


def describe(item: dataclasses.Field) -> str:
    """The field's documentation with its choices or range spelled out."""
    meta = item.metadata
    text = meta.get('doc', '')
    if meta.get('choices'):
        text += f" (one of: {', '.join(map(str, meta['choices']))})"
    elif meta.get('low') is not None or meta.get('high') is not None:
        text += f" (range {_bound(meta.get('low'), '-inf')} .. {_bound(meta.get('high'), 'inf')})"
    return text


def _bound(value, missing: str) -> str:
    return missing if value is None else f'{value:g}'


def plain(value: Any) -> Any:
    """Parameter values as plain Python: rclpy hands arrays over as array.array, whose repr is unreadable."""
    if isinstance(value, str | bytes) or not hasattr(value, '__iter__'):
        return value
    return [plain(item) for item in value]


def check_settings(config, prefix: str = '') -> None:
    """Raise ValueError naming the field and its allowed values when a field is out of range or not a choice."""
    for item in dataclasses.fields(config):
        meta, value = item.metadata, getattr(config, item.name)
        name = prefix + item.name
        if meta.get('choices') and value not in meta['choices']:
            raise ValueError(f'{name} must be one of {list(meta["choices"])}, got {value!r}')
        low, high = meta.get('low'), meta.get('high')
        if low is None and high is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for number in values:
            if not isinstance(number, int | float) or isinstance(number, bool) or math.isnan(number) or \
                    (low is not None and number < low) or (high is not None and number > high):
                raise ValueError(f'{name} must be within [{_bound(low, "-inf")}, {_bound(high, "inf")}], '
                                 f'got {plain(value)!r}')


def node_parameters(path: str | Path) -> dict:
    """The ``ros__parameters`` of a one-node ROS parameter file, sections (``cem:``) as nested dicts ({} for an empty
    file)."""
    with open(path) as f:
        (entry,) = (yaml.safe_load(f) or {'': {'ros__parameters': {}}}).values()
    return entry['ros__parameters']


def layered_parameters(paths: Iterable[str | Path]) -> dict:
    """Parameter files layered as a node given them in this order takes them: parameter by parameter, later wins."""
    layered: dict = {}
    for path in paths:
        for name, value in node_parameters(path).items():
            layered[name] = {**layered.get(name, {}), **value} if isinstance(value, dict) else value
    return layered
