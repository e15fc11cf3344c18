"""The score stage of `artlens embed`: every registered detector per task, the evidence lines and
the count of wrong labels, from the forward stage's outputs and the run's cross-fitted scores."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings.detectors import (EMBEDDING_DETECTORS, METADATA_DETECTORS, DetectorInputs, detector_ranks,
                                  detector_table)
from embeddings.evidence import other_group_neighbours
from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
from embeddings.index import build_index, neighbours_excluding_self
from embeddings.scores import cross_task_table, neighbour_labels, reference_scores
from embeddings.verdicts import against_scores, count_interval, wrong_count, wrong_log_odds
from trainer.crossfit import CrossFit
from trainer.splits import head_saw_a_copy

log = logging.getLogger("embeddings")

# Candidates fetched per neighbour the look keeps: its own artist's paintings are skipped, and a
# prolific artist's fill much of each other's nearest list (`look_neighbours` searches wider, up to
# NEIGHBOUR_POOL_MAX times, for the paintings still short of other artists').
NEIGHBOUR_POOL, NEIGHBOUR_POOL_MAX = 4, 64


def merge_crossfit(run_dir: Path, paths: list[str], labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                   emb: np.ndarray, nb_ids: np.ndarray, n_classes: dict[str, int]):
    """Probabilities and embedding-detector scores per painting: cross-fitted (runs/<id>/crossfit.npz)
    wherever the run has them, else from the final model, in sample (it saw those labels).

    Returns (probs {task: (N, C)}, scores {task: {detector: (N,)}}, source {task: (N,) 'cross-fit'|'model'},
    fold (N,) int: the cross-fitting fold that held each painting out, -1 = none).
    """
    n = len(paths)
    fold = np.full(n, -1, np.int64)
    source = {t: np.full(n, "model", dtype=object) for t in labels}
    probs = {t: p.copy() for t, p in probs.items()}
    scores = {t: {d: np.full(n, np.nan) for d in EMBEDDING_DETECTORS} for t in labels}
    covered = np.zeros(n, bool)
    cf_path = run_dir / "crossfit.npz"
    if cf_path.is_file():
        cf = CrossFit.load(cf_path)
        pos = {p: k for k, p in enumerate(paths)}
        rows = np.array([pos.get(p, -1) for p in cf.paths], dtype=np.int64)
        hit = rows >= 0
        covered[rows[hit]] = True
        fold[rows[hit]] = cf.fold[hit]
        for t in labels:
            if t in cf.probs:
                probs[t][rows[hit]] = cf.probs[t][hit]
                source[t][rows[hit]] = "cross-fit"
                for d in EMBEDDING_DETECTORS:
                    if d in cf.scores[t]:   # a run trained before a detector existed has no column for it
                        scores[t][d][rows[hit]] = cf.scores[t][d][hit]
        log.info("scores are cross-fitted for %d of %d paintings (%d folds)", int(hit.sum()), n, int(cf.fold.max()) + 1)
    else:
        log.warning("%s has no cross-fitted scores (trained with --folds 0): every painting is scored by the final "
                    "model, which saw the labels of the train split", run_dir.name)
    need = ~covered & np.any([y >= 0 for y in labels.values()], axis=0)
    if need.any():   # paintings the cross-fitting did not see (e.g. added since training): in-sample
        log.warning("%d labelled paintings have no cross-fitted scores; scored by the final model", int(need.sum()))
        for t, y in labels.items():
            ins = reference_scores(y, emb, y, emb, neighbour_labels(y, nb_ids), n_classes[t])
            for d in EMBEDDING_DETECTORS:
                scores[t][d][need] = ins[d][need]
    return probs, scores, source, fold

def look_neighbours(index, vectors: np.ndarray, pool_ids: np.ndarray, pool_sim: np.ndarray, groups: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, similarities) (N, k): each painting's k nearest outside its groups (`groups` (N,) or
    (N, G): `Metadata.look_groups`, -1 = none), from the candidates pool_ids / pool_sim (N, m) of
    `neighbours_excluding_self`; rows still short of k are searched again with 4x the candidates, up
    to NEIGHBOUR_POOL_MAX x k (an artist with hundreds of paintings here fills a painting's nearest
    40). Rows are image_ids 0..N-1."""
    ids, sim = other_group_neighbours(pool_ids, pool_sim, groups, k)
    m, widest = pool_ids.shape[1], min(k * NEIGHBOUR_POOL_MAX, len(ids) - 1)
    short = np.flatnonzero((ids < 0).any(1))
    while len(short) and m < widest:
        m = min(m * 4, widest)
        wide_ids, wide_sim = neighbours_excluding_self(index, vectors[short], short.astype(np.int64), m)
        ids[short], sim[short] = other_group_neighbours(wide_ids, wide_sim, groups, k, own=groups[short])
        short = short[(ids[short] < 0).any(1)]
    return ids, sim


