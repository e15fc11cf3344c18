"""`artlens bench noise`: how much of the review queue is real mislabels, on the product path.

For each flip mode it writes a noisy copy of the data set's labels (a manifest beside links to the
original images, as a user's own data would be), flipping a fraction of each task's labels in
every split (seeded; uniform to another class, or "confusable": to the class a cross-fitted head
of the clean run finds most likely after the true one), then runs exactly what `make train embed`
runs on it (trainer.train.train, embeddings.export.embed) and grades the `scores` table of the
store that builds: AUROC, AUPRC, precision@k, recall@k (k = flips) and the split make-up of the
top k, per detector and task, beside a max-softmax baseline and, where the benchmark extra
(requirements-bench.txt) is installed, cleanlab's rankings on the same cross-fitted probabilities.
Writes bench/noise.json, bench/noise_pr.{png,html} and <run>/noise.json for the dashboard.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from db.store import Store, read_info
from bench.configs import MODES, NoiseBenchConfig
from bench.copies import write_data_copy
from bench.evaluation import (RELIABILITY_EDGES, artist_flips, conflicting_clean_labels, flip_labels, grade_ranking,
                             pr_curve, reliability_table, right_if_errors_uniform)
from bench.suggestions import queue_suggestions, suggestion_hits, wilson
from embeddings.config import EmbedConfig
from embeddings.export import embed
from embeddings.scores import fold_scores
from trainer.checkpoint import load_checkpoint, resolve_run_dir
from trainer.cli import UserError
from trainer.crossfit import CrossFit
from trainer.data import TASKS, PaintingSet
from trainer.config import run_paintings, saved_config
from trainer.train import train

log = logging.getLogger("bench.noise")


def confusable_probs(run_dir: Path, paths: list[str]) -> dict[str, np.ndarray]:
    """{task: (N, C)} cross-fitted softmax of the clean run for `paths` (uniform rows where missing)."""
    cf_path = run_dir / "crossfit.npz"
    if not cf_path.is_file():
        raise UserError(f"confusable flips need the clean run's cross-fitted probabilities: {cf_path} is missing "
                        "(train with --folds 2 or more)")
    cf = CrossFit.load(cf_path)
    pos = {p: k for k, p in enumerate(cf.paths)}
    rows = np.array([pos.get(p, -1) for p in paths])
    out = {}
    for t, p in cf.probs.items():
        out[t] = np.where((rows >= 0)[:, None], p[np.maximum(rows, 0)], 1.0 / p.shape[1])
    return out


# ------------------------------------------------------------------ grading the store
def grade_store(store_path: Path, flipped_paths: dict[str, set[str]], n_boot: int = 0, fraction: float = 0.1,
                clean: dict[str, pd.Series] | None = None
                ) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                           dict[str, list[dict]], dict[str, list[str]]]:
    """({task: {ranking: grade_ranking(...)}}, {task: {detector: (recall, precision)}}, {task:
    evidence_reliability(...)}, {task: paths left out}) for every detector in the store's `scores`
    table, plus the max-softmax baseline and (if installed) cleanlab in the grades, all over the
    paintings labelled for the task; `fraction`: the share of labels flipped. clean {task: label
    before the flips, indexed by path}: paintings whose clean label differs from a copy's (the
    store's duplicate groups) have no ground truth and are left out of every grade
    (`conflicting_clean_labels`)."""
    store = Store(store_path)
    try:
        grades, curves, reliability, left_out = {}, {}, {}, {}
        groups = store.duplicate_groups(conflicting_only=False).drop_duplicates("path").set_index("path")["group_id"]
        for task, flipped in flipped_paths.items():
            frame, probs, stored = store.scored_labels(task)
            keep = np.ones(len(frame), bool)
            if clean is not None and task in clean:
                group = groups.reindex(frame["path"]).fillna(-1).to_numpy(np.int64)
                y0 = clean[task].reindex(frame["path"]).fillna(-1).to_numpy(np.int64)
                keep = ~conflicting_clean_labels(group, y0)
            left_out[task] = frame.loc[~keep, "path"].tolist()
            frame, probs = frame[keep].reset_index(drop=True), probs[keep]
            stored = {det: s[keep] for det, s in stored.items()}
            positive = frame["path"].isin(flipped).to_numpy()
            split = frame["split"].to_numpy()
            res = {det: grade_ranking(s, positive, split, n_boot) for det, s in stored.items()}
            curves[task] = {det: pr_curve(np.where(np.isnan(s), -np.inf, s), positive) for det, s in stored.items()}
            res["max_softmax (baseline)"] = grade_ranking(1.0 - probs.max(1), positive, split, n_boot)
            for name, s in peer_rankings(frame["label"].to_numpy(np.int64), probs).items():
                res[name] = grade_ranking(s, positive, split, n_boot)
            grades[task] = res
            if "evidence" in stored:
                reliability[task] = evidence_reliability(stored["evidence"], frame["label"].to_numpy(np.int64),
                                                         positive, fraction)
        return grades, curves, reliability, left_out
    finally:
        store.close()


def evidence_reliability(score: np.ndarray, labels: np.ndarray, flipped: np.ndarray, fraction: float) -> list[dict]:
    """reliability_table: is the `evidence` ranking's probability of the given class (the label itself
    left out) honest? Read as the chance the label is right, were the flips uniform
    (`right_if_errors_uniform` at the flipped fraction), against the share really left unflipped.
    score, labels, flipped (N,) over the task's labelled paintings."""
    ok = ~np.isnan(score)
    q = 1.0 / (1.0 + np.exp(score[ok]))                # the score is log p(not given) - log p(given)
    n_classes = len(np.unique(labels[labels >= 0]))     # uniform flips go to a class present
    return reliability_table(right_if_errors_uniform(q, n_classes, fraction), ~flipped[ok])


