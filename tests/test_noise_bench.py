"""The injected-noise benchmark runs end to end and its best detector is clearly above chance."""
from __future__ import annotations

import json

import numpy as np

from conftest import run_cli
from embeddings.evaluation import auroc, average_precision, flip_labels, precision_recall_at_k


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


def test_noise_bench_runs_and_beats_chance(trained, tmp_path):
    out = tmp_path / "noise.json"
    r = run_cli("embeddings.noise_bench", "--run", str(trained["run_dir"]), "--cache-dir",
                str(trained["work"] / "cache"), "--folds", "3", "--epochs", "10", "--modes", "uniform", "confusable",
                "--tasks", "style", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    dets = res["uniform"]["style"]
    assert "max_softmax (baseline)" in dets and "consensus" in dets and len(dets) == 10
    best = max(m["auroc"] for m in dets.values())
    assert best > 0.75, best
    assert all(0 <= m["precision_at_k"] <= 1 and m["k"] > 0 for m in dets.values())
    assert (tmp_path / "noise_pr.png").stat().st_size > 10_000 and (tmp_path / "noise_pr.html").is_file()
    assert (trained["run_dir"] / "noise.json").is_file()
    assert "AUROC" in r.stdout
    # the store built after a benchmark carries its AUROC, and the Outliers page shows it by the detector name
    store = tmp_path / "s" / "artlens.duckdb"
    r = run_cli("embeddings", "--run", str(trained["run_dir"]), "--store", str(store), "--cache-dir",
                str(trained["work"] / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    from db.store import Store
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
        at.sidebar.radio(key="page").set_value("Outliers").run()
        assert not at.exception
        assert "(AUROC" in at.selectbox(key="out_detector").format_func("consensus")
    finally:
        del os.environ["ARTLENS_STORE"]
