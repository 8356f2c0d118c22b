"""rclpy nodes: thin shells over the ROS-free core.

The nodes' console scripts (``ros2 run lewm_ros planner_node``) enter here, before the node's module loads: a
Ctrl-C while torch, the checkpoint or the warm-up plan loads ends the process quietly (it printed a 91-line
``KeyboardInterrupt`` traceback). Once a node spins, SIGINT and SIGTERM shut it down in order
(``lewm_ros.nodes.spinning``).
"""

import importlib
import sys


def _console_script(module: str):
    def main(args=None) -> int:
        try:
            return importlib.import_module(f'{__name__}.{module}').main(args)
        except KeyboardInterrupt:
            print(f'{module}: interrupted while starting', file=sys.stderr)
            return 0  # as a Ctrl-C after start-up: the user stopped it, nothing failed
    return main


planner_node = _console_script('planner_node')
sim_node = _console_script('sim_node')
recorder_node = _console_script('recorder_node')
