"""FAISS index over L2-normalised embeddings (inner product = cosine similarity).

Exact `IndexFlatIP` up to `exact_limit` paintings; above it HNSW, whose efSearch is raised until
recall@10 against exact search on a sample reaches the target. ids are the store's image_id.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger("embeddings.index")


def normalize(x: np.ndarray) -> np.ndarray:
    """(N, D) -> float32 rows of unit length (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean share of each exact top-k row found in the approximate top-k row. (n, k) each."""
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits)) if hits else float("nan")


def build_index(vectors: np.ndarray, ids: np.ndarray, exact_limit: int = 20_000, target_recall: float = 0.95,
                sample: int = 500, seed: int = 0) -> tuple[faiss.Index, dict]:
    """Index unit-length `vectors` (N, D) under `ids` (N,) int64. Returns (index, report)."""
    x = normalize(vectors)
    ids = np.asarray(ids, dtype=np.int64)
    n, d = x.shape
    if n <= exact_limit:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(x, ids)
        return index, {"kind": "exact (IndexFlatIP)", "recall_at_10": 1.0, "n": n, "dim": d}
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(x, ids)
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    exact.add_with_ids(x, ids)
    q = x[np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)]
    _, truth = exact.search(q, 10)
    recall = 0.0
    for ef in (32, 64, 128, 256, 512, 1024):
        hnsw.hnsw.efSearch = ef
        _, got = index.search(q, 10)
        recall = recall_at_k(got, truth)
        if recall >= target_recall:
            break
    log.info("HNSW index: efSearch %d, recall@10 %.3f on %d sampled queries", ef, recall, len(q))
    return index, {"kind": f"HNSW (M=32, efSearch={ef})", "recall_at_10": recall, "n": n, "dim": d}


def save_index(index: faiss.Index, path: str | Path) -> None:
    """Write atomically: a reader never sees a half-written index."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_index(path: str | Path) -> faiss.Index:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no FAISS index at {path}: run `make embed` first")
    return faiss.read_index(str(path))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities (n, k), ids (n, k)); ids -1 where fewer than k exist."""
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(f"query vectors have {queries.shape[-1]} dims, the index has {index.d}")
    return index.search(normalize(queries), k)


def neighbours_excluding_self(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, k: int,
                              batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row: its k nearest other ids and similarities. (N, k) each, -1 / NaN padded."""
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_sim = np.full((len(ids), k), np.nan, np.float32)
    for s in range(0, len(ids), batch):
        sim, nb = search(index, vectors[s:s + batch], k + 1)
        for r in range(len(nb)):
            keep = nb[r] != ids[s + r]
            row_ids, row_sim = nb[r][keep][:k], sim[r][keep][:k]
            out_ids[s + r, :len(row_ids)] = row_ids
            out_sim[s + r, :len(row_sim)] = row_sim
    return out_ids, out_sim
