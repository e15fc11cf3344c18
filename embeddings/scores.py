"""Mislabel detectors as pure numpy functions, cleanlab-style.

Inputs: `labels` (N,) int class indices with -1 = no label; `probs` (N, C) softmax rows
(out-of-fold where available); `emb` (N, D) embeddings. Each detector returns (N,) float64
scores, higher = more suspicious, NaN where the painting has no label for the task.
The registry that names them, says what each reads and combines them is embeddings/detectors.py.
"""
from __future__ import annotations

import numpy as np

from embeddings.index import build_index, search

# Which task's label is the context of each task's cross-task score: a style is judged by the
# artist's other works, a genre by the style's, an artist by how its given style fits that artist.
CROSS_TASK_CONTEXT = {"style": ("style", "artist"), "genre": ("genre", "style"), "artist": ("style", "artist")}


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


def _own_and_nearest_other(labels: np.ndarray, emb: np.ndarray, cent: np.ndarray):
    """Cosine distance of each row to its own class centroid and to the nearest other one, (N,) each;
    NaN/inf for unlabelled rows. Classes with no member in the reference are never "nearest"."""
    known = np.flatnonzero(labels >= 0)
    d = 1.0 - l2_normalize(emb) @ np.nan_to_num(cent).T     # (N, C) cosine distances
    d[:, np.isnan(cent[:, 0])] = np.inf
    own = np.full(len(labels), np.nan)
    own[known] = d[known, labels[known]]
    d[known, labels[known]] = np.inf
    return own, d.min(1)


def _mahalanobis_model(labels: np.ndarray, emb: np.ndarray, n_classes: int, max_dim: int):
    """Fit on reference rows: (centre (D,), projection (D, d) or None, class means (C, d), precision (d, d))."""
    from sklearn.covariance import LedoitWolf
    z = l2_normalize(emb)
    centre = z.mean(0)
    z = z - centre
    proj = None
    if z.shape[1] > max_dim:  # a 960-d covariance from a few thousand paintings is ill-conditioned even shrunk
        # top principal axes from the (D, D) scatter matrix: the same subspace as an SVD of z, without
        # its (N, D) U factor (600 MB at 80k paintings)
        w, v = np.linalg.eigh(z.T @ z)
        proj = v[:, np.argsort(w)[::-1][:max_dim]]
        z = z @ proj
    means = np.zeros((n_classes, z.shape[1]))
    for c in np.unique(labels):
        means[c] = z[labels == c].mean(0)
    precision = LedoitWolf(assume_centered=True).fit(z - means[labels]).precision_
    return centre, proj, means, precision


def reference_scores(ref_labels: np.ndarray, ref_emb: np.ndarray, labels: np.ndarray, emb: np.ndarray,
                     neighbour_labels: np.ndarray, n_classes: int, max_dim: int = 256) -> dict[str, np.ndarray]:
    """The embedding detectors for paintings scored against a reference set.

    In cross-fitting the reference is one fold's training paintings and the scored rows are that
    fold's held-out paintings, embedded by the fold's head: no centroid, covariance or neighbour
    list involved has seen a scored painting's label.

    ref_labels (R,) int, ref_emb (R, D): reference paintings (labelled rows only are used).
    labels (N,) int (-1 = none), emb (N, D): the paintings to score.
    neighbour_labels (N, k): labels of each scored painting's k nearest reference paintings (-1 = none).
    Returns {centroid, centroid_margin, zscore, mahalanobis, mahalanobis_margin, knn}: (N,) float,
    NaN where labels < 0.
    """
    keep = ref_labels >= 0
    ref_labels, ref_emb = ref_labels[keep], ref_emb[keep]
    known = labels >= 0
    out = {k: np.full(len(labels), np.nan) for k in ("centroid", "centroid_margin", "zscore", "mahalanobis",
                                                      "mahalanobis_margin")}
    out["knn"] = knn_disagreement_scores(labels, neighbour_labels)
    if len(ref_labels) == 0 or not known.any():
        return out
    cent = class_centroids(ref_labels, ref_emb, n_classes)
    own, other = _own_and_nearest_other(labels, emb, cent)
    out["centroid"], out["centroid_margin"] = own, own - other
    # z-score against the spread of the reference paintings of the same class around their centroid
    ref_own, _ = _own_and_nearest_other(ref_labels, ref_emb, cent)
    mu = np.zeros(n_classes)
    sd = np.ones(n_classes)
    for c in np.unique(ref_labels):
        d = ref_own[ref_labels == c]
        mu[c], sd[c] = d.mean(), d.std() if d.std() > 0 else 1.0
    y = np.maximum(labels, 0)
    absent = np.isnan(cent[:, 0])[y]          # given class has no reference painting: maximally suspicious
    z = (own - mu[y]) / sd[y]
    out["zscore"] = np.where(known, np.where(absent, np.inf, z), np.nan)
    centre, proj, means, precision = _mahalanobis_model(ref_labels, ref_emb, n_classes, max_dim)
    q = l2_normalize(emb[known]) - centre
    if proj is not None:
        q = q @ proj
    # squared distance to every class mean at once: q'Pq - 2 q'P mu_c + mu_c'P mu_c, (n, C)
    qp = q @ precision
    d2 = (np.einsum("nd,nd->n", qp, q)[:, None] - 2 * qp @ means.T
          + np.einsum("cd,de,ce->c", means, precision, means)[None, :])
    d = np.sqrt(np.maximum(d2, 0))
    d[:, np.isnan(cent[:, 0])] = np.inf          # classes with no reference painting are never "nearest"
    rows = np.arange(len(q))
    m = d[rows, labels[known]].copy()
    d[rows, labels[known]] = np.inf
    m[absent[known]] = np.inf
    out["mahalanobis"][known] = m
    out["mahalanobis_margin"][known] = np.where(absent[known], np.inf, m - d.min(1))
    for k in ("centroid", "centroid_margin"):
        out[k][known & absent] = np.inf
    return out


