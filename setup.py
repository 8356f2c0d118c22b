from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'lewm_ros'

setup(
    name=package_name,
    version='0.1.0',
    # Every importable module lives under lewm_ros/ (colcon --symlink-install skips mapped package dirs); the
    # top-level training/ holds the configs (installed under share/) and the benchmark scripts.
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    # a world's files live in its package (lewm_ros/sim/WORLD/); the launch file reads its parameter files from
    # share/lewm_ros/worlds/WORLD/
    package_data={package_name: ['sim/*/*.xml', 'sim/*/*.yaml', 'checkpoints/*.safetensors']},
    data_files=[
        *((f'share/{package_name}/worlds/{Path(folder).name}', glob(f'{folder}/*.yaml'))
          for folder in sorted(glob(f'{package_name}/sim/*/')) if glob(f'{folder}/*.yaml')),
        ('share/ament_index/resource_index/packages', [f'resource/{package_name}']),
        (f'share/{package_name}', ['package.xml']),
        (f'share/{package_name}/launch', glob('launch/*.launch.py')),
        (f'share/{package_name}/config', glob('config/*.yaml')),
        (f'share/{package_name}/training/configs', glob('training/configs/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='lewm_ros maintainers',
    maintainer_email='lewm-ros@example.com',
    description='LeWorldModel (LeWM) JEPA world model and latent-MPC planner for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'planner_node = lewm_ros.nodes:planner_node',
            'sim_node = lewm_ros.nodes:sim_node',
            'recorder_node = lewm_ros.nodes:recorder_node',
            'lewm-collect = lewm_ros.sim.collect:main',
            'lewm-ingest = lewm_ros.data.ingest:main',
            'lewm-train = lewm_ros.tools.train:main',
            'lewm-eval = lewm_ros.tools.evaluate:main',
            'lewm-physics = lewm_ros.tools.physics:main',
            'lewm-demo = lewm_ros.tools.demo:main',
        ],
    },
)
