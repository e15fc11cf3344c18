"""Detector evaluation against known flips, pure numpy: scores (N,) float, is_flipped (N,) bool."""
from __future__ import annotations

import numpy as np

from embeddings.evidence import differing_copy_counts
from embeddings.scores import average_ranks, wrong_label_estimate


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged); NaN scores are dropped."""
    ok = ~np.isnan(scores)
    s, y = scores[ok], positive[ok].astype(bool)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(s)
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


def bootstrap_interval(scores: np.ndarray, positive: np.ndarray, stat, n_boot: int = 200, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(scores, positive) over paintings resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    vals = [stat(scores[i], positive[i]) for i in (rng.integers(0, n, n) for _ in range(n_boot))]
    lo, hi = np.nanpercentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def grade_ranking(scores: np.ndarray, positive: np.ndarray, split: np.ndarray, n_boot: int = 0) -> dict:
    """How well `scores` (N,) rank the `positive` (N,) bool rows first (k = number of positives).

    Rows a detector cannot score (NaN, e.g. cross_task without an artist label) rank last: the queue
    holds every labelled painting, so a mislabel the detector cannot see is a miss.
    With n_boot > 0, also `auroc_ci` and `precision_at_k_ci`: 95% bootstrap intervals (k follows
    the number of positives in each resample).
    Returns auroc, auprc, precision_at_k, recall_at_k, k, and the split make-up of the top k next to
    that of the positives (`topk_split_share`, `positive_split_share`: {split: share}) with
    `split_excess`: the largest amount by which a split's share of the top k exceeds its share of
    the positives (0 = the top k is drawn from the splits as the mislabels are).
    """
    scored = int((~np.isnan(scores)).sum())
    s, y, sp = np.where(np.isnan(scores), -np.inf, scores), positive.astype(bool), np.asarray(split)
    k = int(y.sum())
    p, r = precision_recall_at_k(s, y, k)
    top = np.argsort(-s, kind="stable")[:k]
    splits = sorted(set(np.asarray(split).tolist()))
    top_share = {x: float((sp[top] == x).mean()) if k else float("nan") for x in splits}
    pos_share = {x: float((sp[y] == x).mean()) if k else float("nan") for x in splits}
    out = {"auroc": auroc(s, y), "auprc": average_precision(s, y), "precision_at_k": p, "recall_at_k": r, "k": k,
           "scored": scored, "topk_split_share": top_share, "positive_split_share": pos_share,
           "split_excess": max(top_share[x] - pos_share[x] for x in splits) if k else float("nan")}
    if n_boot:
        out["auroc_ci"] = bootstrap_interval(s, y, auroc, n_boot)
        out["precision_at_k_ci"] = bootstrap_interval(s, y, lambda a, b: precision_recall_at_k(a, b, int(b.sum()))[0],
                                                      n_boot)
    return out


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


def artist_flips(labels: np.ndarray, artist: np.ndarray, fraction: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue-style noise: `fraction` of the labelled rows get a label their own artist carries
    elsewhere in the collection (labels assigned at artist level, the commonest real failure of
    catalogues built from artist pages). A row is drawn only where its artist has another label to
    give; the new label is drawn in proportion to how often the artist's other paintings carry it.
    Fewer rows are flipped when fewer are eligible.

    labels (N,) int (-1 = none), artist (N,) int artist id (-1 = unknown). Returns (noisy (N,), flipped (N,) bool).
    """
    noisy = labels.copy()
    known = labels >= 0
    choices: dict[int, np.ndarray] = {}
    for a in np.unique(artist[(artist >= 0) & known]):
        choices[int(a)] = labels[(artist == a) & known]
    eligible = np.array([r for r in np.flatnonzero(known & (artist >= 0))
                         if (choices[int(artist[r])] != labels[r]).any()], dtype=np.int64)
    k = min(int(round(fraction * known.sum())), len(eligible))
    rows = rng.choice(eligible, size=k, replace=False) if k else np.array([], dtype=np.int64)
    for r in rows:
        pool = choices[int(artist[r])]
        noisy[r] = int(rng.choice(pool[pool != labels[r]]))   # the artist's labels, by their frequency
    flipped = np.zeros(len(labels), bool)
    flipped[rows] = True
    return noisy, flipped


def wrong_label_interval(labels: np.ndarray, probs: np.ndarray, n_boot: int = 200, seed: int = 0,
                         level: float = 0.95) -> tuple[np.ndarray, float, float]:
    """(per-class estimate (C,), low, high): `wrong_label_estimate` with a percentile bootstrap
    interval of its total over paintings resampled with replacement (thresholds refitted each time)."""
    known = labels >= 0
    lo, hi = bootstrap_interval(labels[known], probs[known], lambda y, p: wrong_label_estimate(y, p).sum(),
                                n_boot, seed, level) if n_boot else (np.nan, np.nan)
    return wrong_label_estimate(labels, probs), lo, hi


# Bins of a predicted probability for `reliability_table`.
RELIABILITY_EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)


def right_if_errors_uniform(q_given: np.ndarray, n_classes: int, error_rate: float) -> np.ndarray:
    """(N,) chance the given label is right when the catalogue errs at `error_rate`, each error any
    other class alike: (1-e) q / ((1-e) q + e (1-q) / (C-1)). q_given (N,): the evidence's
    probability of the given class with the label itself left out."""
    q = np.clip(q_given, 0.0, 1.0)
    right = (1 - error_rate) * q
    return right / (right + error_rate * (1 - q) / max(n_classes - 1, 1))


def reliability_table(predicted: np.ndarray, outcome: np.ndarray, edges=RELIABILITY_EDGES) -> list[dict]:
    """Per bin of `predicted` (N,) probabilities: {lo, hi, n, predicted (mean), observed (share of
    outcome (N,) bool)}; empty bins left out. A calibrated prediction has predicted ~ observed."""
    idx = np.clip(np.digitize(predicted, edges[1:-1]), 0, len(edges) - 2)
    return [{"lo": edges[b], "hi": edges[b + 1], "n": int(m.sum()), "predicted": float(predicted[m].mean()),
             "observed": float(outcome[m].mean())}
            for b in range(len(edges) - 1) if (m := idx == b).any()]


def conflicting_clean_labels(group: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """(N,) bool: paintings whose clean label differs from a copy's clean label. group (N,) int
    duplicate group (-1 = none), clean (N,) int label before the flips (-1 = none).

    A benchmark on injected flips counts every clean label as right, but where the catalogue files
    one picture under two labels at most one of them is: such paintings have no ground truth there,
    and a ranking that puts them first (as it should) would be graded down for it. The same test as
    the `copies` kind's (`embeddings.evidence.differing_copy_counts`), on the clean labels."""
    n_classes = int(np.max(clean, initial=-1)) + 1
    return differing_copy_counts(clean, group, max(n_classes, 1)).sum(1) > 0
