"""`make bench ARGS="--steps scale"`: every stage of `make train embed` at 10k, 30k and 100k paintings.

Features: real backbone work (what `make train` runs: hash, decode, Lite0 stem on ONNX Runtime,
orig + hflip, cache write) on a 10k collection made of wikiart-mini images reused under new names
with light augmentation; larger sizes use its measured rate. Later stages run on stage maps drawn
to look like real ones (a real wikiart-mini map + 10% Gaussian noise per channel, that painting's
labels), written through the product's cache, then the product's own functions: one head epoch
(`fit`), one cross-fitting fold (`cross_fit_fold`, x K for the total), the export forward
(`predict` + pooled pretrained features) and the store stage (`store_stage`: FAISS, scores,
duplicates, UMAP, DuckDB write). Each size runs in its own process, so its peak memory is its own.
"""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / ".." / "shared" / "data" / "wikiart-mini"


# ------------------------------------------------------------------ a 10k collection of real JPEGs
def _augment_copy(args) -> None:
    src, dst, seed = args
    from PIL import Image, ImageEnhance
    rng = np.random.default_rng(seed)
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = rng.uniform(0.9, 1.0)
        cw, ch = int(w * s), int(h * s)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = im.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.9, 1.1))
        im.save(dst, quality=int(rng.integers(85, 96)))


def make_collection(n: int, out: Path) -> Path:
    """n paintings under out/: wikiart-mini images cycled under new names, each lightly augmented
    (crop 90-100%, flip, brightness +-10%, JPEG q85-95) so every file and sha1 is new. Returns the
    manifest (path, artist, genre, style, split)."""
    from trainer.data import load_paintings
    ps = load_paintings(MINI, test_fraction=0)
    src = ps.frame.iloc[np.arange(n) % len(ps.frame)].reset_index(drop=True)
    rel = [f"{Path(p).parent}/{k:06d}-{Path(p).name}" for k, p in enumerate(src["path"])]
    for d in {str(Path(r).parent) for r in rel}:
        (out / d).mkdir(parents=True, exist_ok=True)
    jobs = [(ps.root / p, out / r, k) for k, (p, r) in enumerate(zip(src["path"], rel))]
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_augment_copy, jobs, chunksize=64)
    frame = pd.DataFrame({"path": rel, "split": "train"})
    for t in ps.tasks:
        frame[t] = [ps.classes[t][i] if i >= 0 else "" for i in src[t]]
    manifest = out / "manifest.csv"
    frame[["path", "artist", "genre", "style", "split"]].to_csv(manifest, index=False)
    return manifest


def step_scale_features(n: int) -> dict:
    """The feature stage of a cold `make train` (default settings) on an n-painting collection."""
    import torch

    from trainer.backbones import build_backbone
    from trainer.data import load_paintings
    from trainer.features import extract_features, training_views
    torch.set_num_threads(os.cpu_count())
    with tempfile.TemporaryDirectory(dir=os.environ.get("ARTLENS_BENCH_TMP")) as tmp:
        t0 = time.perf_counter()
        manifest = make_collection(n, Path(tmp) / "data")
        make_s = time.perf_counter() - t0
        ps = load_paintings(manifest, test_fraction=0.15)
        bb = build_backbone("efficientnet_lite0", with_texture=True)   # the default run's stem
        t0 = time.perf_counter()
        _, ok, _, stats = extract_features(ps.root, ps.frame["path"].tolist(), bb, Path(tmp) / "cache", 224,
                                           views=training_views(0), stage=True)
        sec = time.perf_counter() - t0
    return {"n": n, "seconds": sec, "img_s": n / sec, "maps_s": stats.misses / sec, "readable": int(ok.sum()),
            "make_collection_s": make_s}


# ------------------------------------------------------------------ later stages on drawn maps
TEXTURE_CACHE = "efficientnet_lite0-texture"   # Backbone.cache_name of the default run's backbone


def real_stage_maps(cache_dir: str = "cache"):
    """(maps {view: (M, 204, 7, 7) float16: the stage map + packed texture statistics}, labels
    {task: (M,)}, classes) of wikiart-mini, through the product's cache (computed once if the
    user's cache lacks them)."""
    from trainer.backbones import build_backbone
    from trainer.data import load_paintings
    from trainer.features import extract_features
    ps = load_paintings(MINI, test_fraction=0)
    views, ok, _, _ = extract_features(ps.root, ps.frame["path"].tolist(), build_backbone("efficientnet_lite0", with_texture=True),
                                       cache_dir, 224, views=("orig", "hflip"), stage=True)
    keep = np.flatnonzero(ok)
    return ({v: np.asarray(m[keep]) for v, m in views.items()}, {t: ps.labels(t)[keep] for t in ps.tasks},
            ps.classes)


