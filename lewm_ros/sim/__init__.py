"""Simulated worlds with a Gymnasium-style API (no ROS runtime)."""