def wrong_label_check(store_path: Path, flipped: dict[str, set[str]]) -> dict[str, dict]:
    """{task: {estimate, low, high, flips, confident_learning}}: the store's count of wrong labels
    next to the flips injected (its range should hold the flips plus the labels that were already
    wrong), and the confident-learning estimate on the same cross-fitted probabilities (the count
    the store showed before v5, which also counts the classifier's own confusions)."""
    from embeddings.scores import wrong_label_estimate
    store = Store(store_path)
    try:
        out = {}
        for t, v in flipped.items():
            w = store.wrong_labels(t)
            if w:
                frame, probs = store.label_probabilities(t)
                cl = float(wrong_label_estimate(frame["label"].to_numpy(np.int64), probs).sum())
                out[t] = {"estimate": w["estimate"], "low": w["low"], "high": w["high"], "flips": len(v),
                          "confident_learning": cl}
        return out
    finally:
        store.close()


def peer_rankings(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """cleanlab's rankings on the same cross-fitted probabilities, as suspicion scores (N,); empty if
    cleanlab (AGPL, the benchmark-only extra in requirements-bench.txt) is not installed."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        log.warning("cleanlab is not installed: `pip install -r requirements-bench.txt` adds the peer comparison")
        return {}
    present = np.unique(labels)          # cleanlab wants every column to be a class that occurs
    y = np.searchsorted(present, labels)
    p = probs[:, present]
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    out = {}
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        out[f"cleanlab:{method}"] = -get_label_quality_scores(y, p, method=method)
    issues = find_label_issues(y, p, filter_by="prune_by_noise_rate")
    # a set, not a ranking: flagged rows first, each part by cleanlab's self-confidence
    out["cleanlab:find_label_issues"] = issues.astype(float) + out["cleanlab:self_confidence"] / 2 + 0.5
    return out


def make_flips(ps: PaintingSet, run_dir: Path, mode: str, seed: int, fraction: float, tasks: list[str]
               ) -> tuple[dict[str, np.ndarray], dict[str, set[str]]]:
    """({task: noisy labels (N,)}, {task: flipped paths}) of one flip mode (MODES), seeded. The artist
    mode reads the painting's artist from its metadata (file name or manifest), as the product does."""
    paths = ps.frame["path"].tolist()
    rng = np.random.default_rng(seed)
    guide = confusable_probs(run_dir, paths) if mode == "confusable" else {}
    artist_ids = pd.factorize(ps.frame["artist_name"].replace("", None))[0] if mode == "artist" else None
    noisy, flipped = {}, {}
    for t in tasks:
        if mode == "artist":
            noisy[t], is_flipped = artist_flips(ps.labels(t), artist_ids, fraction, rng)
        else:
            noisy[t], is_flipped = flip_labels(ps.labels(t), fraction, rng, len(ps.classes[t]), guide.get(t))
        flipped[t] = set(np.array(paths)[is_flipped])
    return noisy, flipped


def noisy_store(ps: PaintingSet, run_dir: Path, clean_cfg: dict, mode: str, seed: int, fraction: float,
                tasks: list[str], work: Path, cache_dir: str, reuse: str = "") -> tuple[Path, dict[str, set[str]]]:
    """Flip `fraction` of each task's labels (seeded), write the noisy copy under work/<mode>-seed<S>/
    and run `make train embed`'s functions on it with the clean run's settings. Returns (the store,
    {task: flipped paths}). reuse "grade": take the store and flips an earlier call left there;
    "embed": embed that call's run again first (the score stage changed, the training did not)."""
    name = f"{mode}-seed{seed}"
    store = work / name / "artlens.duckdb"
    if reuse:
        if not (work / name / "flips.json").is_file():
            raise UserError(f"no noisy copy at {work / name}: run `make bench-noise ARGS=\"--seed {seed}\"` first")
        if reuse == "embed":
            embed(EmbedConfig(run=str(work / name / "runs" / "run"), store=str(store), cache_dir=cache_dir,
                              projection="pca"))
        if not store.is_file():
            raise UserError(f"no store at {store}: run `make bench-noise ARGS=\"--seed {seed}\"` first")
        return store, {t: set(v) for t, v in json.loads((work / name / "flips.json").read_text()).items()}
    noisy, flipped = make_flips(ps, run_dir, mode, seed, fraction, tasks)
    manifest = write_data_copy(ps, work / name / "data", noisy)
    (work / name / "flips.json").write_text(json.dumps({t: sorted(v) for t, v in flipped.items()}, indent=0))
    log.info("%s: %s flipped; training and embedding it as `make train embed` does", name,
             ", ".join(f"{len(v)} {t}" for t, v in flipped.items()))
    tcfg = saved_config(clean_cfg, data=str(manifest), out_dir=str(work / name / "runs"), run_id="run",
                        cache_dir=cache_dir, resume=False, apply_tags=False)
    noisy_run = train(tcfg, fold_scores)
    embed(EmbedConfig(run=str(noisy_run), store=str(store), cache_dir=cache_dir, projection="pca"))
    return store, flipped


# ------------------------------------------------------------------ the benchmark
def clean_run(run: str, runs_dir: str, want: list[str]):
    """(run folder, its meta, its training config, the wanted tasks it trained, its paintings) of the
    clean run a benchmark copies (default runs/latest)."""
    run_dir = Path(run) if run else resolve_run_dir(runs_dir, "")
    ckpt = load_checkpoint(run_dir)
    meta, clean_cfg = ckpt.record, ckpt.config
    tasks = [t for t in want if t in meta.tasks]
    if not tasks:
        raise UserError(f"none of --tasks {want} was trained in {run_dir.name} (it has {meta.tasks})")
    return run_dir, meta, clean_cfg, tasks, run_paintings(clean_cfg, meta.data)


def suggestion_check(store_path: Path, flipped: dict[str, set[str]], clean: dict[str, pd.Series],
                     names: dict[str, list[str]], ungraded: dict[str, list[str]]) -> dict[str, dict]:
    """{task: {n, suggested_right, model_top_right, depth}}: over the flipped paintings in the Review
    queue's first k (k = the flips, as P@k), how often the card's suggested label is the clean one
    (`bench.suggestions`; paintings without ground truth left out)."""
    out = {}
    for t, v in flipped.items():
        y0 = clean[t].reindex(sorted(set(v) - set(ungraded.get(t, ()))))
        truth = {p: names[t][int(y)] for p, y in y0.items() if y >= 0}
        out[t] = {**suggestion_hits(queue_suggestions(store_path, t, len(v)), truth), "depth": len(v)}
    return out


def run_bench(cfg: NoiseBenchConfig) -> dict:
    t_start = time.time()
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        raise UserError(f"unknown --modes {bad}: choose from {', '.join(MODES)}")
    run_dir, meta, clean_cfg, tasks, ps = clean_run(cfg.run, cfg.runs_dir, cfg.tasks)
    paths = ps.frame["path"].tolist()
    work = Path(cfg.work_dir)
    result = {"fraction": cfg.fraction, "flip_seed": cfg.seed, "clean_run": meta.run_id, "tasks": tasks,
              "paintings": len(paths), "command": "make bench-noise", "grade_only": cfg.grade_only, "seconds": {}}
    curves = {}
    clean = {t: pd.Series(ps.labels(t), index=paths) for t in tasks}
    for mode in cfg.modes:
        t0 = time.time()
        store, flipped = noisy_store(ps, run_dir, clean_cfg, mode, cfg.seed, cfg.fraction, tasks, work,
                                     cfg.cache_dir, reuse="embed" if cfg.reembed else "grade" if cfg.grade_only else "")
        graded, pr, reliability, left_out = grade_store(store, flipped, cfg.bootstrap, cfg.fraction, clean)
        result[mode] = graded
        result.setdefault("ungraded", {})[mode] = left_out
        result["seconds"][mode] = time.time() - t0
        result.setdefault("review_default", read_info(store).get("review_default", "consensus"))
        result.setdefault("wrong_label_estimates", {})[mode] = wrong_label_check(store, flipped)
        result.setdefault("evidence_reliability", {})[mode] = reliability
        result.setdefault("suggestions", {})[mode] = suggestion_check(store, flipped, clean, ps.classes, left_out)
        curves.update({(mode, t): c for t, c in pr.items()})
        log.info("%s-seed%d graded in %.0fs", mode, cfg.seed, result["seconds"][mode])
    result["seconds"]["total"] = time.time() - t_start
    write_outputs(cfg, run_dir, result, curves)
    print(table(result))
    for mode, tasks_ in result.get("wrong_label_estimates", {}).items():
        for t, w in tasks_.items():
            print(f"{mode} {t}: about {w['estimate']:.0f} wrong labels ({w['low']:.0f}-{w['high']:.0f}), "
                  f"{w['flips']} flipped; confident learning would say {w.get('confident_learning', float('nan')):.0f}")
    return result


def table(result: dict) -> str:
    lines = [f"{'mode':<11}{'task':<7}{'ranking':<36}{'AUROC':>7}{'AUPRC':>7}{'P@k':>7}{'R@k':>7}{'k':>5}"
             f"{'top-k train/val/test':>23}{'excess':>8}"]
    for mode in MODES:
        for t, dets in result.get(mode, {}).items():
            for d, m in sorted(dets.items(), key=lambda kv: -kv[1]["auprc"]):
                sh = m["topk_split_share"]
                mark = " (default)" if d == result.get("review_default") else ""
                lines.append(f"{mode:<11}{t:<7}{d + mark:<36}{m['auroc']:>7.3f}{m['auprc']:>7.3f}"
                             f"{m['precision_at_k']:>7.3f}{m['recall_at_k']:>7.3f}{m['k']:>5}"
                             f"{'/'.join(f'{sh.get(s, 0):.2f}' for s in ('train', 'val', 'test')):>23}"
                             f"{m['split_excess']:>8.2f}")
    return "\n".join(lines)


def markdown_table(result: dict, full: bool = False) -> str:
    """The table in docs/detectors.md: per flip kind and task, the Review default, the best single detector,
    consensus, the best cleanlab ranking and the max-softmax baseline (`full`: every ranking)."""
    default = result.get("review_default", "")
    head = ("| flips | task | ranking | AUROC (95% CI) | AUPRC | P@k (95% CI) | R@k | top-k train / val / test "
            "| flips train / val / test |\n"
            "|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for mode in MODES:
        for t, dets in result.get(mode, {}).items():
            singles = {d: m for d, m in dets.items() if d not in (default, "consensus", "max_softmax (baseline)")
                       and not d.startswith("cleanlab:")}
            peers = {d: m for d, m in dets.items() if d.startswith("cleanlab:")}
            if full:
                pick = sorted(dets, key=lambda d: -dets[d]["auprc"])
            else:
                pick = [default, max(singles, key=lambda d: singles[d]["auprc"]), "consensus"]
                pick += [max(peers, key=lambda d: peers[d]["auprc"])] if peers else []
                pick += ["max_softmax (baseline)"]
            for d in dict.fromkeys(pick):   # the default may be consensus itself
                m = dets[d]
                share = lambda sh: " / ".join(f"{sh.get(x, 0):.2f}" for x in ("train", "val", "test"))
                name = f"**{d}** (default)" if d == default else f"`{d}`"
                ci = lambda key: (f" ({m[key + '_ci'][0]:.2f}–{m[key + '_ci'][1]:.2f})" if key + "_ci" in m else "")
                rows.append(f"| {mode} | {t} | {name} | {m['auroc']:.3f}{ci('auroc')} | {m['auprc']:.3f} "
                            f"| {m['precision_at_k']:.3f}{ci('precision_at_k')} | {m['recall_at_k']:.3f} "
                            f"| {share(m['topk_split_share'])} | {share(m['positive_split_share'])} |")
    return "\n".join(rows)


# The Review default is chosen on the realistic kinds of flips, not on uniform ones (where any
# detector that sees "this does not look like its class" wins).
CHOICE_MODES = ("confusable", "artist")


def choice_table(result: dict) -> str:
    """Every ranking's mean AUPRC, AUROC and P@k over CHOICE_MODES x tasks (those present), best
    first, with the P@k intervals of each cell: what the Review default is chosen on."""
    modes = [m for m in CHOICE_MODES if m in result]
    if not modes:
        return ""
    cells = [(m, t) for m in modes for t in result[m]]
    names = set.intersection(*(set(result[m][t]) for m, t in cells))
    rows = []
    for d in names:
        g = [result[m][t][d] for m, t in cells]
        rows.append((np.mean([x["auprc"] for x in g]), np.mean([x["auroc"] for x in g]),
                     np.mean([x["precision_at_k"] for x in g]), d, g))
    rows.sort(key=lambda r: (-r[0], r[3]))   # ties by name: `names` is a set, its order changes per process
    head = " | ".join(f"P@k {m} {t}" for m, t in cells)
    out = [f"| ranking | mean AUPRC | mean AUROC | mean P@k | {head} |", "|---|---|---|---|" + "---|" * len(cells)]
    for auprc, auc, pk, d, g in rows:
        ci = " | ".join(f"{x['precision_at_k']:.3f}" + (f" ({x['precision_at_k_ci'][0]:.2f}–{x['precision_at_k_ci'][1]:.2f})"
                                                       if "precision_at_k_ci" in x else "") for x in g)
        name = f"**{d}** (default)" if d == result.get("review_default") else f"`{d}`"
        out.append(f"| {name} | {auprc:.3f} | {auc:.3f} | {pk:.3f} | {ci} |")
    return "\n".join(out)


def reliability_markdown(result: dict) -> str:
    """The `evidence_reliability` tables as one markdown table: a row per flip kind and task, a cell
    per bin "predicted / observed (n)"."""
    rel = result.get("evidence_reliability", {})
    rows = [(m, t, r) for m, tasks in rel.items() for t, r in tasks.items()]
    if not rows:
        return ""
    E = RELIABILITY_EDGES
    bins = [f"{E[b]:.2f}-{E[b + 1]:.2f}" for b in range(len(E) - 1)]
    out = ["| flips | task | " + " | ".join(bins) + " |", "|---|---|" + "---|" * len(bins)]
    for m, t, r in rows:
        cell = {f"{x['lo']:.2f}-{x['hi']:.2f}": f"{x['predicted']:.2f} / {x['observed']:.2f} ({x['n']})" for x in r}
        out.append(f"| {m} | {t} | " + " | ".join(cell.get(b, "") for b in bins) + " |")
    return "\n".join(out)


def suggestions_markdown(result: dict) -> str:
    """The `suggestion_check` results as a table: per flip kind and task, of the flips in the queue's
    first k, how many the card's suggested label names correctly (95% Wilson interval), and the
    model's first choice beside it."""
    cells = [(m, t, r) for m, tasks in result.get("suggestions", {}).items() for t, r in tasks.items()]
    if not cells:
        return ""
    out = ["| flips | task | queue depth | flips in it | suggested label right (95% CI) | model's first choice right |",
           "|---|---|---|---|---|---|"]
    for m, t, r in cells:
        lo, hi = wilson(r["suggested_right"], r["n"])
        share = lambda x: f"{x} ({x / r['n']:.0%})" if r["n"] else str(x)
        out.append(f"| {m} | {t} | {r['depth']} | {r['n']} | {share(r['suggested_right'])}"
                   + (f" ({lo:.2f}–{hi:.2f})" if r["n"] else "") + f" | {share(r['model_top_right'])} |")
    return "\n".join(out)


def ungraded_note(result: dict) -> str:
    """A paragraph naming how many paintings per flip kind and task were left out of the grades
    (their clean label conflicts with a copy's), or "" when none were."""
    cells = [f"{mode} {t}: {len(paths)}" for mode, tasks in result.get("ungraded", {}).items()
             for t, paths in tasks.items() if paths]
    if not cells:
        return ""
    return ("Left out of every grade, as having no ground truth (the clean label differs from a copy's, "
            f"so at most one of them is right): {', '.join(cells)} paintings.\n\n")


def write_outputs(cfg: NoiseBenchConfig, run_dir: Path, result: dict, curves: dict) -> None:
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    choice = choice_table(result)
    out.with_suffix(".md").write_text(f"`make bench-noise` (flip seed {result['flip_seed']}, "
                                      f"{100 * result['fraction']:.0f}% per task)\n\n{ungraded_note(result)}"
                                      f"{markdown_table(result)}\n\n"
                                      + (f"Mean over {' and '.join(CHOICE_MODES)} flips (the default is chosen on "
                                         f"this):\n\n{choice}\n\n" if choice else "")
                                      + (f"How honest the evidence's probabilities are: the chance a label is right "
                                         f"that they imply were errors uniform, predicted / observed share unflipped "
                                         f"(paintings), per bin of the predicted chance:\n\n{reliability}\n\n"
                                         if (reliability := reliability_markdown(result)) else "")
                                      + (f"The label the Review card suggests, for the flipped paintings in the "
                                         f"queue:\n\n{suggested}\n\n" if (suggested := suggestions_markdown(result)) else "")
                                      + f"All rankings:\n\n{markdown_table(result, full=True)}\n")
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
            ax.plot(rec, prec, label=d, lw=2.2 if d == result.get("review_default") else 1.0)
            pf.add_scatter(x=rec, y=prec, name=d, legendgroup=d, showlegend=j == 0, row=1, col=j + 1)
        ax.set_title(f"{key[0]} flips, {key[1]}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out.with_name(out.stem + "_pr.png"), dpi=90)
    plt.close(fig)
    pf.update_layout(title="precision-recall of the stored rankings on injected flips (make bench-noise)")
    pf.write_html(out.with_name(out.stem + "_pr.html"), include_plotlyjs="cdn")
