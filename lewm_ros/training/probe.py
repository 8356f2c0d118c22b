"""Linear probes: how linearly a quantity (the agent's position, the arm's joints) can be read from frozen
embeddings. Used by the trainer's validation (R^2), lewm-physics (Pearson r) and the benchmarks."""

from __future__ import annotations

import numpy as np


def linear_probe(fit_emb: np.ndarray, fit_target: np.ndarray, test_emb: np.ndarray) -> np.ndarray:
    """Least-squares affine map fitted on (fit_emb (N, D), fit_target (N, S)); its prediction (M, S) on test_emb."""
    def with_bias(emb):
        return np.concatenate([np.asarray(emb, np.float64), np.ones((len(emb), 1))], axis=1)  # (N, D+1)

    weights, *_ = np.linalg.lstsq(with_bias(fit_emb), np.asarray(fit_target, np.float64), rcond=None)  # (D+1, S)
    return with_bias(test_emb) @ weights


def r_squared(predicted, truth, per_column: bool = False):
    """Coefficient of determination of predicted vs truth (N, S), numpy or torch: pooled over the columns (a
    float), or one per column (S,)."""
    residual = ((predicted - truth) ** 2).sum(0)  # (S,)
    spread = ((truth - truth.mean(0)) ** 2).sum(0)  # (S,)
    return 1 - residual / spread if per_column else float(1 - residual.sum() / spread.sum())
