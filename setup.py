from glob import glob

from setuptools import find_packages, setup

package_name = 'lewm_ros'

setup(
    name=package_name,
    version='0.1.0',
    # Every importable module lives under lewm_ros/ (colcon --symlink-install skips mapped package dirs); the
    # top-level training/ holds the configs (installed under share/) and the benchmark scripts.
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    package_data={package_name: ['sim/assets/*.xml', 'checkpoints/*.safetensors']},
    data_files=[
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
            'planner_node = lewm_ros.nodes.planner_node:main',
            'sim_node = lewm_ros.nodes.sim_node:main',
            'recorder_node = lewm_ros.nodes.recorder_node:main',
            'lewm-collect = lewm_ros.sim.collect:main',
            'lewm-ingest = lewm_ros.data.ingest:main',
            'lewm-train = lewm_ros.training.train:main',
            'lewm-eval = lewm_ros.training.evaluate:main',
            'lewm-physics = lewm_ros.training.physics:main',
            'lewm-demo = lewm_ros.training.demo:main',
        ],
    },
)
