"""The probes that tell what an embedding holds: linear, and nearest-neighbour for nonlinear codes."""

import numpy as np

from lewm_ros.tools.probe import linear_probe, nearest_neighbour_probe, r_squared


def test_nearest_neighbours_read_a_nonlinear_code_the_linear_probe_misses_and_neither_reads_a_missing_one():
    rng = np.random.default_rng(0)
    coded, missing = rng.uniform(0, 1, (2, 3000))
    turn = 2 * np.pi * 0.95 * coded  # round most of a circle: one point per value, but no line through them
    emb = np.column_stack([np.cos(turn), np.sin(turn), rng.normal(0, 0.01, 3000)])  # (N, 3)
    targets = np.column_stack([coded, missing])  # (N, 2)
    fit, test = slice(0, 2500), slice(2500, None)
    linear = r_squared(linear_probe(emb[fit], targets[fit], emb[test]), targets[test], per_column=True)
    neighbour = r_squared(nearest_neighbour_probe(emb[fit], targets[fit], emb[test], k=5, chunk=128),
                          targets[test], per_column=True)
    assert linear[0] < 0.8 and neighbour[0] > 0.99
    assert max(linear[1], neighbour[1]) < 0.1  # not in the embedding: nothing reads it


def test_nearest_neighbour_probe_returns_the_neighbours_mean():
    fit = np.array([[0.0], [1.0], [10.0], [11.0]])
    out = nearest_neighbour_probe(fit, np.array([[0.0], [2.0], [20.0], [22.0]]), np.array([[0.4], [10.6]]), k=2)
    np.testing.assert_allclose(out, [[1.0], [21.0]])
