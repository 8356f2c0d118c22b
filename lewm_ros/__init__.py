"""lewm_ros: LeWorldModel (LeWM) world model and latent-MPC planner for ROS 2.

The ROS-free core lives in ``model``, ``planning``, ``data`` and ``sim``; only ``nodes``
imports rclpy.
"""

__version__ = '0.1.0'
