"""The evidence stage of `make embed`: every kind of evidence for one task, the combined ranking,
the agreement count, and one line of plain words per painting and kind for the Review card.

`task_evidence` builds the kinds (embeddings.evidence), `evidence_rows` turns them into the
store's `evidence` table: (image_id, task, kind, p_given, best, p_best, verdict, line).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from embeddings.evidence import (artist_evidence, combine_evidence, group_label_counts, label_prior,
                                 look_evidence, neighbour_evidence, period_evidence, title_evidence, verdicts)
from embeddings.scores import neighbour_labels
from trainer.metadata import mid_year


@dataclass
class Metadata:
    """Per painting (N,): artist id (-1 unknown) and name, mid year (NaN undated), title ("" none),
    and whether the artist was taken from the artist label (not independent of that label)."""
    artist_id: np.ndarray
    artist_name: np.ndarray
    year: np.ndarray
    title: np.ndarray
    artist_from_label: np.ndarray

    def for_task(self, task: str) -> "Metadata":
        """The metadata that is evidence about `task`'s labels: for the artist task, an artist read
        from the artist label itself would only repeat it, so those paintings have no artist."""
        if task != "artist" or not self.artist_from_label.any():
            return self
        return Metadata(np.where(self.artist_from_label, -1, self.artist_id), self.artist_name, self.year,
                        self.title, self.artist_from_label)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Metadata":
        n = len(frame)
        names = frame["artist_name"].fillna("").astype(str).to_numpy() if "artist_name" in frame else np.full(n, "")
        codes, _ = pd.factorize(pd.Series(names).replace("", None))
        year = mid_year(frame)
        title = frame["title"].fillna("").astype(str).to_numpy() if "title" in frame else np.full(n, "")
        from_label = (frame["artist_source"].to_numpy() == "label") if "artist_source" in frame else np.zeros(n, bool)
        return cls(codes.astype(np.int64), names.astype(object), year, title.astype(object), from_label)


@dataclass
class TaskEvidence:
    """One task's evidence: kinds {kind: (N, C)}, neighbour_probs (N, C), posterior (N, C), votes
    {kind: (N,) verdict} for the kinds, for the look's two readings (`model`, `neighbours`) and for
    the posterior (`combined`), prior (C,)."""
    kinds: dict[str, np.ndarray]
    neighbour_probs: np.ndarray
    posterior: np.ndarray
    votes: dict[str, np.ndarray]
    prior: np.ndarray


def task_evidence(labels: np.ndarray, probs: np.ndarray, nb_ids: np.ndarray, nb_sim: np.ndarray, md: Metadata,
                  n_classes: int, seed: int = 0) -> TaskEvidence:
    """Every kind of evidence for one task's labels (N,), from the cross-fitted probs (N, C), the
    label-free neighbours nb_ids / nb_sim (N, k) and the metadata."""
    nb = neighbour_evidence(labels, nb_ids, nb_sim, n_classes)
    kinds = {"look": look_evidence(probs, nb),
             "artist": artist_evidence(labels, md.artist_id, md.year, n_classes),
             "period": period_evidence(labels, md.year, n_classes, md.artist_id),
             "title": title_evidence(labels, md.title, n_classes, seed=seed)}
    prior = label_prior(labels, n_classes)
    post = combine_evidence(kinds, prior)
    votes = verdicts(labels, {**kinds, "model": probs, "neighbours": nb, "combined": post}, prior)
    return TaskEvidence(kinds, nb, post, votes, prior)


def _pretty(slug: str) -> str:
    return " ".join(w.capitalize() for w in str(slug).replace("-", " ").split()) if slug else ""


def _share(p: float) -> str:
    """A probability in two decimals, without rounding a near-certainty to a certainty: the
    combined evidence is a product of kinds and often lands beyond 0.99."""
    return "<0.01" if p < 0.005 else ">0.99" if p > 0.995 else f"{p:.2f}"


def _class_years(labels: np.ndarray, years: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, 2) the 5th and 95th percentile year of each class's dated paintings (NaN if under 5)."""
    out = np.full((n_classes, 2), np.nan)
    for c in range(n_classes):
        y = years[(labels == c) & ~np.isnan(years)]
        if len(y) >= 5:
            out[c] = np.percentile(y, [5, 95])
    return out


