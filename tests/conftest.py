"""Shared fixtures: a small real subset of wikiart-mini with known label flips, trained and embedded once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MINI = (ROOT / ".." / "shared" / "data" / "wikiart-mini").resolve()
# wikiart-mini paintings as a phone stores them (HEIC): see test_data.py::test_an_iphones_heic_photograph_is_read_upright
HEIC = ROOT / "tests" / "data"

# Byte-identical files in wikiart-mini whose copies carry different labels (found by sha1).
CONFLICTING_PAIRS = [
    ("Baroque/cornelis-de-vos_fish-market.jpg", "Baroque/frans-snyders_fish-market.jpg", "genre"),
    ("Impressionism/edgar-degas_portrait-of-mary-cassatt.jpg",
     "Impressionism/mary-cassatt_portrait-of-miss-cassatt-holding-the-cards.jpg", "artist"),
]
N_FLIPS = 40   # about 12% of the subset, drawn from every split (a user's mislabels are not only in train)


def start_cli(command: str, *args: str, cwd: Path = ROOT, capture: bool = True) -> subprocess.Popen:
    """`artlens <command> args` started in the background (command may be two words: "bench noise")."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "artlens", *command.split(), *args], cwd=cwd, stdout=out,
                            stderr=out, text=True)


def run_cli(command: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = start_cli(command, *args, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="session")
def subset(tmp_path_factory) -> dict:
    """A manifest of ~330 real paintings copied from wikiart-mini, with N_FLIPS style labels flipped
    across the train and val splits alike."""
    from trainer.data import TASKS, load_paintings
    ps = load_paintings(MINI, test_fraction=0)
    frame = ps.frame
    keep = set(frame["path"].iloc[::8])
    keep |= {p for a, b, _ in CONFLICTING_PAIRS for p in (a, b)}
    sub = frame[frame["path"].isin(keep)].reset_index(drop=True)
    root = tmp_path_factory.mktemp("subset")
    for p in sub["path"]:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MINI / p, root / p)
    rng = np.random.default_rng(0)
    candidates = np.flatnonzero(~sub["path"].isin(keep - set(frame["path"].iloc[::8])).to_numpy())
    flip_rows = rng.choice(candidates, size=N_FLIPS, replace=False)
    styles_present = sorted(sub["style"].unique())
    true_style = sub["style"].copy()
    for r in flip_rows:
        sub.loc[r, "style"] = rng.choice([s for s in styles_present if s != true_style[r]])
    out = pd.DataFrame({"path": sub["path"], "split": sub["split"]})
    for t in TASKS:
        out[t] = [ps.classes[t][i] if i >= 0 else "" for i in sub[t]]
    manifest = root / "manifest.csv"
    out[["path", "artist", "genre", "style", "split"]].to_csv(manifest, index=False)
    return {"root": root, "manifest": manifest, "flipped": set(sub["path"].iloc[flip_rows]), "n": len(sub)}


@pytest.fixture(scope="session")
def trained(subset, tmp_path_factory) -> dict:
    """A real (short) training run on the subset: frozen Lite0 features, rowcol_bigru head, 3-fold OOF.
    Its fold heads run 6 epochs without the step floor (the floor would give 15; the noise and loop
    bench tests retrain with this config, so that would cost make test a minute and a half)."""
    work = tmp_path_factory.mktemp("work")
    r = run_cli("train", "--data", str(subset["manifest"]), "--out-dir", str(work / "runs"), "--run-id", "r1",
                "--cache-dir", str(work / "cache"), "--epochs", "12", "--folds", "3", "--test-fraction", "0.2",
                "--crossfit-epochs", "6", "--min-steps", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    return {**subset, "work": work, "run_dir": work / "runs" / "r1", "train_log": r.stderr + r.stdout}


@pytest.fixture(scope="session")
def store(trained) -> dict:
    """`python -m embeddings` over the trained run (PCA projection: no numba compile in tests)."""
    work = trained["work"]
    paths = {"store": work / "store" / "artlens.duckdb", "index": work / "store" / "artlens.faiss",
             "tags": work / "store" / "artlens.tags.duckdb"}
    r = run_cli("embed", "--run", str(trained["run_dir"]), "--store", str(paths["store"]),
                "--cache-dir", str(work / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-3000:]
    return {**trained, **paths, "embed_log": r.stderr}


@pytest.fixture(scope="session")
def postgres_server():
    """A local PostgreSQL server for the session (bench/postgres.py): the URL of its `postgres`
    database. Skipped where PostgreSQL is not installed, except in CI (.ci/run installs it)."""
    from bench.postgres import local_postgres, postgres_bin
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with local_postgres("artlens_tests") as url:
        yield url.replace("/artlens_tests?", "/postgres?")


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh, empty database on the session's server, named after the test."""
    import re

    from bench.postgres import create_database
    return create_database(postgres_server, re.sub(r"\W", "_", request.node.name)[:60].lower())


# `make test-fast` runs `-m "not slow"`: tests that train or embed a real run (through these
# fixtures), start the dashboard or a browser, or run Ray are slow; a test that is slow without
# them says so with @pytest.mark.slow.
SLOW_FIXTURES = {"subset", "trained", "store", "app_env", "tail_runs", "server", "browser"}
SLOW_MODULES = {"test_e2e", "test_ray"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
