"""Offline tools: trainer, evaluation and benchmarks (installed as lewm_ros.training)."""