def evidence_rows(task: str, labels: np.ndarray, probs: np.ndarray, nb_ids: np.ndarray, ev: TaskEvidence,
                  md: Metadata, names: list[str]) -> pd.DataFrame:
    """The store's evidence rows for the labelled paintings of one task, with a line of words per
    kind (model and neighbours are two lines of the one `look` kind) and a `combined` row: what all
    kinds say together (the posterior the `evidence` ranking sorts by)."""
    C = probs.shape[1]
    known = np.flatnonzero(labels >= 0)
    y = labels[known]
    nl = neighbour_labels(labels, nb_ids)[known]
    # plain counts for the words; the evidence itself weighs the artist's paintings by date
    artist_counts, artist_total = group_label_counts(labels, md.artist_id, md.year, C, np.inf, 1.0)
    years_of = _class_years(labels, md.year, C)
    rows = []

    def add(kind, i, p, line):
        g = labels[i]
        best = int(np.argmax(p))
        rows.append((int(i), task, kind, float(p[g]), best, float(p[best]), ev.votes[kind][i], line))

    for j, i in enumerate(known):
        g = y[j]
        given = names[g]
        p = probs[i]
        top = int(np.argmax(p))
        if top == g:
            text = f"Model (never saw this label): {given} is its first choice, p {p[g]:.2f}"
        else:
            text = f"Model (never saw this label): p({given}) {p[g]:.2f}; most likely {names[top]} {p[top]:.2f}"
        add("model", i, p, text)
        row = nl[j][nl[j] >= 0]
        if len(row):
            cnt = np.bincount(row, minlength=C)
            nb_top = int(np.argmax(cnt))
            text = f"Look-alikes: {cnt[g]} of {len(row)} nearest are {given}"
            if nb_top != g:
                text += f"; {cnt[nb_top]} are {names[nb_top]}"
            add("neighbours", i, ev.neighbour_probs[i], text)
        add("look", i, ev.kinds["look"][i], "")
        pa = ev.kinds["artist"][i]
        if not np.isnan(pa).any():
            cnt, tot = artist_counts[i], int(round(artist_total[i]))
            a_top = int(np.argmax(cnt))
            text = f"Artist ({_pretty(md.artist_name[i])}): {int(cnt[g])} of {tot} other paintings here are {given}"
            if a_top != g and cnt[a_top] > 0:
                text += f"; {int(cnt[a_top])} are {names[a_top]}"
            if not np.isnan(md.year[i]):   # the evidence weighs the artist's paintings near this date more
                near_top = int(np.argmax(pa))
                text += f"; weighing those near {md.year[i]:.0f} more: {given} {pa[g]:.0%}"
                if near_top != g:
                    text += f", {names[near_top]} {pa[near_top]:.0%}"
            add("artist", i, pa, text)
        pp = ev.kinds["period"][i]
        if not np.isnan(pp).any():
            lo, hi = years_of[g]
            span = f"{given} paintings here date {lo:.0f}-{hi:.0f}" if not np.isnan(lo) else f"few dated {given} paintings here"
            text = f"Period: {span}; this one {md.year[i]:.0f}"
            p_top = int(np.argmax(pp))
            if p_top != g:
                text += f", when {names[p_top]} is likelier ({pp[p_top]:.0%} of other artists' paintings near that year vs {pp[g]:.0%})"
            add("period", i, pp, text)
        pt = ev.kinds["title"][i]
        if not np.isnan(pt).any():
            t_top = int(np.argmax(pt))
            text = f"Title “{md.title[i]}”: reads as {names[t_top]} ({pt[t_top]:.2f})"
            if t_top != g:
                text += f"; {given} {pt[g]:.2f}"
            add("title", i, pt, text)
        post = ev.posterior[i]
        alt = int(np.argmax(np.where(np.arange(C) == g, -1.0, post)))
        text = f"All kinds together: {given} {_share(post[g])}"
        text += (f", {names[alt]} {_share(post[alt])}" if post[alt] > post[g]
                 else f" (the likeliest; next {names[alt]} {_share(post[alt])})")
        add("combined", i, post, text)
    return pd.DataFrame(rows, columns=["image_id", "task", "kind", "p_given", "best", "p_best", "verdict", "line"])
