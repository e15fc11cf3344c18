"""2-D projections of the embeddings for the Explore scatter."""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("embeddings.project")


def pca_2d(x: np.ndarray, dims: int = 2) -> np.ndarray:
    """(N, D) -> (N, dims) principal components (centred, via SVD)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return (u[:, :dims] * s[:dims]).astype(np.float32)


def umap_2d(x: np.ndarray, n_neighbors: int = 15, seed: int = 0, pca_above: int = 20_000) -> np.ndarray:
    """(N, D) -> (N, 2) UMAP with cosine metric; PCA to 50 dims first above `pca_above` points."""
    import umap
    x = np.asarray(x, dtype=np.float32)
    if len(x) > pca_above and x.shape[1] > 50:
        x = pca_2d(x, 50)
    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, metric="cosine", random_state=seed,
                        low_memory=True, verbose=False)
    return reducer.fit_transform(x).astype(np.float32)
