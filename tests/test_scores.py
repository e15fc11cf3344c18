"""Detectors as pure numpy: injected label flips on real-looking clustered data rank high."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings import scores as S
from embeddings.duplicates import conflicting_tasks, duplicate_groups, duplicate_pairs_exact
from embeddings.index import build_index, neighbours_excluding_self, recall_at_k


def _clustered(n_per=60, C=5, D=32, seed=0, flips=15):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, D)) * 3
    y = np.repeat(np.arange(C), n_per)
    emb = centers[y] + rng.normal(size=(len(y), D))
    logits = emb @ centers.T / 6
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    given = y.copy()
    flipped = rng.choice(len(y), size=flips, replace=False)
    given[flipped] = (y[flipped] + rng.integers(1, C, size=flips)) % C
    return given, probs, emb, flipped


def test_every_detector_ranks_flips_above_median():
    given, probs, emb, flipped = _clustered()
    index, _ = build_index(emb, np.arange(len(emb)))
    nb, _ = neighbours_excluding_self(index, emb, np.arange(len(emb)), 10)
    scores, flags = S.all_detector_scores(given, probs, emb, nb)
    assert set(scores) == set(S.DETECTORS)
    for name, s in scores.items():
        assert np.median(s[flipped]) > np.median(s), name
    assert flags["confident_learning"][flipped].mean() > 0.8


def test_unknown_labels_get_nan_and_rank_zero():
    given, probs, emb, _ = _clustered()
    given[:4] = -1
    nb = np.tile(np.arange(10), (len(given), 1))
    scores, _ = S.all_detector_scores(given, probs, emb, nb)
    for name, s in scores.items():
        assert np.isnan(s[:4]).all() and not np.isnan(s[4:]).any(), name
    assert (S.rank_descending(scores["margin"])[:4] == 0).all()


def test_confidence_and_margin_values():
    labels = np.array([0, 1, -1])
    probs = np.array([[.7, .2, .1], [.7, .2, .1], [.3, .3, .4]])
    assert np.allclose(S.confidence_scores(labels, probs)[:2], [.3, .8])
    assert np.allclose(S.margin_scores(labels, probs)[:2], [-.5, .5])
    assert S.rank_descending(np.array([.1, .9, np.nan, .5])).tolist() == [3, 1, 0, 2]


def test_knn_disagreement_counts_only_labelled_neighbours():
    labels = np.array([0, 0, 1, -1])
    nb = np.array([[1, 2, 3], [0, 2, -1], [0, 1, 3], [0, 1, 2]])
    out = S.knn_disagreement_scores(labels, nb)
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.5) and out[2] == pytest.approx(1.0)
    assert np.isnan(out[3])


def test_duplicates_group_identical_vectors_and_flag_conflicts():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 8))
    v[3] = v[0] * 2  # same direction: cosine 1
    i, j, s = duplicate_pairs_exact(v, 0.98)
    group, best = duplicate_groups(6, i, j, s, ["a", "b", "c", "d", "e", "b"])
    assert group[0] == group[3] >= 0 and group[1] == group[5] >= 0 and group[0] != group[1]
    assert (group[[2, 4]] == -1).all()
    labels = {"style": np.array([1, 2, 0, 3, 0, 2]), "genre": np.array([0, 0, 0, 0, 0, 1])}
    conf = conflicting_tasks(group, labels)
    assert conf[group[0]] == ["style"] and conf[group[1]] == ["genre"]


def test_hnsw_above_exact_limit_reaches_target_recall():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    index, report = build_index(x, np.arange(3000), exact_limit=1000)
    assert report["kind"].startswith("HNSW") and report["recall_at_10"] >= 0.95
    exact, _ = build_index(x, np.arange(3000))
    q = x[:200]
    assert recall_at_k(index.search(q, 10)[1], exact.search(q, 10)[1]) >= 0.9
