"""Running a node until SIGINT or SIGTERM, then shutting down in order (every node's ``main``)."""

from __future__ import annotations

import signal
import threading

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


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
    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)