def drawn_collection(n: int, cache_dir: Path, seed: int = 0):
    """Write n drawn paintings' stage maps (orig + hflip) into a FeatureCache under cache_dir.
    Returns (sha1s (n,), labels {task: (n,)}, classes)."""
    from trainer.cache import FeatureCache
    real, real_labels, classes = real_stage_maps()
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(real["orig"]), n)
    sd = {v: m.astype(np.float32).std((0, 2, 3), keepdims=True)[0] for v, m in real.items()}
    cache = FeatureCache(cache_dir, TEXTURE_CACHE, 224, stage=True)
    sha1s = [f"{k:040x}" for k in range(n)]
    for s in range(0, n, 4096):
        rows = src[s:s + 4096]
        for v, m in real.items():
            noise = rng.standard_normal((len(rows), *m.shape[1:]), dtype=np.float32) * (0.1 * sd[v])
            cache.write_shard(v, sha1s[s:s + 4096], (m[rows].astype(np.float32) + noise).astype(np.float16))
    return sha1s, {t: y[src] for t, y in real_labels.items()}, classes


@dataclass
class _Drawn:
    """A drawn collection ready for the product's training functions (see `_draw`)."""
    n: int
    tmp: Path
    cfg: object
    sha1s: list
    labels: dict
    classes: dict
    cache: object
    views: dict
    splits: dict
    fit_rows: np.ndarray
    stop_rows: np.ndarray
    class_weights: dict
    backbone: object
    make_model: object
    batch: object


def _draw(n: int, tmp: Path, out: dict) -> _Drawn:
    """n drawn stage maps in the product's cache, the split `train()` would make (15% test, 10% of
    the rest for val) and a model factory for the default head."""
    from trainer.backbones import build_backbone
    from trainer.cache import FeatureCache
    from trainer.config import TrainConfig
    from trainer.features import maps_for_run
    from trainer.loop import cached_batcher, class_weights
    from trainer.model import CRNNClassifier, TailHead
    from trainer.train import final_rows
    cfg = TrainConfig()
    t0 = time.perf_counter()
    sha1s, labels, classes = drawn_collection(n, tmp / "cache")
    out["draw_maps_s"] = time.perf_counter() - t0
    cache = FeatureCache(tmp / "cache", TEXTURE_CACHE, 224, stage=True)
    views = maps_for_run({v: cache.maps(v, sha1s) for v in ("orig", "hflip")})
    out["maps_in_ram"] = isinstance(views["orig"], np.ndarray)
    perm = np.random.default_rng(0).permutation(n)
    splits = {"test": perm[:int(0.15 * n)], "val": perm[int(0.15 * n):int(0.235 * n)], "train": perm[int(0.235 * n):]}
    fit_rows, stop_rows = final_rows(cfg, splits)   # what train() fits on
    ncls = {t: len(classes[t]) for t in labels}
    bb = build_backbone("efficientnet_lite0", with_texture=True)
    pristine = copy.deepcopy(bb.tail)

    def make_model():
        return TailHead(copy.deepcopy(pristine), CRNNClassifier(cfg.arch, bb.channels, ncls, cfg.dropout, bb.texture_dim))
    return _Drawn(n, tmp, cfg, sha1s, labels, classes, cache, views, splits, fit_rows, stop_rows,
                  {t: class_weights(labels[t][fit_rows], ncls[t]) for t in labels}, bb, make_model,
                  cached_batcher(views, cfg.seed))


def _time_training(d: _Drawn, out: dict, mark):
    """One head epoch of the final fit and one cross-fitting fold (x epochs and folds for the
    totals); returns the fit result, whose model the export forward runs."""
    from embeddings.scores import fold_scores
    from trainer.crossfit import assign_folds, cross_fit_fold, crossfit_plan
    from trainer.loop import epochs_for, fit, predict
    cfg = d.cfg
    t0 = time.perf_counter()
    res = fit(d.make_model(), d.batch, d.labels, d.fit_rows, d.stop_rows, cfg, 1, d.class_weights)
    out["head_epoch_s"] = time.perf_counter() - t0
    out["head_epochs"] = epochs_for(cfg.epochs, len(d.fit_rows), cfg.rows_per_head, cfg.min_steps, cfg.batch_size)
    out["head_s"] = out["head_epoch_s"] * out["head_epochs"]
    mark("head_epoch")
    rows, cf_epochs, strata = crossfit_plan(cfg, d.labels, np.ones(d.n, bool), res.best_epoch)
    fold = assign_folds(strata[rows], cfg.folds, cfg.seed)
    t0 = time.perf_counter()
    cross_fit_fold(0, fold, d.make_model,
                   lambda m, r, desc: fit(m, d.batch, d.labels, r, None, cfg, cf_epochs, d.class_weights, desc=desc).model,
                   lambda m, r: predict(m, d.batch, r, cfg.device), {t: y[rows] for t, y in d.labels.items()}, rows,
                   cfg.seed, fold_scores, cfg.knn_k, cfg.folds)
    out["crossfit_fold_s"] = time.perf_counter() - t0
    out["crossfit_epochs"] = cf_epochs
    out["crossfit_s"] = out["crossfit_fold_s"] * cfg.folds
    mark("crossfit_fold")
    return res


