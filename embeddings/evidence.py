"""Kinds of evidence about a label, each as a distribution over classes, and their combination.

A real catalogue error looks plausible (a painting filed under its artist's usual style, a date
outside the movement): the picture alone rarely gives it away, its metadata and the agreement of
several kinds of evidence do. Each kind below says, for every painting, how likely each class is
from one kind of evidence only, never from the painting's own label (leave-one-out or
cross-fitted):

- look:    the cross-fitted classifier and the label-free visual neighbours by other artists (two
           readings of the picture, so they count as one kind; an artist's own paintings look alike
           and carry the labels the artist kind already counts); the classifier, like the title
           model, is read at the temperature its labels call for (`calibration_temperature`);
- artist:  the labels of the artist's other paintings, the nearer in date the more weight;
- period:  the labels of other artists' paintings dated near this one, or near its artist's dated
           paintings when it is undated (for style and artist; `Metadata.for_task` leaves it out
           of genre);
- title:   a text model over titles, cross-fitted;
- copies:  the labels of the painting's copies, where they differ from its own (`copy_evidence`).

What they conclude together (the posterior, the ranking score, each kind's verdict, the count of
wrong labels) is embeddings/verdicts.py.

A painting filed twice (a copy under another file name or another artist's page, a rescan) is one
painting: its copies' labels are its own label again, so every kind leaves them out with it (copies
(N,) int, the store's duplicate groups, -1 = none), as the cross-fitting keeps them in one fold.
Only where a copy is filed under another label does it say something, as the `copies` kind.

All functions are numpy in, numpy out: labels (N,) int (-1 = none), probability tables (N, C)
with NaN rows where a kind has nothing to say about a painting.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from embeddings.scores import neighbour_labels
from embeddings.years import pair_year_weights, year_bounds, year_spread, year_weights
from trainer.splits import copies_share_fold

KINDS = ("look", "artist", "period", "title", "copies")
# Kernel width in years for the artist kind: an artist's manner changes within a decade (Picasso
# 1901 vs 1907).
ARTIST_SPAN = 8.0
# The period kind gives each class its own width (`period_spans`): a short movement (Cubism, most of
# it 1907-1925) has sharp edges that a width fit for a long one (Baroque) would blur, and then "filed
# under Cubism, dated 1903" would read as plausible. PERIOD_SPAN is the width for a class with too
# few dated paintings to measure; MIN_PERIOD_SPAN allows for dates known only to a few years ("c. 1890").
PERIOD_SPAN, MIN_PERIOD_SPAN = 15.0, 3.0
# A movement has a start but no end: painters take a style up again decades later, nobody paints
# in it before it exists. Dated before a class's paintings, a painting is read at this share of the
# class's width; after them, at the full width.
PERIOD_EARLY = 0.5
# An undated painting of the same artist counts this much (it may come from any part of the career).
UNDATED_WEIGHT = 0.5


def label_prior(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) add-one-smoothed share of each class among the labelled paintings."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(float)
    return (counts + 1) / (counts.sum() + n_classes)


def _smoothed(weighted_counts: np.ndarray, total: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """(N, C): (counts + alpha * prior) / (total + alpha), NaN rows where total is 0."""
    p = (weighted_counts + alpha * prior[None, :]) / (total[:, None] + alpha)
    p[total <= 0] = np.nan
    return p


def neighbour_evidence(labels: np.ndarray, neighbor_ids: np.ndarray, neighbor_sim: np.ndarray, n_classes: int,
                       alpha: float = 1.0) -> np.ndarray:
    """(N, C) similarity-weighted share of each class among a painting's labelled neighbours.

    neighbor_ids (N, k) int (-1 = none, self excluded), neighbor_sim (N, k) cosine similarities.
    """
    return neighbour_label_evidence(neighbour_labels(labels, neighbor_ids), neighbor_sim, n_classes,
                                    label_prior(labels, n_classes), alpha)


def neighbour_label_evidence(nl: np.ndarray, neighbor_sim: np.ndarray, n_classes: int, prior: np.ndarray,
                             alpha: float = 1.0) -> np.ndarray:
    """(N, C) `neighbour_evidence` from the neighbours' labels nl (N, k) int (-1 = none), their
    similarities (N, k) and the prior (C,)."""
    w = np.where(nl >= 0, np.clip(neighbor_sim, 1e-3, None), 0.0)
    counts = np.zeros((len(nl), n_classes))
    rows = np.repeat(np.arange(len(nl)), nl.shape[1])
    np.add.at(counts, (rows, np.maximum(nl, 0).ravel()), w.ravel())
    return _smoothed(counts, w.sum(1), prior, alpha)


def other_group_neighbours(nb_ids: np.ndarray, nb_sim: np.ndarray, group: np.ndarray, k: int,
                           own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first k neighbours outside each painting's own groups, in their order: (ids (R, k) -1
    padded, similarities (R, k) 0 padded). nb_ids / nb_sim (R, m) nearest first, -1 = none, ids
    index `group` (N,) or (N, G) int, -1 = none in that column (e.g. artist and copy group: a
    neighbour sharing any column's group with the painting is skipped); own (R,) or (R, G) the rows'
    groups (default: R = N, group itself)."""
    group = group.reshape(len(group), -1)
    own = group if own is None else own.reshape(len(own), -1)
    g = group[np.maximum(nb_ids, 0)]                                   # (R, m, G)
    same = ((own[:, None, :] >= 0) & (g == own[:, None, :])).any(-1)
    keep = (nb_ids >= 0) & ~same
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, 1)
    ids = np.where(kept, np.take_along_axis(nb_ids, order, 1), -1)
    sim = np.where(kept, np.take_along_axis(np.nan_to_num(nb_sim), order, 1), 0.0)
    pad = k - ids.shape[1]
    if pad > 0:
        ids, sim = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1), np.pad(sim, ((0, 0), (0, pad)))
    return ids, sim


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, C) 1 at each painting's label, a zero row where it has none (-1)."""
    out = np.zeros((len(labels), n_classes))
    known = np.flatnonzero(labels >= 0)
    out[known, labels[known]] = 1.0
    return out


