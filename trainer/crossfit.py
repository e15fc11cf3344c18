"""Cross-fitting: every labelled painting scored by a head that never saw its label.

K folds over all labelled paintings (train, val and test alike). Fold k's head trains on the
other folds and scores only fold k: its softmax, and its embedding against the fold's training
paintings (class centroids, Mahalanobis model, z-score spread and kNN label lists all built from
those). The final model of `make train` is untouched: it still gives the reported test metrics and
the exported embeddings. Written to runs/<id>/crossfit.npz; `make embed` stores it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from trainer.loop import epochs_for
from trainer.splits import copies_share_fold

log = logging.getLogger("trainer.crossfit")


@dataclass
class CrossFit:
    """Cross-fitted outputs for `paths` (P paintings).

    fold (P,) int: the fold that held each painting out. probs {task: (P, C)} softmax.
    scores {task: {detector: (P,)}}: the fold scorer's detectors, NaN where the task's label is unknown.
    """
    paths: np.ndarray
    fold: np.ndarray
    probs: dict[str, np.ndarray]
    scores: dict[str, dict[str, np.ndarray]]

    def save(self, path: Path) -> None:
        arrays = {"paths": self.paths.astype(str), "fold": self.fold}
        arrays.update({f"probs__{t}": p for t, p in self.probs.items()})
        arrays.update({f"score__{t}__{d}": s for t, dets in self.scores.items() for d, s in dets.items()})
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "CrossFit":
        z = np.load(path, allow_pickle=False)
        probs, scores = {}, {}
        for key in z.files:
            parts = key.split("__")
            if parts[0] == "probs":
                probs[parts[1]] = z[key]
            elif parts[0] == "score":
                scores.setdefault(parts[1], {})[parts[2]] = z[key]
        return cls(z["paths"], z["fold"], probs, scores)


def assign_folds(strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) fold in 0..k-1, balanced within each stratum (e.g. the style label) so every fold's
    head sees every class. Rows are shuffled within a stratum, then dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(strata), np.int64)
    offset = 0
    for s in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == s))
        fold[rows] = (np.arange(len(rows)) + offset) % k
        offset += len(rows)   # continue the deal, so small strata do not all land in fold 0
    return fold


class FoldScorer(Protocol):
    """Scores one fold's held-out paintings against its training ones, from that fold head's
    embeddings (the embedding detectors: `embeddings.scores.fold_scores`).

    labels {task: (P,)}, emb (P, D), held and ref positions in them; returns {task: {detector: (len(held),)}}."""
    def __call__(self, labels: dict[str, np.ndarray], emb: np.ndarray, held: np.ndarray, ref: np.ndarray,
                 n_classes: dict[str, int], knn_k: int) -> dict[str, dict[str, np.ndarray]]: ...


def crossfit_plan(cfg, labels: dict[str, np.ndarray], ok: np.ndarray, best_epoch: int
                  ) -> tuple[np.ndarray, int, np.ndarray]:
    """(rows to cross-fit: readable and labelled for some task, epochs per fold head, strata (N,)
    that balance the folds) for a TrainConfig `cfg`."""
    has_label = np.any([labels[t] >= 0 for t in labels], axis=0)
    rows = np.flatnonzero(ok & has_label)
    epochs = epochs_for(cfg.crossfit_epochs or max(1, best_epoch), len(rows) * (cfg.folds - 1) // cfg.folds,
                        cfg.rows_per_head, cfg.min_steps, cfg.batch_size)
    return rows, epochs, labels["style"] if "style" in labels else labels[next(iter(labels))]


def cross_fit(make_model: Callable[[], torch.nn.Module], fit_head: Callable, predict: Callable,
              labels: dict[str, np.ndarray], rows: np.ndarray, strata: np.ndarray, folds: int, seed: int,
              fold_scorer: FoldScorer, knn_k: int = 10,
              keep_fold: Callable[[int, torch.nn.Module], None] | None = None,
              groups: np.ndarray | None = None) -> CrossFit:
    """Run K-fold cross-fitting over `rows` (indices into labels' arrays).

    fit_head(model, train_rows, desc) -> trained model; predict(model, rows) -> (emb (n, D),
    {task: softmax (n, C)}); strata (N,) balances the folds; fold_scorer gives each fold's detector
    scores; keep_fold(k, model), if given, receives each trained fold head (to save it); groups (N,)
    int, if given, puts each group (identical files, -1 = none) in one fold, so no head scores a
    painting whose copy it trained on. Returns a CrossFit over `rows` (paths left empty for the
    caller to fill).
    """
    fold = assign_folds(strata[rows], folds, seed)
    if groups is not None:
        fold = copies_share_fold(fold, groups[rows])
    sub = {t: y[rows] for t, y in labels.items()}
    probs: dict[str, np.ndarray] = {}
    scores: dict[str, dict[str, np.ndarray]] = {t: {} for t in labels}
    t_start = time.time()
    for k in range(folds):
        held, p, s = cross_fit_fold(k, fold, make_model, fit_head, predict, sub, rows, seed, fold_scorer, knn_k,
                                    folds, keep_fold)
        for t, pt in p.items():
            probs.setdefault(t, np.zeros((len(rows), pt.shape[1]), np.float32))[held] = pt
        for t, dets in s.items():
            for d, v in dets.items():
                scores[t].setdefault(d, np.full(len(rows), np.nan))[held] = v
        done = time.time() - t_start
        log.info("cross-fit: fold %d/%d done (%d held out) in %.0fs; about %.0fs left", k + 1, folds, len(held),
                 done, done / (k + 1) * (folds - k - 1))
    return CrossFit(np.array([], dtype=str), fold, probs, scores)


def cross_fit_fold(k: int, fold: np.ndarray, make_model: Callable, fit_head: Callable, predict: Callable,
                   sub: dict[str, np.ndarray], rows: np.ndarray, seed: int, fold_scorer: FoldScorer, knn_k: int,
                   folds: int, keep_fold: Callable | None = None):
    """Fold k of `cross_fit`: a fresh head fit on the other folds, scoring the held-out rows.

    fold (P,) and sub {task: (P,)} are over `rows` (P,). Returns (held (H,) positions in rows,
    {task: softmax (H, C)}, {task: {detector: (H,)}})."""
    held, ref = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
    torch.manual_seed(seed + 100 + k)
    model = fit_head(make_model(), rows[ref], f"cross-fit {k + 1}/{folds}")
    if keep_fold is not None:
        keep_fold(k, model)
    emb, p = predict(model, rows)
    n_classes = {t: pt.shape[1] for t, pt in p.items()}
    return held, {t: pt[held] for t, pt in p.items()}, fold_scorer(sub, emb, held, ref, n_classes, knn_k)
