"""The one-command demo: sim_node and planner_node as separate processes over real DDS, reaching goals.

    lewm-demo [--checkpoint PATH] [--episodes 8] [--max-steps 60] [--timing lock_step|real_time|both] [--out DIR]

Both nodes run with the parameter files ``ros2 launch lewm_ros planner.launch.py use_sim:=true`` gives them:
config/sim.yaml and config/planner.yaml with the arm world's sim.yaml and planner.yaml, in the launch file's
order. Two timings:

- ``lock_step``: the simulated arm steps once per command and the planner answers each frame with one command
  after the plan it needs, so an episode is the planner's commands and nothing else, and the result does not
  depend on how fast this machine plans;
- ``real_time``: the arm steps at 10 Hz whatever happens, as a robot would; while a plan is being computed the
  planner holds, and those steps count against the budget (a slow machine scores lower).

Per episode: the planner is disabled (``enabled: false``), the sim's ``~/reset`` service
starts the next seed and latches its goal image, the planner is enabled and drives the arm until the sim
reports success or ``max_steps`` commands have gone out. Prints the success rate, plan-time percentiles and
the time between commands (in real time the control loop's period: 100 ms when it keeps its 10 Hz);
writes ``episode.gif`` (camera | goal, first episode), ``imagined.gif`` (first episode, one frame per plan: what
the planner's ``~/imagined`` showed, over the camera frames that really came one to five blocks later; one of them
as ``imagined.png``), ``debug_image.png`` (one ``~/debug_image`` from the middle of the first episode),
``cost_distance.png`` (latent cost of each plan and the true distance to the goal over time) and the nodes'
logs into ``--out``. Then, as a baseline, the lock-step episodes again with ``mpc.solver: cem`` (the search alone
at the node's 64 x 8 x 3; the default ``auto`` runs the shipped checkpoint's action prior + CEM at 16 x 4 x 1).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import matplotlib
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from lewm_ros.data.images import image_to_rgb
from lewm_ros.model.checkpoint import load_checkpoint
from lewm_ros.paths import DEFAULT_CHECKPOINT, share_path
from lewm_ros.planning.views import GAP, PANEL, enlarge, side_by_side
from lewm_ros.settings import layered_parameters
from lewm_ros.sim.config import SimConfig
from lewm_ros.sim.registry import world_spec

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # after choosing the headless backend

NAMESPACE = 'demo'
WORLD = 'arm'  # the shipped checkpoint's
TIMINGS = ('lock_step', 'real_time')


@dataclass
class Episode:
    seed: int
    success: bool = False
    steps: int = 0  # commands sent until success or the budget
    distances: list[float] = field(default_factory=list)  # true fingertip distance after each step (m)
    costs: list[tuple[int, float]] = field(default_factory=list)  # (step, latent cost) of each plan
    frames: list[np.ndarray] = field(default_factory=list)
    camera: dict[tuple[int, int], int] = field(default_factory=dict)  # frame stamp -> index in ``frames``
    imagined: list[tuple[tuple[int, int], np.ndarray]] = field(default_factory=list)  # (answered stamp, strip)
    debug_images: list[np.ndarray] = field(default_factory=list)  # the planner's ~/debug_image, in order
    command_times: list[float] = field(default_factory=list)  # monotonic arrival time of each command (s)


@dataclass
class DemoResult:
    episodes: list[Episode]
    plan_times_ms: list[float]

    @property
    def success_rate(self) -> float:
        return float(np.mean([episode.success for episode in self.episodes]))

    @property
    def command_intervals_ms(self) -> np.ndarray:
        """Time between consecutive commands as the monitor received them, within episodes (ms)."""
        return np.concatenate([np.diff(episode.command_times) * 1e3 for episode in self.episodes] or [[]])

    def summary(self) -> str:
        times = np.asarray(self.plan_times_ms)
        p50, p90, p99 = np.percentile(times, [50, 90, 99]) if len(times) else (np.nan,) * 3
        gaps = self.command_intervals_ms
        g50, g99 = np.percentile(gaps, [50, 99]) if len(gaps) else (np.nan,) * 2
        steps = [episode.steps for episode in self.episodes if episode.success]
        return (f'success {sum(e.success for e in self.episodes)}/{len(self.episodes)} '
                f'({100 * self.success_rate:.0f}%), steps to success {np.mean(steps) if steps else np.nan:.1f}; '
                f'plan time ms p50 {p50:.1f} p90 {p90:.1f} p99 {p99:.1f} over {len(times)} plans; '
                f'command interval ms p50 {g50:.1f} p99 {g99:.1f} max {gaps.max() if len(gaps) else np.nan:.1f}')


class Monitor:
    """The demo's own node: resets the sim, toggles the planner and records what happens."""

    def __init__(self, processes):
        self.processes = processes
        self.node = rclpy.create_node('demo_monitor', namespace=NAMESPACE)
        self.lock = threading.Lock()
        self.goal_msgs, self.goal_frame, self.plan_times_ms, self.last_plans = 0, None, [], 0
        self.planner_goals = 0  # goals the planner has taken, from its diagnostics
        self.viewer = None
        self.start_episode(None, record_frames=False)
        node = self.node
        node.create_subscription(Image, 'image', self._on_image, 100)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, 'goal_image', self._on_goal, latched)
        node.create_subscription(Float64MultiArray, 'state', self._on_state, 100)
        node.create_subscription(Float64MultiArray, 'command', self._on_command, 100)
        node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 10)
        self.reset_client = node.create_client(Trigger, 'sim_node/reset')
        self.planner = AsyncParameterClient(node, f'/{NAMESPACE}/planner_node')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def start_episode(self, episode: Episode | None, record_frames: bool) -> None:
        """Record into ``episode`` from its first command on (lock step: then each state is one step)."""
        with self.lock:
            self.episode, self.record_frames, self.commands, self.states = episode, record_frames, 0, []

    # --- callbacks ------------------------------------------------------------------------------
    def _on_image(self, msg):
        with self.lock:
            if self.record_frames and self.commands and self.goal_frame is not None:
                self.episode.camera[stamp_of(msg)] = len(self.episode.frames)
                self.episode.frames.append(np.concatenate([image_to_rgb(msg), self.goal_frame], axis=1))

    def _on_view(self, topic: str, msg):
        with self.lock:
            if self.record_frames and self.episode is not None:
                image = image_to_rgb(msg).copy()
                if topic == 'imagined':
                    self.episode.imagined.append((stamp_of(msg), image))
                else:
                    self.episode.debug_images.append(image)

    def watch_views(self, on: bool) -> None:
        """Look at the planner's ~/imagined and ~/debug_image (it draws them only while someone does)."""
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        if on:
            self.viewer = PlanViewer(f'/{NAMESPACE}/planner_node', self._on_view)

    def _on_goal(self, msg):
        with self.lock:
            self.goal_msgs += 1
            self.goal_frame = image_to_rgb(msg).copy()

    def _on_state(self, msg):
        with self.lock:
            if self.commands:  # from the first command on (a start state delivered after it is skipped later)
                self.states.append(np.asarray(msg.data))

    def _on_command(self, msg):
        with self.lock:
            self.commands += 1
            if self.episode is not None:
                self.episode.command_times.append(time.monotonic())

    def _on_diagnostics(self, msg):
        values = {kv.key: kv.value for kv in msg.status[0].values}
        with self.lock:
            self.planner_goals = int(values['goals'])
            plans = int(values['plans'])
            if plans > self.last_plans and 'plan_time_ms' in values:
                self.last_plans = plans
                self.plan_times_ms.append(float(values['plan_time_ms']))
                if self.episode is not None:
                    self.episode.costs.append((len(self.states), float(values['cost'])))

    # --- helpers --------------------------------------------------------------------------------
    def wait_for(self, condition, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f'{name} exited (code {process.returncode}) while waiting for {what}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')
            time.sleep(0.01)

    def set_enabled(self, enabled: bool) -> None:
        future = self.planner.set_parameters([Parameter('enabled', value=enabled)])
        self.wait_for(future.done, f'the planner to accept enabled={enabled}')
        result = future.result().results[0]
        if not result.successful:
            raise RuntimeError(f'the planner refused enabled={enabled}: {result.reason}')

    def reset(self) -> None:
        goals = self.goal_msgs
        future = self.reset_client.call_async(Trigger.Request())
        self.wait_for(future.done, 'the sim to reset')
        self.wait_for(lambda: self.goal_msgs > goals, 'the new goal image')

    def close(self) -> None:
        self.watch_views(False)
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()


