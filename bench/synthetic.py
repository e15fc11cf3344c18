"""`artlens bench synthetic`: a synthetic store of N paintings for dashboard and query benchmarks.

Clustered random embeddings (D dims), softmax from a noisy linear model, the real detectors,
FAISS index (HNSW above 50k) and PCA projection, written through db.build_store like a real
store. Thumbnails point at real wikiart-mini files (cycled), so pages render real images.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from db.store import Paths, build_store
from db.tags import open_tag_log
from embeddings.index import build_index, neighbours_excluding_self, save_index
from embeddings.project import pca_2d
from embeddings.prevalence import wrong_label_weights
from embeddings.detectors import DetectorInputs, detector_ranks, detector_table
from embeddings.scores import cross_task_table, neighbour_labels, reference_scores
from trainer.cli import field, parse_config

log = logging.getLogger("bench.synthetic")
MINI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wikiart-mini"


@dataclass
class SyntheticConfig:
    n: int = field(100_000, "paintings")
    dim: int = field(512, "embedding dimension")
    out: str = field("bench/synthetic/artlens.duckdb", "store path (index and tags beside it)")
    seed: int = field(0, "random seed")


def make_store(cfg: SyntheticConfig) -> dict:
    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    tasks = {"style": 27, "genre": 10, "artist": 24}
    images = sorted(p.relative_to(MINI).as_posix() for p in MINI.rglob("*.jpg"))
    n = cfg.n
    paths = [f"{images[i % len(images)]}" if i < len(images) else f"synthetic/{i:07d}.jpg" for i in range(n)]
    style = rng.integers(0, tasks["style"], n)
    centers = rng.normal(size=(tasks["style"], cfg.dim)).astype(np.float32) * 2
    emb = (centers[style] + rng.normal(size=(n, cfg.dim)).astype(np.float32))
    ids = np.arange(n)
    index, report = build_index(emb, ids)
    nb, nb_sim = neighbours_excluding_self(index, emb, ids, 10)
    tables = {"images": pd.DataFrame({"image_id": ids, "path": paths, "sha1": [f"{i:040x}" for i in ids],
                                      "width": 224, "height": 224,
                                      "split": rng.choice(["train", "val", "test"], n, p=[.6, .3, .1])}),
              "classes": pd.DataFrame([{"task": t, "class_index": i, "name": f"{t}_{i:02d}"}
                                       for t, c in tasks.items() for i in range(c)])}
    labels, preds, scores, given = [], [], [], {}
    for t, c in tasks.items():
        y = style % c if t != "style" else style.copy()
        flip = rng.random(n) < 0.1
        y[flip] = rng.integers(0, c, flip.sum())
        logits = rng.normal(size=(n, c)).astype(np.float32)
        logits[ids, style % c] += 3
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        top = np.argsort(-probs, 1)[:, :3]
        labels.append(pd.DataFrame({"image_id": ids, "task": t, "class_index": y, "training_index": y}))
        preds.append(pd.DataFrame({"image_id": ids, "task": t, "probs": list(probs), "predicted": probs.argmax(1),
                                   "p_given": probs[ids, y], "top3": list(top.astype(np.int32)),
                                   "top3_probs": list(np.take_along_axis(probs, top, 1)), "source": "model",
                                   "wrong_weight": wrong_label_weights(y, probs)}))
        given[t] = y
        nb_y = neighbour_labels(y, nb)   # synthetic: one embedding stands in for head and backbone
        x = DetectorInputs(y, probs, reference_scores(y, emb, y, emb, nb_y, c), nb_y, cross_task_table(given, tasks).get(t),
                           backbone_neighbour_sims=nb_sim)
        sc, fl = detector_table(x)
        ranks = detector_ranks(sc, x)
        for d, s in sc.items():
            ok = ~np.isnan(s)    # the store keeps scored rows only, as make embed does
            scores.append(pd.DataFrame({"image_id": ids[ok], "task": t, "detector": d, "score": s[ok],
                                        "rank": ranks[d][ok], "flag": fl[d][ok]}))
    xy = pca_2d(emb)
    tables.update({"labels": pd.concat(labels), "predictions": pd.concat(preds), "scores": pd.concat(scores),
                   "embeddings": pd.DataFrame({"image_id": ids, "faiss_id": ids, "vector": list(emb)}),
                   "projections": pd.concat([pd.DataFrame({"image_id": ids, "method": m, "x": xy[:, 0], "y": xy[:, 1]})
                                             for m in ("umap", "pca")]),
                   "runs": pd.DataFrame([{"run_id": "synthetic", "arch": "synthetic", "backbone": "none",
                                          "weights": "none", "image_size": 224, "embedding_dim": cfg.dim,
                                          "data_root": str(MINI.resolve()), "data_hash": "", "metrics": "{}",
                                          "benchmark": "{}", "created": pd.Timestamp.now()}])})
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = Paths.from_store(out)
    save_index(index, paths.index)
    build_store(out, tables, {"run_id": "synthetic", "run_dir": "", "data_root": str(MINI.resolve()),
                              "index_kind": report["kind"], "embedding_dim": str(cfg.dim), "paintings": str(n),
                              "cross_fitted": "false", "tasks": ",".join(tasks)})
    open_tag_log(paths.tags).ensure()
    log.info("synthetic store of %d paintings at %s in %.0fs", n, out, time.time() - t0)
    return {"store": str(out), "seconds": time.time() - t0, "index": report}


def main(argv: Sequence[str] | None = None) -> dict:
    return make_store(parse_config(SyntheticConfig, argv, "artlens bench synthetic", __doc__.split("\n\n")[0]))


if __name__ == "__main__":
    import sys

    from trainer.cli import run_cli
    sys.exit(run_cli(main))
