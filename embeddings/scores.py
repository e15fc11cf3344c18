"""Mislabel detectors as pure numpy functions, cleanlab-style.

Inputs: `labels` (N,) int class indices with -1 = no label; `probs` (N, C) softmax rows
(out-of-fold where available); `emb` (N, D) embeddings. Each detector returns (N,) float64
scores, higher = more suspicious, NaN where the painting has no label for the task.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

DETECTORS = ("confidence", "margin", "centroid", "centroid_margin", "mahalanobis", "zscore", "knn",
             "confident_learning", "consensus")
# Detectors folded into the consensus rank (all of the above but consensus itself).
CONSENSUS_OF = DETECTORS[:-1]


def _given_prob(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    known = labels >= 0
    p = np.full(len(labels), np.nan)
    p[known] = probs[np.flatnonzero(known), labels[known]]
    return p


def confidence_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """1 - p(given label). (N,)"""
    return 1.0 - _given_prob(labels, probs)


def margin_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """max over other classes of p - p(given), in [-1, 1]. (N,)"""
    known = labels >= 0
    other = probs.astype(np.float64).copy()
    other[np.flatnonzero(known), labels[known]] = -np.inf
    out = other.max(1) - _given_prob(labels, probs)
    out[~known] = np.nan
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def class_centroids(labels: np.ndarray, emb: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) L2-normalised mean of the L2-normalised embeddings of each class; NaN rows for empty classes."""
    z = l2_normalize(emb)
    cent = np.full((n_classes, z.shape[1]), np.nan)
    for c in np.unique(labels[labels >= 0]):
        cent[c] = z[labels == c].mean(0)
    ok = ~np.isnan(cent[:, 0])
    cent[ok] = l2_normalize(cent[ok])
    return cent


def _own_and_nearest_other(labels: np.ndarray, emb: np.ndarray, n_classes: int | None):
    """Cosine distance to the own class centroid and to the nearest other one, (N,) each; NaN/inf
    for unlabelled rows. Classes with no member are never "nearest"."""
    n_classes = n_classes or int(labels.max()) + 1
    known = np.flatnonzero(labels >= 0)
    cent = class_centroids(labels, emb, n_classes)
    d = 1.0 - l2_normalize(emb) @ np.nan_to_num(cent).T     # (N, C) cosine distances
    d[:, np.isnan(cent[:, 0])] = np.inf
    own = np.full(len(labels), np.nan)
    own[known] = d[known, labels[known]]
    d[known, labels[known]] = np.inf
    return own, d.min(1)


