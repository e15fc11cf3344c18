"""Copies of a picture in one split and one cross-fitting fold.

The same picture filed twice (WikiArt has thousands: a painting under two artists' pages, a copy
with "(1)" in its name) leaks across any split drawn painting by painting: a test painting whose
twin was trained on measures memory, and a cross-fitting head that trained on one copy scores the
other with its own label, so a wrong label carried by both copies looks right. Groups of byte-
identical files (same sha1) therefore move as one, and so do files that are one picture by their
pixels (a rescan, a re-saved copy: difference hashes within a few bits, trainer/picture_hash.py).
A cropped copy escapes the hash; the store reports near duplicates that cross splits.

Pure functions over numpy arrays.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Where a group's copies sit in different splits, they all go to the first of these they touch:
# test first (nothing seen in training may be scored as held out), then train (the copy stays
# learnable), then val.
SPLIT_PRIORITY = ("test", "train", "val")


def copy_groups(sha1s: list[str | None], near_pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(N,) int group id shared by paintings whose files are byte-identical (same sha1; None =
    unreadable, alone) or, through `near_pairs` (pairs_i, pairs_j (P,) int), one picture by their
    pixels (trainer/picture_hash.py), transitively; -1 for a painting without a copy. Ids are dense,
    in order of first appearance."""
    n = len(sha1s)
    i, j = ([], []) if near_pairs is None else (list(near_pairs[0]), list(near_pairs[1]))
    first: dict[str, int] = {}
    for k, s in enumerate(sha1s):
        if s is not None:
            if s in first:
                i.append(first[s]); j.append(k)
            else:
                first[s] = k
    out = np.full(n, -1, np.int64)
    if not i:
        return out
    graph = coo_matrix((np.ones(len(i)), (np.asarray(i), np.asarray(j))), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    in_group = np.bincount(comp)[comp] > 1
    ids: dict[int, int] = {}
    for k in np.flatnonzero(in_group):
        out[k] = ids.setdefault(int(comp[k]), len(ids))
    return out


def keep_copies_together(split: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, int]:
    """(split with every group in one split, how many paintings moved). split (N,) str, group (N,)
    int (-1 = alone). A group spread over several splits goes to the first of SPLIT_PRIORITY it
    touches; a split outside SPLIT_PRIORITY is left alone."""
    out = np.asarray(split, dtype=object).copy()
    moved = 0
    for g in np.unique(group[group >= 0]):
        rows = np.flatnonzero(group == g)
        present = set(out[rows])
        if len(present) < 2:
            continue
        target = next((s for s in SPLIT_PRIORITY if s in present), None)
        if target is None:
            continue
        moved += int((out[rows] != target).sum())
        out[rows] = target
    return out, moved


def copies_share_fold(fold: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(N,) fold with every copy group in the fold of its first member. fold, group (N,) int."""
    out = fold.copy()
    for g in np.unique(group[group >= 0]):
        rows = np.flatnonzero(group == g)
        out[rows] = out[rows[0]]
    return out


def head_saw_a_copy(fold: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(N,) bool: the cross-fitting head that scored the painting trained on one of its copies, a
    member of its group in another fold. fold (N,) int (-1 = not cross-fitted: never True), group
    (N,) int (-1 = no copy). `copies_share_fold` rules this out for the groups known before training
    (identical files, pictures whose difference hashes agree); a copy the hash misses (a crop) is
    found only in the trained embedding, and may sit anywhere."""
    out = np.zeros(len(fold), bool)
    ok = (group >= 0) & (fold >= 0)
    if not ok.any():
        return out
    g, f = group[ok], fold[ok]
    _, in_group, group_size = np.unique(g, return_inverse=True, return_counts=True)
    _, in_fold, fold_size = np.unique(g * (int(fold.max()) + 1) + f, return_inverse=True, return_counts=True)
    out[ok] = group_size[in_group] > fold_size[in_fold]      # some member of the group sits in another fold
    return out
