"""Every node's ``main``: ``--help``, start-up errors as one fatal log line and exit code 1, spinning until SIGINT
or SIGTERM, then shutting down in order."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from lewm_ros.model.checkpoint import CheckpointError

STARTUP_ERRORS = (ValueError, CheckpointError, ParameterException, OSError)  # what a bad configuration raises


def init(args=None) -> None:
    """``rclpy.init`` without rclpy's signal handlers: ``spin_until_signal`` handles SIGINT and SIGTERM."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def spin_until_signal(node: Node, executor: Executor | None = None) -> None:
    """Spin ``node`` until SIGINT or SIGTERM (or an external shutdown), then return.

    The signal only sets a flag that the loop checks between callbacks. rclpy's own handlers shut the context
    down under the spinning executor, which then raised from inside rclpy at exit (measured: 2 of 8 runs of the
    planner's signal test printed a traceback, from building a wait set or from a half-built Task).
    """
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        # now, while the context lives: left to the garbage collector, rclpy destroyed its guard condition after
        # rclpy.shutdown and printed a traceback (seen from sim_node under ros2 launch)
        shutdown_executor(executor)


def shutdown_executor(executor: Executor) -> None:
    """Shut ``executor`` down after the callbacks still running on it have finished. Jazzy's Executor.shutdown
    means to wait for a MultiThreadedExecutor's pool but skips it (it tests _is_shutdown just after setting it),
    destroys its guard condition, and the finishing callback then printed 'exception was never retrieved: ...
    destruction was requested'."""
    pool = getattr(executor, '_executor', None)
    if pool is not None:
        pool.shutdown(wait=True)
    executor.shutdown(timeout_sec=5.0)


def run_node(node_class: Callable[[], Node], args, doc: str, executor: Callable[[], Executor] | None = None,
             cleanup: Callable[[Node], None] | None = None) -> int:
    """Run one node as a process: 0 after a clean shutdown, 1 when it cannot start (the reason logged once).

    ``--help`` (outside ``--ros-args``) prints the node's documentation; ROS arguments go to rclpy. ``executor``
    makes the executor to spin on (default: single-threaded).
    """
    program = doc.split(':')[0]
    parser = argparse.ArgumentParser(prog=program, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='ROS arguments: --ros-args --params-file FILE -p NAME:=VALUE '
                                     '-r __ns:=/NAMESPACE')
    try:
        own_args = remove_ros_args(args)[1:]
    except RuntimeError as err:  # (rcl's RCLInvalidROSArgsError) an argument rcl cannot parse, as -p name:= alone
        parser.error(str(err).split(', at ')[0])
    parser.parse_args(own_args)
    init(args)
    node = None
    try:
        try:
            node = node_class()
        except STARTUP_ERRORS as err:
            rclpy.logging.get_logger(program).fatal(f'cannot start: {err}')
            return 1
        spin_until_signal(node, executor() if executor else None)
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            if cleanup is not None:
                cleanup(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
