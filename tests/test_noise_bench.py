"""The injected-noise benchmark runs end to end and its best detector is clearly above chance."""
from __future__ import annotations

import json

import numpy as np

from conftest import MINI, run_cli
from bench.evaluation import (auroc, average_precision, flip_labels, precision_recall_at_k, reliability_table,
                             right_if_errors_uniform)


def test_evaluation_metrics_on_known_rankings():
    y = np.array([1, 1, 0, 0, 0], bool)
    assert auroc(np.array([.9, .8, .3, .2, .1]), y) == 1.0
    assert auroc(np.array([.1, .2, .3, .8, .9]), y) == 0.0
    assert auroc(np.array([.5] * 5), y) == 0.5
    assert average_precision(np.array([.9, .1, .8, .2, .3]), y) == (1 + 2 / 5) / 2
    assert precision_recall_at_k(np.array([.9, .1, .8, .2, .3]), y, 2) == (0.5, 0.5)
    labels = np.array([0, 1, 2, 0, 1, 2, -1, 0, 1, 2])
    noisy, flipped = flip_labels(labels, 0.34, np.random.default_rng(0), 3)
    assert flipped.sum() == 3 and (noisy[flipped] != labels[flipped]).all() and (noisy[~flipped] == labels[~flipped]).all()
    probs = np.tile([.1, .3, .6], (10, 1))
    noisy, flipped = flip_labels(labels, 0.5, np.random.default_rng(0), 3, confusable_probs=probs)
    assert all(n == (1 if l == 2 else 2) for n, l in zip(noisy[flipped], labels[flipped]))


def test_wilson_interval_of_a_small_sample():
    from bench.suggestions import wilson
    lo, hi = wilson(5, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.237, 0.763)
    lo, hi = wilson(0, 10)
    assert lo == 0 and round(hi, 3) == 0.278
    assert all(np.isnan(wilson(0, 0)))


def test_the_chance_a_label_is_right_weighs_the_catalogues_word():
    """Evidence that leaves the label out gives the given class q. A catalogue right 90% of the time,
    its errors spread over the 9 other classes: at q = 0.1 the label is right with 0.09 / (0.09 + 0.1 *
    0.9 / 9) = 0.9, far above q; at q = 0.5 with 0.45 / 0.4556; at q = 0 never."""
    p = right_if_errors_uniform(np.array([0.0, 0.1, 0.5, 1.0]), 10, 0.1)
    np.testing.assert_allclose(p, [0.0, 0.9, 0.45 / (0.45 + 0.05 / 9), 1.0])
    rows = reliability_table(np.array([0.05, 0.05, 0.95, 0.95, 0.999]), np.array([False, True, True, True, True]))
    assert [(r["lo"], r["n"], r["observed"]) for r in rows] == [(0.0, 2, 0.5), (0.9, 2, 1.0), (0.99, 1, 1.0)]
    assert rows[0]["predicted"] == 0.05


