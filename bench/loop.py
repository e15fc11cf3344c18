"""`artlens bench loop` (`make bench-loop`): what one round of review and retraining buys.

On the noisy copy `make bench-noise` builds (10% uniform flips, seeded), a perfect reviewer takes
the top `--review` paintings of each task's Review queue (the dashboard's own `Artlens.review_queue`
and `Artlens.tag`): a flipped label is tagged `mislabel` with the true label suggested, any other
`correct`. Then `make train --apply-tags` and `make embed` run (trainer.train.train,
embeddings.export.embed) into a second store, and both stores are graded the same way:
flips found in the next `--review` of the queue, AUROC of the Review default on the flips no one
has reviewed, the estimate of wrong labels against the true count, and test top-1 against the
true labels. Writes bench/loop-seed<S>.json and .md.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from db.store import Paths
from bench.evaluation import grade_ranking
from embeddings.config import EmbedConfig
from embeddings.export import embed
from embeddings.scores import fold_scores
from trainer.checkpoint import build_model, load_checkpoint
from bench.configs import LoopBenchConfig
from bench.noise import clean_run, noisy_store
from dashboard.service import Artlens
from trainer.features import extract_features
from trainer.config import run_paintings, saved_config
from trainer.loop import cached_batcher, predict
from trainer.train import train

log = logging.getLogger("bench.loop")


def perfect_review(app: Artlens, task: str, queue: pd.DataFrame, flipped: set[str], truth: dict[str, str]) -> dict:
    """Tag the paintings of `queue` (rows of the Review page's queue or spot check) as a reviewer
    who knows the true labels would. Returns {reviewed, mislabel}."""
    bad = queue[queue["path"].isin(flipped)]
    good = queue[~queue["path"].isin(flipped)]
    for r in bad.itertuples(index=False):
        app.tag(task, pd.DataFrame([r]), "mislabel", "perfect-reviewer", truth[r.path])
    if len(good):
        app.tag(task, good, "correct", "perfect-reviewer")
    return {"reviewed": len(queue), "mislabel": len(bad)}


def grade_after_review(app: Artlens, task: str, n: int, flipped: set[str]) -> dict:
    """The store as the reviewer sees it now: flips in the next n of the queue, the Review default's
    AUROC on the flips still unreviewed, and the refined estimate of wrong labels."""
    nxt = app.review_queue(task, app.review_default, n)
    reviewed = app.reviewed_paths(task)
    frame, _, scores = app.store.scored_labels(task)
    open_ = ~frame["path"].isin(reviewed).to_numpy()
    g = grade_ranking(scores[app.review_default][open_], frame["path"][open_].isin(flipped).to_numpy(),
                      frame["split"][open_].to_numpy())
    return {"next_flips": int(nxt["path"].isin(flipped).sum()), "next_n": len(nxt),
            "remaining_flips": int((frame["path"][open_].isin(flipped)).sum()), "remaining_auroc": g["auroc"],
            "remaining_p_at_k": g["precision_at_k"]}


def estimate_after_spot_check(app: Artlens, task: str, n: int, flipped: set[str], truth: dict[str, str],
                              wrong_now: int) -> dict:
    """The wrong-label estimate as the store shows it with no spot check, then after a perfect spot
    check of n paintings (the Review page's `spot_check_queue`), against `wrong_now`, the flipped
    labels the run still trains on (what a perfect reviewer would call wrong)."""
    w0 = app.wrong_label_refined(task)
    found = perfect_review(app, task, app.spot_check_queue(task, n), flipped, truth)
    w = app.wrong_label_refined(task)
    return {"model_only": w0.get("model_estimate", w0.get("estimate")), "queue_only": w0.get("estimate"),
            "queue_only_low": w0.get("low"), "queue_only_high": w0.get("high"), "spot_checked": found["reviewed"],
            "spot_check_mislabel": found["mislabel"], "estimate": w.get("estimate"), "estimate_low": w.get("low"),
            "estimate_high": w.get("high"), "true_wrong": wrong_now,
            "covered": bool(w.get("low", np.nan) <= wrong_now <= w.get("high", np.nan))}


def true_test_top1(run_dir: Path, truth: dict[str, dict[str, str]], cache_dir: str) -> dict[str, float]:
    """{task: top-1 of the run's final model on its test split against the true labels (path -> class
    name; names, because the noisy copy's class list may be ordered differently from the clean
    data's)}, through the product's model loading, feature cache and `predict`."""
    ckpt = load_checkpoint(run_dir)
    meta, cfg = ckpt.record, ckpt.config
    ps = run_paintings(cfg, meta.data)
    test = ps.frame[ps.frame["split"] == "test"].reset_index(drop=True)
    head, bb = build_model(ckpt)
    views, ok, _, _ = extract_features(ps.root, test["path"].tolist(), bb, cache_dir, meta.image_size,
                                       views=("orig",), desc="loop bench: test features")
    rows = np.flatnonzero(ok)
    _, probs = predict(head, cached_batcher(views, 0), rows, "cpu")
    out = {}
    for t, p in probs.items():
        y = np.array([truth[t].get(path) for path in test["path"].iloc[rows]], dtype=object)
        known = np.array([v is not None for v in y], bool)
        pred = np.asarray(meta.classes[t], dtype=object)[p.argmax(1)]
        out[t] = float((pred[known] == y[known]).mean())
    return out


def run_loop(cfg: LoopBenchConfig) -> dict:
    t_start = time.time()
    clean_dir, meta, clean_cfg, tasks, ps = clean_run(cfg.run, cfg.runs_dir, cfg.tasks)
    truth_idx = {t: dict(zip(ps.frame["path"], ps.labels(t))) for t in meta.tasks}
    truth_name = {t: {p: ps.classes[t][i] for p, i in truth_idx[t].items() if i >= 0} for t in meta.tasks}
    work = Path(cfg.work_dir)
    name = f"uniform-seed{cfg.seed}"
    reuse = (work / name / "artlens.duckdb").is_file() and (work / name / "flips.json").is_file()
    log.info("%s the noisy copy %s", "reusing" if reuse else "building", work / name)
    store, flipped = noisy_store(ps, clean_dir, clean_cfg, "uniform", cfg.seed, cfg.fraction, tasks, work,
                                 cfg.cache_dir, reuse=reuse)
    noisy_run = work / name / "runs" / "run"
    if reuse:   # rebuild its store with this code (a store from an older version may lack columns)
        embed(EmbedConfig(run=str(noisy_run), store=str(store), cache_dir=cfg.cache_dir, projection="pca"))
    tags = work / name / "loop.tags.duckdb"
    tags.unlink(missing_ok=True)           # a fresh review every time
    result = {"command": "make bench-loop", "flip_seed": cfg.seed, "fraction": cfg.fraction, "review": cfg.review,
              "spot_check": cfg.spot_check,
              "tasks": tasks, "before": {}, "after": {}, "reviewed": {}}

    app = Artlens(Paths.from_store(store, tags=tags))
    try:
        for t in tasks:
            queue = app.review_queue(t, app.review_default, cfg.review)
            result["reviewed"][t] = perfect_review(app, t, queue, flipped[t], truth_name[t])
            result["before"][t] = grade_after_review(app, t, cfg.review, flipped[t])
            result["before"][t].update(estimate_after_spot_check(app, t, cfg.spot_check, flipped[t], truth_name[t],
                                                                 len(flipped[t])))
        result["review_default"] = app.review_default
    finally:
        app.close()
    result["before_test_top1"] = true_test_top1(noisy_run, truth_name, cfg.cache_dir)

    t0 = time.time()
    tcfg = saved_config(load_checkpoint(noisy_run).config, run_id="loop", apply_tags=True, tag_log=str(tags),
                        resume=False, cache_dir=cfg.cache_dir)
    loop_run = train(tcfg, fold_scores)
    after_store = work / name / "loop" / "artlens.duckdb"
    if after_store.parent.exists():
        shutil.rmtree(after_store.parent)
    embed(EmbedConfig(run=str(loop_run), store=str(after_store), tags=str(tags), cache_dir=cfg.cache_dir,
                      projection="pca"))
    result["seconds_retrain_embed"] = time.time() - t0
    app = Artlens(Paths.from_store(after_store, tags=tags))
    try:
        latest = app.tags.latest()
        for t in tasks:
            result["after"][t] = grade_after_review(app, t, cfg.review, flipped[t])
            fixed = latest[(latest["task"] == t) & (latest["decision"] == "mislabel")]["path"]
            result["after"][t].update(estimate_after_spot_check(app, t, cfg.spot_check, flipped[t], truth_name[t],
                                                                len(flipped[t] - set(fixed))))
        result["applied_tags"] = json.loads(app.info.get("applied_tags") or "{}")
    finally:
        app.close()
    result["after_test_top1"] = true_test_top1(loop_run, truth_name, cfg.cache_dir)
    result["seconds"] = time.time() - t_start
    out = Path(cfg.out or f"bench/loop-seed{cfg.seed}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown_table(result) + "\n")
    print(markdown_table(result))
    return result


def markdown_table(r: dict) -> str:
    est = lambda x, k="estimate": f"{x[k]:.0f} ({x[k + '_low']:.0f}–{x[k + '_high']:.0f})"
    rows = [f"`make bench-loop ARGS=\"--seed {r['flip_seed']}\"`: a perfect reviewer decides the top {r['review']} "
            f"of each task's queue ({100 * r['fraction']:.0f}% uniform flips), then `--apply-tags` retraining and "
            "`make embed`", "",
            "| task | flips found in the review | flips in the next " + str(r["review"]) + " (before → after) "
            "| unreviewed flips' AUROC (before → after) | test top-1 vs true labels (before → after) |",
            "|---|---|---|---|---|"]
    for t in r["tasks"]:
        b, a, rv = r["before"][t], r["after"][t], r["reviewed"][t]
        rows.append(f"| {t} | {rv['mislabel']} of {rv['reviewed']} | {b['next_flips']} → {a['next_flips']} "
                    f"| {b['remaining_auroc']:.3f} → {a['remaining_auroc']:.3f} "
                    f"| {r['before_test_top1'].get(t, float('nan')):.3f} → {r['after_test_top1'].get(t, float('nan')):.3f} |")
    rows += ["", f"Wrong-label estimate (95% interval) against the flipped labels each run trains on, from the model "
             f"alone, with the top-{r['review']} review, and after a spot check of {r.get('spot_check', '?')} random "
             "paintings at every depth (the Review page's spot check):", "",
             "| task | store | model alone | + top review | + spot check | flips it trains on | covered |",
             "|---|---|---|---|---|---|---|"]
    for t in r["tasks"]:
        for when in ("before", "after"):
            x = r[when][t]
            rows.append(f"| {t} | {'noisy run' if when == 'before' else 'retrained'} | {x['model_only']:.0f} "
                        f"| {est(x, 'queue_only')} | {est(x)} | {x['true_wrong']} | {'yes' if x['covered'] else 'no'} |")
    return "\n".join(rows)
