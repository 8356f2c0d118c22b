"""Offline tools: trainer, evaluation, violation-of-expectation report and the demo (console scripts lewm-*)."""
