"""A soak (a script, not a test): sim_node and planner_node in real time for a long while, with numbers.

    python training/soak.py [--minutes 30] [--out out/soak] [--rss-growth 0.05] [--interval-slack 0.10]

The simulated arm and the planner with the shipped checkpoint run as two processes over DDS, as ``ros2 launch
lewm_ros planner.launch.py use_sim:=true`` runs them; the sim starts the next episode on success or after 150 steps,
so goals keep coming. Once a minute one line: each node's resident memory, the interval between commands (p50 / p99
/ max, ms), plan time (p50 / p99, ms) and the holds seen in the planner's diagnostics by reason. At the end
``soak.png`` (memory and intervals over time) and ``soak.json`` in ``--out``; the exit code is 1 when a node's
memory grew by more than ``--rss-growth`` after the first minute (the warm-up), or the p99 command interval over
the whole run left the control period by more than ``--interval-slack``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lewm_ros.paths import DEFAULT_CHECKPOINT
from lewm_ros.tools.demo import start_nodes, stop_nodes


def rss_mib(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


class Watcher:
    """Commands and diagnostics as they arrive (the main loop takes them once a minute)."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float64MultiArray

        self.lock = threading.Lock()
        self.command_times, self.plan_ms, self.holds, self.plans = [], [], Counter(), 0
        node.create_subscription(Float64MultiArray, 'command', self._on_command, 100)
        node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 100)

    def _on_command(self, _msg):
        with self.lock:
            self.command_times.append(time.monotonic())

    def _on_diagnostics(self, msg):
        values = {kv.key: kv.value for kv in msg.status[0].values}
        with self.lock:
            if values['state'].startswith('hold'):
                self.holds[values['state']] += 1
            plans = int(values['plans'])
            if plans > self.plans and 'plan_time_ms' in values:
                self.plans = plans
                self.plan_ms.append(float(values['plan_time_ms']))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--out', type=Path, default=Path('out/soak'))
    parser.add_argument('--rss-growth', type=float, default=0.05, help='allowed memory growth after the first minute')
    parser.add_argument('--interval-slack', type=float, default=0.10,
                        help='allowed p99 command interval above the control period, as a fraction of it')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
    os.environ.setdefault('MUJOCO_GL', 'egl')
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lewm_ros.tools.demo import NAMESPACE

    args.out.mkdir(parents=True, exist_ok=True)
    processes = start_nodes(DEFAULT_CHECKPOINT.resolve(), 0, args.out, {}, lock_step=False,
                            sim_parameters={'reset_on_success': 'true', 'episode_steps': 150})
    period_ms = 100.0  # the arm world's 10 Hz
    rclpy.init()
    node = rclpy.create_node('soak_monitor', namespace=NAMESPACE)
    watcher = Watcher(node)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    minutes, intervals_all = [], []
    last_time = None
    try:
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
            for name, process in processes.items():
                if process.poll() is not None:
                    raise SystemExit(f'soak: {name} exited with code {process.returncode}')
            with watcher.lock:
                times, watcher.command_times = watcher.command_times, []
                plan_ms, watcher.plan_ms = watcher.plan_ms, []
                holds, watcher.holds = watcher.holds, Counter()
            if last_time is not None and times:
                times = [last_time, *times]
            last_time = times[-1] if times else last_time
            intervals = np.diff(times) * 1000 if len(times) > 1 else np.array([np.nan])
            intervals_all.extend(intervals.tolist())
            row = {'minute': len(minutes) + 1, **{f'rss_mib_{name}': round(rss_mib(p.pid), 1)
                                                  for name, p in processes.items()},
                   'interval_ms': [round(float(v), 1) for v in np.nanpercentile(intervals, [50, 99, 100])],
                   'plan_ms': [round(float(v), 1) for v in np.percentile(plan_ms, [50, 99])] if plan_ms else None,
                   'commands': len(intervals), 'holds': dict(holds)}
            minutes.append(row)
            print(json.dumps(row), flush=True)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        stop_nodes(processes)
    verdict = judge(minutes, intervals_all, period_ms, args.rss_growth, args.interval_slack)
    (args.out / 'soak.json').write_text(json.dumps({'minutes': minutes, 'verdict': verdict}, indent=1))
    plot(minutes, args.out / 'soak.png', period_ms)
    print(json.dumps(verdict))
    raise SystemExit(0 if verdict['passed'] else 1)


def judge(minutes: list[dict], intervals: list[float], period_ms: float, rss_growth: float, slack: float) -> dict:
    """Memory growth per node after the first minute, and the whole run's p99 command interval."""
    growth = {}
    for key in [k for k in minutes[0] if k.startswith('rss_mib_')] if minutes else []:
        start, end = minutes[0][key], minutes[-1][key]
        growth[key.removeprefix('rss_mib_')] = round(end / start - 1, 4)
    p99 = float(np.nanpercentile(intervals, 99)) if intervals else float('nan')
    passed = (len(minutes) >= 2 and all(value <= rss_growth for value in growth.values())
              and p99 <= period_ms * (1 + slack))
    return {'rss_growth_after_first_minute': growth, 'interval_p99_ms': round(p99, 1), 'period_ms': period_ms,
            'passed': bool(passed)}


def plot(minutes: list[dict], path: Path, period_ms: float) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not minutes:
        return
    x = [row['minute'] for row in minutes]
    fig, (memory, intervals) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key in [k for k in minutes[0] if k.startswith('rss_mib_')]:
        memory.plot(x, [row[key] for row in minutes], marker='o', ms=3, label=key.removeprefix('rss_mib_'))
    memory.set(ylabel='resident memory (MiB)', title='soak: sim_node + planner_node in real time')
    memory.legend()
    for index, label in enumerate(('p50', 'p99', 'max')):
        intervals.plot(x, [row['interval_ms'][index] for row in minutes], marker='o', ms=3, label=label)
    intervals.axhline(period_ms, color='k', ls='--', lw=0.8, label='control period')
    intervals.set(xlabel='minute', ylabel='command interval (ms)')
    intervals.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    main()
