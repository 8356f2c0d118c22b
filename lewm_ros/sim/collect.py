"""lewm-collect: run a world with a policy and record one rosbag2 per episode.

The bags hold the topics and types ``sim_node`` publishes, so collected and live-recorded data go
through the same ingest:

  /image        sensor_msgs/Image rgb8, one per control step (T + 1 frames: start and after each action), or one
                every ``--frame-every`` steps (where rendering is the cost: the model keeps frames at its
                frameskip stride anyway; ingest then needs the world's control period)
  /command      the configured command type (default std_msgs/Float64MultiArray), the action taken
                after the frame with the same stamp (T commands)
  /state        std_msgs/Float64MultiArray, the true low-dimensional state of that frame
  /success      std_msgs/Bool, whether that frame solves the task
  /joint_states sensor_msgs/JointState (worlds with joints)
  /goal_image   sensor_msgs/Image rgb8, once, at the first stamp

Stamps lie on a fixed control period (the world's) from a fixed start time, so reruns write the
same messages. Episode ``i`` uses seed ``--seed + i``. Each bag is written under ``.partial/`` and
moved into place when complete: a rerun keeps complete episodes and rewrites partial ones.
``collection.yaml`` records the settings; resuming with different settings is refused.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from lewm_ros.data.bags import STORAGES, BagWriter
from lewm_ros.data.commands import COMMAND_TYPES, build_command, float_array, header
from lewm_ros.data.images import rgb_to_image_fields
from lewm_ros.sim.registry import POLICIES, WORLDS, make_policy, make_world, world_class
from lewm_ros.sim.topics import COMMAND_QOS, SIM_TOPICS
from lewm_ros.sim.world import World

START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: fixed, so reruns write identical bags
SETTINGS_FILE = 'collection.yaml'
PARTIAL_DIR = '.partial'


@dataclass(frozen=True)
class CollectSettings:
    world: str
    task: str
    policy: str
    steps: int = 100
    image_size: int = 64
    seed: int = 0
    storage: str = 'mcap'
    command_type: str = 'float64_multi_array'
    frame_every: int = 1  # render and record a frame every this many steps

    def __post_init__(self):
        tasks = world_class(self.world).tasks
        if self.task not in tasks:
            raise ValueError(f'world {self.world} has tasks {tasks}, not {self.task!r}')
        if self.policy not in POLICIES:
            raise ValueError(f'policy must be one of {POLICIES}, got {self.policy!r}')
        if self.steps < 1 or self.image_size < 1 or self.frame_every < 1:
            raise ValueError('steps, image_size and frame_every must be positive')
        if self.storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {self.storage!r}')
        if self.command_type not in COMMAND_TYPES:
            raise ValueError(f'command_type must be one of {sorted(COMMAND_TYPES)}, got {self.command_type!r}')


def episode_name(index: int) -> str:
    return f'episode_{index:06d}'


def _image(writer: BagWriter, rgb: np.ndarray, stamp_ns: int):
    return writer.message('sensor_msgs/msg/Image', header=header(writer.message, stamp_ns, 'camera'),
                          **rgb_to_image_fields(rgb))


def record_episode(world: World, settings: CollectSettings, index: int, path: Path) -> None:
    """Run episode ``index`` and write it as a bag at ``path`` (which must not exist)."""
    seed = settings.seed + index
    world.reset(seed=seed)
    policy = make_policy(settings.policy, world, seed=np.random.SeedSequence([seed, 1]))
    period_ns = round(world.control_period * 1e9)
    names = world.action_space.names
    with BagWriter(path, storage=settings.storage) as writer:
        for topic, (msgtype, qos) in SIM_TOPICS.items():
            if topic != 'joint_states' or world.joint_state() is not None:
                writer.add_topic(topic, msgtype, [qos])
        writer.add_topic('command', COMMAND_TYPES[settings.command_type], [COMMAND_QOS])
        writer.write('/goal_image', _image(writer, world.goal_image(settings.image_size), START_NS), START_NS)
        for step in range(settings.steps + 1):
            stamp = START_NS + step * period_ns
            if step % settings.frame_every == 0:
                writer.write('/image', _image(writer, world.render(settings.image_size), stamp), stamp)
            writer.write('/state', float_array(writer.message, world.get_state()), stamp)
            writer.write('/success', writer.message('std_msgs/msg/Bool', data=world.success()), stamp)
            joints = world.joint_state()
            if joints is not None:
                writer.write('/joint_states', writer.message(
                    'sensor_msgs/msg/JointState', header=header(writer.message, stamp), name=list(joints.names),
                    position=joints.position, velocity=joints.velocity, effort=np.zeros(0)), stamp)
            if step < settings.steps:
                action = policy.act()
                writer.write('/command', build_command(writer.message, settings.command_type, action, stamp, names,
                                                       duration_s=world.control_period), stamp)
                world.step(action)


def _check_settings(out: Path, settings: CollectSettings) -> None:
    """Write collection.yaml, or refuse to mix episodes collected with other settings."""
    path = out / SETTINGS_FILE
    if path.exists():
        defaults = {item.name: item.default for item in fields(CollectSettings) if item.default is not MISSING}
        existing = {**defaults, **yaml.safe_load(path.read_text())}  # settings added since have their defaults
        if existing != asdict(settings):
            raise SystemExit(f'{out} holds episodes collected with other settings ({existing}); '
                             f'use another --out or the same settings')
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(asdict(settings), sort_keys=False))


_worker_world: World | None = None
_worker_settings: CollectSettings | None = None


def _init_worker(settings: CollectSettings) -> None:
    global _worker_world, _worker_settings
    _worker_settings = settings
    _worker_world = make_world(settings.world, settings.task, image_size=settings.image_size)


def _record(job: tuple[int, Path]) -> int:
    index, out = job
    partial = out / PARTIAL_DIR / episode_name(index)  # same name: rosbags names its file after the dir
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(exist_ok=True)
    try:
        record_episode(_worker_world, _worker_settings, index, partial)
    except BaseException:  # interrupted or failed: leave no half episode that looks like a bag
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out / episode_name(index))
    return index


def collect(settings: CollectSettings, episodes: int, out, workers: int = 1, progress: bool = True) -> list[Path]:
    """Record episodes 0..episodes-1 under ``out`` (skipping complete ones); returns all bag paths."""
    out = Path(out)
    _check_settings(out, settings)
    todo = [index for index in range(episodes) if not (out / episode_name(index)).is_dir()]
    bar = tqdm(total=episodes, initial=episodes - len(todo), unit='episode', disable=not progress,
               desc=f'{settings.world}/{settings.task} {settings.policy}')
    jobs = [(index, out) for index in todo]
    if workers <= 1 or len(todo) <= 1:
        _init_worker(settings)
        results = map(_record, jobs)
        pool = None
    else:
        # spawn: every worker opens its own GL context; forked contexts are not safe.
        pool = multiprocessing.get_context('spawn').Pool(workers, _init_worker, (settings,))
        results = pool.imap_unordered(_record, jobs)
    try:
        for _ in results:
            bar.update()
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or a failed episode: don't wait for the rest
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    if (out / PARTIAL_DIR).is_dir() and not any((out / PARTIAL_DIR).iterdir()):
        (out / PARTIAL_DIR).rmdir()
    return [out / episode_name(index) for index in range(episodes)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='lewm-collect', description=__doc__.split('\n')[0])
    parser.add_argument('--world', required=True, choices=sorted(WORLDS))
    parser.add_argument('--task', help="default: the world's first task (arm: reach, two_room: navigate, push_t: push)")
    parser.add_argument('--policy', default='expert', choices=POLICIES)
    parser.add_argument('--episodes', type=int, required=True)
    parser.add_argument('--out', required=True, type=Path)
    parser.add_argument('--steps', type=int, default=100, help='control steps (actions) per episode')
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0, help='seed of episode 0; episode i uses seed + i')
    parser.add_argument('--storage', default='mcap', choices=sorted(STORAGES))
    parser.add_argument('--command-type', default='float64_multi_array', choices=sorted(COMMAND_TYPES))
    parser.add_argument('--workers', type=int, default=1, help='processes (one world each)')
    parser.add_argument('--frame-every', type=int, default=1, help='record a frame every N steps (states and '
                        'commands every step); ingest such bags with the world\'s control period')
    return parser


def main(args=None) -> int:
    options = build_parser().parse_args(args)
    try:
        settings = CollectSettings(
            world=options.world, task=options.task or world_class(options.world).tasks[0],
            policy=options.policy, steps=options.steps, image_size=options.image_size, seed=options.seed,
            storage=options.storage, command_type=options.command_type, frame_every=options.frame_every)
    except ValueError as err:
        print(f'lewm-collect: {err}', file=sys.stderr)
        return 2
    bags = collect(settings, options.episodes, options.out, workers=options.workers)
    print(f'{len(bags)} episodes in {options.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