def knn_disagreement_scores(labels: np.ndarray, neighbour_labels: np.ndarray) -> np.ndarray:
    """Share of a painting's labelled neighbours whose label differs from its own.

    labels (N,) int (-1 = none); neighbour_labels (N, k) the labels of each row's neighbours
    (-1 = no neighbour or no label). (N,) in [0, 1], NaN where unlabelled or no labelled neighbour.
    """
    valid = neighbour_labels >= 0
    differ = (neighbour_labels != labels[:, None]) & valid
    n = valid.sum(1)
    out = np.where(n > 0, differ.sum(1) / np.maximum(n, 1), np.nan)
    out[labels < 0] = np.nan
    return out


def neighbour_labels(labels: np.ndarray, neighbor_ids: np.ndarray) -> np.ndarray:
    """(N, k) labels of the rows in neighbor_ids (-1 stays -1)."""
    return np.where(neighbor_ids >= 0, labels[np.maximum(neighbor_ids, 0)], -1)


def cross_task_scores(target: np.ndarray, context: np.ndarray, n_target: int, alpha: float = 2.0) -> np.ndarray:
    """-log p(target label | context label), estimated from the other paintings only.

    WikiArt labels come from artist pages, so a style an artist almost never painted in is suspect
    (and so is a genre rare for the painting's style). For painting i with context c and target t:
    p = (n(c, t) - 1 + alpha * prior(t)) / (n(c) - 1 + alpha), where the counts leave painting i
    out and prior(t) is the leave-one-out, add-one-smoothed share of t among all target labels.

    target (N,) int, context (N,) int (-1 = unknown). (N,) float, NaN where either is unknown.
    """
    both = (target >= 0) & (context >= 0)
    out = np.full(len(target), np.nan)
    if not both.any():
        return out
    n_context = int(context.max()) + 1
    joint = np.zeros((n_context, n_target))
    np.add.at(joint, (context[both], target[both]), 1)
    has_t = target >= 0
    totals = np.bincount(target[has_t], minlength=n_target).astype(float)
    t, c = target[both], context[both]
    prior = totals[t] / (has_t.sum() - 1 + n_target)   # (count - 1 left out + 1 add-one) / (n - 1 + C)
    p = (joint[c, t] - 1 + alpha * prior) / (joint[c].sum(1) - 1 + alpha)
    out[both] = -np.log(p)
    return out


