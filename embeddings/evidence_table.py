"""The evidence stage of `make embed`: every kind of evidence for one task, the combined ranking,
the agreement count, and one line of plain words per painting and kind for the Review card.

`task_evidence` builds the kinds (embeddings.evidence), `evidence_rows` turns them into the
store's `evidence` table: (image_id, task, kind, p_given, best, p_best, verdict, line).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from db.schema import LEFT_OUT, UNJUDGED
from embeddings.evidence import (artist_evidence, calibration_temperature, copies_sharing, copy_evidence,
                                 differing_copy_counts, group_label_counts, label_prior, lone_labels, look_evidence,
                                 neighbour_evidence, period_evidence, soft_labels, temperature_scaled, title_evidence)
from embeddings.scores import neighbour_labels
from embeddings.verdicts import (CATALOGUE_ERROR_RATE, class_mix, combine_evidence, kind_verdicts,
                                 other_class_counts, verdicts)
from embeddings.years import year_bounds
from trainer.metadata import display_name


@dataclass
class Metadata:
    """Per painting (N,): artist id (-1 unknown) and name, date (year (N,), or first and last year
    (N, 2); NaN undated), title ("" none),
    and whether the artist was taken from the artist label (not independent of that label);
    dates_classes: whether a date is evidence about the task's classes (the period kind);
    classes_are_artists: the artist task. For the other tasks the look's neighbours and the period
    leave the painting's artist out (the artist kind counts the artist's paintings); where the
    classes are the artists, leaving the artist out would leave out the given class itself;
    copies: (N,) int the painting's duplicate group (the same picture filed twice; -1 none, None
    unknown): every kind leaves a painting's copies out with it (`with_copies`); the copies kind
    reads the labels of those filed under another class; date_text: (N,) the date as the
    catalogue wrote it ("" none; None unknown), which the card quotes beside its reading."""
    artist_id: np.ndarray
    artist_name: np.ndarray
    year: np.ndarray
    title: np.ndarray
    artist_from_label: np.ndarray
    dates_classes: bool = True
    classes_are_artists: bool = False
    copies: np.ndarray | None = None
    date_text: np.ndarray | None = None

    def with_copies(self, group: np.ndarray) -> "Metadata":
        """The same metadata with each painting's duplicate group (N,) int, -1 = none."""
        return replace(self, copies=np.asarray(group, np.int64))

    def copy_groups(self) -> np.ndarray:
        """(N,) each painting's duplicate group, -1 where it has no copy or none are known."""
        return np.full(len(self.artist_id), -1) if self.copies is None else self.copies

    def mid_years(self, widest: float = np.inf) -> np.ndarray:
        """(N,) the middle of each painting's date, NaN where undated or its range spans more than
        `widest` years after the first."""
        first, last = year_bounds(self.year)
        return np.where(last - first <= widest, (first + last) / 2, np.nan)

    def when(self, i: int) -> str:
        """Painting i's date in words ("1890", "1890-1899"), "" where undated."""
        first, last = (float(v[i]) for v in year_bounds(self.year))
        return "" if np.isnan(first) else years_text(first, last)

    def date_said(self, i: int) -> str:
        """Painting i's date as the catalogue wrote it, where its words say more than `when` ("c. 1890",
        "late 19th century", "spring"); "" where it is only numbers ("1890-95": the years say it), or
        where no date was written."""
        said = "" if self.date_text is None else str(self.date_text[i]).strip()
        return said if any(c.isalpha() for c in said) else ""

    def look_groups(self) -> np.ndarray:
        """(N, 2) the groups whose paintings the look's neighbours skip (-1: none skipped): the
        painting's artist (style and genre) and its copies (always)."""
        artist = np.full(len(self.artist_id), -1) if self.classes_are_artists else self.artist_id
        return np.stack([artist, self.copy_groups()], 1)

    def for_task(self, task: str) -> "Metadata":
        """The metadata that is evidence about `task`'s labels: for the artist task, an artist read
        from the artist label itself would only repeat it, so those paintings have no artist. For
        genre a date is no evidence: movements and careers have dates, subjects do not (portraits
        and landscapes are painted in every century), and what a year says about genre in one
        collection is which movements it holds, a vote the kinds would count twice. On injected
        flips the period kind alone ranks genre flips near chance, and leaving it out of genre
        raised the ranking's AUPRC in every cell on two seeds (docs/real-errors.md). For the artist
        task a date says whose career it falls in: the period is every other painting's, the
        painting's own artist too (left out, the given class would have no dates), and an undated
        painting gets none (read at its artist's dates, it would repeat the artist kind)."""
        artist_id = self.artist_id
        if task == "artist" and self.artist_from_label.any():
            artist_id = np.where(self.artist_from_label, -1, self.artist_id)
        return replace(self, artist_id=artist_id, dates_classes=task != "genre",
                       classes_are_artists=task == "artist")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Metadata":
        n = len(frame)
        names = frame["artist_name"].fillna("").astype(str).to_numpy() if "artist_name" in frame else np.full(n, "")
        codes, _ = pd.factorize(pd.Series(names).replace("", None))
        if "year_lo" in frame:
            year = np.stack([frame["year_lo"].to_numpy(float), frame["year_hi"].to_numpy(float)], 1)
        else:
            year = np.full(n, np.nan)
        title = frame["title"].fillna("").astype(str).to_numpy() if "title" in frame else np.full(n, "")
        from_label = (frame["artist_source"].to_numpy() == "label") if "artist_source" in frame else np.zeros(n, bool)
        said = frame["date_text"].fillna("").astype(str).to_numpy(object) if "date_text" in frame else None
        return cls(codes.astype(np.int64), names.astype(object), year, title.astype(object), from_label,
                   date_text=said)


