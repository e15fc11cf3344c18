"""What the kinds of evidence (embeddings/evidence.py) conclude together about each label.

`combine_evidence` multiplies the kinds' likelihood ratios (naive Bayes, one vote per kind, each
kind's distribution mixed with the prior so no single kind can veto); `wrong_log_odds` is the
Review queue's score, so a painting rises to the top only when several kinds agree that another
class fits better. `kind_verdicts` says what one kind makes of a label in the card's words
(against / mixed / supports), and `wrong_count` counts the labels that independent kinds agree
are wrong, with `count_interval` its sampling range.

Numpy in, numpy out: labels (N,) int (-1 = none), probability tables (N, C) with NaN rows where a
kind has nothing to say about a painting, prior (C,).
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax

from db.schema import AGAINST, MIXED, SUPPORTS

# Each kind's distribution is mixed with the prior by this much before combining: no single kind,
# however sure, outvotes all the others (a bound of about log(1/0.1) on its log-likelihood ratio).
MIX = 0.1


def other_class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, C) how many labelled paintings other than each painting carry each class; NaN for a
    class no painting carries (a class of the model's list absent from this collection)."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(float)
    out = np.tile(np.where(counts > 0, counts, np.nan), (len(labels), 1))
    known = np.flatnonzero(labels >= 0)
    out[known, labels[known]] -= 1
    return out


def class_mix(others: np.ndarray, mix: float = MIX) -> np.ndarray:
    """(N, C) how much of each kind's probability for a class is the prior's: `mix`, or 1 / (n + 1)
    where n < 1 / mix - 1 other paintings carry the class (others (N, C), `other_class_counts`).

    A kind learns a class from its other paintings; from one or two, what it says about the class
    is mostly chance, and a class with none it does not know at all. Read as one more painting that
    looks like the collection as a whole, the class's vote shrinks to 1 as its paintings run out; a
    class of 9 other paintings or more is mixed by `mix` alone, and so is a class no painting here
    carries (NaN), which stays no alternative: every kind gives it its smoothing alone."""
    return np.where(np.isnan(others), mix, np.maximum(mix, 1.0 / (np.nan_to_num(others, nan=0.0) + 1.0)))


def as_voted(p: np.ndarray, prior: np.ndarray, mix: float | np.ndarray = MIX) -> np.ndarray:
    """(N, C) one kind's distribution p (N, C) as it votes in `combine_evidence`: mixed with the
    prior by `mix` (a number, or (N, C) `class_mix`); NaN rows stay NaN."""
    return (1 - mix) * p + mix * prior[None, :]


def combine_evidence(evidence: dict[str, np.ndarray], prior: np.ndarray, mix: float | np.ndarray = MIX) -> np.ndarray:
    """(N, C) posterior over classes: prior x the product over kinds of (mixed p_k / prior).

    evidence {kind: (N, C)} with NaN rows where the kind says nothing (it then contributes 1); mix a
    number, or (N, C) one per painting and class (`class_mix`).
    """
    n = len(next(iter(evidence.values())))
    mix = np.broadcast_to(np.asarray(mix, float), (n, len(prior)))
    log_post = np.tile(np.log(prior), (n, 1))
    for p in evidence.values():
        have = ~np.isnan(p).any(1)
        log_post[have] += np.log(as_voted(p[have], prior, mix[have])) - np.log(prior)[None, :]
    return softmax(log_post, axis=1)


def wrong_log_odds(labels: np.ndarray, post: np.ndarray) -> np.ndarray:
    """(N,) log p(not the given label) - log p(given label): the evidence ranking's score (a smooth
    scale without float ties near certainty). NaN where unlabelled or the posterior is NaN (a label
    the evidence cannot judge)."""
    known = labels >= 0
    out = np.full(len(labels), np.nan)
    pg = np.clip(post[np.flatnonzero(known), labels[known]], 1e-300, 1)
    out[known] = np.log(np.clip(1 - pg, 1e-300, 1)) - np.log(pg)
    return out


def bayes_factors(labels: np.ndarray, p: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(N, C) log Bayes factor of each class against the given one from one kind alone:
    log(p(c) / prior(c)) - log(p(given) / prior(given)). Measured against the prior so that a kind
    which merely prefers the commonest class (a title model on a plain title) says little.
    NaN rows where unlabelled or the kind has nothing to say."""
    known = (labels >= 0) & ~np.isnan(p).any(1)
    out = np.full(p.shape, np.nan)
    rows = np.flatnonzero(known)
    lr = np.log(np.clip(p[rows], 1e-12, None)) - np.log(prior)[None, :]
    out[rows] = lr - lr[np.arange(len(rows)), labels[known]][:, None]
    return out


