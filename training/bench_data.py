"""Data pipeline throughput: bag -> cache ingest (frames/s) and clip sampling (clips/s).

Writes synthetic 224x224 episodes (rgb8 and jpeg) with the project's own bag writer, ingests them
into a 64 px and a 224 px cache, then times batched clip gathering. CPU only, no ROS runtime.

    python training/bench_data.py [--frames 2000] [--storage mcap] [--repeats 3]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lewm_ros.data.bags import STORAGES, BagWriter
from lewm_ros.data.clips import ClipDataset
from lewm_ros.data.images import encode_compressed, rgb_to_image_fields
from lewm_ros.data.ingest import IngestConfig, ingest

PERIOD_NS = 100_000_000
EPISODE_FRAMES = 500


def write_bags(root: Path, frames: int, encoding: str, storage: str) -> None:
    """Episodes of smooth moving gradients (jpeg-realistic), one command per frame."""
    y, x = np.mgrid[0:224, 0:224]
    for episode in range(frames // EPISODE_FRAMES):
        with BagWriter(root / f'{encoding}_{episode:03d}', storage) as writer:
            layout = writer.message('std_msgs/msg/MultiArrayLayout', dim=[], data_offset=0)
            for k in range(EPISODE_FRAMES):
                stamp = 10**18 + k * PERIOD_NS
                rgb = np.stack([(x + k) % 256, (y + 2 * k) % 256, (x + y) % 256], axis=2).astype(np.uint8)
                header = writer.header(stamp)
                if encoding == 'jpeg':
                    image = writer.message('sensor_msgs/msg/CompressedImage', header=header, format='jpeg',
                                           data=np.frombuffer(encode_compressed(rgb), np.uint8))
                else:
                    image = writer.message('sensor_msgs/msg/Image', header=header, **rgb_to_image_fields(rgb))
                writer.write('/image', image, stamp)
                command = writer.message('std_msgs/msg/Float64MultiArray', layout=layout,
                                         data=np.array([np.sin(k / 10), np.cos(k / 10)]))
                writer.write('/command', command, stamp - 1000)


def bench_ingest(bags: Path, cache: Path, size: int, repeats: int) -> float:
    """Best of ``repeats`` fresh ingests (the machine is shared: the best run is the least disturbed)."""
    rates = []
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        report = ingest([bags], cache, IngestConfig(image_size=size), progress=False)
        rates.append(report.frames / (time.perf_counter() - start))
    return max(rates)


def bench_clips(cache: Path, batch_size: int = 128, batches: int = 50) -> float:
    dataset = ClipDataset(cache, history=3, frameskip=5, split='train')
    rng = np.random.default_rng(0)
    dataset.sample(batch_size, rng)  # warm the page cache
    start = time.perf_counter()
    for _ in range(batches):
        dataset.sample(batch_size, rng)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=2000, help=f'per encoding, multiple of {EPISODE_FRAMES}')
    parser.add_argument('--storage', default='mcap', choices=sorted(STORAGES))
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench_data_') as workdir:
        root = Path(workdir)
        print(f'{args.frames} frames per encoding, 224x224 source, {args.storage} bags, best of {args.repeats}')
        for encoding in ('rgb8', 'jpeg'):
            write_bags(root / encoding, args.frames, encoding, args.storage)
            for size in (64, 224):
                rate = bench_ingest(root / encoding, root / f'cache_{encoding}_{size}', size, args.repeats)
                print(f'ingest {encoding:4s} -> {size:3d} px: {rate:8.0f} frames/s')
        for size in (64, 224):
            print(f'clip sampler {size:3d} px (batch 128, 4 frames, frameskip 5): '
                  f'{bench_clips(root / f"cache_rgb8_{size}"):8.0f} clips/s')


if __name__ == '__main__':
    main()
