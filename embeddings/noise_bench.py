"""`python -m embeddings.noise_bench`: how well does each detector find labels we flipped on purpose?

Copies the data set's labels, flips a fraction per task (uniformly, and to the model's second
choice - "confusable"), retrains the recurrent heads on the cached backbone features (K-fold
out-of-fold softmax for every painting + one head on all paintings for the embeddings), reruns
every detector and reports AUROC, AUPRC, precision@k and recall@k (k = number flipped).
Writes bench/noise.json, bench/noise_pr.html/.png, and <run>/noise.json for the dashboard.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from embeddings.evaluation import auroc, average_precision, flip_labels, pr_curve, precision_recall_at_k
from embeddings.export import build_model, check_classes, load_checkpoint
from embeddings.index import build_index, neighbours_excluding_self
from embeddings.scores import all_detector_scores
from trainer.cli import UserError, field, parse_config
from trainer.data import load_paintings
from trainer.features import extract_features
from trainer.model import CRNNClassifier
from trainer.train import TrainConfig, cached_batcher, class_weights, fit, out_of_fold_probs, predict, resolve_run_dir

log = logging.getLogger("embeddings.noise_bench")


@dataclass
class NoiseBenchConfig:
    run: str = field("", "trained run to take data, architecture and hyper-parameters from (default runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    fraction: float = field(0.1, "share of each task's labels to flip")
    modes: list[str] = field(["uniform", "confusable"], "flip kinds: uniform and/or confusable")
    tasks: list[str] = field(["style", "genre"], "tasks to flip and score")
    folds: int = field(5, "K for the out-of-fold probabilities")
    epochs: int = field(0, "epochs per head; 0 = the run's best epoch, at most 20")
    seed: int = field(0, "seed for the flips and training")
    cache_dir: str = field("cache", "feature-map cache folder")
    out: str = field("bench/noise.json", "result file (a PR plot is written beside it)")


def evaluate(scores: dict[str, np.ndarray], flipped: np.ndarray, known: np.ndarray) -> dict[str, dict]:
    k = int(flipped[known].sum())
    out = {}
    for det, s in scores.items():
        s, y = s[known], flipped[known]
        p, r = precision_recall_at_k(s, y, k)
        out[det] = {"auroc": auroc(s, y), "auprc": average_precision(s, y), "precision_at_k": p, "recall_at_k": r,
                    "k": k}
    return out


def run_bench(cfg: NoiseBenchConfig) -> dict:
    t_start = time.time()
    run_dir = Path(cfg.run) if cfg.run else resolve_run_dir(cfg.runs_dir, "")
    ckpt = load_checkpoint(run_dir)
    meta = ckpt["meta"]
    tcfg = TrainConfig(**{**ckpt["config"], "resume": False})
    if meta.get("finetune"):
        raise UserError("the noise benchmark retrains heads on cached features; it needs a frozen-backbone run")
    bad = [m for m in cfg.modes if m not in ("uniform", "confusable")]
    if bad:
        raise UserError(f"unknown --modes {bad}: choose uniform and/or confusable")
    ps = load_paintings(meta["data"], tcfg.test_fraction, tcfg.seed)
    check_classes(meta, ps)
    tasks = [t for t in cfg.tasks if t in meta["tasks"]]
    if not tasks:
        raise UserError(f"none of --tasks {cfg.tasks} was trained in {run_dir.name} (it has {meta['tasks']})")
    head, bb = build_model(ckpt)
    paths = ps.frame["path"].tolist()
    views, ok, _, stats = extract_features(ps.root, paths, bb, cfg.cache_dir, meta["image_size"],
                                           views=("orig", "hflip"), desc="bench: features")
    rows = np.flatnonzero(ok)
    batch = cached_batcher(views, cfg.seed)
    clean = {t: ps.labels(t) for t in meta["tasks"]}
    _, clean_probs = predict(head, batch, np.arange(len(paths)), "cpu")
    epochs = cfg.epochs or min(20, int(meta.get("best_epoch") or 20))
    num_classes = {t: len(meta["classes"][t]) for t in meta["tasks"]}
    bench_cfg = TrainConfig(**{**vars(tcfg), "folds": cfg.folds, "seed": cfg.seed})
    log.info("noise benchmark: %s flips of %.0f%% on %s, %d folds x %d epochs, %d paintings",
             "/".join(cfg.modes), 100 * cfg.fraction, tasks, cfg.folds, epochs, len(rows))

    def make_model():
        return CRNNClassifier(meta["arch"], meta["in_channels"], num_classes, tcfg.dropout)

    result = {"fraction": cfg.fraction, "folds": cfg.folds, "epochs": epochs, "run_id": meta["run_id"],
              "paintings": int(len(rows)), "seconds": {}}
    curves = {}
    for mode in cfg.modes:
        t0 = time.time()
        rng = np.random.default_rng(cfg.seed)
        noisy = dict(clean)
        flipped = {}
        for t in tasks:
            noisy[t], flipped[t] = flip_labels(clean[t], cfg.fraction, rng, num_classes[t],
                                               clean_probs[t] if mode == "confusable" else None)
            flipped[t] &= ok
        cw = {t: class_weights(noisy[t][rows], num_classes[t]) for t in meta["tasks"]}
        oof = out_of_fold_probs(make_model, batch, noisy, rows, bench_cfg, epochs, cw)
        torch.manual_seed(cfg.seed)
        full = fit(make_model(), batch, noisy, rows, None, bench_cfg, epochs, cw, desc=f"{mode}: all")
        emb, _ = predict(full.model, batch, rows, "cpu")
        index, _ = build_index(emb, np.arange(len(rows)))
        nb, _ = neighbours_excluding_self(index, emb, np.arange(len(rows)), 10)
        result[mode] = {}
        for t in tasks:
            y = noisy[t][rows]
            scores, _ = all_detector_scores(y, oof[t], emb, nb)
            scores["max_softmax (baseline)"] = 1.0 - oof[t].max(1)
            known = y >= 0
            result[mode][t] = evaluate(scores, flipped[t][rows], known)
            curves[(mode, t)] = {d: pr_curve(s[known], flipped[t][rows][known]) for d, s in scores.items()}
        result["seconds"][mode] = time.time() - t0
        log.info("%s flips scored in %.0fs", mode, result["seconds"][mode])
    result["seconds"]["total"] = time.time() - t_start
    write_outputs(cfg, run_dir, result, curves)
    print(table(result))
    return result


def table(result: dict) -> str:
    lines = [f"{'mode':<11}{'task':<7}{'detector':<24}{'AUROC':>7}{'AUPRC':>7}{'P@k':>7}{'R@k':>7}{'k':>6}"]
    for mode in ("uniform", "confusable"):
        for t, dets in result.get(mode, {}).items():
            for d, m in sorted(dets.items(), key=lambda kv: -kv[1]["auroc"]):
                lines.append(f"{mode:<11}{t:<7}{d:<24}{m['auroc']:>7.3f}{m['auprc']:>7.3f}"
                             f"{m['precision_at_k']:>7.3f}{m['recall_at_k']:>7.3f}{m['k']:>6}")
    return "\n".join(lines)


def write_outputs(cfg: NoiseBenchConfig, run_dir: Path, result: dict, curves: dict) -> None:
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    (run_dir / "noise.json").write_text(json.dumps(result, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from plotly.subplots import make_subplots
    keys = list(curves)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.5), squeeze=False)
    pf = make_subplots(rows=1, cols=len(keys), subplot_titles=[f"{m} flips, {t}" for m, t in keys])
    for j, key in enumerate(keys):
        ax = axes[0, j]
        for d, (rec, prec) in curves[key].items():
            ax.plot(rec, prec, label=d, lw=1.2)
            pf.add_scatter(x=rec, y=prec, name=d, legendgroup=d, showlegend=j == 0, row=1, col=j + 1)
        ax.set_title(f"{key[0]} flips, {key[1]}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out.with_name(out.stem + "_pr.png"), dpi=90)
    plt.close(fig)
    pf.update_layout(title="precision-recall of the mislabel detectors on injected flips")
    pf.write_html(out.with_name(out.stem + "_pr.html"), include_plotlyjs="cdn")


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_config(NoiseBenchConfig, argv, "python -m embeddings.noise_bench", __doc__.split("\n\n")[0])
    return run_bench(cfg)


if __name__ == "__main__":
    import sys

    from trainer.cli import run_cli
    sys.exit(run_cli(main))