def group_counts(q: np.ndarray, group: np.ndarray, years: np.ndarray, span: float | np.ndarray, undated: float,
                 early: float = 1.0, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out weighted class counts over the other members of each painting's group:
    (counts (N, C), total weight (N,)). q (N, C): what each painting counts as (a one-hot label, or
    a soft one; a zero row is never counted). years: (N,) or (N, 2) first and last year, NaN
    undated. Weight of a pair: Gaussian in the year difference with width `span` (a number, or (N,)
    one per other member), `early` times that where the painting is dated before the other member,
    averaged over the years of a range (`pair_year_weights`), or `undated` when either painting has
    no year.
    group (N,) int, -1 = no group; skip (N,) int, -1 = none: pairs that share a skip group (a
    painting's copies) are left out with the painting."""
    n = len(q)
    counts = np.zeros(q.shape)
    spans = np.broadcast_to(np.asarray(span, float), (n,))
    first, last = year_bounds(years)
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], n]):
        if g_sorted[s] < 0:
            continue
        idx = order[s:e]
        w = pair_year_weights(first[idx], last[idx], spans[idx], undated, early)
        np.fill_diagonal(w, 0.0)                                       # leave the painting itself out
        if skip is not None:                                           # and its copies
            sk = skip[idx]
            w[(sk[:, None] >= 0) & (sk[:, None] == sk[None, :])] = 0.0
        counts[idx] = w @ q[idx]
    return counts, counts.sum(1)