def against_scores(labels: np.ndarray, p: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(N,) the largest log Bayes factor of another class against the given one (`bayes_factors`):
    > 0 where this kind alone favours some other class, <= 0 where it favours none over the given one."""
    bf = bayes_factors(labels, p, prior)
    known = labels >= 0
    bf[np.flatnonzero(known), labels[known]] = -np.inf
    out = np.full(len(labels), np.nan)
    ok = ~np.isnan(bf).any(1)
    out[ok] = bf[ok].max(1)
    return out


# A kind is "against" the label where it favours another class by a Bayes factor of at least this
# and makes the given class less likely than for a painting picked at random (below its prior).
AGAINST_RATIO = 2.0


def kind_verdicts(labels: np.ndarray, p: np.ndarray, prior: np.ndarray, mix: float | np.ndarray = MIX) -> np.ndarray:
    """(N,) what one kind says of each label, in the Review card's words: 'against' (another class
    favoured by a Bayes factor of AGAINST_RATIO or more, and the given class below its prior),
    'supports' (the given class is this kind's likeliest), else 'mixed' (e.g. an artist who paints
    this genre as often as anyone, but another one more); '' where the kind says nothing.

    The Bayes factor is that of the kind's vote in `combine_evidence` (`as_voted` by mix: a number
    or (N, C) `class_mix`; 0 for a distribution already final, the posterior), so a kind that learnt
    a class from two paintings is as unsure of it here, and in the count, as in the ranking; its
    likeliest class is its own, the one the card's line names."""
    score = against_scores(labels, as_voted(p, prior, mix), prior)
    known = ~np.isnan(score)
    rows = np.flatnonzero(known)
    lowered = np.zeros(len(labels), bool)
    lowered[rows] = p[rows, labels[known]] < prior[labels[known]]    # the same below the prior, mixed or not
    first = np.zeros(len(labels), bool)
    first[rows] = p[rows, labels[known]] >= p[rows].max(1)
    v = np.full(len(labels), "", dtype=object)
    strong = known & (np.nan_to_num(score, nan=-np.inf) >= np.log(AGAINST_RATIO))
    v[known] = MIXED
    v[strong & lowered] = AGAINST
    v[known & first] = SUPPORTS
    return v


def verdicts(labels: np.ndarray, evidence: dict[str, np.ndarray], prior: np.ndarray,
             mix: float | np.ndarray = MIX) -> dict[str, np.ndarray]:
    """{kind: `kind_verdicts`} for every kind."""
    return {kind: kind_verdicts(labels, p, prior, mix) for kind, p in evidence.items()}


# Before any evidence, a catalogue's label is taken to be right 9 times in 10: the label is itself
# evidence. Weighing it, wrong is likelier than right only where the evidence alone gives the
# given class a probability below this rate (e(1-q) > (1-e)q  <=>  q < e).
CATALOGUE_ERROR_RATE = 0.1


def agreeing_kinds(labels: np.ndarray, post: np.ndarray, evidence: dict[str, np.ndarray], prior: np.ndarray,
                   mix: float | np.ndarray = MIX) -> np.ndarray:
    """(N,) int: how many independent kinds are against the given label in favour of the same class,
    the posterior's first alternative: a Bayes factor of AGAINST_RATIO or more for that class, and
    the given class below its prior, each kind read as it votes (`as_voted` by mix). Kinds that
    disagree on what the label should be do not add up."""
    rows = np.arange(len(labels))
    g = np.maximum(labels, 0)
    alt_post = post.copy()
    alt_post[rows, g] = -1
    alt = alt_post.argmax(1)
    agree = np.zeros(len(labels), int)
    for p in evidence.values():
        p = as_voted(p, prior, mix)
        bf = np.nan_to_num(bayes_factors(labels, p, prior)[rows, alt], nan=-np.inf)
        agree += (bf >= np.log(AGAINST_RATIO)) & (np.nan_to_num(p[rows, g], nan=1.0) < prior[g])
    return agree


def wrong_count(labels: np.ndarray, post: np.ndarray, evidence: dict[str, np.ndarray], prior: np.ndarray,
                mix: float | np.ndarray = MIX) -> tuple[np.ndarray, int, int]:
    """(counted (N,) bool, low, high). A painting is counted as wrongly labelled where the combined
    evidence puts the given label below CATALOGUE_ERROR_RATE and at least two kinds agree against it
    (`agreeing_kinds`): the classifier's confusions alone (one kind) never count. low: the count
    under a stricter reading (three kinds); high: the loosest one (the combined evidence finds
    another label likelier than the given one, whether or not two kinds agree and as if the
    catalogue's word counted for nothing; the classifier's own confusions are in this end). The
    range says how much the number depends on what counts as agreement, which is more than its
    sampling error: errors of a kind the kinds do not agree on (labels assigned at artist level,
    which the artist kind supports) fall between the count and the high end."""
    known = labels >= 0
    p_given = post[np.arange(len(labels)), np.maximum(labels, 0)]
    agree = agreeing_kinds(labels, post, evidence, prior, mix)
    unlikely = known & (p_given < CATALOGUE_ERROR_RATE)
    counted = unlikely & (agree >= 2)
    strict = unlikely & (agree >= 3)
    loose = known & (p_given < 0.5)
    return counted, int(strict.sum()), int(loose.sum())


def count_interval(counted: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> tuple[float, float]:
    """Percentile bootstrap interval of counted.sum() over paintings resampled with replacement.
    counted (N,) bool."""
    if len(counted) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    sums = rng.binomial(len(counted), counted.mean(), n_boot)   # the sum of a resample is binomial
    lo, hi = np.percentile(sums, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)
