"""Detector evaluation against known flips, pure numpy: scores (N,) float, is_flipped (N,) bool."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged); NaN scores are dropped."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], positive[ok].astype(bool)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise)."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], positive[ok].astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def precision_recall_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> tuple[float, float]:
    """(precision, recall) of the k highest scores."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], positive[ok].astype(bool)
    top = np.argsort(-s, kind="stable")[:k]
    found = y[top].sum()
    return float(found / max(k, 1)), float(found / max(y.sum(), 1))


def pr_curve(scores: np.ndarray, positive: np.ndarray, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) arrays of up to `points` points along the ranking."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], positive[ok].astype(bool)
    hits = y[np.argsort(-s, kind="stable")]
    tp = np.cumsum(hits)
    idx = np.unique(np.linspace(0, len(hits) - 1, min(points, len(hits))).astype(int))
    return tp[idx] / max(y.sum(), 1), tp[idx] / (idx + 1)


def flip_labels(labels: np.ndarray, fraction: float, rng: np.random.Generator, n_classes: int,
                confusable_probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip `fraction` of the labelled rows. Uniform: to another class present in `labels`;
    confusable: to the most probable other class under `confusable_probs` (N, C).

    Returns (noisy labels (N,), flipped (N,) bool).
    """
    noisy = labels.copy()
    known = np.flatnonzero(labels >= 0)
    k = int(round(fraction * len(known)))
    rows = rng.choice(known, size=k, replace=False)
    present = np.unique(labels[known])
    for r in rows:
        if confusable_probs is not None:
            p = confusable_probs[r].copy()
            p[labels[r]] = -1
            p[~np.isin(np.arange(n_classes), present)] = -1
            noisy[r] = int(p.argmax())
        else:
            noisy[r] = int(rng.choice(present[present != labels[r]]))
    flipped = np.zeros(len(labels), bool)
    flipped[rows] = True
    return noisy, flipped
