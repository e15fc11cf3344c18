"""`make bench`: speed and memory of each step, measured side by side in one run.

Each step runs in its own child process so its peak memory (max RSS) is its own. Prints a table
and writes bench/results.json. Steps: cached vs end-to-end head training, embed throughput vs the
raw backbone, FAISS latency/recall at 100k x 512, outlier query + first render on a 100k synthetic
store, Explore drawn in headless Chromium on that store, UMAP at 25k and 100k points.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
from trainer.cli import field, parse_config

MINI = ROOT / ".." / "shared" / "data" / "wikiart-mini"


@dataclass
class BenchConfig:
    images: int = field(256, "paintings used by the training and embedding steps")
    synthetic: int = field(100_000, "paintings in the synthetic store")
    umap_sizes: list[int] = field([25_000, 100_000], "UMAP sizes to time (0 to skip)")
    evidence_size: int = field(100_000, "evidence, look and copies steps: paintings (evidence: WikiArt metadata "
                                        "resampled; copies: picture hashes)")
    steps: list[str] = field(["features", "train", "embed", "faiss", "dashboard", "browser", "gradcam", "umap", "tags",
                              "evidence", "look", "copies"],
                             "steps to run; also: scale (every stage at --scale-sizes, ~45 min)")
    scale_sizes: list[int] = field([10_000, 30_000, 100_000], "scale step: collection sizes (0 = only the features rate)")
    scale_features: int = field(10_000, "scale step: real JPEGs for the features rate (0 = keep the last measurement)")
    gradcam_images: int = field(48, "paintings for the Grad-CAM step (needs a trained runs/latest)")
    tag_decisions: int = field(100, "tags step: decisions per writer (6 writers, DuckDB file and PostgreSQL)")
    out: str = field("bench/results.json", "results file")


def _subset(n: int):
    from trainer.data import load_paintings
    from trainer.train import subsample
    return subsample(load_paintings(MINI, test_fraction=0), n)


def step_train(n: int) -> dict:
    """One epoch of the default head: on cached feature maps vs recomputing the frozen backbone."""
    import torch

    from trainer.backbones import build_backbone
    from trainer.features import extract_features
    from trainer.model import CRNNClassifier
    from trainer.config import TrainConfig
    from trainer.loop import cached_batcher, fit, image_batcher
    torch.set_num_threads(os.cpu_count())
    ps = _subset(n)
    bb = build_backbone("efficientnet_lite0", with_texture=True)   # the default run's backbone
    paths = ps.frame["path"].tolist()
    labels = {t: ps.labels(t) for t in ps.tasks}
    ncls = {t: len(ps.classes[t]) for t in ps.tasks}
    idx = np.arange(len(paths))
    cfg = TrainConfig(batch_size=64)
    with tempfile.TemporaryDirectory() as cache:
        views, *_ = extract_features(ps.root, paths, bb, cache, 224, views=("orig", "hflip"))
    head = CRNNClassifier("rowcol_bigru", 1280, ncls, texture_dim=bb.texture_dim)
    fit(head, cached_batcher(views, 0), labels, idx, None, cfg, 1, None)  # warm-up: first-call allocations
    t0 = time.perf_counter()
    fit(head, cached_batcher(views, 0), labels, idx, None, cfg, 1, None)
    cached = time.perf_counter() - t0

    frozen = bb.net.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    images = image_batcher(ps.root, paths, 224, bb.mean, bb.std, 0)

    def recompute(i, training):
        with torch.no_grad():
            return frozen(images(i, training))
    head2 = CRNNClassifier("rowcol_bigru", 1280, ncls, texture_dim=bb.texture_dim)
    recompute(idx[:8], False)  # warm-up, as for the cached epoch
    t0 = time.perf_counter()
    fit(head2, recompute, labels, idx, None, cfg, 1, None)
    e2e = time.perf_counter() - t0
    return {"paintings": len(idx), "epoch_cached_s": cached, "epoch_backbone_recomputed_s": e2e,
            "speedup": e2e / cached}


def step_embed(n: int) -> dict:
    """Export throughput (decode + backbone + head) vs the raw backbone forward on decoded tensors."""
    import torch

    from trainer.backbones import build_backbone
    from trainer.features import extract_features
    from trainer.images import image_tensor
    from trainer.data import load_image
    from trainer.model import CRNNClassifier
    from trainer.loop import cached_batcher, predict
    torch.set_num_threads(os.cpu_count())
    ps = _subset(n)
    bb = build_backbone("efficientnet_lite0", with_texture=True)   # the default run's backbone
    paths = ps.frame["path"].tolist()
    x = torch.stack([image_tensor(load_image(ps.root / p), 224, bb.mean, bb.std) for p in paths])
    net = bb.net.eval()
    with torch.no_grad():
        net(x[:8])  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(x), 64):
            net(x[s:s + 64])
        raw = time.perf_counter() - t0
    head = CRNNClassifier("rowcol_bigru", 1280, {t: len(ps.classes[t]) for t in ps.tasks},
                          texture_dim=bb.texture_dim).eval()
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        views, *_ = extract_features(ps.root, paths, bb, cache, 224, views=("orig",), batch_size=64)
        predict(head, cached_batcher(views, 0), np.arange(len(paths)), "cpu")
        export = time.perf_counter() - t0
    from embeddings.quality import image_quality
    t0 = time.perf_counter()
    image_quality(ps.root, paths)       # the embed stage's image quality measures (decode + checks)
    quality = time.perf_counter() - t0
    return {"paintings": len(paths), "raw_backbone_img_s": len(paths) / raw, "export_img_s": len(paths) / export,
            "ratio": raw / export, "quality_ms_per_img": 1000 * quality / len(paths)}


def _cpu_peak_gflops() -> tuple[float, str]:
    """Nominal fp32 peak of this CPU: cores x clock x FLOPs per cycle (AVX2 + 2 FMA ports: 32)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    mhz = [float(line.split(":")[1]) for line in flags.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if " avx512f" in flags else 32 if " avx2" in flags and " fma" in flags else 8
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    return os.cpu_count() * ghz * per_cycle, f"{os.cpu_count()} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle"


def step_features(n: int) -> dict:
    """Feature extraction as `make train` runs it (decode + resize + frozen backbone, cache write),
    PyTorch eager vs ONNX Runtime, alternated twice in one process so the machine's drift hits both;
    each pass on an empty cache. Also the backbone's FLOPs and the share of the CPU's peak it reaches."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.backbones import build_backbone
    from trainer.features import extract_features
    torch.set_num_threads(os.cpu_count())
    ps = _subset(n)
    paths = ps.frame["path"].tolist()
    bb = build_backbone("efficientnet_lite0", with_texture=True)   # the default run's backbone
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        bb.stem.eval()(torch.zeros(1, 3, 224, 224))
    gflop = fc.get_total_flops() / 1e9    # per image, the stem: what the cache pass runs
    from trainer.features import decode_workers
    # (engine, decode workers): v1's path, the runtime alone, the runtime + 1 decode process, the default
    variants = {"eager": ("eager", 0), "onnx": ("onnx", 0), "onnx+workers": ("onnx", 1),
                "default": ("onnx", decode_workers())}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        extract_features(ps.root, paths[:1], bb, Path(tmp) / "warm", 224, stage=True, engine="onnx")
        export_s = time.perf_counter() - t0    # a cold `make train` pays this once
        for rep in range(2):
            for name, (engine, workers) in variants.items():
                out = Path(tmp) / f"{name}{rep}"
                if engine == "onnx":   # the export is cached: time inference, not the one-off export
                    import shutil
                    shutil.copytree(Path(tmp) / "warm" / "onnx", out / "onnx")
                t0 = time.perf_counter()
                extract_features(ps.root, paths, bb, out, 224, stage=True, engine=engine, batch_size=32,
                                 workers=workers)
                times[name].append(time.perf_counter() - t0)
    peak, peak_desc = _cpu_peak_gflops()
    rate = {e: len(paths) / float(np.mean(t)) for e, t in times.items()}
    return {"paintings": len(paths), "eager_img_s": rate["eager"], "onnx_img_s": rate["onnx"],
            "onnx_1_worker_img_s": rate["onnx+workers"], "default_img_s": rate["default"],
            "default_decode_workers": decode_workers(),
            "runs_s": times, "onnx_export_s": export_s, "speedup_vs_eager": rate["default"] / rate["eager"],
            "stem_gflop_per_img": gflop, "peak_gflops": peak, "peak_desc": peak_desc,
            "eager_share_of_peak": rate["eager"] * gflop / peak, "onnx_share_of_peak": rate["onnx"] * gflop / peak,
            **_large_jpeg_decode(ps, paths[:32])}


def _large_jpeg_decode(ps, paths: list[str]) -> dict:
    """Decode ms per image of WikiArt-size scans (the mini images upscaled to 1600 px on the longer
    side, JPEG q90): full decode vs the reduced DCT decode `make train` uses (load_image min_side)."""
    from PIL import Image

    from trainer.data import load_image
    with tempfile.TemporaryDirectory() as tmp:
        big = []
        for k, p in enumerate(paths):
            im = load_image(ps.root / p)
            s = 1600 / max(im.size)
            path = Path(tmp) / f"{k}.jpg"
            im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC).save(path, quality=90)
            big.append(path)
        out = {}
        for name, min_side in (("full", 0), ("reduced", 448)):
            t0 = time.perf_counter()
            for path in big:
                load_image(path, min_side=min_side)
            out[f"large_jpeg_decode_ms_{name}"] = (time.perf_counter() - t0) / len(big) * 1000
    return out


def step_faiss(n: int) -> dict:

    from embeddings.index import build_index, recall_at_k
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(64, 512)).astype(np.float32)
    x = centers[rng.integers(0, 64, n)] + rng.normal(size=(n, 512)).astype(np.float32)
    q = x[rng.choice(n, 1000, replace=False)]
    out = {"n": n, "dim": 512}
    exact, _ = build_index(x, np.arange(n), exact_limit=n)
    t0 = time.perf_counter()
    truth = np.vstack([exact.search(q[i:i + 1], 10)[1] for i in range(200)])
    out["exact_ms_per_query"] = (time.perf_counter() - t0) / 200 * 1000
    t0 = time.perf_counter()
    ann, report = build_index(x, np.arange(n))
    out["ann_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = np.vstack([ann.search(q[i:i + 1], 10)[1] for i in range(200)])
    out["ann_ms_per_query"] = (time.perf_counter() - t0) / 200 * 1000
    out["ann_kind"] = report["kind"]
    out["ann_recall_at_10"] = recall_at_k(got, truth)
    return out


def step_dashboard(n: int) -> dict:
    from db.store import Paths, Store
    from db.tags import open_tag_log
    path, built_s = synthetic_store(n)
    s = Store(path)
    s.ranked("style", "consensus", 24)  # first query warms DuckDB's caches
    times = []
    for det in ("consensus", "confidence", "mahalanobis", "knn"):
        t0 = time.perf_counter()
        s.ranked("style", det, 24, 0)
        s.count_scored("style", det)
        times.append(time.perf_counter() - t0)
    tags = open_tag_log(Paths.from_store(path).tags).latest()
    t0 = time.perf_counter()
    s.points("style", "umap", "consensus", tags)
    points = time.perf_counter() - t0
    s.close()
    from streamlit.testing.v1 import AppTest
    os.environ["ARTLENS_STORE"] = str(path)
    out = {"paintings": n, "build_store_s": built_s, "outlier_query_ms": 1000 * float(np.median(times)),
           "explore_points_query_ms": points * 1000}
    for page in ("Explore", "Outliers"):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.session_state["page"] = page
        t0 = time.perf_counter()
        at.run()
        out[f"{page.lower()}_first_render_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        out[f"{page.lower()}_rerender_s"] = time.perf_counter() - t0
        assert not at.exception, [e.value for e in at.exception]
    return out


def synthetic_store(n: int) -> tuple[Path, float]:
    """The n-painting synthetic store (built once; rebuilt when an older version's schema lacks columns)."""
    from bench.synthetic import SyntheticConfig, make_store
    from db.store import Store
    path = ROOT / "bench" / "synthetic" / f"artlens-{n}.duckdb"
    if path.is_file():
        s = Store(path)
        current = s._has_column("predictions", "wrong_weight")
        s.close()
        if current:
            return path, 0.0
    return path, make_store(SyntheticConfig(n=n, out=str(path)))["seconds"]


def step_browser(n: int) -> dict:
    """Explore in real headless Chromium on the synthetic store: seconds from the click on the page
    link until the scatter is drawn, cold (first visit after start) and warm."""
    from bench.browser import chromium, start_dashboard, time_explore
    path, built = synthetic_store(n)
    tags = Path(tempfile.mkdtemp()) / "bench.tags.duckdb"
    proc, url = start_dashboard(path, tags)
    driver = chromium()
    try:
        return {"paintings": n, "build_store_s": built, **time_explore(driver, url)}
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=20)


def step_gradcam(n: int) -> dict:
    """Grad-CAM on `n` wikiart-mini paintings with runs/latest's cross-fitting heads (each painting
    through the fold head that held it out, as the dashboard draws it): seconds per painting for
    the dashboard's two heat maps, and faithfulness (blanking the hottest 10% vs a random 10%)."""
    import torch

    from embeddings.explain import deletion_drops, explanation_panels
    from trainer.checkpoint import Embedder, FoldIndex, resolve_run_dir
    from trainer.data import load_image
    torch.set_num_threads(os.cpu_count())
    run = resolve_run_dir(str(ROOT / "runs"), "")
    folds = FoldIndex(run)
    heads: dict = {}
    ps = _subset(n)
    times, hot, rnd = [], [], []
    e = final_model = Embedder(run)
    final: list = []
    names = e.record.classes["style"]
    explanation_panels(e, load_image(ps.root / ps.frame["path"].iloc[0]), "style", None)   # warm-up
    for path, y in zip(ps.frame["path"], ps.labels("style")):
        fold = folds.fold_of(path)
        if fold not in heads:   # one model per fold, loaded once
            heads[fold] = Embedder(run, fold=fold)
        e = heads[fold]
        img = load_image(ps.root / path)
        t0 = time.perf_counter()
        explanation_panels(e, img, "style", int(y))
        times.append(time.perf_counter() - t0)
        h, r = deletion_drops(e, img, "style")    # the model's top class
        hot.append(h)
        rnd.append(r)
        final.append(deletion_drops(final_model, img, "style"))   # the same test on the final model, paired
    hot, rnd, final = np.array(hot), np.array(rnd), np.array(final)
    return {"paintings": len(times), "run": e.record.run_id, "classes": len(names),
            "models": sorted("final" if k is None else f"fold {k + 1}" for k in heads),
            "seconds_per_painting": float(np.median(times)), "seconds_p90": float(np.quantile(times, 0.9)),
            "faithful_share": float((hot > rnd).mean()), "drop_hot_mean": float(hot.mean()),
            "drop_random_mean": float(rnd.mean()), "final_model_faithful_share": float((final[:, 0] > final[:, 1]).mean()),
            "final_model_drop_hot_mean": float(final[:, 0].mean()), "final_model_drop_random_mean": float(final[:, 1].mean())}


def step_umap(n: int) -> dict:
    from embeddings.project import umap_2d
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 960)).astype(np.float32) + rng.integers(0, 20, n)[:, None]
    umap_2d(rng.normal(size=(200, 16)).astype(np.float32))  # numba compile, not counted
    t0 = time.perf_counter()
    umap_2d(x)
    return {"n": n, "seconds": time.perf_counter() - t0}


