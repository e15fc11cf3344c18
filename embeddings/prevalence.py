"""How many labels are wrong: the store's count per painting, refined by what reviewers found.

Each painting carries a weight whose sum over any subset is its expected number of wrong labels:
the store's `predictions.wrong_weight`, 1 where independent kinds of evidence agree the label is
wrong (`embeddings.verdicts.wrong_count`), else 0. `wrong_label_weights` is the older, model-only
weighting (the calibrated confident joint spread over the paintings it counts), kept for the
synthetic stores of the scale bench. A review replaces that
guess where people looked: the queue is cut into depth strata (ranks 1-50, 51-100, 101-200, ...);
in a stratum with enough decisions, the share tagged mislabel stands for its unreviewed rest;
elsewhere the weights do. Reviewed paintings count as what they were found to be.
"""
from __future__ import annotations

import numpy as np

from embeddings.scores import confident_class

MIN_REVIEWED = 5   # decisions a stratum needs before its observed share replaces the model's guess


def wrong_label_weights(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) float: each painting's share of `wrong_label_estimate`: a painting whose confident class
    differs from its label counts n_j / c_j for its class j (n_j labelled, c_j with a confident class),
    others 0; the weights of class j sum to that class's estimate. NaN where unlabelled."""
    known = labels >= 0
    best = confident_class(labels, probs)
    counted = known & (best >= 0)
    C = probs.shape[1]
    n_given = np.bincount(labels[known], minlength=C).astype(float)
    n_counted = np.bincount(labels[counted], minlength=C).astype(float)
    factor = n_given / np.maximum(n_counted, 1)
    w = np.where(counted & (best != labels), factor[np.maximum(labels, 0)], 0.0)
    w[~known] = np.nan
    return w


def depth_strata(n: int, first: int = 50) -> list[tuple[int, int]]:
    """[(lo, hi)] rank ranges 1-based inclusive, doubling: (1, 50), (51, 100), (101, 200), ... up to n."""
    out, lo, width = [], 1, first
    while lo <= n:
        hi = min(n, lo + width - 1)
        out.append((lo, hi))
        lo, width = hi + 1, (first if hi < first * 2 else hi)   # 50, 50, 100, 200, 400, ...
    return out


def refined_wrong_label_estimate(rank: np.ndarray, weight: np.ndarray, decision: np.ndarray,
                                 model_low: float, model_high: float, sampled: np.ndarray | None = None,
                                 min_reviewed: int = MIN_REVIEWED, n_draws: int = 4000, seed: int = 0,
                                 level: float = 0.95) -> dict:
    """Wrong labels among N labelled paintings, from the model's weights and the review's decisions.

    rank (N,) int: position in the review ranking (1 = top; 0 = unranked, counted in the last
    stratum); weight (N,) the store's `wrong_weight` (or `wrong_label_weights`); decision (N,) int: 1 mislabel, 0 correct,
    -1 not reviewed (or unsure); model_low/high: the model estimate's interval (its relative width
    is the uncertainty of the model's part, one common factor per draw); sampled (N,) bool, default
    all: whether a decision was made on this ranking. Decisions that were not (made on an earlier
    run, whose retraining moved those paintings down the queue) count as known outcomes but are no
    sample of their stratum: its share comes from this ranking's own decisions only.
    Returns {estimate, low, high, reviewed, confirmed, strata: [{ranks, paintings, reviewed,
    confirmed, expected_wrong, source}]}. Stratum draws: Beta(m + 1/2, r - m + 1/2) for the unreviewed
    rest of reviewed strata, the model's part scaled by one normal factor.
    """
    rank = np.asarray(rank)
    weight = np.nan_to_num(np.asarray(weight, float))
    decision = np.asarray(decision)
    sampled = np.ones(len(rank), bool) if sampled is None else np.asarray(sampled, bool)
    fixed = (decision >= 0) & ~sampled        # known outcomes, not a sample
    n = len(rank)
    r_eff = np.where(rank > 0, rank, n + 1)
    order = np.argsort(r_eff, kind="stable")
    pos = np.empty(n, int)
    pos[order] = np.arange(1, n + 1)          # 1..N, unranked last
    model_total = float(weight.sum())
    rel_sd = ((model_high - model_low) / (2 * 1.96) / model_total) if model_total > 0 and np.isfinite(model_high - model_low) else 0.0
    rng = np.random.default_rng(seed)
    factor = np.clip(rng.normal(1.0, rel_sd, n_draws), 0, None)
    draws = np.zeros(n_draws)
    strata, point = [], 0.0
    for lo, hi in depth_strata(n):
        s = (pos >= lo) & (pos <= hi)
        reviewed = s & (decision >= 0) & sampled
        r, m = int(reviewed.sum()), int((reviewed & (decision == 1)).sum())
        known = int((s & fixed & (decision == 1)).sum())
        rest = int(s.sum()) - r - int((s & fixed).sum())
        if r >= min_reviewed:
            est = known + m + rest * m / r    # the observed share (unbiased); the draws carry its doubt
            draws += known + m + rest * rng.beta(m + 0.5, r - m + 0.5, n_draws)
            source = "review"
        else:
            model_part = float(weight[s & (decision < 0)].sum())
            est = known + m + model_part
            draws += known + m + model_part * factor
            source = "model"
        m += known
        point += est
        strata.append({"ranks": f"{lo}-{hi}", "paintings": int(s.sum()), "reviewed": r, "confirmed": m,
                       "expected_wrong": est, "source": source})
    # The draws' spread, centred on the point: a Beta draw for a stratum with no mislabel seen yet is
    # above 0 on average while its point is 0, so raw quantiles sat above the truth (coverage 65-83%
    # on the loop benchmark's flips); centred, the interval keeps the draws' skew but not their shift.
    a = (1 - level) / 2
    confirmed = float(sum(st["confirmed"] for st in strata))
    low = max(confirmed, point - (draws.mean() - np.quantile(draws, a)))
    high = point + (np.quantile(draws, 1 - a) - draws.mean())
    return {"estimate": point, "low": float(low), "high": float(high),
            "reviewed": int((decision >= 0).sum()), "confirmed": int((decision == 1).sum()), "strata": strata}


def spot_check_order(rank: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) int: indices of the paintings in spot-check order: one random painting from each depth
    stratum in turn (round robin over `depth_strata`, random within a stratum; unranked last), so
    any prefix samples every depth of the queue and the refined estimate has a share everywhere.
    The order depends only on the ranks and `seed`, so a reviewer who comes back continues it."""
    rank = np.asarray(rank)
    n = len(rank)
    pos = np.empty(n, int)
    pos[np.argsort(np.where(rank > 0, rank, n + 1), kind="stable")] = np.arange(1, n + 1)
    rng = np.random.default_rng(seed)
    lanes = [rng.permutation(np.flatnonzero((pos >= lo) & (pos <= hi))) for lo, hi in depth_strata(n)]
    out = [lane[i] for i in range(max((len(x) for x in lanes), default=0)) for lane in lanes if i < len(lane)]
    return np.asarray(out, int)