@dataclass
class TaskEvidence:
    """One task's evidence: kinds {kind: (N, C)}, neighbour_ids (N, k) the neighbours the look read
    (-1 = none), neighbour_probs (N, C), posterior (N, C), votes {kind: (N,) verdict} for the kinds,
    for the look's two readings (`model`, `neighbours`) and for the posterior (`combined`), prior (C,),
    model_left_out (N,) bool: where the look read the neighbours only; temperatures {"model",
    "title"}: the ones the cross-fitted model and the title model are read at
    (`calibration_temperature`); alone (N,) bool: labels of a class no other painting carries
    (`lone_labels`), which no kind can judge: NaN kinds and posterior, every vote UNJUDGED; mix (N, C)
    how much of each kind's vote is the prior's (`class_mix`)."""
    kinds: dict[str, np.ndarray]
    neighbour_ids: np.ndarray
    neighbour_probs: np.ndarray
    posterior: np.ndarray
    votes: dict[str, np.ndarray]
    prior: np.ndarray
    model_left_out: np.ndarray
    temperatures: dict[str, float]
    alone: np.ndarray
    mix: np.ndarray


def task_evidence(labels: np.ndarray, probs: np.ndarray, nb_ids: np.ndarray, nb_sim: np.ndarray, md: Metadata,
                  n_classes: int, seed: int = 0, model_left_out: np.ndarray | None = None) -> TaskEvidence:
    """Every kind of evidence for one task's labels (N,), from the cross-fitted probs (N, C), the
    label-free neighbours the look reads, nb_ids / nb_sim (N, k) (-1 = none; in `make embed` the
    nearest outside the painting's `Metadata.look_groups`: `score_stage.look_neighbours`), and the
    metadata. model_left_out (N,) bool: paintings whose cross-fitted reading is not independent of
    the label (the head trained on a copy of the picture), whose look is the neighbours alone."""
    nb = neighbour_evidence(labels, nb_ids, nb_sim, n_classes)
    prior = label_prior(labels, n_classes)
    left_out = np.zeros(len(labels), bool) if model_left_out is None else np.asarray(model_left_out, bool)
    model = np.where(left_out[:, None], np.nan, probs)
    title = title_evidence(labels, md.title, n_classes, seed=seed, copies=md.copies)
    # The two kinds read from a classifier trained on the labels are read at the temperature the
    # labels call for: how sure a classifier sounds is set by its training (the heads' label
    # smoothing, the title model's regularisation), not by the collection (fitted T 0.7-1.1 on
    # wikiart-mini and its noisy copies). The counting kinds (artist, period) keep their counts.
    # The card prints the model's probabilities as the model gave them.
    temperatures = {"model": calibration_temperature(model, labels), "title": calibration_temperature(title, labels)}
    others = {"look": look_evidence(temperature_scaled(model, temperatures["model"]), nb),
              "period": (period_evidence(labels, md.year, n_classes, None if md.classes_are_artists else md.artist_id,
                                         copies=md.copies)
                         if md.dates_classes else np.full((len(labels), n_classes), np.nan)),
              "title": temperature_scaled(title, temperatures["title"]),
              "copies": copy_evidence(labels, md.copies, n_classes)}
    # the artist's other paintings count as what the other kinds and their labels make of them
    mix = class_mix(other_class_counts(labels, n_classes))
    soft = soft_labels(labels, combine_evidence(others, prior, mix), CATALOGUE_ERROR_RATE)
    kinds = {"look": others["look"],
             "artist": artist_evidence(labels, md.artist_id, md.year, n_classes, soft, copies=md.copies),
             "period": others["period"], "title": others["title"], "copies": others["copies"]}
    alone = lone_labels(labels, md.copies)
    kinds = {k: np.where(alone[:, None], np.nan, p) for k, p in kinds.items()}
    post = combine_evidence(kinds, prior, mix)
    post[alone] = np.nan
    votes = verdicts(labels, {**kinds, "model": model, "neighbours": nb}, prior, mix)
    votes["combined"] = kind_verdicts(labels, post, prior, mix=0.0)
    votes["model"][left_out & (labels >= 0)] = LEFT_OUT
    for v in votes.values():
        v[alone] = UNJUDGED
    return TaskEvidence(kinds, nb_ids, nb, post, votes, prior, left_out, temperatures, alone, mix)


