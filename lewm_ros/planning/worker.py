"""Planning on a thread of its own, beside a control loop that must never wait for it (torch only, no ROS).

The worker is the one owner of the request in flight. The control tick, holding ``lock``, asks ``busy`` and
``submit``s the MPC's request; the thread solves it without the lock (``MPC.solve`` reads only the request),
installs the plan under the lock, then reports it through ``on_plan(plan, installed, request)`` outside the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lewm_ros.planning.mpc import MPC, Plan, PlanRequest


class PlanWorker:
    def __init__(self, mpc: MPC, lock: threading.Lock, on_plan: Callable[[Plan, bool, PlanRequest], None],
                 on_error: Callable[[Exception], None]):
        self.mpc, self.lock, self.on_plan, self.on_error = mpc, lock, on_plan, on_error
        self._request: PlanRequest | None = None
        self._submitted = 0.0
        self._wake, self._stopping = threading.Event(), False
        self._thread = threading.Thread(target=self._run, name='planner', daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A request is out and its plan not installed yet (read under ``lock``)."""
        return self._request is not None

    def waited(self, now: float) -> float:
        """Seconds (monotonic) the request in flight has waited, 0 when there is none."""
        return now - self._submitted if self.busy else 0.0

    def submit(self, request: PlanRequest, now: float | None = None) -> None:
        """Hand ``request`` over (call under ``lock``, only when not ``busy``)."""
        if self.busy:
            raise RuntimeError('a plan is already being computed')
        self._request, self._submitted = request, time.monotonic() if now is None else now
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            with self.lock:
                request = self._request
            try:
                plan = self.mpc.solve(request)
            except RuntimeError as err:  # e.g. CUDA out of memory: the caller holds and may ask again
                with self.lock:
                    self._request = None
                self.on_error(err)
                continue
            if self._stopping:
                return
            with self.lock:
                installed = self.mpc.install(plan)
                self._request = None
            self.on_plan(plan, installed, request)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (a plan in progress finishes first)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=timeout)
