"""The package as ROS users build it: colcon build, with and without --symlink-install, in a fresh workspace;
every module imports and every console script answers --help from the install space."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lewm_ros.sim.registry import WORLDS

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ('planner_node', 'sim_node', 'recorder_node', 'lewm-collect', 'lewm-ingest', 'lewm-train', 'lewm-eval',
           'lewm-physics', 'lewm-demo')
COLCON = Path(sys.executable).with_name('colcon')
IMPORT_ALL = ('import importlib, pkgutil, lewm_ros; '
              "names = [m.name for m in pkgutil.walk_packages(lewm_ros.__path__, 'lewm_ros.')]; "
              '[importlib.import_module(n) for n in names]; '
              "from lewm_ros.paths import share_path; share_path('training/configs/small.yaml'); "
              "from lewm_ros.sim import world_spec; world_spec('arm').parameters('planner'); "
              'print(lewm_ros.__file__, len(names))')

pytestmark = pytest.mark.skipif(not COLCON.exists(), reason='colcon is installed by requirements.txt')


def in_workspace(workspace: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` in bash after ``source install/setup.bash``, run outside the source tree."""
    env = {**os.environ, 'PATH': f'{COLCON.parent}{os.pathsep}{os.environ["PATH"]}'}
    return subprocess.run(['bash', '-c', f'source {workspace}/install/setup.bash && {command}'], cwd=workspace.parent,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('symlink', [False, True], ids=['install', 'symlink-install'])
def test_colcon_build_imports_every_module_and_runs_every_console_script(tmp_path, symlink):
    workspace = tmp_path / 'ws'
    shutil.copytree(ROOT, workspace / 'src' / 'lewm_ros', ignore=shutil.ignore_patterns(
        '.git', '.venv', 'build', 'install', 'log', 'out', 'runs', '__pycache__', '*.egg-info', '.*_cache'))
    env = {**os.environ, 'PATH': f'{COLCON.parent}{os.pathsep}{os.environ["PATH"]}'}
    build = subprocess.run([str(COLCON), 'build', *(['--symlink-install'] if symlink else []),
                            '--event-handlers', 'console_direct-'], cwd=workspace, env=env, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr

    imported = in_workspace(workspace, f'{sys.executable} -c "{IMPORT_ALL}"')
    assert imported.returncode == 0, imported.stderr
    module_file = Path(imported.stdout.split()[0]).resolve()
    assert workspace in module_file.parents, f'lewm_ros came from {module_file}, not the workspace'
    share = workspace / 'install/lewm_ros/share/lewm_ros'
    assert (share / 'training/configs/small.yaml').exists()
    assert {path.parent.name for path in share.glob('worlds/*/planner.yaml')} == set(WORLDS)
    for script in SCRIPTS:
        result = in_workspace(workspace, f'{workspace}/install/lewm_ros/lib/lewm_ros/{script} --help')
        assert result.returncode == 0 and 'usage:' in result.stdout, (script, result.stdout, result.stderr)