def years_text(first: float, last: float) -> str:
    """"1890" for one year (or an unknown last one), "1890-1899" for a span."""
    return f"{first:.0f}" if np.isnan(last) or round(last) <= round(first) else f"{first:.0f}-{last:.0f}"


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


def _careers(artist: np.ndarray, years: np.ndarray) -> dict[int, tuple[float, float]]:
    """{artist id: (first, last) year of the artist's dated paintings} for artists with any; years
    (N,) or (N, 2) first and last year of each painting's date."""
    first, last = year_bounds(years)
    ok = (artist >= 0) & ~np.isnan(first)
    span = pd.DataFrame({"a": artist[ok], "lo": first[ok], "hi": np.fmax(last[ok], first[ok])}).groupby("a").agg(
        lo=("lo", "min"), hi=("hi", "max"))
    return {int(a): (float(r.lo), float(r.hi)) for a, r in span.iterrows()}


def model_line(g: int, p: np.ndarray, names: list[str], saw_copy: bool = False) -> str:
    """The cross-fitted classifier's reading, p (C,), of a painting given class g; saw_copy: the
    head that scored it trained on a copy of the picture, so the evidence leaves it out."""
    top = int(np.argmax(p))
    if saw_copy:
        return (f"Model: left out, the head that scored it trained on another file of this picture (in another "
                f"fold) and learnt that file's label; it reads {names[top]} {p[top]:.2f}")
    if top == g:
        return f"Model (never saw this label): {names[g]} is its first choice, p {p[g]:.2f}"
    return f"Model (never saw this label): p({names[g]}) {p[g]:.2f}; most likely {names[top]} {p[top]:.2f}"


def neighbours_line(g: int, neighbour_classes: np.ndarray, names: list[str], other_artists: bool = False) -> str:
    """The labels (k,) of a painting's label-free visual neighbours (other_artists: by artists other
    than the painting's own)."""
    cnt = np.bincount(neighbour_classes, minlength=len(names))
    top = int(np.argmax(cnt))
    who = " by other artists" if other_artists else ""
    text = f"Look-alikes{who}: {cnt[g]} of {len(neighbour_classes)} nearest are {names[g]}"
    return text + (f"; {cnt[top]} are {names[top]}" if top != g else "")