def test_noise_bench_grades_the_store_make_train_embed_builds(trained, tmp_path):
    """The benchmark writes a noisy copy, runs train + embed on it, and its numbers are the grades of
    that store's `scores` table: recomputed here from the store and the flips it wrote, they agree."""
    from db.store import Store
    from bench.evaluation import grade_ranking
    out, work = tmp_path / "noise.json", tmp_path / "work"
    r = run_cli("bench noise", "--run", str(trained["run_dir"]), "--cache-dir",
                str(trained["work"] / "cache"), "--modes", "uniform", "--tasks", "style",
                "--work-dir", str(work), "--out", str(out), "--seed", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    dets = res["uniform"]["style"]
    assert {"consensus", "cross_task", "knn_backbone", "max_softmax (baseline)"} <= set(dets)
    assert {"cleanlab:self_confidence", "cleanlab:normalized_margin", "cleanlab:confidence_weighted_entropy",
            "cleanlab:find_label_issues"} <= set(dets)
    assert max(m["auroc"] for m in dets.values()) > 0.75
    w = res["wrong_label_estimates"]["uniform"]["style"]
    assert w["flips"] == dets["consensus"]["k"] and w["low"] <= w["estimate"] <= w["high"]
    assert all(0 <= m["precision_at_k"] <= 1 and m["k"] > 0 for m in dets.values())
    # the user's data folder was never written: the copy is a manifest beside links
    copy = work / "uniform-seed5" / "data"
    assert (copy / "manifest.csv").is_file() and all(p.is_symlink() for p in copy.iterdir() if p.is_dir())
    flips = json.loads((work / "uniform-seed5" / "flips.json").read_text())["style"]
    assert len(flips) == dets["consensus"]["k"]
    s = Store(work / "uniform-seed5" / "artlens.duckdb")
    frame, _ = s.label_probabilities("style")
    g = s.detector_scores("style")
    s.close()
    frame = frame[~frame["path"].isin(res["ungraded"]["uniform"]["style"])]   # no ground truth: none here
    g = g[g.detector == "confidence"].set_index("path")["score"].reindex(frame["path"]).to_numpy()
    again = grade_ranking(g, frame["path"].isin(flips).to_numpy(), frame["split"].to_numpy())
    assert again["auroc"] == dets["confidence"]["auroc"]
    assert (tmp_path / "noise_pr.png").stat().st_size > 10_000 and (tmp_path / "noise_pr.html").is_file()
    assert (trained["run_dir"] / "noise.json").is_file() and "AUROC" in r.stdout
    assert dets["evidence"]["auroc"] > 0.75 and res["review_default"] == "evidence"
    # the card's suggested label, for the flips among the Review queue's first k (k = the flips)
    sg = res["suggestions"]["uniform"]["style"]
    queue = Store(work / "uniform-seed5" / "artlens.duckdb")
    from embeddings.quality import PHOTO_DEFECTS
    first = queue.ranked("style", "evidence", limit=len(flips), one_per_copy=True, leave_out_flags=PHOTO_DEFECTS)
    queue.close()
    assert sg["depth"] == len(flips) and sg["n"] == first["path"].isin(flips).sum() > 0
    assert sg["n"] / 2 < sg["suggested_right"] <= sg["n"]
    # the noisy copy is a manifest beside links to the user's folders; its dashboard shows the pictures
    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(work / "uniform-seed5" / "artlens.duckdb"))
    shown = app.image_file(first["path"].iloc[0])
    app.close()
    assert shown is not None and shown.is_file() and (copy / first["path"].iloc[0]).resolve() == shown
    assert "The label the Review card suggests" in out.with_suffix(".md").read_text()
    # how honest the evidence's probabilities are: every painting in one bin, flips where it says wrong
    rel = res["evidence_reliability"]["uniform"]["style"]
    assert sum(b["n"] for b in rel) == len(frame)
    assert rel[0]["observed"] < rel[-1]["observed"] and rel[0]["predicted"] < 0.5 < rel[-1]["predicted"]
    assert "How honest the evidence's probabilities are" in out.with_suffix(".md").read_text()
    # --reembed: the same noisy run embedded again (a changed score stage, no retraining) grades the same
    r2 = run_cli("bench noise", "--run", str(trained["run_dir"]), "--cache-dir",
                 str(trained["work"] / "cache"), "--modes", "uniform", "--tasks", "style", "--work-dir", str(work),
                 "--out", str(tmp_path / "again.json"), "--seed", "5", "--reembed", "--bootstrap", "0")
    assert r2.returncode == 0, r2.stderr[-3000:]
    again2 = json.loads((tmp_path / "again.json").read_text())["uniform"]["style"]
    assert again2["evidence"]["auroc"] == dets["evidence"]["auroc"] and "trainer:" not in r2.stderr
    # the store built after a benchmark carries its AUROC, and the Outliers page shows it by the detector name
    store = tmp_path / "s" / "artlens.duckdb"
    r = run_cli("embed", "--run", str(trained["run_dir"]), "--store", str(store), "--cache-dir",
                str(trained["work"] / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    s = Store(store)
    auc = s.benchmark_auroc("style")
    s.close()
    assert auc["consensus"] == dets["consensus"]["auroc"]
    import os

    import streamlit as st
    from streamlit.testing.v1 import AppTest
    from conftest import ROOT
    os.environ["ARTLENS_STORE"] = str(store)
    try:
        st.cache_resource.clear()
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/outliers.py").run()
        assert not at.exception
        assert "(AUROC" in at.selectbox(key="out_detector").format_func("consensus")
    finally:
        del os.environ["ARTLENS_STORE"]


def test_a_subset_is_every_kth_painting_beside_links_and_reads_like_the_collection(tmp_path):
    """`artlens bench subset` writes the smaller collections the benchmarks report on: every k-th
    painting of wikiart-mini in path order, with its own labels and split, as a manifest beside links
    to the class folders (nothing of the collection is written), which trains like any manifest and
    whose pictures the dashboard shows."""
    from dashboard.service import safe_image_path
    from trainer.data import load_paintings
    out = tmp_path / "eighth"
    r = run_cli("bench subset", "--every", "8", "--offset", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    full = load_paintings(MINI, test_fraction=0)
    sub = load_paintings(out / "manifest.csv", test_fraction=0)
    want = full.frame.iloc[3::8]
    assert sub.root == out and sorted(sub.frame["path"]) == sorted(want["path"])
    assert all(p.is_symlink() for p in out.iterdir() if p.name != "manifest.csv")
    style = lambda ps: dict(zip(ps.frame["path"], (ps.classes["style"][i] for i in ps.frame["style"])))
    assert style(sub) == {p: s for p, s in style(full).items() if p in set(want["path"])}
    assert all(safe_image_path(sub.root, p) == (MINI / p) for p in sub.frame["path"][:20])
    bad = run_cli("bench subset", "--every", "8", "--offset", "8", "--out", str(tmp_path / "no"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --every") and not (tmp_path / "no").exists()


def test_a_catalogue_copy_has_numbered_files_and_dates_in_words(tmp_path):
    """`artlens bench catalogue` writes a collection as a museum holds it: image files under numbers
    (no file name gives the artist, title or year), an artist column of names, titles, and dates in
    catalogue forms that read back to the painting's year; it loads like any manifest, with every
    date read."""
    import pandas as pd
    from trainer.data import load_paintings
    from trainer.metadata import parse_date
    out = tmp_path / "cat"
    r = run_cli("bench catalogue", "--every", "32", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    full = load_paintings(MINI, test_fraction=0).frame.iloc[::32].reset_index(drop=True)
    assert list(m.columns) == ["path", "artist", "genre", "style", "title", "date"] and len(m) == len(full)
    assert m["path"].str.fullmatch(r"img/\d{5}\.jpg").all() and (out / m["path"].iloc[0]).is_file()
    assert m["artist"].iloc[0] == " ".join(w.capitalize() for w in full["artist_name"].iloc[0].split("-"))
    dated = m["date"] != ""
    assert dated.sum() == full["year_lo"].notna().sum() > 0
    assert m.loc[dated, "date"].str.contains("century|s$|c\\. |-").any()          # not only plain years
    for text, year in zip(m.loc[dated, "date"], full.loc[dated.to_numpy(), "year_lo"]):
        lo, hi = parse_date(text)
        assert lo <= year <= hi, (text, year)
    cat = load_paintings(out / "manifest.csv", test_fraction=0)
    assert cat.frame["year_lo"].notna().sum() == dated.sum() and (cat.frame["artist_source"] == "label").all()


def test_a_picture_filed_under_two_clean_labels_has_no_ground_truth():
    """The flips benchmark counts clean labels as right; where wikiart-mini files one picture
    under two genres (the fish market: Cornelis de Vos's genre painting, Frans Snyders' still
    life) at most one is, so both copies are left out of the grades. Copies that agree, or whose
    other copy is unlabelled, stay."""
    import hashlib
    from bench.evaluation import conflicting_clean_labels
    from embeddings.duplicates import duplicate_groups
    from trainer.data import load_paintings
    ps = load_paintings(MINI, test_fraction=0)
    paths = ps.frame["path"].tolist()
    sha1s = [hashlib.sha1((MINI / p).read_bytes()).hexdigest() for p in paths]
    group, _ = duplicate_groups(len(paths), np.array([], int), np.array([], int), np.array([]), sha1s)
    genre = conflicting_clean_labels(group, ps.labels("genre"))
    left = {paths[i] for i in np.flatnonzero(genre)}
    assert {"Baroque/cornelis-de-vos_fish-market.jpg", "Baroque/frans-snyders_fish-market.jpg"} <= left
    assert len(left) % 2 == 0 and (group[genre] >= 0).all()
    assert not conflicting_clean_labels(group, ps.labels("style")).any()   # every copy agrees on style
    one_unlabelled = ps.labels("genre").copy()
    one_unlabelled[paths.index("Baroque/frans-snyders_fish-market.jpg")] = -1
    assert "Baroque/cornelis-de-vos_fish-market.jpg" not in {
        paths[i] for i in np.flatnonzero(conflicting_clean_labels(group, one_unlabelled))}


def test_confusable_flips_follow_the_clean_runs_cross_fitted_softmax(trained):
    """The confusable mode's guide is the clean run's cross-fitted softmax, row for row (uniform for a
    painting the run did not score), and each confusable flip goes to that row's likeliest other
    class. (The end-to-end test above runs the uniform mode; train + embed are the same for both.)"""
    from bench.noise import confusable_probs
    from trainer.crossfit import CrossFit
    cf = CrossFit.load(trained["run_dir"] / "crossfit.npz")
    paths = [*cf.paths[:20].tolist(), "not/in/the/run.jpg"]
    guide = confusable_probs(trained["run_dir"], paths)
    p = guide["style"]
    assert np.allclose(p[:20], cf.probs["style"][:20]) and np.allclose(p[20], 1 / p.shape[1])
    labels = p[:20].argmax(1)
    noisy, flipped = flip_labels(labels, 0.5, np.random.default_rng(0), p.shape[1], confusable_probs=p[:20])
    masked = p[:20].copy()
    masked[np.arange(20), labels] = -1
    masked[:, ~np.isin(np.arange(p.shape[1]), labels)] = -1   # only classes the labels use
    assert flipped.sum() == 10 and (noisy[flipped] == masked[flipped].argmax(1)).all()


def test_artist_flips_give_a_label_the_artist_uses_elsewhere(trained):
    """The artist mode on the subset: each flipped painting gets a style another painting by the same
    artist (read from the file name) carries, and the share flipped is the asked fraction."""
    from bench.noise import make_flips
    from trainer.data import load_paintings
    ps = load_paintings(trained["manifest"], 0.2, 0)
    noisy, flipped = make_flips(ps, trained["run_dir"], "artist", 3, 0.1, ["style"])
    f = ps.frame.assign(noisy=noisy["style"])
    hit = f[f["path"].isin(flipped["style"])]
    assert len(hit) == round(0.1 * (f["style"] >= 0).sum())
    for r in hit.itertuples():
        others = f[(f["artist_name"] == r.artist_name) & (f["path"] != r.path)]
        assert r.noisy != r.style and r.noisy in set(others["style"])
    assert (f.loc[~f["path"].isin(flipped["style"]), "noisy"] == f.loc[~f["path"].isin(flipped["style"]), "style"]).all()


def test_product_never_imports_the_benchmark_only_peer():
    """cleanlab is a benchmark extra: `make train embed` and the dashboard must run without it."""
    code = ("import sys; import trainer.train, embeddings.export, dashboard.service, dashboard.export; "
            "assert not any(m.startswith('cleanlab') for m in sys.modules), 'cleanlab imported'")
    r = run_cli_code(code)
    assert r.returncode == 0, r.stderr[-2000:]


def run_cli_code(code: str):
    import os
    import subprocess
    import sys

    from conftest import ROOT
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