def score_stage(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                emb_scores: dict[str, dict[str, np.ndarray]], pooled: np.ndarray, n_classes: dict[str, int],
                knn_k: int, exact_limit: int, md: Metadata | None = None,
                class_names: dict[str, list[str]] | None = None, fold: np.ndarray | None = None) -> "Scored":
    """Every detector per task, the evidence lines and the count of wrong labels: the store's
    `scores`, `wrong_label_estimates` and `evidence` tables, and each painting's wrong weight.

    labels {task: (N,)}, probs {task: (N, C)} cross-fitted, emb_scores from `merge_crossfit`,
    pooled (N, C') frozen-backbone features for the label-free kNN, md the paintings' metadata
    (none: the metadata kinds say nothing), fold (N,) int the cross-fitting fold that scored each
    painting (-1 = none; `merge_crossfit`): where a copy sat in another fold, the head that scored
    the painting learnt that picture's label from it, and the evidence leaves the model out
    (`trainer.splits.head_saw_a_copy`). Rows are image_ids 0..N-1.
    """
    image_ids = np.arange(len(pooled), dtype=np.int64)
    md = md or Metadata.from_frame(pd.DataFrame(index=image_ids))
    bb_index, _ = build_index(pooled, image_ids, exact_limit=exact_limit)
    pool = neighbours_excluding_self(bb_index, pooled, image_ids, knn_k * NEIGHBOUR_POOL)
    # the plain label-free neighbours (`knn_backbone`) skip only a painting's copies: its own label again
    bb_nb, bb_sim = other_group_neighbours(*pool, md.copy_groups(), knn_k)
    look_nb = {}
    saw_copy = (head_saw_a_copy(fold, md.copy_groups()) if fold is not None
                else np.zeros(len(image_ids), bool))
    if saw_copy.any():
        log.info("%d paintings have a copy in another cross-fitting fold: the evidence leaves their model "
                 "reading out", int(saw_copy.sum()))
    cross = cross_task_table(labels, n_classes)
    score_rows, wrong_rows, evidence_rows_, weights = [], [], [], {}
    for t in labels:
        y = labels[t]
        md_t = md.for_task(t)
        groups = md_t.look_groups()
        key = groups.tobytes()              # style and genre skip the same artists: search once
        if key not in look_nb:
            look_nb[key] = look_neighbours(bb_index, pooled, *pool, groups, knn_k)
        ev = task_evidence(y, probs[t], *look_nb[key], md_t, n_classes[t], model_left_out=saw_copy)
        log.info("%s: the cross-fitted model is read at temperature %.2f, the title model at %.2f (fitted to the "
                 "labels; below 1 sharpens)", t, ev.temperatures["model"], ev.temperatures["title"])
        ev_scores = {k: against_scores(y, ev.kinds[k], ev.prior) for k in METADATA_DETECTORS}
        ev_scores["evidence"] = wrong_log_odds(y, ev.posterior)
        x = DetectorInputs(y, probs[t], emb_scores[t], neighbour_labels(y, bb_nb), cross.get(t), ev_scores, bb_sim)
        scores, flags = detector_table(x)
        ranks = detector_ranks(scores, x)
        for det, sc in scores.items():
            scored = ~np.isnan(sc)   # unlabelled, or a detector with nothing to say (cross_task without artist)
            score_rows.append(pd.DataFrame({"image_id": image_ids[scored], "task": t, "detector": det,
                                            "score": sc[scored], "rank": ranks[det][scored],
                                            "flag": flags[det][scored]}))
        names = (class_names or {}).get(t) or [str(i) for i in range(n_classes[t])]
        evidence_rows_.append(evidence_rows(t, y, probs[t], ev, md_t, names))
        counted, strict, loose = wrong_count(y, ev.posterior, ev.kinds, ev.prior, ev.mix)
        wrong_rows.append(wrong_count_rows(t, y, counted, strict, loose, n_classes[t]))
        weights[t] = np.where(y >= 0, counted.astype(float), np.nan)
    wrong = pd.concat(wrong_rows).astype({"class_index": "Int64"}) if wrong_rows else pd.DataFrame()
    return Scored(pd.concat(score_rows), wrong, pd.concat(evidence_rows_), weights)

@dataclass
class Scored:
    """The score stage's tables; wrong_weight {task: (N,)}: 1 where the painting is counted as
    wrongly labelled, 0 where not, NaN unlabelled (the review refines the count from these)."""
    scores: pd.DataFrame
    wrong: pd.DataFrame
    evidence: pd.DataFrame
    wrong_weight: dict[str, np.ndarray]

def wrong_count_rows(task: str, y: np.ndarray, wrong: np.ndarray, strict: int, loose: int, n_classes: int
                     ) -> pd.DataFrame:
    """The `wrong_label_estimates` rows of one task from `embeddings.verdicts.wrong_count`: per class
    and in all, the paintings where independent kinds of evidence agree the label is wrong (wrong
    (N,) bool). The total's interval spans the stricter and looser readings of agreement and the
    count's 95% sampling interval."""
    known = y >= 0
    if not known.any():
        return pd.DataFrame(columns=["task", "class_index", "labelled", "estimated_wrong", "low", "high"])
    est = np.bincount(y[wrong], minlength=n_classes).astype(float)
    lo, hi = count_interval(wrong[known])
    lo, hi = min(lo, strict), max(hi, loose)
    counts = np.bincount(y[known], minlength=n_classes)
    return pd.concat([
        pd.DataFrame({"task": task, "class_index": pd.array(np.flatnonzero(counts), "Int64"),
                      "labelled": counts[counts > 0], "estimated_wrong": est[counts > 0], "low": np.nan, "high": np.nan}),
        pd.DataFrame([{"task": task, "class_index": pd.NA, "labelled": int(known.sum()),
                       "estimated_wrong": float(est.sum()), "low": lo, "high": hi}])])
