"""Linear probes: how linearly a quantity (the agent's position, the arm's joints) can be read from frozen
embeddings. Used by the trainer's validation (R^2), lewm-physics (Pearson r) and the benchmarks; the nearest-neighbour
read-out beside them tells a quantity coded nonlinearly from one that is missing."""

from __future__ import annotations

import numpy as np


def linear_probe(fit_emb: np.ndarray, fit_target: np.ndarray, test_emb: np.ndarray) -> np.ndarray:
    """Least-squares affine map fitted on (fit_emb (N, D), fit_target (N, S)); its prediction (M, S) on test_emb."""
    def with_bias(emb):
        return np.concatenate([np.asarray(emb, np.float64), np.ones((len(emb), 1))], axis=1)  # (N, D+1)

    weights, *_ = np.linalg.lstsq(with_bias(fit_emb), np.asarray(fit_target, np.float64), rcond=None)  # (D+1, S)
    return with_bias(test_emb) @ weights


def nearest_neighbour_probe(fit_emb: np.ndarray, fit_target: np.ndarray, test_emb: np.ndarray, k: int = 10,
                            chunk: int = 1024) -> np.ndarray:
    """The mean target (M, S) of each test embedding's ``k`` nearest fitted embeddings (Euclidean): a read-out that
    needs no linear code, so a quantity that it reads and a linear probe does not is coded nonlinearly, and one
    that neither reads is missing from the embedding."""
    fit, target = np.asarray(fit_emb, np.float64), np.asarray(fit_target)
    fit_sq = (fit ** 2).sum(1)  # (N,)
    out = []
    for start in range(0, len(test_emb), chunk):
        test = np.asarray(test_emb[start:start + chunk], np.float64)  # (C, D)
        dist = fit_sq[None] - 2 * test @ fit.T  # (C, N): squared distance less the test's own norm
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]  # (C, k)
        out.append(target[nearest].mean(1))  # (C, S)
    return np.concatenate(out)


def r_squared(predicted, truth, per_column: bool = False):
    """Coefficient of determination of predicted vs truth (N, S), numpy or torch: pooled over the columns (a
    float), or one per column (S,)."""
    residual = ((predicted - truth) ** 2).sum(0)  # (S,)
    spread = ((truth - truth.mean(0)) ** 2).sum(0)  # (S,)
    return 1 - residual / spread if per_column else float(1 - residual.sum() / spread.sum())