def artist_line(g: int, artist: str, counts: np.ndarray, when: str, p: np.ndarray, names: list[str],
                copies: int = 0) -> str:
    """The artist's other paintings: plain counts (C,) for the words, and the artist kind p (C,)
    (date-weighted, each painting as the other evidence reads it) where the painting has a date,
    when ("1890", "1890-1895"; "" undated);
    copies: how many copies of this painting under the artist's name were left out."""
    top = int(np.argmax(counts))
    left_out = f" (its {copies} {'copy' if copies == 1 else 'copies'} not counted)" if copies else ""
    text = (f"Artist ({display_name(artist)}): {int(counts[g])} of {int(round(counts.sum()))} other paintings "
            f"here{left_out} are {names[g]}")
    if top != g and counts[top] > 0:
        text += f"; {int(counts[top])} are {names[top]}"
    if when:
        near_top = int(np.argmax(p))
        text += f"; each as the other evidence reads it, those near {when} weighing more: {names[g]} {p[g]:.0%}"
        if near_top != g:
            text += f", {names[near_top]} {p[near_top]:.0%}"
    return text


def period_line(g: int, class_years: np.ndarray, when: str, p: np.ndarray, names: list[str],
                career: tuple[str, float, float] | None = None, others: str = "other artists' paintings",
                said: str = "") -> str:
    """The date, when ("1890", "1890-1895"; "" undated), against the given class's dates here,
    class_years (2,) (5th, 95th percentile); for an undated painting, career = (artist, first, last
    year of the artist's dated paintings here); others: whose dates the period kind read; said: the
    date as the catalogue wrote it, quoted beside its reading where it says more ("c. 1890")."""
    lo, hi = class_years
    span = f"{names[g]} paintings here date {lo:.0f}-{hi:.0f}" if not np.isnan(lo) else f"few dated {names[g]} paintings here"
    quoted = f' (the catalogue: "{said}")' if said else ""
    if not when and career is not None:
        artist, first, last = career
        when = years_text(first, last)
        text = f"Period: {span}; this one undated{quoted}, {display_name(artist)}'s dated paintings here {when}"
        near = "of those years"
    else:
        text = f"Period: {span}; this one {when}{quoted}"
        near = "near that year" if "-" not in when else "in those years"
    top = int(np.argmax(p))
    if top != g:
        text += f", when {names[top]} is likelier ({p[top]:.0%} of {others} {near} vs {p[g]:.0%})"
    return text


def title_line(g: int, title: str, p: np.ndarray, names: list[str]) -> str:
    top = int(np.argmax(p))
    text = f"Title “{title}”: reads as {names[top]} ({p[top]:.2f})"
    return text + (f"; {names[g]} {p[g]:.2f}" if top != g else "")


def copies_line(g: int, differing: np.ndarray, names: list[str]) -> str:
    """The painting's copies filed under other classes than names[g], differing (C,) counts
    (`differing_copy_counts`, not all zero)."""
    filed = ", ".join(f"{names[c]} ({int(n)} {'copy' if n == 1 else 'copies'})"
                      for c, n in enumerate(differing) if n > 0)
    return (f"Copies: the same picture is filed again here under {filed}; at most one of the labels is right. "
            f"A copy under {names[g]} too would say nothing: a label travels with the file.")


def combined_line(g: int, post: np.ndarray, names: list[str], read_as_other: np.ndarray | None = None) -> str:
    """What all kinds give together, post (C,): the given class and its strongest rival. Said to
    leave the label out: a reader takes "Baroque <0.01" for the chance the label is right, which,
    weighing a catalogue that is mostly right, is higher (bench: `make bench-noise`, reliability).
    read_as_other (C + 1,): the share of each class's labels, and of all labels (last), whose
    posterior finds another class likelier: some classes the kinds read poorly (a sketch is read as
    the landscape it shows), and a reviewer should know how often the evidence doubts this one."""
    alt = int(np.argmax(np.where(np.arange(len(post)) == g, -1.0, post)))
    text = f"All kinds together, the label itself left out: {names[g]} {_share(post[g])}"
    if post[alt] > post[g]:
        text += f", {names[alt]} {_share(post[alt])}"
    else:
        text += f" (the likeliest; next {names[alt]} {_share(post[alt])})"
    if read_as_other is not None:
        text += (f". Together they read {read_as_other[g]:.0%} of the {names[g]} labels here as another class "
                 f"({read_as_other[-1]:.0%} of all labels)")
    return text


