"""Detectors as pure numpy: injected label flips on real-looking clustered data rank high."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings import detectors as D
from embeddings import scores as S
from bench.evaluation import wrong_label_interval
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


def _detectors(given, probs, emb, ref=None):
    """Every detector, with the embedding ones cross-fitted over 2 folds (held-out rows against the rest)."""
    from trainer.crossfit import assign_folds
    fold = assign_folds(given, 2, 0)
    emb_scores = {d: np.full(len(given), np.nan) for d in D.EMBEDDING_DETECTORS}
    for k in range(2):
        held, ref = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        for d, s in S.fold_scores({"t": given}, emb, held, ref, {"t": probs.shape[1]}, 10)["t"].items():
            emb_scores[d][held] = s
    nb = neighbours_excluding_self(build_index(emb, np.arange(len(emb)))[0], emb, np.arange(len(emb)), 10)[0]
    context = np.arange(len(given)) % 3        # an uninformative second task
    return D.detector_table(D.DetectorInputs(given, probs, emb_scores, S.neighbour_labels(given, nb),
                                             S.cross_task_scores(given, context, probs.shape[1])))


def test_every_detector_ranks_flips_above_median():
    given, probs, emb, flipped = _clustered()
    scores, flags = _detectors(given, probs, emb)
    assert set(scores) == set(D.DETECTORS)
    for name, s in scores.items():
        if name == "cross_task":   # the context here is noise: it must not find them, nor crash
            continue
        if name in (*D.METADATA_DETECTORS, "evidence"):   # no metadata given: nothing to say (tests/test_evidence.py)
            assert np.isnan(s).all(), name
            continue
        assert np.median(s[flipped]) > np.median(s), name
    assert flags["confident_learning"][flipped].mean() > 0.8


def test_unknown_labels_get_nan_and_rank_zero():
    given, probs, emb, _ = _clustered()
    given[:4] = -1
    scores, _ = _detectors(given, probs, emb)
    for name, s in scores.items():
        if name in (*D.METADATA_DETECTORS, "evidence"):
            continue
        assert np.isnan(s[:4]).all() and not np.isnan(s[4:]).any(), name
    assert (S.rank_descending(scores["margin"])[:4] == 0).all()


def test_reference_scores_never_read_a_scored_paintings_label():
    """A held-out painting's embedding scores depend on the reference set and its own label only:
    relabelling the other held-out paintings changes nothing; relabelling the reference does."""
    given, _, emb, _ = _clustered()
    ref, held = np.arange(0, 300, 2), np.arange(1, 300, 2)
    nb = np.argsort(-(S.l2_normalize(emb[held]) @ S.l2_normalize(emb[ref]).T), 1)[:, :10]

    def score(ref_y, held_y):
        return S.reference_scores(ref_y, emb[ref], held_y, emb[held], ref_y[nb], 5)

    base = score(given[ref], given[held])
    other = given[held].copy()
    other[1:] = np.random.default_rng(3).permutation(other[1:])
    moved = score(given[ref], other)
    for d in D.EMBEDDING_DETECTORS:
        assert moved[d][0] == base[d][0], d
    ref_y = given[ref].copy()
    ref_y[:40] = (ref_y[:40] + 1) % 5
    assert not np.allclose(score(ref_y, given[held])["centroid"], base["centroid"])


def test_cross_task_is_leave_one_out_and_smoothed():
    """artist 0 painted 9 works in style 0 and one in style 1; artist 1 only style 1."""
    style = np.array([0] * 9 + [1] + [1] * 5 + [0])
    artist = np.array([0] * 10 + [1] * 5 + [-1])
    s = S.cross_task_scores(style, artist, 2)
    assert np.isnan(s[-1])                          # no artist: no score
    assert s[9] > s[0] and s[9] > s[10]              # the odd one out
    # exact leave-one-out: painting 9's count of (artist 0, style 1) is 0 once it is left out
    prior = (6 - 1 + 1) / (16 - 1 + 2)              # style 1: 6 of 16 labels; painting 9 left out; add-one
    assert s[9] == pytest.approx(-np.log((0 + 2.0 * prior) / (9 + 2.0)))
    # its own label is not evidence for itself: alone in its (artist, style) cell, it scores as if unseen
    lone = S.cross_task_scores(np.array([0, 0, 1]), np.array([0, 0, 0]), 2)
    assert lone[2] == pytest.approx(-np.log((0 + 2.0 * (1 / (2 + 2))) / (2 + 2.0)))


def test_folds_are_balanced_within_each_class():
    from trainer.crossfit import assign_folds
    y = np.repeat([0, 1, 2], [50, 23, 7])
    fold = assign_folds(y, 5, 0)
    assert set(fold) == set(range(5))
    for c in range(3):
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1, (c, counts)
    assert np.bincount(fold).max() - np.bincount(fold).min() <= 1


def test_grade_ranking_reports_split_makeup_and_ranks_unscored_last():
    from bench.evaluation import grade_ranking
    positive = np.array([1, 1, 0, 0, 0, 0], bool)
    split = np.array(["train", "val", "train", "val", "test", "test"])
    g = grade_ranking(np.array([.9, .8, .1, .2, .3, .4]), positive, split)
    assert g["auroc"] == 1 and g["precision_at_k"] == 1 and g["split_excess"] == 0
    g = grade_ranking(np.array([.1, .2, .9, .3, .8, .4]), positive, split)
    assert g["topk_split_share"] == {"test": 0.5, "train": 0.5, "val": 0.0} and g["split_excess"] == 0.5
    g = grade_ranking(np.array([np.nan, .8, .1, .2, .3, .4]), positive, split)  # a flip it cannot score is a miss
    assert g["scored"] == 5 and g["precision_at_k"] == 0.5 and g["auroc"] < 1
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.1
    s = y + rng.normal(size=400)          # a noisy but informative ranking
    g = grade_ranking(s, y, np.array(["train"] * 400), n_boot=100)
    lo, hi = g["auroc_ci"]
    assert lo < g["auroc"] < hi and 0.5 < lo and hi - lo < 0.3
    assert g["precision_at_k_ci"][0] <= g["precision_at_k"] <= g["precision_at_k_ci"][1]


def test_confidence_and_margin_values():
    labels = np.array([0, 1, -1])
    probs = np.array([[.7, .2, .1], [.7, .2, .1], [.3, .3, .4]])
    assert np.allclose(S.confidence_scores(labels, probs)[:2], [.3, .8])
    assert np.allclose(S.margin_scores(labels, probs)[:2], [-.5, .5])
    assert S.rank_descending(np.array([.1, .9, np.nan, .5])).tolist() == [3, 1, 0, 2]


def test_knn_disagreement_counts_only_labelled_neighbours():
    labels = np.array([0, 0, 1, -1])
    nb = np.array([[1, 2, 3], [0, 2, -1], [0, 1, 3], [0, 1, 2]])
    out = S.knn_disagreement_scores(labels, S.neighbour_labels(labels, nb))
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


def test_pixels_tell_a_rescan_from_a_series(tmp_path):
    """The embedding puts a rescan and two paintings of a series near each other; the difference
    hash does not: wikiart-mini's real rescan of Rubens' *Elevation of the Cross* and a painting
    re-saved as a user's rescan would be (60% size, JPEG quality 70, a little brighter) are one
    picture, two of Warhol's soup cans are not. `confirmed_pairs` keeps identical files without
    reading them and drops a pair whose image cannot be read. `near_copy_pairs`, which groups files
    for make train's splits and folds, finds the same two pairs among all six by pixels alone."""
    from PIL import Image, ImageEnhance
    from conftest import MINI
    from embeddings.duplicates import same_picture
    from embeddings.export import confirmed_pairs
    from trainer.picture_hash import difference_hash, near_copy_pairs
    from trainer.data import load_image
    kitty = "Baroque/joshua-reynolds_kitty-fisher-1764.jpg"
    im = load_image(MINI / kitty)
    rescan = ImageEnhance.Brightness(im.resize((im.width * 3 // 5, im.height * 3 // 5))).enhance(1.1)
    (tmp_path / "Baroque").mkdir()
    rescan.save(tmp_path / "rescan.jpg", quality=70)
    paths = ["Baroque/peter-paul-rubens_the-elevation-of-the-cross(1).jpg",
             "Baroque/peter-paul-rubens_the-raising-of-the-cross.jpg",
             "Pop_Art/andy-warhol_campbell-s-soup-can-onion.jpg", "Pop_Art/andy-warhol_old-fashioned-vegetable.jpg",
             kitty, "rescan.jpg"]
    hashes = [difference_hash(load_image((tmp_path if p == "rescan.jpg" else MINI) / p)) for p in paths]
    same = same_picture(np.array([0, 2, 4]), np.array([1, 3, 5]), lambda k: hashes[k])
    assert same.tolist() == [True, False, True]
    assert not same_picture(np.array([0]), np.array([1]), lambda k: None).any()
    pi, pj = near_copy_pairs(hashes + [None])
    assert list(zip(pi.tolist(), pj.tolist())) == [(0, 1), (4, 5)]
    assert not len(near_copy_pairs(hashes, 0.0)[0])
    assert difference_hash(Image.new("RGB", (64, 48), (200, 10, 10))) is None     # flat: no picture to tell
    for p in paths[:5]:
        (tmp_path / p).parent.mkdir(exist_ok=True)
        (tmp_path / p).symlink_to(MINI / p)
    sha1s = ["r1", "r2", "s1", "s2", "k", "k2", "x", "x"]
    pi, pj = np.array([0, 2, 4, 6, 0]), np.array([1, 3, 5, 7, 6])
    kept = confirmed_pairs(tmp_path, paths + ["gone.jpg", "gone-too.jpg"], sha1s, pi, pj, np.full(5, 0.99), 0.15)
    assert list(zip(kept[0].tolist(), kept[1].tolist())) == [(0, 1), (4, 5), (6, 7)]
    assert confirmed_pairs(tmp_path, paths, sha1s, pi[:2], pj[:2], np.ones(2), 1.0)[0].tolist() == [0, 2]


def test_hnsw_above_exact_limit_reaches_target_recall():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    index, report = build_index(x, np.arange(3000), exact_limit=1000)
    assert report["kind"].startswith("HNSW") and report["recall_at_10"] >= 0.95
    exact, _ = build_index(x, np.arange(3000))
    q = x[:200]
    assert recall_at_k(index.search(q, 10)[1], exact.search(q, 10)[1]) >= 0.9


def test_wrong_label_estimate_brackets_the_injected_flips():
    """On clustered data with 40 of 600 labels flipped, the confident-joint estimate's interval holds
    40, and on the same data without flips it stays near zero."""
    rng = np.random.default_rng(2)
    C, n_per = 4, 150
    y = np.repeat(np.arange(C), n_per)
    logits = rng.normal(size=(len(y), C))
    logits[np.arange(len(y)), y] += 3.0                  # a classifier right ~90% of the time
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = y.copy()
    flip = rng.choice(len(y), 40, replace=False)
    given[flip] = (y[flip] + rng.integers(1, C, 40)) % C
    est, lo, hi = wrong_label_interval(given, probs, n_boot=100)
    assert est.shape == (C,) and lo <= 40 <= hi, (est.sum(), lo, hi)
    clean, _, clean_hi = wrong_label_interval(y, probs, n_boot=100)
    assert clean.sum() < 15 and clean_hi < 40


def test_the_look_searches_wider_for_a_prolific_artists_paintings():
    """A prolific artist's paintings fill each other's nearest lists: where the first candidates hold
    fewer than k paintings by other artists, `look_neighbours` searches wider, and each painting gets
    its k nearest by other artists, the same ones an exact search over all paintings gives."""
    from embeddings.score_stage import look_neighbours
    rng = np.random.default_rng(0)
    big = rng.normal(size=(1, 16)) * 4 + rng.normal(size=(120, 16)) * 0.3     # one artist, 120 alike
    rest = rng.normal(size=(180, 16)) * 4                                       # 180 paintings, 60 artists
    x = np.vstack([big, rest]).astype(np.float32)
    groups = np.r_[np.zeros(120, int), 1 + np.arange(180) % 60]
    ids = np.arange(len(x))
    index, _ = build_index(x, ids, exact_limit=10_000)
    pool_ids, pool_sim = neighbours_excluding_self(index, x, ids, 20)
    assert (groups[pool_ids[:120]] == 0).all()                  # the first 20 candidates are all the artist's own
    got, sim = look_neighbours(index, x, pool_ids, pool_sim, groups, 5)
    assert (got >= 0).all() and (groups[got[:120]] != 0).all()
    everything, _ = neighbours_excluding_self(index, x, ids, len(x) - 1)
    want = [[j for j in row if groups[j] != groups[i]][:5] for i, row in enumerate(everything)]
    np.testing.assert_array_equal(got, np.array(want))
    assert (np.diff(sim, axis=1) <= 1e-6).all()                 # nearest first
    plain, _ = look_neighbours(index, x, pool_ids, pool_sim, np.full(len(x), -1), 5)
    np.testing.assert_array_equal(plain, pool_ids[:, :5])       # nothing skipped: the plain nearest


def test_the_look_bench_step_times_the_product_search():
    """`make bench --steps look` times `look_neighbours` where every painting needs the wider search
    (each artist a tight cluster of 200): after it, every painting has 10 by other artists."""
    from bench.run import step_look
    r = step_look(2000)
    assert r["n"] == 2000 and r["artists"] == 10 and r["short_after"] == 0
    assert r["first_search_s"] > 0 and r["wider_s"] > 0


def test_the_copies_bench_step_finds_wikiart_minis_pairs_among_random_hashes():
    """`make bench --steps copies` times the loader's hashing and pair search: the 22 pairs
    `make train` groups on wikiart-mini (18 identical, 4 by pixels), none among random hashes."""
    from bench.run import step_copies
    r = step_copies(5000)
    assert r["paintings"] == 2546 and r["n"] == 5000 and r["pairs"] == 22
    assert r["hash_ms_per_img"] > 0 and r["search_s"] > 0


def test_knn_backbone_ties_rank_the_nearer_disagreeing_look_alikes_first():
    """10 neighbours give knn_backbone 11 score levels; within one the registry's tiebreak (the
    similarity-weighted share) orders them, not the paintings' order (the path)."""
    labels = np.array([0, 0, 0, 0])
    nb_labels = np.array([[1, 0], [1, 0], [0, 0], [1, 1]])      # shares of another label: .5, .5, 0, 1
    sims = np.array([[0.5, 0.9], [0.9, 0.5], [0.9, 0.9], [0.9, 0.9]])
    probs = np.full((4, 2), 0.5)
    x = D.DetectorInputs(labels, probs, {d: np.zeros(4) for d in D.EMBEDDING_DETECTORS}, nb_labels,
                         backbone_neighbour_sims=sims)
    scores, _ = D.detector_table(x)
    assert scores["knn_backbone"].tolist() == [0.5, 0.5, 0.0, 1.0]
    # painting 1's disagreeing neighbour is the nearer one: it ranks above painting 0
    assert D.detector_ranks(scores, x)["knn_backbone"].tolist() == [3, 2, 4, 1]
    x.backbone_neighbour_sims = None          # no similarities: equal scores keep the paintings' order
    assert D.detector_ranks(scores, x)["knn_backbone"].tolist() == [2, 3, 4, 1]


def _misfiled_with_a_copy(offset: float, n: int = 60):
    """Two classes of n / 2 paintings around two centres, each by its own artist; painting 0 sits
    among class 0 but is filed under 1, and so is its copy n - 1 (painting 0's features + offset,
    another artist). Returns (pooled (n, 32), labels (n,), metadata without copies, copy groups (n,))."""
    import pandas as pd
    from embeddings.evidence_table import Metadata
    rng = np.random.default_rng(0)
    centre = np.repeat(rng.normal(size=(2, 32)) * 3, n // 2, axis=0)
    pooled = (centre + rng.normal(size=(n, 32))).astype(np.float32)
    labels = np.repeat([0, 1], n // 2)
    labels[0] = 1                                          # misfiled, among class 0
    pooled[n - 1], labels[n - 1] = pooled[0] + offset, 1   # its copy, filed the same way
    md = Metadata.from_frame(pd.DataFrame({"artist_name": [f"artist-{i}" for i in range(n)], "title": ""}))
    copies = np.full(n, -1)
    copies[[0, n - 1]] = 0
    return pooled, labels, md, copies


def _score_style(labels, probs, pooled, md, fold=None):
    """The score stage on one task, `style` (classes a, b), with no cross-fitted embedding scores."""
    from embeddings.score_stage import score_stage
    no_scores = {"style": {d: np.full(len(labels), np.nan) for d in D.EMBEDDING_DETECTORS}}
    return score_stage({"style": labels}, {"style": probs}, no_scores, pooled, {"style": 2}, 10, 10_000, md,
                       {"style": ["a", "b"]}, fold)


def test_a_paintings_copy_is_never_its_look_alike():
    """The same picture filed twice is one painting. Painting 0 sits among class-0 look-alikes but is
    labelled 1, and so is its copy (the same features under another name and artist): skipping the
    copy, the score stage's label-free neighbours (`knn_backbone`, the look, the card's line) see 0
    of 10 look-alikes agree; with the copy counted as another painting, 1 of 10 would."""
    pooled, labels, md, copies = _misfiled_with_a_copy(0.0)
    probs = np.full((len(labels), 2), 0.5)

    def first_painting(m):
        out = _score_style(labels, probs, pooled, m)
        sc = out.scores[(out.scores.image_id == 0) & (out.scores.detector == "knn_backbone")]["score"].item()
        ev = out.evidence
        line = ev[(ev.image_id == 0) & (ev.kind == "neighbours")]["line"].item()
        return sc, line

    skipped, counted = first_painting(md.with_copies(copies)), first_painting(md)
    assert skipped[0] == pytest.approx(1.0) and counted[0] == pytest.approx(0.9), (skipped, counted)
    assert skipped[1].startswith("Look-alikes by other artists: 0 of 10 nearest are b"), skipped[1]
    assert counted[1].startswith("Look-alikes by other artists: 1 of 10 nearest are b"), counted[1]


def test_a_head_that_trained_on_a_rescan_is_left_out_of_the_look():
    """Painting 0 sits among class-0 look-alikes but is filed under 1, and so is its rescan (another
    file of the picture, found only in the trained embedding). The cross-fitting head that scored
    painting 0 trained on the rescan in another fold and learnt its label: it reads 1 with 0.95, a
    vote the label cast for itself. The evidence leaves that reading out (the card says so), and
    the painting ranks higher than where the rescan shared its fold and the reading was fair."""
    pooled, labels, md, copies = _misfiled_with_a_copy(0.01)   # the rescan: nearly the same features
    n = len(labels)
    probs = np.where(np.arange(2)[None, :] == np.repeat([0, 1], n // 2)[:, None], 0.9, 0.1)
    labels[[3, 40]] = [1, 0]                              # two other misfiled paintings, read fairly
    probs[[0, n - 1]] = [0.05, 0.95]                      # learnt from each other

    def first_painting(fold):
        out = _score_style(labels, probs, pooled, md.with_copies(copies), fold)
        sc = out.scores[(out.scores.detector == "evidence")].set_index("image_id")
        model = out.evidence[(out.evidence.image_id == 0) & (out.evidence.kind == "model")].iloc[0]
        return sc.loc[0, "rank"], sc.loc[0, "score"], model

    apart = np.arange(n) % 5
    apart[[0, n - 1]] = [0, 1]
    together = apart.copy()
    together[n - 1] = 0
    rank_apart, score_apart, model_apart = first_painting(apart)
    rank_together, score_together, model_together = first_painting(together)
    assert model_apart.verdict == "left out" and model_apart.line.startswith("Model: left out, the head that "
                                                                             "scored it trained on another file")
    assert model_together.verdict == "supports" and model_together.line.startswith("Model (never saw this label)")
    # the reading the label cast for itself no longer vouches for it: the odds that it is wrong rise
    # more than e-fold (the two other misfiled paintings, read fairly, may still rank above it)
    assert score_apart > score_together + 1 and rank_apart <= rank_together, (score_apart, score_together)
    assert rank_apart <= 3                                # with the two misfiled paintings read fairly


def test_average_ranks_equal_scipys_with_ties_and_the_product_leaves_scipy_stats_out():
    import subprocess
    import sys

    from scipy.stats import rankdata
    rng = np.random.default_rng(3)
    for n, levels in [(0, 1), (1, 1), (7, 2), (500, 5), (500, 10**6)]:
        x = rng.integers(0, levels, n).astype(float)
        assert np.array_equal(S.average_ranks(x), rankdata(x, method="average"))
    # scipy.stats costs about a second of every command's start; the embed command does not need it
    out = subprocess.run([sys.executable, "-c", "import sys, embeddings.export, dashboard.service; "
                          "print('scipy.stats' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