class PlanViewer:
    """A planner's ``~/imagined`` and ``~/debug_image`` heard by a node and executor of its own: ``close`` stops
    looking (destroying a subscription under a spinning executor raced with its wait set)."""

    TOPICS = ('imagined', 'debug_image')

    def __init__(self, planner: str, on_image):
        """planner: the planner node's full name; on_image(topic, msg) for each image."""
        self.node = rclpy.create_node('plan_viewer')
        for topic in self.TOPICS:
            self.node.create_subscription(Image, f'{planner}/{topic}', lambda msg, topic=topic: on_image(topic, msg),
                                          10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def parameter_files(node: str) -> list[Path]:
    """``node``'s parameter files as the launch file orders them (later files win): the world's planner.yaml under
    config/planner.yaml, so that a real arm's file keeps its limits; the world's sim.yaml over config/sim.yaml."""
    package, world = share_path(f'config/{node}.yaml'), world_spec(WORLD).folder / f'{node}.yaml'
    return [world, package] if node == 'planner' else [package, world]


def sim_config() -> SimConfig:
    """The simulated arm's settings, from the files the launch file gives sim_node."""
    return SimConfig(**layered_parameters(parameter_files('sim')))


def node_commands(checkpoint: Path, seed: int, planner_parameters: dict, lock_step: bool,
                  sim_parameters: dict | None = None) -> dict[str, list[str]]:
    """The command lines of sim_node and planner_node with the installed parameter files; by default the caller
    resets episodes (``sim_parameters`` over that: the soak lets the sim reset itself)."""
    def overrides(values: dict) -> list[str]:
        return [part for name, value in values.items() for part in ('-p', f'{name}:={value}')]

    def files(node: str) -> list[str]:
        return [part for path in parameter_files(node) for part in ('--params-file', str(path))]

    timing = {'lock_step': str(lock_step).lower()}
    ros_args = ['--ros-args', '-r', f'__ns:=/{NAMESPACE}']
    return {
        'sim_node': [sys.executable, '-m', 'lewm_ros.nodes.sim_node', *ros_args, *files('sim'),
                     *overrides({**timing, 'seed': seed, 'reset_on_success': 'false', 'episode_steps': 0,
                                 **(sim_parameters or {})})],
        'planner_node': [sys.executable, '-m', 'lewm_ros.nodes.planner_node', *ros_args, *files('planner'),
                         *overrides({**timing, 'checkpoint': checkpoint, **planner_parameters})],
    }


def start_nodes(checkpoint: Path, seed: int, log_dir: Path, planner_parameters: dict, lock_step: bool,
                sim_parameters: dict | None = None) -> dict:
    """Both nodes (``node_commands``) as processes, each logging to ``log_dir``/NAME.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = node_commands(checkpoint, seed, planner_parameters, lock_step, sim_parameters)
    return {name: start_logged(command, log_dir / f'{name}.log') for name, command in commands.items()}


def start_logged(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(log, 'w'), stderr=subprocess.STDOUT)


def stop_nodes(processes: dict) -> None:
    """SIGINT, as Ctrl-C would: both nodes shut down cleanly."""
    for process in processes.values():
        process.send_signal(signal.SIGINT)
    for process in processes.values():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo(checkpoint: Path = DEFAULT_CHECKPOINT, episodes: int = 8, max_steps: int = 60, seed: int = 0,
             out_dir: Path | None = Path('out/demo'), planner_parameters: dict | None = None,
             log_dir: Path | None = None, lock_step: bool = True) -> DemoResult:
    """Run the episodes (seeds ``seed + 1 ...``) and, when ``out_dir`` is set, write the GIF and the plot.

    lock_step: both nodes in lock step (results independent of plan time), else both in real time.
    """
    log_dir = log_dir or out_dir or Path('log/demo')
    processes = start_nodes(Path(checkpoint).resolve(), seed, log_dir, planner_parameters or {}, lock_step)
    world = sim_config().make_world()  # the sim's, replayed here for its goal states
    results = []
    rclpy.init()
    monitor = None
    try:
        monitor = Monitor(processes)
        monitor.wait_for(lambda: monitor.reset_client.service_is_ready(), 'the sim reset service')
        monitor.wait_for(lambda: monitor.planner.services_are_ready(), 'the planner parameter services')
        monitor.set_enabled(False)
        monitor.wait_for(lambda: monitor.planner_goals >= 1, "the planner to take the sim's first goal")
        for index in range(episodes):
            goals = monitor.planner_goals
            monitor.reset()
            episode = Episode(seed + index + 1)
            start, _ = world.reset(seed=episode.seed)  # the sim's episode, replayed here for its goal state
            monitor.wait_for(lambda goals=goals: monitor.planner_goals > goals, 'the planner to take the new goal')
            record = out_dir is not None and index == 0
            monitor.start_episode(episode, record_frames=record)
            monitor.watch_views(record)
            monitor.set_enabled(True)
            # DDS may deliver the start state after the first command: then it is recorded first, and skipped
            monitor.wait_for(lambda: len(monitor.states) > 0, 'the first step', 30.0)
            with monitor.lock:
                skip = int(np.array_equal(monitor.states[0], start))
            while not episode.success and episode.steps < max_steps:
                monitor.wait_for(lambda needed=episode.steps + skip: len(monitor.states) > needed, 'the next step',
                                 30.0)
                with monitor.lock:
                    state = monitor.states[episode.steps + skip]
                episode.steps += 1
                episode.distances.append(world.goal_distance(state, world.goal))
                episode.success = world.solved(state, world.goal)
            monitor.set_enabled(False)
            monitor.watch_views(False)
            monitor.start_episode(None, record_frames=False)
            results.append(episode)
            print(f'episode {index + 1}/{episodes} seed {episode.seed}: '
                  f'{"reached" if episode.success else "missed"} after {episode.steps} steps, '
                  f'final distance {episode.distances[-1]:.3f} m', flush=True)
        result = DemoResult(results, list(monitor.plan_times_ms))
    finally:
        if monitor is not None:
            monitor.close()
        rclpy.try_shutdown()
        stop_nodes(processes)
        world.close()
    if out_dir is not None:
        write_outputs(result, Path(out_dir), world.success_threshold, load_checkpoint(checkpoint).config.frameskip)
    return result


def imagined_vs_real(episode: Episode, frameskip: int) -> list[np.ndarray]:
    """One picture per plan: the imagined strip over the camera frames that came 1..H blocks after the frame the
    plan answered (black past the episode's end)."""
    pictures = []
    for stamp, strip in episode.imagined:
        start = episode.camera.get(stamp)
        if start is None:  # the plan answered a frame from before the recording started
            continue
        size = episode.frames[0].shape[0]
        panels = []
        for block in range(1, (strip.shape[1] + GAP) // (PANEL // 2 + GAP) + 1):
            index = start + block * frameskip
            camera = episode.frames[index][:, :size] if index < len(episode.frames) else np.zeros((size, size, 3),
                                                                                                  np.uint8)
            panels.append(enlarge(camera, PANEL // 2))
        real = side_by_side(panels)
        width = min(real.shape[1], strip.shape[1])
        pictures.append(np.concatenate([strip[:, :width], np.full((GAP, width, 3), 255, np.uint8), real[:, :width]]))
    return pictures


def write_outputs(result: DemoResult, out_dir: Path, threshold: float, frameskip: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    first = result.episodes[0]
    if first.frames:
        frames = [frame.repeat(4, axis=0).repeat(4, axis=1) for frame in first.frames]  # 64 px is tiny
        iio.imwrite(out_dir / 'episode.gif', frames, duration=100, loop=0)
    pictures = imagined_vs_real(first, frameskip)
    if pictures:
        iio.imwrite(out_dir / 'imagined.gif', pictures, duration=700, loop=0)
        iio.imwrite(out_dir / 'imagined.png', pictures[len(pictures) // 2])
    if first.debug_images:
        iio.imwrite(out_dir / 'debug_image.png', first.debug_images[len(first.debug_images) // 2])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for episode in result.episodes:
        style = {'lw': 2.0, 'color': 'C0'} if episode is first else {'lw': 0.8, 'color': 'C0', 'alpha': 0.35}
        top.plot(range(1, len(episode.distances) + 1), episode.distances, **style)
        if episode.costs:
            steps, costs = zip(*episode.costs, strict=True)
            bottom.plot(steps, costs, marker='o', ms=3, **{**style, 'color': 'C1'})
    top.axhline(threshold, color='k', ls='--', lw=0.8, label=f'success ({threshold} m)')
    top.set(ylabel='distance to goal (m)', title=f'arm reach: {result.summary().split(";")[0]}')
    top.legend()
    bottom.set(xlabel='control step (0.1 s)', ylabel='latent cost of each plan', yscale='log')
    fig.tight_layout()
    fig.savefig(out_dir / 'cost_distance.png', dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument('--episodes', type=int, default=8)
    parser.add_argument('--max-steps', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--timing', choices=[*TIMINGS, 'both'], default='both',
                        help='lock_step (independent of plan time), real_time (as a robot), or both in turn')
    parser.add_argument('--out', type=Path, default=Path('out/demo'))
    parser.add_argument('-p', '--planner-param', action='append', default=[], metavar='NAME:=VALUE',
                        help='planner_node parameter override, e.g. -p cem.samples:=300 -p mpc.mode:=receding')
    parser.add_argument('--baseline-solver', default='cem', choices=['cem', 'prior+cem', 'prior', ''],
                        help="the lock-step episodes again with this mpc.solver, as a baseline ('': none)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f'no checkpoint at {args.checkpoint} (train one: see README, or pass --checkpoint)')
    # An isolated local ROS graph and headless rendering, unless the caller chose otherwise.
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
    os.environ.setdefault('ROS_LOG_DIR', str(Path('log/demo').resolve()))
    os.environ.setdefault('MUJOCO_GL', 'egl')
    overrides = dict(item.split(':=', 1) for item in args.planner_param)
    runs = [(timing, timing == 'lock_step', overrides) for timing in TIMINGS if args.timing in (timing, 'both')]
    if args.baseline_solver and args.baseline_solver != overrides.get('mpc.solver'):
        runs.append((f'lock_step, {args.baseline_solver}', True, {**overrides, 'mpc.solver': args.baseline_solver}))
    summaries = {}
    for name, lock_step, parameters in runs:
        started = time.monotonic()
        print(f'--- {name}', flush=True)
        out = args.out / name.replace(', ', '_').replace('+', '_')
        result = run_demo(args.checkpoint, args.episodes, args.max_steps, args.seed, out, parameters,
                          lock_step=lock_step)
        summaries[name] = result.summary()
        print(f'{name}: {summaries[name]}')
        print(f'wrote {out}/ (episode.gif, imagined.gif, cost_distance.png) in {time.monotonic() - started:.0f} s')
    if len(summaries) > 1:
        print('\n'.join(f'{name:15s} {summary}' for name, summary in summaries.items()))


if __name__ == '__main__':
    main()
