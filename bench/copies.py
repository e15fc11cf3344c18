"""Copies of a data set that touch nothing of the user's: a manifest CSV beside links to the original
class folders, with the labels changed (`make bench-noise`'s noisy copies) or only some paintings
kept (`artlens bench subset`: the smaller collections the benchmarks report on). Torch-free."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.configs import SubsetConfig
from trainer.cli import UserError
from trainer.data import TASKS, PaintingSet, load_paintings

log = logging.getLogger("bench.copies")


def write_data_copy(ps: PaintingSet, dest: Path, labels: dict[str, np.ndarray] | None = None) -> Path:
    """A manifest CSV of `ps` in `dest` beside links to its original class folders, with `labels`
    ({task: (N,) int class index, -1 = none}) in place of the painting set's own where given.

    The given train/val split is kept (test returns to train, so the loader carves its own test
    split as it would for a user). Returns the manifest path. Nothing under ps.root is touched.
    """
    labels = labels or {}
    dest.mkdir(parents=True, exist_ok=True)
    for top in sorted({p.split("/")[0] for p in ps.frame["path"]}):
        link = dest / top
        if not link.exists():
            os.symlink((ps.root / top).resolve(), link)
    out = pd.DataFrame({"path": ps.frame["path"],
                        "split": ps.frame["split"].replace({"test": "train"})})
    for t in TASKS:
        names = ps.classes.get(t, [])
        y = labels.get(t, ps.frame[t].to_numpy()) if t in ps.classes else np.full(len(out), -1)
        out[t] = [names[i] if i >= 0 else "" for i in y]
    manifest = dest / "manifest.csv"
    out[["path", "artist", "genre", "style", "split"]].to_csv(manifest, index=False)
    return manifest


def write_subset(cfg: SubsetConfig) -> Path:
    """Every `cfg.every`-th painting of `cfg.data` in path order, from the `cfg.offset`-th, as a
    data copy in `cfg.out` (a manifest beside links): a smaller collection of the same kind, with
    fewer paintings per artist and per year. Returns the manifest path."""
    if not 0 <= cfg.offset < cfg.every:       # --every's own bounds are checked with the flags
        raise UserError(f"--every must be 1 or more and --offset from 0 to every - 1 (got {cfg.every}, {cfg.offset})")
    ps = load_paintings(cfg.data, test_fraction=0)
    kept = ps.frame.iloc[cfg.offset::cfg.every].reset_index(drop=True)
    sub = PaintingSet(root=ps.root, frame=kept, classes=ps.classes, problems=[])
    manifest = write_data_copy(sub, Path(cfg.out))
    log.info("wrote %s: %d of %d paintings of %s (every %d from %d), %d artists", manifest, len(kept), len(ps.frame),
             cfg.data, cfg.every, cfg.offset, kept["artist_name"].nunique())
    return manifest