def alone_line(g: int, names: list[str]) -> str:
    """The combined line of a label no other painting carries (`lone_labels`)."""
    return (f"No other painting here is labelled {names[g]} (its copies aside): every kind of evidence learns a "
            "class from the other paintings that carry it, so none can judge this label. It has no evidence "
            "score and is not counted among the wrong labels")


def read_as_other(labels: np.ndarray, post: np.ndarray) -> np.ndarray:
    """(C + 1,) the share of each class's labels (labels (N,) int, -1 = none) whose posterior post
    (N, C) finds another class likelier than the given one, and last the share of all labels
    (NaN for a class with no label); labels the evidence cannot judge (NaN rows) are not counted."""
    known = (labels >= 0) & ~np.isnan(post).any(1)
    y = labels[known]
    other = post[known].argmax(1) != y
    C = post.shape[1]
    n = np.bincount(y, minlength=C).astype(float)
    with np.errstate(invalid="ignore"):
        per_class = np.bincount(y, weights=other.astype(float), minlength=C) / n
    return np.r_[per_class, other.mean() if len(y) else np.nan]


def evidence_rows(task: str, labels: np.ndarray, probs: np.ndarray, ev: TaskEvidence, md: Metadata,
                  names: list[str]) -> pd.DataFrame:
    """The store's evidence rows for the labelled paintings of one task, with a line of words per
    kind (model and neighbours are two lines of the one `look` kind) and a `combined` row: what all
    kinds say together (the posterior the `evidence` ranking sorts by)."""
    C = probs.shape[1]
    nl = neighbour_labels(labels, ev.neighbour_ids)
    # plain counts for the words; the evidence itself weighs the artist's paintings by date
    artist_counts, _ = group_label_counts(labels, md.artist_id, md.year, C, np.inf, 1.0, skip=md.copies)
    own_copies = copies_sharing(md.copy_groups(), md.artist_id)
    # the dates the card quotes for a class come from paintings dated to a decade or closer: the
    # middle of "20th century" is no painting's date
    years_of = _class_years(labels, md.mid_years(widest=9), C)
    careers = _careers(md.artist_id, md.year)
    skipped = md.look_groups()
    doubted = read_as_other(labels, ev.posterior)
    differing = differing_copy_counts(labels, md.copies, C)
    rows = []

    def add(kind, i, p, line):
        g = labels[i]
        best = int(np.argmax(p))
        rows.append((int(i), task, kind, float(p[g]), best, float(p[best]), ev.votes[kind][i], line))

    for i in np.flatnonzero(labels >= 0):
        g = labels[i]
        add("model", i, probs[i], model_line(g, probs[i], names, ev.model_left_out[i]))
        if (nl[i] >= 0).any():
            add("neighbours", i, ev.neighbour_probs[i],
                neighbours_line(g, nl[i][nl[i] >= 0], names, skipped[i, 0] >= 0))
        if not np.isnan(ev.kinds["look"][i]).any():
            add("look", i, ev.kinds["look"][i], "")
        pa, pp, pt = (ev.kinds[k][i] for k in ("artist", "period", "title"))
        if not np.isnan(pa).any():
            add("artist", i, pa, artist_line(g, md.artist_name[i], artist_counts[i], md.when(i), pa, names,
                                             int(own_copies[i])))
        if not np.isnan(pp).any():
            a = md.artist_id[i]
            career = (md.artist_name[i], *careers[a]) if a in careers else None
            add("period", i, pp, period_line(g, years_of[g], md.when(i), pp, names, career,
                                             "the other paintings" if md.classes_are_artists else
                                             "other artists' paintings", md.date_said(i)))
        if not np.isnan(pt).any():
            add("title", i, pt, title_line(g, md.title[i], pt, names))
        if not np.isnan(ev.kinds["copies"][i]).any():
            add("copies", i, ev.kinds["copies"][i], copies_line(g, differing[i], names))
        if ev.alone[i]:
            rows.append((int(i), task, "combined", np.nan, int(g), np.nan, UNJUDGED, alone_line(g, names)))
        else:
            add("combined", i, ev.posterior[i], combined_line(g, ev.posterior[i], names, doubted))
    return pd.DataFrame(rows, columns=["image_id", "task", "kind", "p_given", "best", "p_best", "verdict", "line"])
