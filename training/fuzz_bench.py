"""Fuzzing by the thousand (a benchmark script, not a test): a live planner under fuzzed frames and goals over DDS,
and ingest under mutated recordings.

    python training/fuzz_bench.py [--frames 10000] [--bags 1000] [--rate 500] [--seed 0]

Frames: planner_node runs as its own process (the shipped checkpoint, real time); a probe publishes ``--frames``
fuzzed sensor_msgs/Image messages on ``image`` and ``goal_image`` (random encodings, sizes, steps, data lengths and
bytes; a fifth of them valid). Each is classified by the same decoder the node uses (taken, or rejected with a
reason). Printed: sent, taken, rejected with a reason, node crashes (it must be alive after and still answer its
parameter service), its resident memory before and after.

Bags: ``--bags`` copies of a real recording (the simulated arm, mcap and sqlite3), each with bytes flipped, cut or
a file deleted, pushed through ``lewm-ingest --recover`` into a cache holding one good episode. Printed: ingested
whole (of them, rebuilt from an unclosed storage file first), refused with an error naming the bag, crashes (any
other exception), caches left inconsistent (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from soak import rss_mib  # (this folder is on the path when a script here runs)

ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '16UC1', 'yuv422', '', 'RGB8', 'jpeg']


def fuzzed_image(rng: np.random.Generator) -> dict:
    """Image fields: a fifth valid, the rest wrong in size, step, length, encoding or all of them."""
    height, width = int(rng.integers(0, 80)), int(rng.integers(0, 80))
    encoding = ENCODINGS[int(rng.integers(len(ENCODINGS)))]
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}.get(encoding, 3)
    step = width * channels + int(rng.integers(0, 4)) if rng.random() < 0.6 else int(rng.integers(0, 400))
    size = height * step if rng.random() < 0.6 else int(rng.integers(0, 20000))
    if rng.random() < 0.2:  # a valid frame
        encoding, height, width = 'rgb8', int(rng.integers(8, 80)), int(rng.integers(8, 80))
        step, size = width * 3, height * width * 3
    return {'height': height, 'width': width, 'step': step, 'encoding': encoding,
            'data': rng.integers(0, 256, size, dtype=np.uint8).tobytes()}


def fuzz_frames(count: int, rate: float, seed: int) -> dict:
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from sensor_msgs.msg import Image

    from lewm_ros.data.images import ImageDecodeError, image_to_rgb

    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
    planner = subprocess.Popen([sys.executable, '-m', 'lewm_ros.nodes.planner_node', '--ros-args', '-r',
                                '__ns:=/fuzz', '-p', 'threads:=1', '-p', 'image_qos:=reliable'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    probe = rclpy.create_node('fuzzer', namespace='/fuzz')
    publishers = [probe.create_publisher(Image, topic, 10) for topic in ('image', 'goal_image')]
    parameters = probe.create_client(GetParameters, 'planner_node/get_parameters')
    rng = np.random.default_rng(seed)
    counts = {'sent': 0, 'taken': 0, 'rejected with a reason': 0}
    try:
        deadline = time.monotonic() + 60
        while not all(p.get_subscription_count() for p in publishers):
            assert planner.poll() is None and time.monotonic() < deadline, 'the planner did not start'
            rclpy.spin_once(probe, timeout_sec=0.1)
        rss_before = rss_mib(planner.pid)
        started = time.monotonic()
        for k in range(count):
            fields = fuzzed_image(rng)
            msg = Image(**fields)
            try:
                image_to_rgb(msg)
                counts['taken'] += 1
            except ImageDecodeError as err:
                assert str(err)
                counts['rejected with a reason'] += 1
            publishers[k % 10 == 0].publish(msg)  # one in ten as a goal
            counts['sent'] += 1
            time.sleep(max(0.0, started + (k + 1) / rate - time.monotonic()))
        time.sleep(2.0)
        alive = planner.poll() is None
        future = parameters.call_async(GetParameters.Request(names=['cem.samples']))
        rclpy.spin_until_future_complete(probe, future, timeout_sec=10)
        counts.update(seconds=round(time.monotonic() - started, 1), node_crashes=int(not alive),
                      node_answers_after=future.done() and future.result() is not None,
                      rss_mib_before=rss_before, rss_mib_after=rss_mib(planner.pid) if alive else None)
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()
        planner.send_signal(2)
        errors = planner.communicate(timeout=30)[1]
    counts['planner_tracebacks'] = errors.count('Traceback')
    return counts


def fuzz_bags(count: int, seed: int) -> dict:
    from lewm_ros.data.bags import BagError
    from lewm_ros.data.cache import TrainingCache
    from lewm_ros.data.ingest import IngestConfig, ingest
    from lewm_ros.sim.collect import CollectSettings, collect

    config = IngestConfig(image_size=64, state_topic='state', action={'dim': 2})
    rng = np.random.default_rng(seed)
    counts = {'bags': 0, 'ingested whole': 0, 'of them recovered': 0, 'refused naming the bag': 0, 'crashes': 0,
              'inconsistent caches': 0}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        originals = []
        for storage in ('mcap', 'sqlite3'):
            collect(CollectSettings(world='arm', task='reach', policy='random', steps=30, storage=storage),
                    episodes=1, out=root / storage, progress=False)
            originals += [meta.parent for meta in (root / storage).rglob('metadata.yaml')]
        collect(CollectSettings(world='arm', task='reach', policy='random', steps=30, seed=1), episodes=1,
                out=root / 'good', progress=False)
        ingest([root / 'good'], root / 'cache', config, progress=False)
        started = time.monotonic()
        for k in range(count):
            bag, cache = root / 'work' / 'bag', root / 'work' / 'cache'
            shutil.rmtree(root / 'work', ignore_errors=True)
            shutil.copytree(originals[k % len(originals)], bag)
            shutil.copytree(root / 'cache', cache)
            target = sorted(bag.iterdir())[int(rng.integers(len(list(bag.iterdir()))))]
            blob, how = bytearray(target.read_bytes()), rng.integers(3)
            if how == 0:
                target.unlink()
            elif how == 1:
                target.write_bytes(bytes(blob[:int(rng.integers(0, max(len(blob), 1)))]))
            else:
                for _ in range(int(rng.integers(1, 64))):
                    blob[int(rng.integers(len(blob)))] ^= int(rng.integers(1, 256))
                target.write_bytes(bytes(blob))
            index = (cache / 'index.json').read_text()
            counts['bags'] += 1
            try:
                report = ingest([bag], cache, config, progress=False, recover=True)
                counts['ingested whole'] += 1
                counts['of them recovered'] += len(report.recovered)
                consistent = len(TrainingCache(cache).episodes) == report.episodes
            except BagError as err:
                counts['refused naming the bag'] += int(str(bag) in str(err))
                consistent = (cache / 'index.json').read_text() == index
            except Exception as err:  # counting what must never happen
                counts['crashes'] += 1
                print(f'crash on bag {k} ({target.name}, {["deleted", "cut", "flipped"][how]}): {err!r}')
                consistent = True
            counts['inconsistent caches'] += int(not consistent)
        counts['seconds'] = round(time.monotonic() - started, 1)
    return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=10_000)
    parser.add_argument('--bags', type=int, default=1000)
    parser.add_argument('--rate', type=float, default=500.0, help='frames per second sent to the planner')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    results = {}
    if args.frames:
        results['frames'] = fuzz_frames(args.frames, args.rate, args.seed)
        print('frames:', json.dumps(results['frames']), flush=True)
    if args.bags:
        results['bags'] = fuzz_bags(args.bags, args.seed)
        print('bags:', json.dumps(results['bags']), flush=True)
    failed = (results.get('frames', {}).get('node_crashes', 0) or results.get('bags', {}).get('crashes', 0)
              or results.get('bags', {}).get('inconsistent caches', 0))
    raise SystemExit(1 if failed else 0)


if __name__ == '__main__':
    main()
