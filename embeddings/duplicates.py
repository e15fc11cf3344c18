"""Near-duplicate groups: paintings whose embeddings are (almost) identical and whose pixels agree
(a rescan, another file of the same picture), or whose files are identical.

The embedding alone cannot tell a rescan from a series: Warhol's soup cans sit at cosine 0.97 in
wikiart-mini, near the 0.98 a rescan of Rubens' *Elevation of the Cross* clears. Being one picture
has consequences (no kind of evidence reads a copy's label, a review decision covers its copies),
so an embedding pair is kept only where a difference hash of the two images agrees too.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from trainer.picture_hash import MAX_HASH_SHARE
from trainer.splits import copy_groups


def duplicate_pairs_exact(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, with cosine similarity >= threshold, by FAISS range search (exact).

    Returns (i (P,), j (P,), similarity (P,)) as row indices into vectors (N, D).
    """
    import faiss

    from embeddings.index import normalize
    x = normalize(vectors)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, sims, nbrs = index.range_search(x, float(threshold))
    rows = np.repeat(np.arange(len(x)), np.diff(lims).astype(np.int64))
    keep = rows < nbrs
    return rows[keep], nbrs[keep].astype(np.int64), sims[keep]


def same_picture(pairs_i: np.ndarray, pairs_j: np.ndarray, hash_of: Callable[[int], np.ndarray | None],
                 max_share: float = MAX_HASH_SHARE) -> np.ndarray:
    """(P,) bool: which candidate pairs (i, j) are one picture by their pixels, difference hashes
    (`hash_of(row)`, None where the image cannot be read: never the same) differing in at most
    `max_share` of their bits. Each image is hashed once."""
    hashes = {int(k): hash_of(int(k)) for k in np.unique(np.r_[pairs_i, pairs_j])}
    out = np.zeros(len(pairs_i), bool)
    for n, (i, j) in enumerate(zip(pairs_i, pairs_j)):
        a, b = hashes[int(i)], hashes[int(j)]
        out[n] = a is not None and b is not None and np.mean(a != b) <= max_share
    return out


def duplicate_groups(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray, sims: np.ndarray,
                     sha1s: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the duplicate graph (pairs plus identical file hashes), grouped as
    `make train` groups its copies (`trainer.splits.copy_groups`).

    Returns (group (N,) int, -1 for paintings with no duplicate; best similarity (N,) float, 1 for
    a painting with an identical file).
    """
    sha1s = list(sha1s) if sha1s is not None else [None] * n
    pairs_i, pairs_j = np.asarray(pairs_i, np.int64), np.asarray(pairs_j, np.int64)
    group = copy_groups(sha1s, (pairs_i, pairs_j))
    best = np.zeros(n, np.float32)
    sims = np.asarray(sims, np.float32)
    np.maximum.at(best, pairs_i, sims)
    np.maximum.at(best, pairs_j, sims)
    files = Counter(h for h in sha1s if h is not None)
    identical = np.array([h is not None and files[h] > 1 for h in sha1s], bool)
    best[identical] = np.maximum(best[identical], 1.0)
    return group, best


def conflicting_tasks(group: np.ndarray, labels: dict[str, np.ndarray]) -> dict[int, list[str]]:
    """group id -> tasks for which its members carry different known labels."""
    out: dict[int, list[str]] = {}
    for g in np.unique(group[group >= 0]):
        m = group == g
        out[int(g)] = [t for t, y in labels.items() if len(set(y[m][y[m] >= 0].tolist())) > 1]
    return out
