"""Time alignment of camera frames, commands and states onto a fixed control grid.

Rules (times in ns, one grid per episode):
- The control period defaults to the median image period, refined per episode to its average frame
  rate (``refined_period_ns``); the grid starts at the first frame whose step has a command in force
  and ends half a period after the last frame.
- Frame of step k: the image nearest to grid time t_k. It is marked ``ok`` only when it lies within
  ``tolerance`` periods of t_k, so a dropped frame leaves a not-ok step (holding a neighbour) and
  never shifts later frames; the clip sampler skips clips whose kept frames are not ok.
- Action of step k: zero-order hold read mid-step, the latest command at or before
  t_k + command_offset * P (default half a period): the command in force for most of
  [t_k, t_{k+1}). A command sent just before frame k and one that reacts to frame k a few
  milliseconds after it (a planner, a lock-step simulator) both land on step k; reading at t_k
  itself would give the reactive one to step k+1 at random. Commands are matched on the grid,
  never on frame indices, so frame jitter or drops cannot shift actions against frames.
- State of step k: the latest state at or before the *frame's* time (it describes that frame),
  clamped to the first state for a frame that precedes every state.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class AlignedEpisode:
    start_ns: int  # grid time of step 0
    frame_rows: np.ndarray  # (K,) int64 index into the bag's image sequence (storage order)
    frame_ok: np.ndarray  # (K,) bool, an image within tolerance of the step
    action_rows: np.ndarray  # (K,) int64 index into the command sequence (storage order)
    state_rows: np.ndarray | None  # (K,) int64 index into the state sequence, or None


def median_period_ns(times_ns: np.ndarray) -> float:
    """Median positive spacing of the sorted times; needs at least two distinct times."""
    steps = np.diff(np.sort(times_ns))
    steps = steps[steps > 0]
    if not steps.size:
        raise ValueError('need at least two distinct image times to find the control period')
    return float(np.median(steps))


def refined_period_ns(times_ns: np.ndarray, nominal_ns: float) -> float:
    """The nominal (median) period corrected to the episode's average frame rate.

    span / round(span / nominal): dropped frames do not bias it, and a camera clock slightly off its
    nominal rate no longer makes a fixed grid drift against the frames over a long episode.
    """
    span = float(times_ns.max() - times_ns.min())
    intervals = round(span / nominal_ns)
    return span / intervals if intervals else nominal_ns


def split_at_gaps(times_ns: np.ndarray, max_gap_ns: float | None) -> list[np.ndarray]:
    """Sorted-image positions of each episode: the sorted times cut where a gap exceeds ``max_gap_ns``."""
    order = np.argsort(times_ns, kind='stable')
    if not max_gap_ns:
        return [order]
    cuts = np.flatnonzero(np.diff(times_ns[order]) > max_gap_ns) + 1
    return np.split(order, cuts)


def latest_at_or_before(times_ns: np.ndarray, queries_ns: np.ndarray) -> np.ndarray:
    """For each query, the storage index of the latest time <= query (-1 when there is none)."""
    order = np.argsort(times_ns, kind='stable')
    positions = np.searchsorted(times_ns[order], queries_ns, side='right') - 1
    return np.where(positions >= 0, order[np.maximum(positions, 0)], -1)


def align_episode(image_times_ns: np.ndarray, image_rows: np.ndarray, command_times_ns: np.ndarray,
                  period_ns: float, tolerance: float = 0.5,
                  state_times_ns: np.ndarray | None = None, command_offset: float = 0.5) -> AlignedEpisode | None:
    """Align one episode's images (``image_rows`` index ``image_times_ns``) to the control grid.

    Returns None when the episode has no grid step (all its frames precede the first command).
    """
    episode_times = image_times_ns[image_rows]
    order = np.argsort(episode_times, kind='stable')
    sorted_times, sorted_rows = episode_times[order], image_rows[order]
    offset_ns = round(command_offset * period_ns)
    # the grid keeps the first frame's phase and starts at the first step with a command in force
    first_step = max(0, int(np.ceil((command_times_ns.min() - offset_ns - sorted_times[0]) / period_ns)))
    start = int(sorted_times[0]) + round(first_step * period_ns)
    count = int(np.floor((sorted_times[-1] - start) / period_ns + 0.5)) + 1
    if count <= 0:
        return None
    grid = start + np.rint(np.arange(count) * period_ns).astype(np.int64)  # (K,) ns

    right = np.clip(np.searchsorted(sorted_times, grid), 1, len(sorted_times) - 1)
    left = right - 1
    if len(sorted_times) == 1:
        left = right = np.zeros(count, np.int64)
    nearest = np.where(np.abs(sorted_times[left] - grid) <= np.abs(sorted_times[right] - grid), left, right)
    frame_ok = np.abs(sorted_times[nearest] - grid) <= tolerance * period_ns

    state_rows = None
    if state_times_ns is not None:
        state_rows = latest_at_or_before(state_times_ns, sorted_times[nearest])
        state_rows[state_rows < 0] = int(np.argmin(state_times_ns))
    return AlignedEpisode(
        start_ns=int(start),
        frame_rows=sorted_rows[nearest].astype(np.int64),
        frame_ok=frame_ok,
        action_rows=latest_at_or_before(command_times_ns, grid + offset_ns),
        state_rows=state_rows,
    )
