"""How many labels are wrong: the model's per-painting weights and their refinement by a review."""
from __future__ import annotations

import numpy as np

from embeddings.prevalence import depth_strata, refined_wrong_label_estimate, spot_check_order, wrong_label_weights
from embeddings.scores import wrong_label_estimate


def test_weights_spread_the_class_estimates_over_paintings():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 600)
    labels[:20] = -1
    logits = rng.normal(size=(600, 4))
    logits[np.arange(600), np.maximum(labels, 0)] += 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    w = wrong_label_weights(labels, probs)
    assert np.isnan(w[:20]).all() and (w[20:] >= 0).all()
    per_class = np.bincount(labels[20:], weights=w[20:], minlength=4)
    np.testing.assert_allclose(per_class, wrong_label_estimate(labels, probs), rtol=1e-9)


def test_strata_double_down_the_queue():
    assert depth_strata(1000) == [(1, 50), (51, 100), (101, 200), (201, 400), (401, 800), (801, 1000)]
    assert depth_strata(30) == [(1, 30)]


def _collection(seed=1, n=3000):
    """Ranks 1..n; wrong labels dense at the top of the queue; a model that overshoots 2x."""
    rng = np.random.default_rng(seed)
    rank = np.arange(1, n + 1)
    p_true = np.where(rank <= 100, 0.8, np.where(rank <= 400, 0.2, 0.02))
    wrong = rng.random(n) < p_true
    weight = np.minimum(1.0, 2 * p_true)
    return rng, rank, wrong, weight


def test_no_review_gives_the_model_estimate_and_a_full_review_the_truth():
    rng, rank, wrong, weight = _collection()
    none = np.full(len(rank), -1)
    r = refined_wrong_label_estimate(rank, weight, none, weight.sum() * 0.9, weight.sum() * 1.1)
    assert abs(r["estimate"] - weight.sum()) < 1e-6 and r["low"] < r["estimate"] < r["high"]
    assert r["reviewed"] == 0 and {s["source"] for s in r["strata"]} == {"model"}
    full = refined_wrong_label_estimate(rank, weight, wrong.astype(int), 0, 0)
    assert full["estimate"] == wrong.sum() and full["low"] == full["high"] == wrong.sum()


def test_a_sampled_review_moves_the_estimate_to_the_truth():
    """The model says ~2x the real count; reviewing a random 8% of every stratum brings the interval
    onto the truth, on several seeds."""
    hits = 0
    for seed in range(5):
        rng, rank, wrong, weight = _collection(seed)
        decision = np.full(len(rank), -1)
        looked = rng.random(len(rank)) < 0.08
        decision[looked] = wrong[looked].astype(int)
        r = refined_wrong_label_estimate(rank, weight, decision, weight.sum() * 0.9, weight.sum() * 1.1, seed=seed)
        assert abs(r["estimate"] - wrong.sum()) < abs(weight.sum() - wrong.sum()) / 2
        hits += r["low"] <= wrong.sum() <= r["high"]
    assert hits >= 4


def test_spot_check_visits_every_depth_first():
    rank = np.arange(1, 1001)[::-1].copy()          # any order of ranks
    order = spot_check_order(rank, seed=3)
    assert sorted(order.tolist()) == list(range(1000))
    strata = depth_strata(1000)
    first = rank[order[:len(strata)]]
    assert [any(lo <= x <= hi for x in first) for lo, hi in strata] == [True] * len(strata)
    np.testing.assert_array_equal(order, spot_check_order(rank, seed=3))


def test_decisions_from_another_ranking_are_known_but_no_sample():
    """After retraining on a review, the reviewed mislabels sit deep in the new queue as correct
    labels; counting them as a sample of that depth would claim the whole depth is clean."""
    rng, rank, wrong, weight = _collection(seed=2)
    decision = np.full(len(rank), -1)
    old = np.arange(2000, 2040)                     # 40 decisions from an earlier run, now deep and correct
    decision[old] = 0
    sampled = np.ones(len(rank), bool)
    sampled[old] = False
    r = refined_wrong_label_estimate(rank, weight, decision, weight.sum() * 0.9, weight.sum() * 1.1, sampled=sampled)
    deep = r["strata"][-1]
    assert deep["source"] == "model" and deep["reviewed"] == 0
    assert abs(r["estimate"] - (weight.sum() - weight[old].sum())) < 1e-6
    wrongly = refined_wrong_label_estimate(rank, weight, decision, weight.sum() * 0.9, weight.sum() * 1.1)
    assert wrongly["strata"][-1]["source"] == "review" and wrongly["estimate"] < r["estimate"] - 10