def centroid_scores(labels: np.ndarray, emb: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Cosine distance of each embedding to its given class centroid. (N,)"""
    return _own_and_nearest_other(labels, emb, n_classes)[0]


def centroid_margin_scores(labels: np.ndarray, emb: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Distance to own centroid minus distance to the nearest other centroid (> 0: closer to another). (N,)"""
    own, other = _own_and_nearest_other(labels, emb, n_classes)
    return own - other


def centroid_zscores(labels: np.ndarray, emb: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """z-score of the distance to the own-class centroid within that class; > 3 is a flag. (N,)"""
    d = centroid_scores(labels, emb, n_classes)
    out = np.full(len(labels), np.nan)
    for c in np.unique(labels[labels >= 0]):
        m = labels == c
        sd = d[m].std()
        out[m] = (d[m] - d[m].mean()) / sd if sd > 0 else 0.0
    return out


def mahalanobis_scores(labels: np.ndarray, emb: np.ndarray, n_classes: int | None = None,
                       max_dim: int = 256) -> np.ndarray:
    """Mahalanobis distance to the given class mean with one shared Ledoit-Wolf covariance (Lee et al. 2018).

    Embeddings are L2-normalised and, above `max_dim` dims, PCA-reduced first (the covariance of
    a 960-d embedding from a few thousand paintings is poorly conditioned even with shrinkage). (N,)
    """
    from sklearn.covariance import LedoitWolf
    n_classes = n_classes or int(labels.max()) + 1
    known = labels >= 0
    z = l2_normalize(emb)
    z = z - z[known].mean(0)
    if z.shape[1] > max_dim:
        _, _, vt = np.linalg.svd(z[known], full_matrices=False)
        z = z @ vt[:max_dim].T
    means = np.zeros((n_classes, z.shape[1]))
    for c in np.unique(labels[known]):
        means[c] = z[labels == c].mean(0)
    resid = z[known] - means[labels[known]]
    precision = LedoitWolf(assume_centered=True).fit(resid).precision_
    out = np.full(len(labels), np.nan)
    diff = z[known] - means[labels[known]]
    out[known] = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", diff, precision, diff), 0))
    return out


def knn_disagreement_scores(labels: np.ndarray, neighbor_ids: np.ndarray) -> np.ndarray:
    """Share of a painting's nearest labelled neighbours whose label differs from its own.

    neighbor_ids: (N, k) row indices of each row's neighbours (self excluded, -1 = none). (N,)
    """
    nb = np.where(neighbor_ids >= 0, labels[np.maximum(neighbor_ids, 0)], -1)
    valid = nb >= 0
    differ = (nb != labels[:, None]) & valid
    n = valid.sum(1)
    out = np.where(n > 0, differ.sum(1) / np.maximum(n, 1), np.nan)
    out[labels < 0] = np.nan
    return out


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning (Northcutt et al. 2021): (flag (N,) bool, score (N,) float).

    Per-class threshold t_j = mean p_j over paintings labelled j. A painting is flagged when some
    other class j clears its threshold (p_j >= t_j) and is the most likely such class - the
    off-diagonal of the confident joint. Score: flagged first, then by 1 - p(given).
    """
    known = labels >= 0
    n_classes = probs.shape[1]
    t = np.full(n_classes, np.inf)
    for c in np.unique(labels[known]):
        t[c] = probs[labels == c, c].mean()
    above = probs >= t[None, :]
    cand = np.where(above, probs, -1.0)
    best = cand.argmax(1)
    has = above.any(1)
    flag = known & has & (best != labels)
    score = flag.astype(float) + confidence_scores(labels, probs)
    score[~known] = np.nan
    flag[~known] = False
    return flag, score


def rank_descending(scores: np.ndarray) -> np.ndarray:
    """1 = highest score; NaN scores get rank 0 (unranked). (N,) int"""
    out = np.zeros(len(scores), dtype=np.int64)
    ok = ~np.isnan(scores)
    out[ok] = rankdata(-scores[ok], method="ordinal")
    return out


def consensus_scores(score_table: dict[str, np.ndarray]) -> np.ndarray:
    """Mean percentile rank over detectors (1 = most suspicious by every detector). (N,)"""
    pct = []
    for s in score_table.values():
        ok = ~np.isnan(s)
        p = np.full(len(s), np.nan)
        if ok.sum():
            p[ok] = rankdata(s[ok], method="average") / ok.sum()
        pct.append(p)
    if not pct:
        return np.array([])
    stack = np.vstack(pct)
    n = (~np.isnan(stack)).sum(0)
    return np.where(n > 0, np.nansum(stack, 0) / np.maximum(n, 1), np.nan)


def all_detector_scores(labels: np.ndarray, probs: np.ndarray, emb: np.ndarray,
                        neighbor_ids: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every detector for one task: ({detector: score (N,)}, {detector: flag (N,) bool})."""
    C = probs.shape[1]
    scores = {
        "confidence": confidence_scores(labels, probs),
        "margin": margin_scores(labels, probs),
        "centroid": centroid_scores(labels, emb, C),
        "centroid_margin": centroid_margin_scores(labels, emb, C),
        "mahalanobis": mahalanobis_scores(labels, emb, C),
        "zscore": centroid_zscores(labels, emb, C),
        "knn": knn_disagreement_scores(labels, neighbor_ids),
    }
    cl_flag, scores["confident_learning"] = confident_learning(labels, probs)
    scores["consensus"] = consensus_scores({k: scores[k] for k in CONSENSUS_OF})
    scores["consensus"][labels < 0] = np.nan
    with np.errstate(invalid="ignore"):
        flags = {
            "confidence": scores["confidence"] > 0.5,  # given label below 0.5: the seeds' threshold review
            "margin": scores["margin"] > 0,
            "centroid": np.zeros(len(labels), bool),
            "centroid_margin": scores["centroid_margin"] > 0,
            "mahalanobis": np.zeros(len(labels), bool),
            "zscore": scores["zscore"] > 3,
            "knn": scores["knn"] > 0.5,
            "confident_learning": cl_flag,
            "consensus": np.zeros(len(labels), bool),
        }
    for k in ("centroid", "mahalanobis", "consensus"):  # rank-only detectors: flag the top 5%
        s = scores[k]
        ok = ~np.isnan(s)
        if ok.any():
            flags[k] = ok & (s >= np.nanquantile(s, 0.95))
    return scores, flags