def group_label_counts(labels: np.ndarray, group: np.ndarray, years: np.ndarray, n_classes: int,
                       span: float | np.ndarray, undated: float, early: float = 1.0, skip: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """`group_counts` of the labels (N,) int (-1 = none) themselves; span a number, or (C,) one per
    class of the other member's label."""
    span = np.asarray(span, float)
    per_member = span[np.maximum(labels, 0)] if span.ndim else span
    return group_counts(one_hot(labels, n_classes), group, years, per_member, undated, early, skip)


def soft_labels(labels: np.ndarray, others: np.ndarray, error_rate: float) -> np.ndarray:
    """(N, C) each labelled painting's class as the other kinds of evidence and its own label read it
    together: others (N, C) (a posterior from kinds that never used the label) times p(label | class),
    where a catalogue gives the right label with 1 - error_rate and each other one with
    error_rate / (C - 1). Zero rows where unlabelled (they are never counted)."""
    C = others.shape[1]
    like = np.where(one_hot(labels, C) > 0, 1 - error_rate, error_rate / max(C - 1, 1))
    q = others * like
    return np.where((labels >= 0)[:, None], q / q.sum(1, keepdims=True), 0.0)


def artist_evidence(labels: np.ndarray, artist: np.ndarray, years: np.ndarray, n_classes: int,
                    soft: np.ndarray | None = None, alpha: float = 1.0, copies: np.ndarray | None = None
                    ) -> np.ndarray:
    """(N, C) how the artist's other paintings are labelled, weighted by nearness in date.

    artist (N,) int artist id (-1 = unknown), years (N,) or (N, 2) first and last year (NaN =
    undated). soft (N, C) (`soft_labels`): each other painting counts as what the other kinds and
    its label make of it, not as its label alone. A catalogue that files an artist's paintings
    under one label wholesale would otherwise have every one of them vouch for the others;
    weighed, a label the look, the date and the title all doubt vouches less. copies (N,) int
    (-1 = none): the painting's copies are left out with it. NaN rows where the artist has no
    other labelled painting."""
    q = one_hot(labels, n_classes) if soft is None else soft
    counts, total = group_counts(q, artist, years, ARTIST_SPAN, UNDATED_WEIGHT, skip=copies)
    return _smoothed(counts, total, label_prior(labels, n_classes), alpha)


def lone_labels(labels: np.ndarray, copies: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the labelled paintings whose class no other painting here carries, their copies
    aside. labels (N,) int (-1 = none), copies (N,) int duplicate group (-1 = none; None: none known).

    Every kind learns what a class is like (its look, dates, titles, artists) from the other
    paintings that carry it and leaves the painting and its copies out; with none left, each kind's
    probability for the class is its smoothing alone, and the label would read as wrong whether or
    not it is (an artist with one painting in a catalogue)."""
    known = labels >= 0
    out = np.zeros(len(labels), bool)
    if not known.any():
        return out
    others = np.bincount(labels[known])[labels[known]] - 1
    if copies is not None:                                          # copies filed under the same label
        others = others - copies_sharing(copies, labels)[known]
    out[np.flatnonzero(known)] = others <= 0
    return out


def copies_sharing(copies: np.ndarray, key: np.ndarray) -> np.ndarray:
    """(N,) int how many other paintings share each painting's duplicate group and its key (a
    label, an artist); 0 where either is -1. copies, key (N,) int."""
    keyed = (copies >= 0) & (key >= 0)
    pairs = pd.Series(list(zip(copies, key)))
    sizes = pairs.map(pairs[keyed].value_counts()).fillna(1).to_numpy(int)
    return np.where(keyed, sizes - 1, 0)


def differing_copy_counts(labels: np.ndarray, copies: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(N, C) how many of each labelled painting's copies carry each class other than its own
    label (zeros for the painting's own class, and where it is unlabelled or has no copy).
    copies (N,) int duplicate group (-1 = none; None: none known)."""
    out = np.zeros((len(labels), n_classes))
    if copies is None:
        return out
    rows = np.flatnonzero((copies >= 0) & (labels >= 0))
    if not len(rows):
        return out
    per_group = np.zeros((int(copies.max()) + 1, n_classes))
    np.add.at(per_group, (copies[rows], labels[rows]), 1.0)
    other = per_group[copies[rows]]
    other[np.arange(len(rows)), labels[rows]] = 0.0      # the painting itself and the copies that agree
    out[rows] = other
    return out


def copy_evidence(labels: np.ndarray, copies: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(N, C) the share of each class among the labels of a painting's copies that differ from its
    own label (`differing_copy_counts`); NaN rows where every labelled copy agrees with it, it has
    none, or it is unlabelled.

    A copy's label mostly travels with the file (the same upload filed twice), so a copy that
    agrees says nothing about whether the label is right: it is left out, as every other kind
    leaves it out. A copy filed under another label was labelled apart, and at most one of the two
    labels is right; as evidence about the painting's class it reads like any other label of the
    same picture, mostly its own class. (Under the model "a copy's label is copied, or with a small
    chance d given apart", d cancels out of the likelihood ratio between classes, leaving
    p(copy's label | class); where the labels agree, the ratio is about 1.)"""
    counts = differing_copy_counts(labels, copies, n_classes)
    total = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / total, np.nan)


def period_spans(labels: np.ndarray, years: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) kernel width in years per class: Silverman's rule of thumb on the years of the class's
    dated paintings (0.9 min(sd, IQR/1.34) n^-1/5), at least MIN_PERIOD_SPAN; PERIOD_SPAN for a
    class with fewer than 5 dated paintings."""
    spans = np.full(n_classes, PERIOD_SPAN)
    ok = (labels >= 0) & ~np.isnan(years)
    for c in range(n_classes):
        y = years[ok & (labels == c)]
        if len(y) < 5:
            continue
        q75, q25 = np.percentile(y, [75, 25])
        spread = min(y.std(), (q75 - q25) / 1.34) or y.std()
        spans[c] = max(MIN_PERIOD_SPAN, 0.9 * spread * len(y) ** -0.2)
    return spans


def period_evidence(labels: np.ndarray, years: np.ndarray, n_classes: int, artist: np.ndarray | None = None,
                    alpha: float = 1.0, copies: np.ndarray | None = None) -> np.ndarray:
    """(N, C) how likely each class is for this date, from other artists' dated paintings: each
    class's years as a kernel density (width `period_spans`, PERIOD_EARLY times it on the side
    before a class's paintings; on whole years so it scales with the number of distinct years, not
    of paintings) times the class's count. years (N,) or (N, 2) first and last year, NaN undated:
    a range is its years alike, in the density and where it is read (`embeddings.years`).

    artist (N,) int (-1 = unknown): the painting's own artist is left out, not only the painting.
    Near an artist's dates the artist's other paintings would otherwise make up much of the period,
    and the period would repeat the artist kind's vote (the kinds are combined as independent).
    copies (N,) int (-1 = none): copies filed under another artist are left out too.
    An undated painting is read at its artist's dates here (`career_period`); NaN rows for undated
    paintings whose artist has no dated painting."""
    lo, hi = year_bounds(years)
    dated = ~np.isnan(lo)
    out = np.full((len(labels), n_classes), np.nan)
    if not dated.any():
        return out
    bounds = np.stack([np.round(lo[dated]), np.round(np.fmax(hi[dated], lo[dated]))], 1)   # (D, 2) whole years
    y_lab = labels[dated]
    spans = period_spans(y_lab, bounds.mean(1), n_classes)
    # each painting is its range's whole years, each 1 / (years in it): in a class's density, and
    # where the painting is read
    row, year, share = year_spread(bounds[:, 0], bounds[:, 1])
    first = int(year.min())
    spread = sparse.csr_matrix((share, (row, year - first)), shape=(len(bounds), int(year.max()) - first + 1))
    hist = np.asarray((spread.T @ sparse.csr_matrix(one_hot(y_lab, n_classes))).todense())        # (Y, C)
    offsets = np.arange(len(hist))
    gap = offsets[:, None] - offsets[None, :]
    near = np.stack([year_weights(gap / spans[c], PERIOD_EARLY) @ hist[:, c] for c in range(n_classes)], 1)  # (Y, C)
    counts = spread @ near                                                                                   # (D, C)
    own = np.flatnonzero(y_lab >= 0)                              # leave the painting itself out
    counts[own, y_lab[own]] -= _self_weights(bounds[own, 1] - bounds[own, 0] + 1, spans[y_lab[own]])
    if artist is not None:                                        # and its artist's other dated paintings
        same, _ = group_label_counts(y_lab, artist[dated], bounds, n_classes, spans, 0.0, PERIOD_EARLY)
        counts -= same
    if copies is not None:                                        # and its copies under other artists' names
        twins, _ = group_label_counts(y_lab, copies[dated], bounds, n_classes, spans, 0.0, PERIOD_EARLY,
                                      skip=None if artist is None else artist[dated])
        counts -= twins
    # a density, not a count: a narrow kernel gathers fewer paintings than a wide one for the same
    # share of the year's paintings, so each class's counts are scaled to the median width
    counts = np.clip(counts, 0, None) * (np.median(spans) / spans)[None, :]
    out[dated] = _smoothed(counts, counts.sum(1), label_prior(labels, n_classes), alpha)
    if artist is not None:
        undated, era = career_period(counts, artist, dated)
        out[undated] = _smoothed(era, era.sum(1), label_prior(labels, n_classes), alpha)
    return out


def _self_weights(n_years: np.ndarray, span: np.ndarray) -> np.ndarray:
    """(D,) what each painting, read at the n_years (D,) whole years of its range, adds to its own
    class's density there (class width span (D,)): 1 for a single year."""
    out = np.ones(len(n_years))
    for m, s in set(zip(n_years[n_years > 1].astype(int), span[n_years > 1])):
        gap = np.arange(m)[:, None] - np.arange(m)[None, :]
        out[(n_years == m) & (span == s)] = year_weights(gap / s, PERIOD_EARLY).mean()
    return out


def career_period(dated_counts: np.ndarray, artist: np.ndarray, dated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The period of an undated painting: the mean of the other artists' class counts near each of
    its artist's dated paintings (an undated painting comes from some point of the career the
    collection dates). dated_counts (D, C) leave-artist-out counts of the dated paintings, artist
    (N,) int (-1 = unknown), dated (N,) bool with D true. Returns (rows (U,) of the undated
    paintings whose artist has a dated painting, their counts (U, C))."""
    dated_artist = artist[dated]
    n_artists = int(artist.max()) + 1
    sums = np.zeros((n_artists, dated_counts.shape[1]))
    ok = dated_artist >= 0
    np.add.at(sums, dated_artist[ok], dated_counts[ok])
    n_dated = np.bincount(dated_artist[ok], minlength=n_artists).astype(float)
    rows = np.flatnonzero(~dated & (artist >= 0))
    rows = rows[n_dated[artist[rows]] > 0]
    return rows, sums[artist[rows]] / n_dated[artist[rows]][:, None]


def _title_features():
    """TF-IDF of a title's words and word pairs, and of character 3-5-grams within words: titles
    come in many languages and spellings ("cielo par terra", "Mont Sainte-Victoire", "Bijin-ga"),
    and a word's stem or a transliteration shares n-grams where whole words differ."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion
    return FeatureUnion([("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
                         ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                                                   sublinear_tf=True))])


def title_evidence(labels: np.ndarray, titles: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0,
                   min_titles: int = 50, copies: np.ndarray | None = None) -> np.ndarray:
    """(N, C) cross-fitted p(class | title): a TF-IDF + logistic-regression model per fold, each
    painting predicted by the model that never saw its label, nor its copies' (copies (N,) int,
    -1 = none, share a fold: a copy's title is mostly the same words). NaN rows for untitled
    paintings, and everywhere when fewer than `min_titles` labelled paintings have a title."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    titles = np.array(["" if t is None else str(t) for t in titles], dtype=object)
    has = np.array([bool(t.strip()) for t in titles])
    out = np.full((len(labels), n_classes), np.nan)
    usable = np.flatnonzero(has & (labels >= 0))
    if len(usable) < min_titles or len(np.unique(labels[usable])) < 2:
        return out
    prior = label_prior(labels, n_classes)
    targets = np.flatnonzero(has)
    fold_of = np.full(len(labels), -1)
    for k, (_, test) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(targets)):
        fold_of[targets[test]] = k
    if copies is not None:
        fold_of[targets] = copies_share_fold(fold_of[targets], copies[targets])
    for k in range(folds):
        fit = usable[fold_of[usable] != k]
        pred = targets[fold_of[targets] == k]
        if len(pred) == 0:
            continue
        if len(np.unique(labels[fit])) < 2:
            out[pred] = prior
            continue
        vec = _title_features()
        try:
            x_fit = vec.fit_transform(titles[fit])
        except ValueError:            # no word occurs twice: the titles say nothing here
            out[pred] = prior
            continue
        # saga on sparse TF-IDF: same fit as lbfgs here, ~50x faster (a 100k collection stays seconds)
        clf = LogisticRegression(C=2.0, solver="saga", max_iter=200, tol=1e-3,
                                 random_state=seed).fit(x_fit, labels[fit])
        p = np.zeros((len(pred), n_classes))
        p[:, clf.classes_] = clf.predict_proba(vec.transform(titles[pred]))
        out[pred] = p
    return out


def calibration_temperature(probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.25, 4.0)) -> float:
    """The temperature T that makes softmax(log probs / T) most likely for the given labels: probs
    (N, C) cross-fitted, NaN rows skipped; labels (N,) int, -1 = none. Temperature scaling (Guo et
    al. 2017): one number per task, so it cannot learn which labels are wrong, only how sure the
    classifier should sound. 1.0 where nothing is labelled."""
    ok = (labels >= 0) & ~np.isnan(probs).any(1)
    if not ok.any():
        return 1.0
    logp, y = np.log(np.clip(probs[ok], 1e-9, 1)), labels[ok]

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=np.log(bounds), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x))


def temperature_scaled(probs: np.ndarray, t: float) -> np.ndarray:
    """(N, C) softmax(log probs / t), NaN rows kept."""
    return softmax(np.log(np.clip(probs, 1e-9, 1)) / t, axis=1)


def look_evidence(model_probs: np.ndarray, neighbour_probs: np.ndarray) -> np.ndarray:
    """(N, C) the picture's evidence: geometric mean of the cross-fitted classifier and the visual
    neighbours (renormalised), either alone where the other has a NaN row, NaN where both do."""
    m = np.clip(model_probs, 1e-6, 1)
    nb = np.clip(neighbour_probs, 1e-6, 1)
    m, nb = np.where(np.isnan(m), nb, m), np.where(np.isnan(nb), m, nb)
    g = np.sqrt(m * nb)
    return g / g.sum(1, keepdims=True)
