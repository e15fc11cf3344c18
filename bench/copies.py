"""Copies of a data set that touch nothing of the user's: a manifest CSV beside links to the original
class folders, with the labels changed (`make bench-noise`'s noisy copies) or only some paintings
kept (`artlens bench subset`: the smaller collections the benchmarks report on), or some paintings
as a museum would catalogue them (`artlens bench catalogue`). Torch-free."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bench.configs import CatalogueConfig, SubsetConfig
from trainer.cli import UserError
from trainer.data import TASKS, PaintingSet, load_paintings
from trainer.metadata import display_name

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


def every_kth(data: str, every: int, offset: int) -> tuple[PaintingSet, pd.DataFrame]:
    """(the collection at `data`, its every `every`-th painting in path order from the `offset`-th)."""
    if not 0 <= offset < every:       # --every's own bounds are checked with the flags
        raise UserError(f"--every must be 1 or more and --offset from 0 to every - 1 (got {every}, {offset})")
    ps = load_paintings(data, test_fraction=0)
    return ps, ps.frame.iloc[offset::every].reset_index(drop=True)


def write_subset(cfg: SubsetConfig) -> Path:
    """Every `cfg.every`-th painting of `cfg.data` in path order, from the `cfg.offset`-th, as a
    data copy in `cfg.out` (a manifest beside links): a smaller collection of the same kind, with
    fewer paintings per artist and per year. Returns the manifest path."""
    ps, kept = every_kth(cfg.data, cfg.every, cfg.offset)
    sub = PaintingSet(root=ps.root, frame=kept, classes=ps.classes, problems=[])
    manifest = write_data_copy(sub, Path(cfg.out))
    log.info("wrote %s: %d of %d paintings of %s (every %d from %d), %d artists", manifest, len(kept), len(ps.frame),
             cfg.data, cfg.every, cfg.offset, kept["artist_name"].nunique())
    return manifest


def catalogue_date(year: int, form: int) -> str:
    """A year written the way catalogues write dates, one of five forms: "1890", "c. 1890",
    "1890s", "1890-93", "XIX century"."""
    roman = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV", "XVI",
             "XVII", "XVIII", "XIX", "XX", "XXI")
    return [str(year), f"c. {year}", f"{year // 10 * 10}s", f"{year}-{(year + 3) % 100:02d}",
            f"{roman[year // 100]} century"][form]


def write_catalogue(cfg: CatalogueConfig) -> Path:
    """Every `cfg.every`-th painting of `cfg.data` as a museum would catalogue it, in `cfg.out`: image
    files copied under numbers (`img/00000.jpg`, so no file name gives the artist, title or year),
    and `manifest.csv` with the painting's labels, an `artist` column of display names ("Claude
    Monet"), its title, and its year, where the file name gave one, in one of five date forms
    (`catalogue_date`, drawn with `cfg.seed`). The run of the product on a collection of another
    shape than the ArtGAN release. Returns the manifest path."""
    ps, kept = every_kth(cfg.data, cfg.every, cfg.offset)
    out = Path(cfg.out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for i, r in kept.iterrows():
        path = f"img/{i:05d}{Path(r['path']).suffix.lower()}"
        shutil.copyfile(ps.root / r["path"], out / path)
        form = int(rng.integers(0, 5))
        rows.append({"path": path, "artist": display_name(r["artist_name"]),
                     **{t: (ps.classes[t][r[t]] if t in ps.classes and r[t] >= 0 else "") for t in ("genre", "style")},
                     "title": str(r["title"]).capitalize(),
                     "date": "" if np.isnan(r["year_lo"]) else catalogue_date(int(r["year_lo"]), form)})
    frame = pd.DataFrame(rows)
    manifest = out / "manifest.csv"
    frame[["path", "artist", "genre", "style", "title", "date"]].to_csv(manifest, index=False)
    log.info("wrote %s: %d of %d paintings of %s as a catalogue (numbered files; %d artists, %d dated)", manifest,
             len(frame), len(ps.frame), cfg.data, frame["artist"].nunique(), int((frame["date"] != "").sum()))
    return manifest