def _time_store(d: _Drawn, res, out: dict, mark) -> None:
    """`make embed` on the cached maps with the trained tail: the export forward, then the store
    stage (FAISS, scores, duplicates, UMAP, DuckDB write) and the sizes of what it wrote."""
    import torch

    from db.store import Paths, read_info
    from embeddings.config import EmbedConfig, Forward
    from embeddings.export import store_stage
    from trainer.cache import pooled_means
    from trainer.checkpoint import RunRecord
    from trainer.features import apply_tail
    from trainer.loop import predict
    cfg, bb, n = d.cfg, d.backbone, d.n
    t0 = time.perf_counter()
    emb, probs = predict(res.model, d.batch, np.arange(n), cfg.device)
    pretrained = d.cache.maps("orig", d.sha1s).with_transform(lambda x: apply_tail(x, bb.tail))
    pooled = pooled_means(pretrained, np.arange(n), bb.channels)
    out["export_forward_s"] = time.perf_counter() - t0
    mark("export_forward")
    d.views = d.batch = pretrained = None   # `make embed` is its own process: its maps are unmapped before the store

    run_dir = d.tmp / "run"
    run_dir.mkdir()
    torch.save({"bench": True}, run_dir / "model.pt")
    record = RunRecord(run_id="scale", arch=cfg.arch, backbone="efficientnet_lite0", weights="bench",
                       image_size=224, embedding_dim=emb.shape[1], data_root=str(d.tmp), data_hash="",
                       created=time.strftime("%Y-%m-%dT%H:%M:%S"), tasks=list(d.labels), classes=d.classes,
                       in_channels=bb.channels, knn_k=cfg.knn_k, folds=cfg.folds)
    frame = pd.DataFrame({"path": [f"drawn/{s}.jpg" for s in d.sha1s], "split": "train", **d.labels})
    frame.loc[d.splits["test"], "split"], frame.loc[d.splits["val"], "split"] = "test", "val"
    paths = Paths.from_store(d.tmp / "store" / "artlens.duckdb")
    paths.store.parent.mkdir()
    t0 = time.perf_counter()
    parts = store_stage(EmbedConfig(projection="umap"), run_dir, record, d.tmp,
                        Forward(frame, d.sha1s, emb, probs, pooled, []), paths)
    out["store_stage_s"] = time.perf_counter() - t0
    out.update({f"store_{k}_s": v for k, v in parts.items()})
    mark("store_stage")
    info = read_info(paths.store)
    out["index_kind"], out["index_recall_at_10"] = info["index_kind"], float(info["index_recall_at_10"])
    out["store_mb"] = paths.store.stat().st_size / 2**20
    out["index_mb"] = paths.index.stat().st_size / 2**20


def step_scale(n: int) -> dict:
    """Head epoch, one cross-fit fold, export forward and store stage at n paintings (drawn maps)."""
    import resource

    import torch
    torch.set_num_threads(os.cpu_count())
    out: dict = {"n": n, "peak_mb_after": {}}

    def mark(stage: str) -> None:   # which stage sets the peak
        out["peak_mb_after"][stage] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("ARTLENS_BENCH_TMP")) as tmp:
        drawn = _draw(n, Path(tmp), out)
        mark("draw")
        res = _time_training(drawn, out, mark)
        _time_store(drawn, res, out, mark)
    return out


