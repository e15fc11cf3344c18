"""The detector registry: one entry per ranking the store holds and the dashboard offers.

Each entry names the detector, the kind of evidence it reads, its inputs, the help text the
dashboard shows and its score function; `detector_table` runs every entry in registry order.
Adding a detector is one `register_detector` entry here (its maths, as a pure function, in
embeddings/scores.py or embeddings/evidence.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from embeddings.evidence import label_prior, neighbour_label_evidence
from embeddings.scores import (confidence_scores, confident_learning, knn_disagreement_scores, margin_scores,
                               mean_percentile_rank, rank_descending)

# Kinds of evidence: the cross-fitted model (its softmax or its embedding), label-free pictures,
# the painting's other labels, its metadata, or a combination of detectors.
KINDS = ("model: softmax", "model: embedding", "picture", "other labels", "metadata", "combined")


@dataclass
class DetectorInputs:
    """What the detectors of one task read. N paintings; labels (N,) int (-1 = none); probs (N, C)
    cross-fitted softmax; embedding_scores {detector: (N,)} from the cross-fitting folds
    (`scores.reference_scores`); backbone_neighbour_labels (N, k): labels of each painting's nearest
    paintings in frozen-backbone features, backbone_neighbour_sims (N, k) their cosine similarities
    (None: unknown); cross_task (N,) or None; evidence_scores {detector: (N,)} from
    embeddings.evidence_table (missing: NaN, nothing to say)."""
    labels: np.ndarray
    probs: np.ndarray
    embedding_scores: dict[str, np.ndarray]
    backbone_neighbour_labels: np.ndarray
    cross_task: np.ndarray | None = None
    evidence_scores: dict[str, np.ndarray] | None = None
    backbone_neighbour_sims: np.ndarray | None = None

    def nan(self) -> np.ndarray:
        return np.full(len(self.labels), np.nan)


@dataclass(frozen=True)
class Detector:
    name: str
    kind: str                     # one of KINDS
    inputs: str                   # what it reads, in words
    help: str                     # the dashboard's one-line explanation
    score: Callable[[DetectorInputs, dict], np.ndarray]   # (inputs, scores of the entries before it) -> (N,)
    threshold: float | None = None                         # flag above it; None: flag the top 5%
    flag: Callable[[DetectorInputs], np.ndarray] | None = None   # its own flag rule instead
    # orders equal scores, higher first (a score with few levels, such as a share of 10 neighbours);
    # None where it cannot be computed from the inputs: equal scores then keep the paintings' order
    tiebreak: Callable[[DetectorInputs], np.ndarray | None] | None = None


DETECTOR_REGISTRY: dict[str, Detector] = {}


def register_detector(name: str, kind: str, inputs: str, help: str, score: Callable, threshold: float | None = None,
                      flag: Callable | None = None, tiebreak: Callable | None = None) -> Detector:
    if kind not in KINDS:
        raise ValueError(f"detector {name}: unknown kind {kind!r}")
    DETECTOR_REGISTRY[name] = Detector(name, kind, inputs, help, score, threshold, flag, tiebreak)
    return DETECTOR_REGISTRY[name]


def _embedding(name: str) -> Callable:
    return lambda x, _: x.embedding_scores[name]


def _evidence(name: str) -> Callable:
    return lambda x, _: (x.evidence_scores or {}).get(name, x.nan()).astype(float).copy()


def _weighted_other_share(x: DetectorInputs) -> np.ndarray | None:
    """(N,) 1 - the similarity-weighted share of the given label among the backbone neighbours
    (`neighbour_label_evidence`): 10 neighbours give `knn_backbone` 11 score levels, and within one
    the nearer disagreeing look-alikes rank first. None without the similarities."""
    if x.backbone_neighbour_sims is None:
        return None
    c = x.probs.shape[1]
    p = neighbour_label_evidence(x.backbone_neighbour_labels, x.backbone_neighbour_sims, c, label_prior(x.labels, c))
    return np.where(x.labels >= 0, 1 - p[np.arange(len(x.labels)), np.maximum(x.labels, 0)], np.nan)


def _mean_rank_of(names: Callable[[], tuple[str, ...]]) -> Callable:
    return lambda x, done: mean_percentile_rank({k: done[k] for k in names()})


SOFTMAX, EMB = "cross-fitted softmax", "cross-fitted head's embedding vs. its fold's training paintings"
# a metadata kind flags another class favoured by a Bayes factor of 2 (verdicts.AGAINST_RATIO)
LOG2 = float(np.log(2.0))

register_detector("confidence", "model: softmax", SOFTMAX, "1 − p(given label)",
                  lambda x, _: confidence_scores(x.labels, x.probs), threshold=0.5)   # the seeds' review threshold
register_detector("margin", "model: softmax", SOFTMAX, "best other class − p(given)",
                  lambda x, _: margin_scores(x.labels, x.probs), threshold=0.0)
register_detector("confident_learning", "model: softmax", SOFTMAX,
                  "confident learning (per-class thresholds), flagged first",
                  lambda x, _: confident_learning(x.labels, x.probs)[1],
                  flag=lambda x: confident_learning(x.labels, x.probs)[0])
register_detector("centroid", "model: embedding", EMB, "cosine distance to the given class centroid",
                  _embedding("centroid"))
register_detector("centroid_margin", "model: embedding", EMB, "own-centroid distance − nearest other centroid",
                  _embedding("centroid_margin"), threshold=0.0)
register_detector("mahalanobis", "model: embedding", EMB,
                  "Mahalanobis distance to the class mean (shared Ledoit-Wolf covariance): how unusual, not "
                  "whether the label fits", _embedding("mahalanobis"))
register_detector("mahalanobis_margin", "model: embedding", EMB,
                  "Mahalanobis distance to the given class's mean − to the nearest other class's",
                  _embedding("mahalanobis_margin"))
register_detector("zscore", "model: embedding", EMB, "z-score of the own-centroid distance (flag > 3)",
                  _embedding("zscore"), threshold=3.0)
register_detector("knn", "model: embedding", EMB,
                  "share of the 10 nearest neighbours (cross-fitted head's embedding) with another label",
                  _embedding("knn"), threshold=0.5)
register_detector("knn_backbone", "picture", "frozen-backbone features (no label used), their 10 nearest paintings",
                  "share of the 10 nearest neighbours in frozen-backbone features (no label used) with another label",
                  lambda x, _: knn_disagreement_scores(x.labels, x.backbone_neighbour_labels), threshold=0.5,
                  tiebreak=_weighted_other_share)
register_detector("cross_task", "other labels", "the painting's other label, co-occurrence in the other paintings",
                  "−log p(given label | the painting's other label), from the other paintings only "
                  "(style given artist, genre given style)",
                  lambda x, _: x.cross_task if x.cross_task is not None else x.nan())
register_detector("artist", "metadata", "the artist's other paintings (leave-one-out), nearer dates weighing more",
                  "largest log Bayes factor of another class over the given one (each against its share of the "
                  "collection), from the artist's other paintings, nearer dates weighing more",
                  _evidence("artist"), threshold=LOG2)
register_detector("period", "metadata", "other artists' paintings dated near this one (leave-artist-out; for the "
                  "artist task every other painting; not genre)",
                  "largest log Bayes factor of another class over the given one, from other artists' paintings "
                  "dated near this one (each class's dates a kernel density of its own width, half as wide "
                  "before the class's paintings: a movement has a start; an undated painting at its "
                  "artist's dates); for the artist task, whose classes are the artists, every other painting "
                  "and dated paintings only; style and artist only: subjects have no dates",
                  _evidence("period"), threshold=LOG2)
register_detector("title", "metadata", "the title, a cross-fitted TF-IDF text model (words and character n-grams)",
                  "largest log Bayes factor of another class over the given one, from a cross-fitted text model "
                  "over titles", _evidence("title"), threshold=LOG2)
# consensus: every single detector but the metadata kinds, rank-averaged.
register_detector("consensus", "combined", "every model, picture and other-label detector",
                  "mean percentile rank over the model and picture detectors (not artist, period, title)",
                  _mean_rank_of(lambda: tuple(d.name for d in DETECTOR_REGISTRY.values()
                                              if d.kind not in ("combined", "metadata"))))
# ensemble: one detector per independent kind of evidence, rank-averaged: the cross-fitted head
# (its softmax and embedding are two readings of one model; centroid_margin read it best on flip
# seed 1), label-free visual neighbours, and the painting's other labels. A rule, not a search:
# averaging many detectors of one kind (consensus) lets their shared blind spots outvote the others.
ENSEMBLE_OF = ("centroid_margin", "knn_backbone", "cross_task")
register_detector("ensemble", "combined", ", ".join(ENSEMBLE_OF),
                  "mean percentile rank of one detector per kind of evidence: centroid_margin (cross-fitted model), "
                  "knn_backbone (label-free features), cross_task (other labels)", _mean_rank_of(lambda: ENSEMBLE_OF))
# evidence: the kinds of evidence (look, artist, period, title, copies) combined as likelihood ratios
# (embeddings.verdicts.combine_evidence): a painting tops it only where several kinds agree.
register_detector("evidence", "combined", "look (model + label-free neighbours by other artists), artist, period (not genre), "
                  "title, copies under another label",
                  "the kinds of evidence (look, artist, period for style and artist, title, copies filed under "
                  "another label) combined: high only "
                  "where several agree another label fits better; the Review default", _evidence("evidence"), threshold=0.0)

DETECTORS = tuple(DETECTOR_REGISTRY)
SINGLE_DETECTORS = tuple(d.name for d in DETECTOR_REGISTRY.values() if d.kind != "combined")
PROBABILITY_DETECTORS = tuple(d.name for d in DETECTOR_REGISTRY.values() if d.kind == "model: softmax")
EMBEDDING_DETECTORS = tuple(d.name for d in DETECTOR_REGISTRY.values() if d.kind == "model: embedding")
METADATA_DETECTORS = tuple(d.name for d in DETECTOR_REGISTRY.values() if d.kind == "metadata")
DETECTOR_HELP = {d.name: d.help for d in DETECTOR_REGISTRY.values()}
# The ranking the Review page opens with (store_info.review_default).
REVIEW_DEFAULT = "evidence"


def detector_table(x: DetectorInputs) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every registered detector for one task, in registry order: ({detector: score (N,)},
    {detector: flag (N,) bool}). Scores are NaN where the painting has no label."""
    scores: dict[str, np.ndarray] = {}
    for combined in (False, True):   # single detectors first: a combination reads them all
        for d in DETECTOR_REGISTRY.values():
            if (d.kind == "combined") == combined:
                scores[d.name] = d.score(x, scores)
    scores = {name: scores[name] for name in DETECTOR_REGISTRY}
    for s in scores.values():
        s[x.labels < 0] = np.nan
    return scores, detector_flags(scores, x)


def detector_ranks(scores: dict[str, np.ndarray], x: DetectorInputs) -> dict[str, np.ndarray]:
    """{detector: (N,) int rank, 1 = most suspect, 0 = unscored}: equal scores ordered by the
    detector's tiebreak where it has one, else by position (`scores.rank_descending`)."""
    ranks = {}
    for name, s in scores.items():
        d = DETECTOR_REGISTRY.get(name)
        ranks[name] = rank_descending(s, d.tiebreak(x) if d is not None and d.tiebreak is not None else None)
    return ranks


def detector_flags(scores: dict[str, np.ndarray], x: DetectorInputs | None = None) -> dict[str, np.ndarray]:
    """{detector: (N,) bool}: the detector's own threshold, or its top 5% where it has none."""
    flags = {}
    with np.errstate(invalid="ignore"):
        for name, s in scores.items():
            d = DETECTOR_REGISTRY.get(name)
            if d is not None and d.flag is not None and x is not None:
                flags[name] = d.flag(x)
            elif d is not None and d.threshold is not None:
                flags[name] = s > d.threshold
            else:
                ok = ~np.isnan(s)
                flags[name] = ok & (s >= np.nanquantile(s, 0.95)) if ok.any() else np.zeros(len(s), bool)
    return flags