def confident_class(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The class each painting confidently belongs to (Northcutt et al. 2021), -1 where none.

    Per-class threshold t_j = mean p_j over paintings labelled j; a painting's confident class is the
    most likely class j with p_j >= t_j. (N,) int.
    """
    known = labels >= 0
    t = np.full(probs.shape[1], np.inf)
    for c in np.unique(labels[known]):
        t[c] = probs[labels == c, c].mean()
    above = probs >= t[None, :]
    return np.where(above.any(1), np.where(above, probs, -1.0).argmax(1), -1)


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning (Northcutt et al. 2021): (flag (N,) bool, score (N,) float).

    A painting is flagged when its confident class is another class than its label - the
    off-diagonal of the confident joint. Score: flagged first, then by 1 - p(given).
    """
    known = labels >= 0
    best = confident_class(labels, probs)
    flag = known & (best >= 0) & (best != labels)
    score = flag.astype(float) + confidence_scores(labels, probs)
    score[~known] = np.nan
    return flag, score


def wrong_label_estimate(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """How many labels of each class are wrong, from the calibrated confident joint (Northcutt et al.
    2021): each class's row of the joint (given label x confident class) is scaled to the class's
    label count, and its off-diagonal mass is the estimate. labels (N,), probs (N, C) cross-fitted.
    Returns (C,) float: estimated wrong labels among the paintings labelled with each class.
    """
    known = labels >= 0
    C = probs.shape[1]
    best = confident_class(labels, probs)
    counted = known & (best >= 0)
    joint = np.zeros((C, C))
    np.add.at(joint, (labels[counted], best[counted]), 1)
    n_given = np.bincount(labels[known], minlength=C).astype(float)
    rows = joint.sum(1)
    calibrated = joint / np.maximum(rows, 1)[:, None] * n_given[:, None]
    return calibrated.sum(1) - np.diag(calibrated)


def rank_descending(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """1 = highest score; NaN scores get rank 0 (unranked). Equal scores are ordered by `tiebreak`
    (N,), higher first, where given (NaN last), else by position. (N,) int"""
    out = np.zeros(len(scores), dtype=np.int64)
    ok = np.flatnonzero(~np.isnan(scores))
    second = np.zeros(len(ok)) if tiebreak is None else -np.nan_to_num(tiebreak[ok], nan=-np.inf)
    order = np.lexsort((np.arange(len(ok)), second, -scores[ok]))
    out[ok[order]] = np.arange(1, len(ok) + 1)
    return out


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x (n,), ties given the mean of the ranks they span (scipy's rankdata, method
    "average", without importing scipy.stats: a second of every command's start). (n,) float64"""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)   # ranks start+1..end, their mean
    return ranks


def mean_percentile_rank(score_table: dict[str, np.ndarray]) -> np.ndarray:
    """Mean percentile rank over detectors (1 = most suspicious by every detector), over the detectors
    that score each row (NaN where none does). (N,)"""
    pct = []
    for s in score_table.values():
        ok = ~np.isnan(s)
        p = np.full(len(s), np.nan)
        if ok.sum():
            p[ok] = average_ranks(s[ok]) / ok.sum()
        pct.append(p)
    if not pct:
        return np.array([])
    stack = np.vstack(pct)
    n = (~np.isnan(stack)).sum(0)
    return np.where(n > 0, np.nansum(stack, 0) / np.maximum(n, 1), np.nan)


def cross_task_table(labels: dict[str, np.ndarray], n_classes: dict[str, int]) -> dict[str, np.ndarray]:
    """{task: cross-task score (N,)} for the tasks whose context task is present (see CROSS_TASK_CONTEXT)."""
    out = {}
    for task, (target, context) in CROSS_TASK_CONTEXT.items():
        if task in labels and target in labels and context in labels:
            out[task] = cross_task_scores(labels[target], labels[context], n_classes[target])
            out[task][labels[task] < 0] = np.nan
    return out


def fold_scores(labels: dict[str, np.ndarray], emb: np.ndarray, held: np.ndarray, ref: np.ndarray,
                n_classes: dict[str, int], knn_k: int) -> dict[str, dict[str, np.ndarray]]:
    """The embedding detectors for rows `held`, against reference rows `ref`, from one cross-fitting
    fold head's embeddings emb (N, D) (trainer.crossfit's FoldScorer). Returns {task: {detector: (len(held),)}}."""
    index, _ = build_index(emb[ref], np.arange(len(ref)))
    _, nb = search(index, emb[held], min(knn_k, len(ref)))
    out = {}
    for t, y in labels.items():
        nb_labels = neighbour_labels(y[ref], nb)
        out[t] = reference_scores(y[ref], emb[ref], y[held], emb[held], nb_labels, n_classes[t])
    return out
