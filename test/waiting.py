"""Waiting in tests on what another thread or process does."""

import time


def wait_for(condition, what: str, timeout: float = 10.0, alive=()) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` s, or at once when a process in
    ``alive`` has exited (a node that crashed is not a slow one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        for process in alive:
            assert process.poll() is None, f'a node exited (code {process.returncode}) while waiting for {what}'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.01)
