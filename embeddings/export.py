"""`artlens embed`: run the trained model over the whole data set and build the store.

Writes, beside any previous store (swapped in only when complete):
  artlens.duckdb  images, labels, predictions, embeddings, scores, projections, duplicate groups
  artlens.faiss   the nearest-neighbour index (ids = image_id)
and creates the tag log artlens.tags.duckdb if missing (never rewriting it).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from db.store import Paths, StoreError, build_store
from db.tags import open_tag_log
from embeddings import duplicates as dup
from embeddings.config import EmbedConfig, Forward
from embeddings.detectors import REVIEW_DEFAULT
from embeddings.evidence_table import Metadata
from embeddings.index import build_index, neighbours_excluding_self, save_index
from embeddings.project import pca_2d, umap_2d
from embeddings.quality import flag_counts, image_quality
from embeddings.score_stage import merge_crossfit, score_stage
from embeddings.tables import store_tables
from trainer.cache import pooled_means
from trainer.checkpoint import (Checkpoint, RunRecord, build_model, check_classes, load_checkpoint, pretrained_backbone,
                                resolve_run_dir)
from trainer.cli import UserError
from trainer.config import run_paintings
from trainer.data import picture_hashes
from trainer.features import check_images, extract_features
from trainer.loop import cached_batcher, image_batcher, predict
from trainer.model import EndToEnd
from trainer.texture import packed_channels

log = logging.getLogger("embeddings")


def run_training_labels(run_dir: Path, frame: pd.DataFrame, record: RunRecord) -> dict[str, np.ndarray]:
    """{task: (N,)} the labels the run trained and cross-fitted on: the data's labels, with the review
    decisions it applied (runs/<id>/label_changes.csv, written by `--apply-tags`) in force."""
    from trainer.relabel import CHANGE_COLUMNS, training_labels
    path = run_dir / "label_changes.csv"
    changes = (pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file()
               else pd.DataFrame(columns=CHANGE_COLUMNS))
    if len(changes):
        log.info("%s trained on %d reviewed labels that differ from the data; scores use them", run_dir.name,
                 len(changes))
    return training_labels(frame, changes, record.classes)


def backbone_pooled_features(root: Path, paths: list[str], record: RunRecord, cfg: "EmbedConfig",
                             sha1s: list[str | None] | None = None) -> np.ndarray:
    """(N, C) global-average-pooled maps of the pretrained, frozen backbone (for a fine-tuned run,
    whose own backbone has seen the labels); sha1s: the files' hashes where already read."""
    views, _, _, _ = extract_features(root, paths, pretrained_backbone(record), cfg.cache_dir, record.image_size,
                                      sha1s=sha1s, views=("orig",), batch_size=cfg.batch_size, device=cfg.device,
                                      desc="embed: frozen features", engine=cfg.engine)
    return pooled_means(views["orig"], np.arange(len(paths)), record.in_channels)


def forward_stage(cfg: EmbedConfig, ckpt: Checkpoint, ps) -> Forward:
    """Features (from the cache where present) and the trained head over every painting, in this process."""
    record = ckpt.record
    head, bb = build_model(ckpt)
    paths = ps.frame["path"].tolist()
    views, tta = None, None
    if ckpt.backbone_state:
        sha1s, ok, failed = check_images(ps.root, paths, ps.file_sha1s())
        model = EndToEnd(bb.net, head)
        batch = image_batcher(ps.root, paths, record.image_size, bb.mean, bb.std, 0)
    else:
        views, ok, sha1s, stats = extract_features(ps.root, paths, bb, cfg.cache_dir, record.image_size,
                                                   sha1s=ps.file_sha1s(),
                                                   views=("orig", "hflip") if record.tta else ("orig",),
                                                   batch_size=cfg.batch_size, device=cfg.device,
                                                   desc="embed: features", engine=cfg.engine)
        failed = stats.failed
        want = record.in_channels + packed_channels(record.texture_dim, *views["orig"].shape[2:4])
        if ok.any() and views["orig"].shape[1] != want:
            raise UserError(f"feature maps have {views['orig'].shape[1]} channels, checkpoint expects {want}")
        model = head
        batch = cached_batcher(views, 0)
        tta = cached_batcher(views, 0, "hflip") if record.tta else None
    if not ok.any():
        raise UserError(f"none of the {len(paths)} images under {ps.root} could be read; previous store left as it was")
    keep = np.flatnonzero(ok)
    emb, probs = predict(model.to(cfg.device), batch, keep, cfg.device, desc="embed: head", tta=tta)
    frame = ps.frame.iloc[keep].reset_index(drop=True)
    # label-free kNN: the pretrained backbone's maps (a fine-tuned or tail-tuned backbone saw the labels)
    pooled = pooled_means(views["orig"], keep, record.in_channels) if views is not None and not ckpt.tail_state \
        else backbone_pooled_features(ps.root, frame["path"].tolist(), record, cfg, [sha1s[i] for i in keep])
    return Forward(frame, [sha1s[i] for i in keep], emb, probs, pooled, failed)


