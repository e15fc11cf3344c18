"""The store's tables (db/schema.py) as DataFrames, from the embed command's stages."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings.score_stage import Scored
from trainer.checkpoint import RunRecord


def store_tables(run_dir: Path, record: RunRecord, root, frame, sha1s, emb, given, labels, probs, source,
                 scored: Scored, proj, dup_df, quality: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The store's tables (db/schema.py) as DataFrames; quality: embeddings.quality.image_quality of
    frame's paths, in order."""
    n = len(frame)
    image_ids = np.arange(n, dtype=np.int64)
    size = quality[["width", "height"]].astype("Int64")
    pred_rows = []
    for t in record.tasks:
        t3, p3 = top3(probs[t])
        y = labels[t]
        pg = np.where(y >= 0, probs[t][np.arange(n), np.maximum(y, 0)], np.nan)
        pred_rows.append(pd.DataFrame({"image_id": image_ids, "task": t, "probs": list(probs[t].astype(np.float32)),
                                       "predicted": probs[t].argmax(1).astype(np.int32), "p_given": pg,
                                       "top3": list(t3.astype(np.int32)), "top3_probs": list(p3.astype(np.float32)),
                                       "source": source[t], "wrong_weight": scored.wrong_weight[t]}))
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())["metrics"] if metrics_path.is_file() else {}
    bench_path = run_dir / "noise.json"
    benchmark = json.loads(bench_path.read_text()) if bench_path.is_file() else {}
    ckpt_sha1 = hashlib.sha1((run_dir / "model.pt").read_bytes()).hexdigest()
    return {
        "runs": pd.DataFrame([{"run_id": record.run_id, "checkpoint_sha1": ckpt_sha1, "arch": record.arch,
                               "backbone": record.backbone, "weights": record.weights,
                               "image_size": record.image_size, "embedding_dim": record.embedding_dim,
                               "data_root": record.data_root, "data_hash": record.data_hash,
                               "created": pd.Timestamp(record.created), "metrics": json.dumps(metrics),
                               "benchmark": json.dumps(benchmark)}]),
        "images": pd.DataFrame({"image_id": image_ids, "path": frame["path"], "sha1": sha1s,
                                "width": size["width"].to_numpy(), "height": size["height"].to_numpy(),
                                "split": frame["split"], **metadata_columns(frame)}),
        "classes": pd.DataFrame([{"task": t, "class_index": i, "name": c} for t in record.tasks
                                 for i, c in enumerate(record.classes[t])]),
        "labels": pd.concat([pd.DataFrame({"image_id": image_ids, "task": t,
                                           "class_index": pd.Series(given[t]).where(given[t] >= 0).astype("Int64"),
                                           "training_index": pd.Series(labels[t]).where(labels[t] >= 0).astype("Int64")})
                             for t in record.tasks]),
        "predictions": pd.concat(pred_rows),
        "embeddings": pd.DataFrame({"image_id": image_ids, "faiss_id": image_ids, "vector": list(emb.astype(np.float32))}),
        "scores": scored.scores,
        "projections": pd.concat(proj),
        "duplicate_groups": dup_df,
        "wrong_label_estimates": scored.wrong,
        "evidence": scored.evidence,
        "image_quality": pd.DataFrame({"image_id": image_ids, **{c: quality[c].to_numpy() for c in
                                       ("brightness", "colour", "sharpness", "entropy", "flags")}}),
    }

def metadata_columns(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The images table's metadata columns (artist_name, title, year_lo, year_hi, date_text)."""
    n = len(frame)
    empty = pd.Series([""] * n, dtype=object)
    return {"artist_name": frame.get("artist_name", empty).fillna("").astype(str),
            "title": frame.get("title", empty).fillna("").astype(str),
            "year_lo": frame.get("year_lo", pd.Series(np.full(n, np.nan))).astype(float),
            "year_hi": frame.get("year_hi", pd.Series(np.full(n, np.nan))).astype(float),
            "date_text": frame.get("date_text", empty).fillna("").astype(str)}

def top3(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes (N, 3), probabilities (N, 3)), most likely first."""
    k = min(3, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, 1)