# ------------------------------------------------------------------ report
def scale_report(steps: dict, sizes: list[int], folds: int = 5) -> tuple[list[dict], str]:
    """Rows per size (seconds per stage + peak MB) and the markdown table; features at sizes above
    the measured one use its rate."""
    feats = (steps.get("scale_features") or {}).get("result") or {}
    feats_peak = (steps.get("scale_features") or {}).get("peak_rss_mb", float("nan"))
    rate = feats.get("img_s")
    rows = []
    for n in sizes:
        s = steps.get(f"scale_{n}") or {}
        r = s.get("result")
        if not r:
            continue
        rows.append({"n": n, "features_s": n / rate if rate else float("nan"),
                     "features_measured": feats.get("n") == n, "head_epoch_s": r["head_epoch_s"],
                     "head_epochs": r["head_epochs"], "head_s": r["head_s"], "crossfit_fold_s": r["crossfit_fold_s"],
                     "crossfit_epochs": r["crossfit_epochs"], "crossfit_s": r["crossfit_s"],
                     "export_forward_s": r["export_forward_s"], "faiss_s": r["store_index_s"],
                     "scores_s": r["store_scores_s"] + r["store_duplicates_s"], "umap_s": r["store_projection_s"],
                     "store_write_s": r["store_write_s"], "peak_mb": s["peak_rss_mb"],
                     "maps_in_ram": r["maps_in_ram"], "index": r.get("index_kind", ""),
                     "recall": r.get("index_recall_at_10", float("nan"))})
    head = ("| paintings | features s | head epoch s (epochs) | head s | cross-fit fold s (epochs) | cross-fit s "
            "| export forward s | FAISS s (recall@10) | scores + dups s | UMAP s | store write s | total s | peak MB |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        total = sum(r[k] for k in ("features_s", "head_s", "crossfit_s", "export_forward_s", "faiss_s", "scores_s",
                                   "umap_s", "store_write_s"))
        r["total_s"] = total
        lines.append(f"| {r['n']:,} | {r['features_s']:.0f}{'' if r['features_measured'] else ' *'} "
                     f"| {r['head_epoch_s']:.0f} ({r['head_epochs']}) | {r['head_s']:.0f} "
                     f"| {r['crossfit_fold_s']:.0f} ({r['crossfit_epochs']}) | {r['crossfit_s']:.0f} "
                     f"| {r['export_forward_s']:.0f} | {r['faiss_s']:.0f} ({r['recall']:.3f}) | {r['scores_s']:.0f} | {r['umap_s']:.0f} "
                     f"| {r['store_write_s']:.0f} | {total:.0f} | {r['peak_mb']:.0f} |")
    if rate:
        lines.append(f"\nFeatures measured on {feats['n']:,} real JPEGs: {rate:.1f} paintings/s (orig + hflip maps, "
                     f"{feats['maps_s']:.1f} maps/s, peak {feats_peak:.0f} MB in that process); * = that rate applied. "
                     f"Peak MB = the process running the later stages at that size. Cross-fit s = {folds} x one measured fold. "
                     "Head s = epochs x one measured epoch.")
    return rows, "\n".join(lines)


def scale_plot(rows: list[dict], path: Path) -> None:
    """Seconds per stage against collection size, log-log, with a linear reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not rows:
        return
    n = np.array([r["n"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in (("features_s", "features"), ("head_s", "head (all epochs)"), ("crossfit_s", "cross-fit"),
                       ("export_forward_s", "export forward"), ("faiss_s", "FAISS"), ("scores_s", "scores + dups"),
                       ("umap_s", "UMAP"), ("store_write_s", "store write"), ("total_s", "total")):
        ax.plot(n, [r[key] for r in rows], marker="o", label=label, lw=2.5 if key == "total_s" else 1.2)
    ref = rows[0]["total_s"] * n / n[0]
    ax.plot(n, ref, "k--", lw=1, label="linear in size (from 1st total)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("paintings")
    ax.set_ylabel("seconds (2 CPU cores)")
    ax.set_title("make train embed, time per stage vs collection size")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, md: Path = ROOT / "bench" / "scale.md") -> dict:
    """bench/scale.md + .png over every scale_<n> step in results (sizes measured in earlier runs included)."""
    sizes = sorted(int(k.split("_")[1]) for k in results["steps"] if k.startswith("scale_") and k[6:].isdigit())
    rows, table = scale_report(results["steps"], sizes)
    scale_plot(rows, md.with_suffix(".png"))
    md.write_text("# Scale benchmark\n\nCommand: `make bench ARGS=\"--steps scale\"` (2 CPU cores).\n\n" + table +
                  "\n\n![time per stage](scale.png)\n")
    return {"rows": rows, "table": table}


if __name__ == "__main__":   # re-render bench/scale.md and .png from bench/results.json
    res = json.loads((ROOT / "bench" / "results.json").read_text())
    print(write_report(res)["table"])
