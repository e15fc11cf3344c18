"""The embed command's settings (`EmbedConfig`, each a CLI flag) and what its forward stage hands
the store stage (`Forward`): shared by the in-process and the Ray forward stages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from db.tags import TAG_LOG_HELP
from trainer.cli import field


@dataclass
class EmbedConfig:
    run: str = field("", "run folder (default: runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    data: str = field("", "data root or manifest; default: the one the model was trained on")
    store: str = field("artlens.duckdb", "DuckDB store to write")
    index: str = field("", "FAISS index to write; default: the store path with .faiss")
    tags: str = field("", TAG_LOG_HELP)
    cache_dir: str = field("cache", "feature-map cache folder")
    duplicate_threshold: float = field(0.98, "cosine similarity at or above which paintings are near-duplicates "
                                             "(copies of one painting: no kind of evidence reads a copy's label)",
                                        bounds=(0, 1))
    duplicate_hash_share: float = field(0.15, "and whose images' 256-bit difference hashes differ in at most this "
                                              "share of the bits (a rescan differs in a few, a series in dozens); "
                                              "1 trusts the embedding alone", bounds=(0, 1))
    projection: str = field("umap", "2-D projection for Explore (pca is always stored too)", choices=["umap", "pca"])
    exact_limit: int = field(20_000, "largest collection indexed exactly (search cost grows with its square); "
                                     "above it HNSW, tuned to recall@10 >= 0.95")
    device: str = field("cpu", "cpu or cuda")
    engine: str = field("auto", "frozen-backbone inference: onnx (ONNX Runtime), eager (PyTorch), auto = onnx on a "
                                "CPU; ray = features + head as a Ray Data pipeline (pip install -r requirements-ray.txt)",
                        choices=["auto", "onnx", "eager", "ray"])
    ray_address: str = field("", "--engine ray: the cluster to join (ray://host:10001 or auto); empty = start a local one")
    ray_cpus: int = field(0, "--engine ray, local instance: CPUs to give it (0 = all)")
    ray_gpus: float = field(0.0, "--engine ray: GPUs per actor (0 = CPU actors)")
    ray_actors: int = field(0, "--engine ray: inference actors (0 = one per CPU, or per GPU with --ray-gpus)")
    shard_dir: str = field("", "--engine ray: where the Parquet shards go (a path every node can write); "
                               "default <store stem>.shards/")
    batch_size: int = field(64, "images per forward pass")
    parse_names: bool = field(True, "read artist, title and year from WikiArt-style file names "
                                    "(<artist-slug>_<title-slug>[-<year>].jpg) where the data has no such columns; "
                                    "they are evidence for the review queue (--no-parse-names: the picture alone)")


@dataclass
class Forward:
    """What the forward stage hands the store stage, for the N readable paintings (sorted by path).

    frame: their rows of the data; sha1s (N,); emb (N, D) final-model embeddings; probs {task: (N, C)}
    final-model softmax; pooled (N, C') pretrained-backbone features for the label-free kNN;
    failed: 'path: reason' for the paintings left out.
    """
    frame: pd.DataFrame
    sha1s: list[str]
    emb: np.ndarray
    probs: dict[str, np.ndarray]
    pooled: np.ndarray
    failed: list[str]


@dataclass
class ExplainConfig:
    path: str = field("", "image file to explain", positional=True)
    task: str = field("style", "which task's classes to explain")
    label: str = field("", "the painting's given label (class name); default: looked up in --store by path")
    run: str = field("", "run folder (default: runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    store: str = field("artlens.duckdb", "store to look the given label up in")
    out: str = field("", "PNG to write; default: <image stem>.gradcam-<task>.png in the current folder")