def embed(cfg: EmbedConfig) -> Path:
    """The whole `artlens embed` command: forward stage, then store stage."""
    t_start = time.time()
    run_dir = resolve_run_dir(cfg.runs_dir, "") if not cfg.run else Path(cfg.run)
    ckpt = load_checkpoint(run_dir)
    record, tcfg = ckpt.record, ckpt.config
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
    data = cfg.data or record.data
    ps = run_paintings(tcfg, data, cfg.parse_names)
    check_classes(record, ps)
    if record.data_hash != ps.data_hash():
        log.warning("data set differs from the one %s was trained on (labels or files changed)", run_dir.name)
    t0 = time.time()
    if cfg.engine == "ray":
        from embeddings.ray_export import ray_forward_stage
        fw = ray_forward_stage(cfg, run_dir, ckpt, ps)
    else:
        fw = forward_stage(cfg, ckpt, ps)
    t_forward = time.time() - t0
    log.info("embedded %d paintings (%d unreadable skipped) in %.0fs", len(fw.frame), len(fw.failed), t_forward)
    times = store_stage(cfg, run_dir, record, ps.root, fw, paths)
    log.info("wrote %s and %s (%d paintings, dim %d) in %.0fs: forward %.0fs, %s", paths.store, paths.index,
             len(fw.frame), fw.emb.shape[1], time.time() - t_start, t_forward,
             ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    if fw.failed:
        log.warning("%d unreadable images were skipped: %s", len(fw.failed), "; ".join(fw.failed[:5]))
    return paths.store


def confirmed_pairs(root: Path, paths: list[str], sha1s: list[str | None], pi: np.ndarray, pj: np.ndarray,
                    psim: np.ndarray, max_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedding's near-duplicate pairs (pi, pj, psim (P,)) that are one picture by their pixels
    too (`duplicates.same_picture`; identical files always are), logged."""
    if max_share >= 1 or not len(pi):
        return pi, pj, psim
    identical = np.array([sha1s[i] is not None and sha1s[i] == sha1s[j] for i, j in zip(pi, pj)], bool)

    def hash_of(k: int):
        return picture_hashes(root, [paths[k]])[0]

    keep = identical.copy()
    keep[~identical] = dup.same_picture(pi[~identical], pj[~identical], hash_of, max_share)
    log.info("near-duplicates: %d pairs of other files by the embedding, %d of them one picture by their pixels",
             int((~identical).sum()), int((keep & ~identical).sum()))
    return pi[keep], pj[keep], psim[keep]


def store_stage(cfg: EmbedConfig, run_dir: Path, record: RunRecord, root: Path, fw: Forward, paths: Paths) -> dict:
    """Index, scores, duplicates, projections and tables from the forward stage's outputs, written as
    the store + FAISS index (swapped in whole). Returns seconds per part."""
    frame, sha1s, emb, failed = fw.frame, fw.sha1s, fw.emb, fw.failed
    store_path, index_path, tags_path = paths.store, paths.index, paths.tags
    n = len(frame)
    image_ids = np.arange(n, dtype=np.int64)   # image_id = position among readable paintings (sorted by path)
    given = {t: frame[t].to_numpy(np.int64) for t in record.tasks}
    labels = run_training_labels(run_dir, frame, record)   # = given unless the run applied review decisions
    n_classes = {t: len(record.classes[t]) for t in record.tasks}
    times = {}

    t0 = time.time()
    index, index_report = build_index(emb, image_ids, exact_limit=cfg.exact_limit)
    nb_ids, nb_sim = neighbours_excluding_self(index, emb, image_ids, record.knn_k)
    times["index"] = time.time() - t0

    t0 = time.time()
    if n <= cfg.exact_limit:
        pi, pj, psim = dup.duplicate_pairs_exact(emb, cfg.duplicate_threshold)
    else:  # exact pairs are quadratic in the collection: use the ANN neighbours found above instead
        r, c = np.nonzero(nb_sim >= cfg.duplicate_threshold)
        pi, pj, psim = r, nb_ids[r, c], nb_sim[r, c]
    pi, pj, psim = confirmed_pairs(root, frame["path"].tolist(), sha1s, pi, pj, psim, cfg.duplicate_hash_share)
    group, best = dup.duplicate_groups(n, pi, pj, psim, sha1s)
    conflicts = dup.conflicting_tasks(group, labels)
    in_group = group >= 0
    dup_df = pd.DataFrame({"group_id": group[in_group], "image_id": image_ids[in_group], "similarity": best[in_group],
                           "conflicting_tasks": [",".join(conflicts[g]) for g in group[in_group]]})
    log.info("near-duplicates: %d groups, %d with conflicting labels", len(conflicts),
             sum(1 for v in conflicts.values() if v))
    times["duplicates"] = time.time() - t0

    t0 = time.time()
    probs, emb_scores, source, fold = merge_crossfit(run_dir, frame["path"].tolist(), labels, fw.probs, emb,
                                                     nb_ids, n_classes)
    scored = score_stage(labels, probs, emb_scores, fw.pooled, n_classes, record.knn_k, cfg.exact_limit,
                         Metadata.from_frame(frame).with_copies(group), record.classes, fold)
    times["scores"] = time.time() - t0

    t0 = time.time()
    proj = [pd.DataFrame({"image_id": image_ids, "method": "pca", **dict(zip("xy", pca_2d(emb).T))})]
    if cfg.projection == "umap" and n >= 4:
        log.info("UMAP on %d paintings (first use compiles numba: about a minute)", n)
        proj.append(pd.DataFrame({"image_id": image_ids, "method": "umap", **dict(zip("xy", umap_2d(emb).T))}))
    times["projection"] = time.time() - t0

    t0 = time.time()
    quality = image_quality(root, frame["path"].tolist())
    log.info("image quality: %s", ", ".join(f"{k} {v}" for k, v in flag_counts(quality["flags"]).items())
             or "no flags")
    times["quality"] = time.time() - t0

    t0 = time.time()
    tables = store_tables(run_dir, record, root, frame, sha1s, emb, given, labels, probs, source, scored, proj, dup_df,
                          quality)
    info = {"run_id": record.run_id, "run_dir": str(run_dir.resolve()), "data_root": str(root.resolve()),
            "data": str(Path(cfg.data or record.data).resolve()),
            "index_path": str(index_path.resolve()), "index_kind": index_report["kind"],
            "index_recall_at_10": f"{index_report['recall_at_10']:.4f}", "embedding_dim": str(emb.shape[1]),
            "paintings": str(n), "unreadable": json.dumps(failed), "tasks": ",".join(record.tasks),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "cross_fitted": str(bool((np.concatenate(list(source.values())) == "cross-fit").any())).lower(),
            "folds": str(record.folds), "knn_k": str(record.knn_k), "review_default": REVIEW_DEFAULT,
            "duplicate_threshold": str(cfg.duplicate_threshold),
            "duplicate_hash_share": str(cfg.duplicate_hash_share),
            "projection": cfg.projection, "applied_tags": json.dumps(record.applied_tags or {})}
    try:
        save_index(index, index_path)
        build_store(store_path, tables, info)
    except OSError as e:
        raise UserError(f"cannot write the store: {e.strerror or e} ({e.filename or store_path}); "
                        "the previous store is unchanged") from None
    try:
        open_tag_log(tags_path).ensure()
    except StoreError as e:
        raise UserError(str(e)) from None
    times["write"] = time.time() - t0
    return times
