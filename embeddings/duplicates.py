"""Near-duplicate groups: paintings whose embeddings are (almost) identical and whose pixels agree
(a rescan, another file of the same picture), or whose files are identical.

The embedding alone cannot tell a rescan from a series: Warhol's soup cans sit at cosine 0.97 in
wikiart-mini, near the 0.98 a rescan of Rubens' *Elevation of the Cross* clears. Being one picture
has consequences (no kind of evidence reads a copy's label, a review decision covers its copies),
so an embedding pair is kept only where a difference hash of the two images agrees too.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from trainer.picture_hash import HASH_SIZE, MAX_HASH_SHARE, difference_hash  # noqa: F401 (one hash for make train and make embed)


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
    """Connected components of the duplicate graph (pairs plus identical file hashes).

    Returns (group (N,) int, -1 for paintings with no duplicate; best similarity (N,) float).
    """
    i, j, s = list(pairs_i), list(pairs_j), list(sims)
    if sha1s is not None:
        first: dict[str, int] = {}
        for k, h in enumerate(sha1s):
            if h is None:
                continue
            if h in first:
                i.append(first[h]); j.append(k); s.append(1.0)
            else:
                first[h] = k
    best = np.zeros(n, np.float32)
    if not i:
        return np.full(n, -1), best
    i, j, s = np.array(i), np.array(j), np.array(s, np.float32)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    np.maximum.at(best, i, s)
    np.maximum.at(best, j, s)
    sizes = np.bincount(comp)
    group = np.where(sizes[comp] > 1, comp, -1)
    # renumber groups 0..G-1 in order of first member
    uniq = {g: k for k, g in enumerate(dict.fromkeys(group[group >= 0]))}
    return np.array([uniq.get(g, -1) for g in group]), best


def conflicting_tasks(group: np.ndarray, labels: dict[str, np.ndarray]) -> dict[int, list[str]]:
    """group id -> tasks for which its members carry different known labels."""
    out: dict[int, list[str]] = {}
    for g in np.unique(group[group >= 0]):
        m = group == g
        out[int(g)] = [t for t, y in labels.items() if len(set(y[m][y[m] >= 0].tolist())) > 1]
    return out
