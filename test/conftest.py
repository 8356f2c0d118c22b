"""Test-session environment: isolated ROS graph, logs in the work tree, headless MuJoCo.

Set here, before any test module imports rclpy or mujoco, so nobody sets them by hand.
Child processes started by tests inherit them.
"""

import os
import random
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# A per-run domain keeps concurrent runs on one machine from seeing each other.
os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 100))
os.environ['ROS_LOG_DIR'] = str(_ROOT / 'log' / 'test')
os.environ['MUJOCO_GL'] = 'egl'
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised tiny model (16 px frames) whose actions matter: node plumbing does not care how good
    the plans are."""
    from .tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp('tiny') / 'tiny.safetensors')


@pytest.fixture
def ros():
    """An initialised rclpy context for the test, shut down afterwards."""
    import rclpy  # here, after the environment above is set

    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()


def pytest_collection_modifyitems(config, items):
    """Run the ROS graph tests first. Their nodes share this process, its GIL and its executors with the test;
    after the model-training tests have run in it, executor callbacks were measured to stall for over 0.5 s
    (frames late, timers late), which a node in its own process never sees. Stable sort: order otherwise kept."""
    items.sort(key=lambda item: item.get_closest_marker('ros') is None)


def _hypothesis_profiles() -> None:
    """test_fuzz.py's budgets: ``default`` (make test: derandomised, bounded) and ``long`` (HYPOTHESIS_PROFILE=long:
    thousands of examples per property, random)."""
    from hypothesis import settings

    settings.register_profile('default', max_examples=40, deadline=None, derandomize=True, database=None)
    settings.register_profile('long', max_examples=5000, deadline=None)
    settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))


_hypothesis_profiles()
