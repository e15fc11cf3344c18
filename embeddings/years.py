"""Dates as the evidence reads them: a painting's date is a range of years (a catalogue's "1890-95",
"1520s", "17th century"; a single year is a range of one), read as every whole year in it alike.

Read at its middle, "20th century" would be 1950 to the period kind, after Cubism's dates, and a
Cubist painting so dated would look misfiled; read as the century, it is as plausible as Cubism's
share of the century. Every weight between two dates is the mean of the year kernel over the
years of both ranges. Pure numpy; `embeddings.evidence` is the one user.
"""
from __future__ import annotations

import numpy as np


def year_weights(gap: np.ndarray, early: float = 1.0) -> np.ndarray:
    """Gaussian weight of a year gap in kernel widths (painting's year minus the other's / width),
    the width scaled by `early` where the painting comes first. NaN gaps stay NaN."""
    return np.exp(-0.5 * np.where(gap < 0, gap / early, gap) ** 2)


def year_bounds(years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first (N,), last (N,)) years of dates given as (N,) single years or (N, 2) ranges; NaN undated."""
    years = np.asarray(years, float)
    if years.ndim == 1:
        return years, years
    return years[:, 0], years[:, 1]


def year_spread(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each dated member's whole years, first to last (rounded), each with an equal share:
    (member (P,) int, year (P,) int, share (P,) float, 1 / years in its range). Undated members
    (NaN first) have none."""
    dated = np.flatnonzero(~np.isnan(first))
    lo = np.round(first[dated]).astype(np.int64)
    hi = np.maximum(np.round(np.where(np.isnan(last[dated]), first[dated], last[dated])).astype(np.int64), lo)
    m = hi - lo + 1
    member = np.repeat(dated, m)
    step = np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m)
    return member, np.repeat(lo, m) + step, np.repeat(1.0 / m, m)


def pair_year_weights(first: np.ndarray, last: np.ndarray, span: np.ndarray, undated: float,
                      early: float = 1.0) -> np.ndarray:
    """(n, n) weight of member b's label for member a: `year_weights((year_a - year_b) / span[b],
    early)`, for a range the mean over its whole years (and over both ranges' for two);
    `undated` where either has no date. first, last, span (n,)."""
    dy = (first[:, None] - first[None, :]) / span[None, :]
    w = np.where(np.isnan(dy), undated, year_weights(dy, early))
    dated = ~np.isnan(first)
    if not (last[dated] > first[dated]).any():
        return w
    member, year, share = year_spread(first, last)
    origin = year.min()
    shares = np.zeros((len(first), year.max() - origin + 1))      # (n, Y) each member's date over the years
    shares[member, year - origin] = share
    gap = np.arange(shares.shape[1])[:, None] - np.arange(shares.shape[1])[None, :]
    rows = np.flatnonzero(dated)
    for s in np.unique(span[dated]):
        cols = rows[span[rows] == s]
        w[np.ix_(rows, cols)] = shares[rows] @ (year_weights(gap / s, early) @ shares[cols].T)
    return w
