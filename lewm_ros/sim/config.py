"""sim_node's parameters as one config dataclass (no ROS here: lewm-demo and the tests build worlds from it)."""

from __future__ import annotations

from dataclasses import dataclass

from lewm_ros.data.commands import COMMAND_TYPES
from lewm_ros.settings import check_settings, setting
from lewm_ros.sim.registry import WORLDS, make_world, world_class
from lewm_ros.sim.world import World


@dataclass
class SimConfig:
    """sim_node's parameters, one to one."""

    world: str = setting('arm', 'world to simulate', choices=tuple(sorted(WORLDS)))
    task: str = setting('', "task of the world ('' = its first: arm reach, two_room navigate, push_t push); a "
                        'change resets', live=True)
    seed: int = setting(0, 'seed of the first episode (the reset service moves to the next); a change resets',
                        low=0, high=2**31 - 1, live=True)
    goal_span: float = setting(0.0, 'arm reach: goals within this many radians of the start per joint, one '
                               "plan's reach (0 = anywhere); a change resets", low=0.0, high=10.0, live=True)
    image_size: int = setting(64, 'rendered image side in pixels', low=8, high=512)
    rate_hz: float = setting(10.0, 'steps per second in real time (each step is the world\'s own control '
                             'period); lock step: how often a waiting start frame is republished', low=0.1,
                             high=1000.0)
    lock_step: bool = setting(False, 'one world step per received command instead of stepping at rate_hz')
    command_type: str = setting('float64_multi_array', 'command message type', choices=tuple(sorted(COMMAND_TYPES)))
    frame_id: str = setting('camera', 'frame_id of the published images')
    reset_on_success: bool = setting(False, 'start the next episode (next seed) once the task is solved',
                                     live=True)
    episode_steps: int = setting(0, 'start the next episode after this many steps (0 = never)', low=0,
                                 high=10**9, live=True)

    def world_options(self) -> dict:
        """The world's own constructor options among the parameters (0 / '' = not set)."""
        return {'goal_span': self.goal_span} if self.goal_span else {}

    def validate(self) -> None:
        check_settings(self)
        cls = world_class(self.world)
        task = self.task or cls.tasks[0]
        if task not in cls.tasks:
            raise ValueError(f'task must be one of {list(cls.tasks)} for world {self.world}, got {self.task!r}')
        cls.check_options(task, **self.world_options())

    def make_world(self) -> World:
        return make_world(self.world, self.task or None, image_size=self.image_size, **self.world_options())
