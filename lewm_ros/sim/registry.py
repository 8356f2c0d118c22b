"""World registry: ``make_world(name, **kwargs)``. Worlds are imported on demand so that
Two-Room works on machines without MuJoCo."""

from __future__ import annotations

from importlib import import_module

from lewm_ros.sim.world import World

WORLDS = {'two_room': 'lewm_ros.sim.two_room:TwoRoom', 'arm': 'lewm_ros.sim.arm:PlanarArm',
          'push_t': 'lewm_ros.sim.push_t:PushT'}


def world_class(name: str) -> type[World]:
    if name not in WORLDS:
        raise ValueError(f'unknown world {name!r}, expected one of {sorted(WORLDS)}')
    module, cls = WORLDS[name].split(':')
    return getattr(import_module(module), cls)


def make_world(name: str, task: str | None = None, **kwargs) -> World:
    """A world by name; ``task`` defaults to the world's first task (arm: reach)."""
    cls = world_class(name)
    return cls(task=task or cls.tasks[0], **kwargs)
