"""The nodes' one ROS parameter layer: parameters declared from config dataclasses (``lewm_ros.settings``),
validated on set and applied after set, as in ros2/demos.

Each dataclass field becomes a parameter (``prefix + name``) whose descriptor carries the field's documentation,
its choices and its integer or floating-point range, so ``ros2 param describe`` explains it. A set request is
checked as a whole, against the configs it would produce, before anything changes; a rejection says why.
Fields not marked ``live`` are applied at start-up (for a lifecycle node: at configure) and are refused while
the node runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from lewm_ros.settings import default_of, describe, plain

_INT_LIMIT = 2**62  # ROS integer ranges need both ends; this one stands for "unbounded"
_ARRAY_TYPES = {'list[str]': Parameter.Type.STRING_ARRAY, 'list[float]': Parameter.Type.DOUBLE_ARRAY,
                'list[int]': Parameter.Type.INTEGER_ARRAY}


class ParameterBinding:
    """Parameters of ``node`` bound to config dataclasses ``sections`` ({prefix: class}).

    check(configs): raise ValueError with the reason when the configs (a tuple, in ``sections`` order) are
        invalid; called at start-up and for every set request.
    apply(configs): adopt valid configs; called after every successful set.
    fixed(name): why the non-live parameter ``name`` cannot change now, or None when it can (default: always
        fixed while the node runs).
    """

    def __init__(self, node: Node, sections: dict[str, type], check: Callable[[tuple], None],
                 apply: Callable[[tuple], None] | None = None, fixed: Callable[[str], str | None] | None = None):
        self.node, self.sections, self._check, self._apply = node, sections, check, apply
        self._fixed = fixed or (lambda name: f'{name} is applied at start-up: restart the node to change it')
        self.fields = {prefix + item.name: item for prefix, cls in sections.items() for item in dataclasses.fields(cls)}
        for name, item in self.fields.items():
            node.declare_parameter(name, _declared_value(item), _descriptor(item))
        node.add_on_set_parameters_callback(self._on_set)
        if apply is not None:
            node.add_post_set_parameters_callback(self._on_post_set)

    def configs(self, updates: dict[str, Any] | None = None) -> tuple:
        """The config of each section from the current parameter values, with ``updates`` applied."""
        updates = updates or {}
        built = []
        for prefix, cls in self.sections.items():
            values = {}
            for item in dataclasses.fields(cls):
                name = prefix + item.name
                value = plain(updates[name] if name in updates else self._value(name))
                values[item.name] = [] if value is None and isinstance(default_of(item), list) else value
            built.append(cls(**values))
        return tuple(built)

    def _value(self, name: str):
        try:
            return self.node.get_parameter(name).value
        except ParameterUninitializedException:  # an empty list declared by type and never set
            return None

    def check(self) -> tuple:
        """The current configs, checked (start-up); raises ValueError with the reason."""
        configs = self.configs()
        self._check(configs)
        return configs

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        updates = {}
        for parameter in parameters:
            item = self.fields.get(parameter.name)
            if item is None:
                continue  # not ours (use_sim_time, ...): rclpy handles it
            if not item.metadata.get('live') and plain(parameter.value) != plain(self._value(parameter.name)):
                reason = self._fixed(parameter.name)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
            updates[parameter.name] = parameter.value
        try:
            self._check(self.configs(updates))
        except (ValueError, TypeError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _on_post_set(self, parameters: list[Parameter]) -> None:
        if any(parameter.name in self.fields for parameter in parameters):
            self._apply(self.configs())


def _declared_value(item: dataclasses.Field):
    default = default_of(item)
    if default == [] or default is None:  # an empty list has no element type: declare it explicitly
        return _ARRAY_TYPES[str(item.type)]
    return default


def _descriptor(item: dataclasses.Field) -> ParameterDescriptor:
    meta, default = item.metadata, default_of(item)
    when = 'live' if meta.get('live') else 'applied at start-up'
    descriptor = ParameterDescriptor(description=f'{describe(item)} [{when}]')
    low, high = meta.get('low'), meta.get('high')
    if (low is not None or high is not None) and not isinstance(default, bool):
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low if low is not None else -_INT_LIMIT),
                                                     to_value=int(high if high is not None else _INT_LIMIT), step=1)]
        elif isinstance(default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low if low is not None else -float('inf')),
                to_value=float(high if high is not None else float('inf')), step=0.0)]
    return descriptor