def step_evidence(n: int) -> dict:
    """The evidence stage of `make embed` (`task_evidence`: look, artist, period, title, copies, combined; then
    the card's lines) for one task at n paintings: wikiart-mini's titles, artists and years resampled
    (titles with two other title words appended, artists split 30 ways, years jittered +-5) so the
    title vocabulary and the artist groups grow with n; 1.4% of the paintings filed twice, as in
    wikiart-mini (pairs of copies); cross-fitted probabilities and neighbours drawn. Then all kinds
    again with a sixth of the dated paintings dated only to their century (a catalogue's ranges)."""
    from embeddings.evidence import other_group_neighbours, title_evidence
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    from embeddings.score_stage import NEIGHBOUR_POOL
    from trainer.config import TrainConfig, run_paintings
    from trainer.metadata import mid_year
    ps = run_paintings(TrainConfig(), str(MINI))
    frame, y = ps.frame, ps.labels("style")
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(frame), n)
    words = np.array(" ".join(frame["title"]).split())
    titles = np.array([f"{frame['title'].iat[i]} {' '.join(rng.choice(words, 2))}" for i in pick], dtype=object)
    artist = np.array([f"{frame['artist_name'].iat[i]}-{k % 30}" for k, i in enumerate(pick)], dtype=object)
    year = mid_year(frame)[pick] + rng.integers(-5, 6, n)
    pairs = int(0.007 * n)
    copies = np.where(np.arange(n) < 2 * pairs, np.arange(n) // 2, -1)
    md = Metadata(pd.factorize(artist)[0].astype(np.int64), artist, year, titles, np.zeros(n, bool)).with_copies(copies)
    labels, c = y[pick], len(ps.classes["style"])
    probs = rng.dirichlet(np.full(c, 0.3), n)
    nb_ids = rng.integers(0, n, (n, 10 * NEIGHBOUR_POOL))        # candidates, as score_stage fetches them
    nb_sim = np.sort(rng.uniform(0.5, 1.0, (n, 10 * NEIGHBOUR_POOL)))[:, ::-1]
    t0 = time.perf_counter()
    title_evidence(labels, titles, c, copies=copies)
    t_title = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = task_evidence(labels, probs, *other_group_neighbours(nb_ids, nb_sim, md.look_groups(), 10), md, c)
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = evidence_rows("style", labels, probs, ev, md, ps.classes["style"])
    t_rows = time.perf_counter() - t0
    # a catalogue's dates: a sixth of the dated paintings known only to their century, read as all
    # its years (`embeddings.years`)
    wide = ~np.isnan(year) & (np.arange(n) % 6 == 0)
    first = np.where(wide, year // 100 * 100, year)
    t0 = time.perf_counter()
    task_evidence(labels, probs, *other_group_neighbours(nb_ids, nb_sim, md.look_groups(), 10),
                  replace(md, year=np.c_[first, np.where(wide, first + 99, year)]), c)
    t_ranges = time.perf_counter() - t0
    return {"n": n, "artists": int(len(set(artist))), "title_s": t_title, "evidence_s": t_all,
            "card_lines_s": t_rows, "rows": len(rows), "centuries": int(wide.sum()), "evidence_ranges_s": t_ranges}


def step_look(n: int) -> dict:
    """The look's neighbours in `make embed` (`score_stage.look_neighbours`) at their worst: n paintings
    by n / 200 artists, each artist a tight cluster in 512-d, so a painting's first 40 candidates are
    all its own artist's and every painting needs the wider search for 10 by other artists."""
    from embeddings.index import build_index, neighbours_excluding_self
    from embeddings.score_stage import NEIGHBOUR_POOL, look_neighbours
    rng = np.random.default_rng(0)
    artists = max(1, n // 200)
    centers = rng.normal(size=(artists, 512)).astype(np.float32) * 2
    groups = rng.integers(0, artists, n)
    x = centers[groups] + rng.normal(size=(n, 512)).astype(np.float32) * 0.5
    ids = np.arange(n)
    index, _ = build_index(x, ids)
    t0 = time.perf_counter()
    pool = neighbours_excluding_self(index, x, ids, 10 * NEIGHBOUR_POOL)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got, _ = look_neighbours(index, x, *pool, groups, 10)
    return {"n": n, "artists": artists, "first_search_s": first_s, "wider_s": time.perf_counter() - t0,
            "short_after": int((got < 0).any(1).sum())}


def step_copies(n: int) -> dict:
    """`make train`'s copy finding by pixels (`trainer.data.fingerprint_images`, `near_copy_pairs`):
    every wikiart-mini image read, sha1-hashed and picture-hashed as the loader does it, then the pair
    search over n hashes (wikiart-mini's, the rest random: the search is exhaustive, so its cost does
    not depend on the pictures)."""
    from trainer.data import fingerprint_images, load_paintings
    from trainer.picture_hash import HASH_SIZE, near_copy_pairs
    ps = load_paintings(MINI, test_fraction=0, copies_together=False)
    t0 = time.perf_counter()
    _, hashes = fingerprint_images(ps.root, ps.frame["path"])
    hash_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    pool = hashes + list(rng.random((max(0, n - len(hashes)), HASH_SIZE * HASH_SIZE)) < 0.5)
    t0 = time.perf_counter()
    pi, _ = near_copy_pairs(pool)
    return {"paintings": len(hashes), "hash_ms_per_img": 1000 * hash_s / len(hashes), "n": len(pool),
            "search_s": time.perf_counter() - t0, "pairs": len(pi)}


from bench.scale import step_scale, step_scale_features  # noqa: E402,F401  (run by name in a child)
from bench.tagload import step_tags  # noqa: E402,F401


def _child(fn_name, arg, q):
    import logging
    logging.basicConfig(level=logging.WARNING)
    try:
        res = globals()[fn_name](arg)
        q.put((res, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, None))
    except Exception as e:  # reported in the table, the other steps still run
        q.put((None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, f"{type(e).__name__}: {e}"))


def measure(fn_name: str, arg) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn_name, arg, q))
    t0 = time.perf_counter()
    p.start()
    res, rss, err = q.get()
    p.join()
    return {"result": res, "peak_rss_mb": rss, "wall_s": time.perf_counter() - t0, "error": err}


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv, "artlens bench", __doc__.split("\n\n")[0])
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
               "python": platform.python_version(), "malloc_env": os.environ.get("MALLOC_MMAP_MAX_") == "0"}
    plan = {"features": [("step_features", cfg.images)],
            "train": [("step_train", cfg.images)], "embed": [("step_embed", cfg.images)],
            "faiss": [("step_faiss", cfg.synthetic)], "dashboard": [("step_dashboard", cfg.synthetic)],
            "browser": [("step_browser", cfg.synthetic)], "gradcam": [("step_gradcam", cfg.gradcam_images)],
            "umap": [("step_umap", n) for n in cfg.umap_sizes if n], "tags": [("step_tags", cfg.tag_decisions)],
            "evidence": [("step_evidence", cfg.evidence_size)], "look": [("step_look", cfg.evidence_size)],
            "copies": [("step_copies", cfg.evidence_size)],
            "scale": [("step_scale_features", cfg.scale_features)] * bool(cfg.scale_features) +
                     [("step_scale", n) for n in cfg.scale_sizes if n]}
    out = Path(cfg.out)
    # Steps not run this time keep their last measurement (`--steps train` re-measures one step).
    previous = json.loads(out.read_text())["steps"] if out.is_file() else {}
    results = {"machine": machine, "steps": previous}
    for step in cfg.steps:
        for fn, arg in plan[step]:
            key = ("scale_features" if fn == "step_scale_features" else f"scale_{arg}" if fn == "step_scale"
                   else step if len(plan[step]) == 1 else f"{step}_{arg}")
            print(f"running {key} ...", flush=True)
            results["steps"][key] = measure(fn, arg)
            if results["steps"][key]["error"]:
                print(f"  {key} failed: {results['steps'][key]['error']}", flush=True)
    feats = (results["steps"].get("features") or {}).get("result")
    if feats:   # issue 11's headline number, kept where its issue asks for it
        results["scale"] = {**(json.loads(out.read_text()).get("scale", {}) if out.is_file() else {}),
                            "features_speedup_vs_eager": feats["speedup_vs_eager"]}
    if "scale" in cfg.steps:   # the issue-11 table + plot: bench/scale.md, bench/scale.png
        from bench.scale import write_report
        report = write_report(results)
        results["scale"] = {**results.get("scale", {}), "rows": report["rows"]}
        print(report["table"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(table(results))
    return results


def table(results: dict) -> str:
    m = results["machine"]
    lines = [f"machine: {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
             f"allocator env {'on' if m['malloc_env'] else 'OFF'}",
             f"{'step':<16}{'measure':<34}{'value':>12}{'goal':>10}{'peak MB':>10}"]

    def row(step, what, value, goal=""):
        peak = results["steps"][step]["peak_rss_mb"]
        lines.append(f"{step:<16}{what:<34}{value:>12}{goal:>10}{peak:>10.0f}")
    for step, s in results["steps"].items():
        r = s["result"]
        if r is None:
            lines.append(f"{step:<16}{'FAILED: ' + str(s['error'])[:60]}")
            continue
        if step == "features":
            row(step, f"eager, img/s ({r['paintings']} img)", f"{r['eager_img_s']:.1f}")
            row(step, "ONNX Runtime, img/s", f"{r['onnx_img_s']:.1f}")
            if "default_img_s" in r:
                row(step, "ONNX + 1 decode process, img/s", f"{r['onnx_1_worker_img_s']:.1f}")
                row(step, f"default ({r['default_decode_workers']} decode procs), img/s", f"{r['default_img_s']:.1f}")
            row(step, "speed-up default / eager", f"{r['speedup_vs_eager']:.2f}x", ">= 1.5x")
            if "large_jpeg_decode_ms_full" in r:
                row(step, "1600px JPEG decode ms: full/reduced", f"{r['large_jpeg_decode_ms_full']:.0f}/"
                    f"{r['large_jpeg_decode_ms_reduced']:.0f}")
            row(step, f"stem {r['stem_gflop_per_img']:.2f} GFLOP/img: % of peak", f"{100 * r['eager_share_of_peak']:.0f}%"
                f" / {100 * r['onnx_share_of_peak']:.0f}%")
        elif step == "train":
            row(step, f"epoch cached ({r['paintings']} img), s", f"{r['epoch_cached_s']:.2f}")
            row(step, "epoch backbone recomputed, s", f"{r['epoch_backbone_recomputed_s']:.1f}")
            row(step, "speed-up cached / recomputed", f"{r['speedup']:.0f}x", ">= 20x")
        elif step == "embed":
            row(step, "raw backbone, img/s", f"{r['raw_backbone_img_s']:.1f}")
            row(step, "export (decode+backbone+head), img/s", f"{r['export_img_s']:.1f}")
            row(step, "export / raw", f"{r['ratio']:.2f}", ">= 0.9")
            if "quality_ms_per_img" in r:
                row(step, "image quality checks, ms/painting", f"{r['quality_ms_per_img']:.1f}")
        elif step == "faiss":
            row(step, f"exact k=10 at {r['n']:,}x{r['dim']}, ms", f"{r['exact_ms_per_query']:.1f}")
            row(step, f"{r['ann_kind'][:24]}, ms", f"{r['ann_ms_per_query']:.2f}")
            row(step, "ANN recall@10", f"{r['ann_recall_at_10']:.3f}", ">= 0.95")
        elif step == "dashboard":
            row(step, f"outlier query at {r['paintings']:,}, ms", f"{r['outlier_query_ms']:.0f}", "< 200")
            row(step, "Explore first render, s", f"{r['explore_first_render_s']:.2f}", "< 2")
            row(step, "Explore re-render, s", f"{r['explore_rerender_s']:.2f}")
            row(step, "Outliers first render, s", f"{r['outliers_first_render_s']:.2f}", "< 2")
        elif step == "browser":
            row(step, f"Explore in Chromium at {r['paintings']:,}, cold s", f"{r['cold_s']:.2f}", "< 2")
            row(step, "Explore in Chromium, warm s", f"{r['warm_s']:.2f}", "< 2")
        elif step == "gradcam":
            row(step, "Grad-CAM (2 heat maps), s/painting", f"{r['seconds_per_painting']:.2f}", "< 1")
            row(step, f"hottest 10% beats random ({r['paintings']} img)", f"{r['faithful_share']:.0%}", "> 50%")
            row(step, "p(top) drop: hottest / random", f"{r['drop_hot_mean']:.2f}/{r['drop_random_mean']:.2f}")
            if "final_model_faithful_share" in r:
                row(step, "final model (saw the labels): beats random", f"{r['final_model_faithful_share']:.0%}")
                row(step, "final model: drop hottest / random", f"{r['final_model_drop_hot_mean']:.2f}/"
                    f"{r['final_model_drop_random_mean']:.2f}")
        elif step == "scale_features":
            row(step, f"cold make-train features, {r['n']:,} JPEGs, img/s", f"{r['img_s']:.1f}")
        elif step.startswith("scale_"):
            row(step, f"{r['n']:,}: epoch/fold/store s", f"{r['head_epoch_s']:.0f}/{r['crossfit_fold_s']:.0f}/"
                f"{r['store_stage_s']:.0f}")
        elif step == "tags":
            for backend in ("duckdb", "postgresql"):
                b = r[backend]
                row(step, f"{backend}: {r['writers']}x{r['decisions_each']} p50/p99 ms", f"{b['p50_ms']:.0f}/"
                    f"{b['p99_ms']:.0f}", "p99 < 500" if backend == "postgresql" else "")
                row(step, f"{backend}: decisions kept", f"{b['kept']}/{b['expected']}", "all")
        elif step.startswith("umap"):
            row(step, f"UMAP {r['n']:,} x 960, s", f"{r['seconds']:.0f}")
        elif step == "evidence":
            row(step, f"one task at {r['n']:,}: all kinds, s", f"{r['evidence_s']:.0f}")
            row(step, "of which the title model, s", f"{r['title_s']:.0f}")
            row(step, "the card's lines, s", f"{r['card_lines_s']:.0f}")
            if "evidence_ranges_s" in r:
                row(step, f"all kinds, {r['centuries']:,} dated to a century, s", f"{r['evidence_ranges_s']:.0f}")
        elif step == "look":
            row(step, f"{r['n']:,}, {r['artists']} artists: first 40, s", f"{r['first_search_s']:.1f}")
            row(step, "wider search (worst case), s", f"{r['wider_s']:.1f}")
            row(step, "paintings still short of 10", f"{r['short_after']}")
        elif step == "copies":
            row(step, f"sha1 + picture hash, one read ({r['paintings']:,} JPEGs), ms/img", f"{r['hash_ms_per_img']:.2f}")
            row(step, f"pair search at {r['n']:,}, s", f"{r['search_s']:.1f}")
            row(step, "pairs found (wikiart-mini's)", f"{r['pairs']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from trainer.cli import run_cli
    sys.exit(run_cli(main))
