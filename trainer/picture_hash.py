"""Pictures that are one picture by their pixels: a 256-bit difference hash per image.

A rescan or a re-saved copy of a painting is another file (another sha1) of the same picture. Its
difference hash differs in a few bits (wikiart-mini's one rescan pair, Rubens' *Elevation of the
Cross*: 3 of 256), a crop or a reframing in more, and two distinct paintings in dozens (its
nearest distinct pairs: 22-26 bits). `make train` keeps such pictures in one split and one
cross-fitting fold (a false pair costs nothing there); `make embed` asks the embedding to agree
too before it calls two files one painting (embeddings/duplicates.py).

Pure functions over PIL images and numpy arrays.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# A difference hash of HASH_SIZE x HASH_SIZE bits; MAX_HASH_SHARE: at most this share of the bits
# may differ between two files of one picture, the usual tolerance for difference hashes (about 10
# of 64). Warhol's soup cans, a series, differ in 48 of 256 (0.19).
HASH_SIZE, MAX_HASH_SHARE = 16, 0.15


# A comparison between two thumbnail pixels less than a grey level apart says nothing (a flat area
# hashes to zeros in every picture): a picture with fewer than this share of informative
# comparisons is too flat to tell apart by its hash. wikiart-mini's flattest painting (a hard-edge
# McLaughlin) has 0.37, its median 0.97; a blank or synthetic flat image has 0.
MIN_INFORMATIVE_SHARE = 0.25


def difference_hash(image: Image.Image, size: int = HASH_SIZE) -> np.ndarray | None:
    """(size * size,) bool difference hash of an image: its grey (size + 1) x size thumbnail, each
    pixel compared with its right neighbour; None for a picture too flat to identify by it
    (MIN_INFORMATIVE_SHARE). Insensitive to scale, JPEG quality and mild colour changes; a crop or
    a reframing moves it."""
    grey = np.asarray(image.convert("L").resize((size + 1, size), Image.LANCZOS), dtype=np.float32)
    step = grey[:, 1:] - grey[:, :-1]
    if np.mean(np.abs(step) >= 1) < MIN_INFORMATIVE_SHARE:
        return None
    return (step > 0).ravel()


def near_copy_pairs(hashes: list[np.ndarray | None], max_share: float = MAX_HASH_SHARE
                    ) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, of hashes ((B,) bool each, None = unreadable: never paired) that
    differ in at most `max_share` of their B bits. Exact, by FAISS binary range search (about 5 s
    for 100,000 pictures on 2 cores). Returns (pairs_i, pairs_j), (P,) int64 each."""
    import faiss      # here, so `artlens train --help` answers without loading it

    rows = np.array([k for k, h in enumerate(hashes) if h is not None], np.int64)
    if len(rows) < 2 or max_share <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    packed = np.packbits(np.stack([hashes[k] for k in rows]).astype(bool), axis=1)
    bits = packed.shape[1] * 8
    index = faiss.IndexBinaryFlat(bits)
    index.add(packed)
    max_bits = int(np.floor(max_share * bits + 1e-9))
    lims, dist, nb = index.range_search(packed, max_bits + 1)     # radius is exclusive
    q = np.repeat(np.arange(len(rows)), np.diff(lims).astype(np.int64))
    nb = nb.astype(np.int64)
    keep = (q < nb) & (dist <= max_bits)
    return rows[q[keep]], rows[nb[keep]]
