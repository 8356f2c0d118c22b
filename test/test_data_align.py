"""Control-grid alignment: jitter and dropped frames never shift actions against frames."""

import numpy as np
import pytest

from lewm_ros.data.align import (
    align_episode,
    latest_at_or_before,
    median_period_ns,
    refined_period_ns,
    split_at_gaps,
)

PERIOD = 100_000_000  # 10 Hz in ns
START = 5 * 10**9


def jittered_frames(count: int, dropped: set[int], rng) -> tuple[np.ndarray, np.ndarray]:
    """Frame times with +-20 % jitter (frame 0 exact) and the frame number of each surviving frame."""
    numbers = np.array([k for k in range(count) if k not in dropped])
    jitter = rng.uniform(-0.2, 0.2, count) * PERIOD
    jitter[0] = 0
    return (START + numbers * PERIOD + jitter[numbers]).astype(np.int64), numbers


def test_jitter_and_drops_keep_frames_and_actions_on_their_steps():
    rng = np.random.default_rng(1)
    image_times, numbers = jittered_frames(40, dropped={7, 8, 20}, rng=rng)
    # two commands per step: command k (at or just before step k) and a late one after mid-step; shuffled
    command_times = np.concatenate([START + np.arange(40) * PERIOD - rng.integers(0, PERIOD // 4, 40),
                                    START + np.arange(40) * PERIOD + PERIOD * 6 // 10])
    command_ids = np.concatenate([np.arange(40.0), np.arange(40) + 0.5])
    shuffle = rng.permutation(80)
    command_times, command_ids = command_times[shuffle], command_ids[shuffle]

    episode = align_episode(image_times, np.arange(len(image_times)), command_times, PERIOD)

    assert len(episode.frame_rows) == 40
    steps = np.arange(40)
    ok = ~np.isin(steps, [7, 8, 20])
    np.testing.assert_array_equal(episode.frame_ok, ok)
    np.testing.assert_array_equal(numbers[episode.frame_rows[ok]], steps[ok])  # frame k on step k
    assert set(numbers[episode.frame_rows[~ok]]) <= {6, 9, 19, 21}  # a dropped step holds a neighbour
    np.testing.assert_array_equal(command_ids[episode.action_rows], steps)  # command k on step k


def test_commands_reacting_to_frames_land_on_their_frame_step():
    # A planner or lock-step simulator: frame k (+-20 % jitter) is published, command k follows 5-25 % of a
    # period after it, so it lands anywhere from 15 % before to 45 % after grid time t_k.
    rng = np.random.default_rng(2)
    image_times, numbers = jittered_frames(50, dropped=set(), rng=rng)
    command_times = image_times + rng.integers(PERIOD // 20, PERIOD // 4, 50)
    episode = align_episode(image_times, np.arange(50), command_times, PERIOD)
    np.testing.assert_array_equal(episode.action_rows, np.arange(len(episode.action_rows)))
    np.testing.assert_array_equal(numbers[episode.frame_rows], np.arange(len(episode.frame_rows)))
    assert len(episode.frame_rows) == 50


def test_grid_starts_at_first_command_and_state_follows_frame_time():
    image_times = START + np.arange(10) * PERIOD
    command_times = np.array([START + 3 * PERIOD - 10])
    state_times = image_times - 5  # a state just before each frame
    episode = align_episode(image_times, np.arange(10), command_times, PERIOD, state_times_ns=state_times)
    assert episode.start_ns == START + 3 * PERIOD  # the first frame step with the command in force
    np.testing.assert_array_equal(episode.frame_rows, np.arange(3, 10))
    np.testing.assert_array_equal(episode.state_rows, np.arange(3, 10))
    assert align_episode(image_times, np.arange(10), np.array([START + 20 * PERIOD]), PERIOD) is None


def test_faster_control_rate_repeats_frames_and_marks_the_in_between_steps():
    image_times = START + np.arange(5) * PERIOD
    episode = align_episode(image_times, np.arange(5), np.array([START]), PERIOD / 4, tolerance=0.5)
    assert len(episode.frame_rows) == 17
    np.testing.assert_array_equal(np.flatnonzero(episode.frame_ok), [0, 4, 8, 12, 16])


def test_helpers():
    assert median_period_ns(np.array([0, 100, 200, 200, 310])) == pytest.approx(100)
    with pytest.raises(ValueError, match='two distinct'):
        median_period_ns(np.array([5, 5]))
    assert refined_period_ns(np.array([0, 52, 104, 208]), nominal_ns=50) == pytest.approx(52)  # a drop, a slow clock
    parts = split_at_gaps(np.array([0, 10, 20, 100, 110, 30]), max_gap_ns=50)
    assert [part.tolist() for part in parts] == [[0, 1, 2, 5], [3, 4]]
    assert latest_at_or_before(np.array([30, 10, 20]), np.array([5, 10, 25, 99])).tolist() == [-1, 1, 2, 0]
