"""`artlens train`: fit a multi-task CNN-RNN classifier (artist, genre, style).

Default path (CPU): the pretrained backbone is frozen, its feature maps are computed once and
cached (trainer/features.py), and only the recurrent head trains, on cached maps. `--finetune`
trains backbone + head end to end from images (meant for `--device cuda`, AMP on).

The pipeline, top to bottom (`train`), each stage a function of one shared `Run`:

    prepare -> extract_features_stage -> fit_final -> evaluate -> cross_fit_stage -> write_run

After the final model, K-fold cross-fitting over every labelled painting (trainer/crossfit.py)
gives each painting softmax and embedding-detector scores from a head that never saw its label.

Writes runs/<id>/: model.pt (checkpoint), last.pt (resumable state), metrics.json (test split),
crossfit.npz (cross-fitted probabilities and scores), plots; and runs/latest -> runs/<id>.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trainer.backbones import Backbone, build_backbone
from trainer.checkpoint import (Checkpoint, RunRecord, atomic_torch_save, point_latest, resolve_run_dir,
                                save_fold_head)
from trainer.cli import UserError
from trainer.config import TrainConfig, check_settings, run_paintings, saved_config
from trainer.crossfit import CrossFit, FoldScorer, cross_fit, crossfit_plan
from trainer.data import PaintingSet
from trainer.features import check_images, extract_features, training_views
from trainer.loop import Batcher, FitResult, cached_batcher, epochs_for, fit, image_batcher, predict, task_weights
from trainer.metrics import classification_metrics
from trainer.model import CRNNClassifier, EndToEnd, TailHead
from trainer.relabel import apply_decisions, read_decisions
from trainer.specs import resolve_backbone

log = logging.getLogger("trainer")


@dataclass
class Run:
    """What the stages of one training run share; each stage fills in its part."""
    cfg: TrainConfig
    run_dir: Path
    backbone_name: str
    resume_state: dict | None = None
    t_start: float = field(default_factory=time.time)
    seconds: dict[str, float] = field(default_factory=dict)
    # prepare
    ps: PaintingSet | None = None
    data_hash: str = ""
    changes: object = None                  # --apply-tags: the label changes (DataFrame), else None
    applied: dict | None = None
    bb: Backbone | None = None
    size: int = 0
    tune: bool = False                      # --tune-tail in force (a Lite backbone, not --finetune)
    pristine_tail: torch.nn.Module | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    num_classes: dict[str, int] = field(default_factory=dict)
    # extract_features_stage
    batch: Batcher | None = None
    tta: Batcher | None = None
    ok: np.ndarray | None = None            # (N,) readable images
    failed: list[str] = field(default_factory=list)
    feat_stats: dict[str, int] = field(default_factory=dict)
    idx: dict[str, np.ndarray] = field(default_factory=dict)   # {split: rows}
    # fit_final
    fit_rows: np.ndarray | None = None
    stop_rows: np.ndarray | None = None
    class_w: dict | None = None
    result: FitResult | None = None
    model: torch.nn.Module | None = None
    before_refit: dict | None = None
    # evaluate, cross_fit_stage
    metrics: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return self.ps.tasks

    def make_model(self) -> torch.nn.Module:
        """A fresh model for this run: head (map channels, texture statistics packed behind them),
        on the whole backbone (--finetune) or on a copy of ImageNet's tail (--tune-tail)."""
        cfg, bb = self.cfg, self.bb
        head = CRNNClassifier(cfg.arch, bb.channels, self.num_classes, cfg.dropout, bb.texture_dim)
        if cfg.finetune:
            return EndToEnd(bb.net, head)
        if self.tune:
            return TailHead(copy.deepcopy(self.pristine_tail), head)
        return head


# ------------------------------------------------------------------ stages
def prepare(cfg: TrainConfig, paintings: PaintingSet | None = None) -> Run:
    """Check the settings, open (or resume) the run folder, load the data (or take `paintings`, the
    data already read from cfg.data; a resumed run reads its saved settings' data) and the backbone."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    resume_state = None
    if cfg.resume:
        run_dir = resolve_run_dir(cfg.out_dir, cfg.run_id)
        if not (run_dir / "last.pt").is_file():
            raise UserError(f"--resume: {run_dir / 'last.pt'} not found; nothing to resume")
        resume_state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
        cfg = saved_config(resume_state["config"], resume=True, device=cfg.device, threads=cfg.threads)
    else:
        run_dir = Path(cfg.out_dir) / (cfg.run_id or time.strftime("%Y%m%d-%H%M%S"))
    check_settings(cfg)
    run = Run(cfg, run_dir, resolve_backbone(cfg.arch, cfg.backbone), resume_state)
    seed_everything(cfg.seed)
    run.t_start = time.time()
    run.ps = subsample(paintings if paintings is not None and not cfg.resume else run_paintings(cfg), cfg.limit)
    run.data_hash = run.ps.data_hash()   # of the data as given: `make embed` compares it with what it reads
    if cfg.apply_tags:
        run.ps.frame, run.changes, run.applied = apply_decisions(run.ps.frame, run.ps.classes,
                                                                 read_decisions(cfg.tag_log))
        a = run.applied
        log.info("--apply-tags %s: %d decisions: %d labels replaced, %d dropped, %d kept (%d for paintings or tasks "
                 "not in this data)", tag_log_name(cfg.tag_log), a["decisions"], a["replaced"], a["dropped"], a["kept"],
                 a["not_in_data"])
    check_writable(run_dir)   # fail before hours of work, not at the first checkpoint
    bb = run.bb = build_backbone(run.backbone_name, cfg.weights, cfg.texture)
    run.size = cfg.image_size or bb.default_size
    run.labels = {t: run.ps.labels(t) for t in run.tasks}
    run.num_classes = {t: len(run.ps.classes[t]) for t in run.tasks}
    log.info("run %s: arch %s on %s (%s), %dpx, tasks %s", run_dir.name, cfg.arch, bb.name, bb.weights, run.size,
             run.tasks)
    run.tune = cfg.tune_tail and bb.tail is not None and not cfg.finetune   # --finetune trains all of it anyway
    if cfg.tune_tail and bb.tail is None and bb.name != "pixels":
        log.warning("%s has no stem/tail split (only the Lite backbones do): its head trains on frozen maps", bb.name)
    run.pristine_tail = copy.deepcopy(bb.tail) if run.tune else None   # every fold starts from ImageNet's
    return run


def extract_features_stage(run: Run) -> None:
    """Feature maps for every painting (cached), or an image batcher for --finetune; the splits."""
    cfg, ps, bb = run.cfg, run.ps, run.bb
    paths = ps.frame["path"].tolist()
    t0 = time.time()
    if cfg.finetune:
        _, run.ok, run.failed = check_images(ps.root, paths, ps.file_sha1s())
        run.batch = image_batcher(ps.root, paths, run.size, bb.mean, bb.std, cfg.seed)
        run.feat_stats = {"hits": 0, "misses": 0}
    else:
        views, run.ok, _, stats = extract_features(ps.root, paths, bb, cfg.cache_dir, run.size,
                                                   sha1s=ps.file_sha1s(), views=training_views(cfg.crops),
                                                   device=cfg.device,
                                                   stage=run.tune, engine=cfg.engine, ray=ray_settings(cfg))
        run.failed = stats.failed
        run.feat_stats = {"hits": stats.hits, "misses": stats.misses}
        log.info("feature cache: %d hits, %d computed, %d unreadable (%.0fs)", stats.hits, stats.misses,
                 len(run.failed), time.time() - t0)
        run.batch = cached_batcher(views, cfg.seed)
        run.tta = cached_batcher(views, cfg.seed, "hflip") if cfg.tta else None
    run.seconds["features"] = time.time() - t0 if not cfg.finetune else 0.0
    if not run.ok.any():
        raise UserError(f"{cfg.data}: none of the {len(paths)} images could be read; first: "
                        f"{run.failed[0] if run.failed else '?'}")
    run.idx = split_rows(ps.frame["split"].to_numpy(), run.ok, cfg.seed)
    if len(run.idx["train"]) == 0:
        raise UserError(f"{cfg.data}: no readable training paintings")


def fit_final(run: Run) -> None:
    """The final model: one schedule on --fit-on's rows (early stopping on val with --fit-on train,
    then --refit on train + val)."""
    cfg = run.cfg
    # --fit-on train+val: the final model sees val's labels too, for one fixed schedule; measured on
    # three seeds, 10 epochs on train + val beat 40 early-stopped ones on train alone (docs/training.md).
    run.fit_rows, run.stop_rows = final_rows(cfg, run.idx)
    run.class_w = task_weights(run.labels, run.fit_rows, run.num_classes, cfg.balance)
    epochs = epochs_for(cfg.epochs, len(run.fit_rows), cfg.rows_per_head, cfg.min_steps, cfg.batch_size)
    if epochs != cfg.epochs:
        log.info("%d training paintings: %d epochs instead of %d (%s)", len(run.fit_rows), epochs, cfg.epochs,
                 f"--rows-per-head {cfg.rows_per_head} keeps the cost per painting flat" if epochs < cfg.epochs
                 else f"--min-steps {cfg.min_steps}: a small collection's heads need more passes")
    log.info("final model: %d epochs on %s (%d paintings)%s", epochs, cfg.fit_on, len(run.fit_rows),
             ", early stopping on val" if run.stop_rows is not None else "; val metrics are in-sample")
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    run.result = fit(run.make_model(), run.batch, run.labels, run.fit_rows, run.stop_rows, cfg, epochs, run.class_w,
                     checkpoint=run.run_dir / "last.pt", resume_state=run.resume_state,
                     on_epoch=lambda row: log_eta(run, row, epochs))
    run.model = run.result.model
    if cfg.refit:   # idx["val"] is never empty here: one is carved from train when the data gives none
        run.before_refit = split_metrics(run, run.model, ["test", "val"])   # the early-stopped model, for the ablation
        run.model = refit_final(run, np.concatenate([run.idx["train"], run.idx["val"]]), run.result.best_epoch)
    run.seconds["train"] = time.time() - t0


def evaluate(run: Run) -> None:
    """Held-out test metrics (the reported numbers), plus val for reference (in-sample after --refit)."""
    run.metrics = {"test": {}, "val": {}, **split_metrics(run, run.model, ["test", "val"])}
    if run.before_refit is not None:
        run.metrics["before_refit"] = run.before_refit
    for t, m in run.metrics["test"].items():
        log.info("test %-6s top-1 %.3f (95%% interval %.3f-%.3f)  top-5 %.3f  macro-F1 %.3f  (n=%d)", t, m["top1"],
                 *m["top1_ci95"], m["top5"], m["macro_f1"], m["n"])


def cross_fit_stage(run: Run, fold_scorer: FoldScorer) -> None:
    """K heads (with their own tuned tail under --tune-tail) on the cached maps the final model
    trained on, each scoring the paintings it never saw; writes crossfit.npz.

    A --finetune run cross-fits heads on the pretrained (frozen) backbone's maps: K end-to-end
    trainings would cost K times the fine-tune, and what matters is that no score saw its label.
    """
    cfg, t0 = run.cfg, time.time()
    crossfit_path = run.run_dir / "crossfit.npz"
    crossfit_path.unlink(missing_ok=True)   # a resumed or re-used run folder must not keep stale scores
    for stale in run.run_dir.glob("folds/fold*.pt"):
        stale.unlink()
    if cfg.folds >= 2:
        batch, tta, ok, make_model = run.batch, run.tta, run.ok, run.make_model
        if cfg.finetune:
            batch, tta, ok, make_model = frozen_maps(run)
        rows, epochs, strata = crossfit_plan(cfg, run.labels, ok, run.result.best_epoch)
        log.info("cross-fitting: %d folds x %d epochs over %d labelled paintings (all splits)", cfg.folds, epochs,
                 len(rows))

        def fit_head(model, train_rows, desc):
            return fit(model, batch, run.labels, train_rows, None, cfg, epochs, run.class_w, desc=desc,
                       log_epochs=False).model

        cf = cross_fit(make_model, fit_head, lambda m, r: predict(m, batch, r, cfg.device, tta=tta), run.labels,
                       rows, strata, cfg.folds, cfg.seed, fold_scorer, cfg.knn_k,
                       keep_fold=lambda k, model: save_fold_head(run.run_dir, k, model),
                       groups=run.ps.frame["copy_group"].to_numpy())   # all -1 with --no-copies-together
        cf.paths = np.array(run.ps.frame["path"].tolist(), dtype=object)[rows].astype(str)
        cf.save(crossfit_path)
        run.metrics["crossfit"] = crossfit_metrics(cf, {t: y[rows] for t, y in run.labels.items()}, run.ps.classes)
        for t, m in run.metrics["crossfit"].items():
            log.info("cross-fitted %-6s top-1 %.3f (95%% interval %.3f-%.3f) over %d paintings: what the detectors see",
                     t, m["top1"], *m["top1_ci95"], m["n"])
    run.seconds["crossfit"] = time.time() - t0


def write_run(run: Run) -> None:
    """model.pt (typed by trainer/checkpoint.py), metrics.json, label_changes.csv, plots, runs/latest."""
    cfg, model, run_dir = run.cfg, run.model, run.run_dir
    run.seconds["total"] = time.time() - run.t_start
    record = run_record(run)
    if run.changes is not None:   # which labels this run trained on differently from the data (make embed reads it)
        run.changes.to_csv(run_dir / "label_changes.csv", index=False)
    else:
        (run_dir / "label_changes.csv").unlink(missing_ok=True)
    state = model.head.state_dict() if isinstance(model, (EndToEnd, TailHead)) else model.state_dict()
    ckpt = Checkpoint(record, cfg, state, model.backbone.state_dict() if cfg.finetune else None,
                      model.tail.state_dict() if run.tune else None)
    atomic_torch_save(ckpt.to_saved(), run_dir / "model.pt")
    meta = dataclasses.asdict(record)
    (run_dir / "metrics.json").write_text(json.dumps({**meta, "metrics": run.metrics, "history": run.result.history},
                                                     indent=1))
    from trainer.plots import write_plots
    write_plots(run_dir, run.result.history, run.metrics.get("test", {}))
    point_latest(run_dir)
    log.info("wrote %s (total %.0fs: features %.0fs, head %.0fs, cross-fitting %.0fs)", run_dir / "model.pt",
             time.time() - run.t_start, run.seconds["features"], run.seconds["train"], run.seconds["crossfit"])


def train(cfg: TrainConfig, fold_scorer: FoldScorer, paintings: PaintingSet | None = None) -> Path:
    """Run the whole training command; returns the run folder. `fold_scorer` scores each cross-fitting
    fold's held-out embeddings against its training ones (the embedding detectors, which live with
    the other detectors in embeddings/scores.py: `artlens train` passes `fold_scores`); `paintings`
    is cfg.data already read by `run_paintings(cfg)`, else it is read here."""
    run = prepare(cfg, paintings)
    extract_features_stage(run)
    fit_final(run)
    evaluate(run)
    cross_fit_stage(run, fold_scorer)
    write_run(run)
    print(summary_table(run.metrics.get("test", {})))
    return run.run_dir


# ------------------------------------------------------------------ helpers of the stages
def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {run_dir}: {e.strerror or e}") from None


def split_rows(split: np.ndarray, ok: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """{train, val, test: readable rows}; with no val split in the data, a tenth of train is carved
    out as val so early stopping still works."""
    idx = {s: np.flatnonzero((split == s) & ok) for s in ("train", "val", "test")}
    if len(idx["val"]) == 0 and len(idx["train"]):
        rng = np.random.default_rng(seed + 3)
        pick = rng.permutation(idx["train"])
        idx["val"], idx["train"] = np.sort(pick[: max(1, len(pick) // 10)]), np.sort(pick[max(1, len(pick) // 10):])
    return idx


def final_rows(cfg: TrainConfig, idx: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows the final model trains on, rows it early-stops on or None) for --fit-on, from the
    split's row indices {train, val, test}."""
    if cfg.fit_on == "train":
        return idx["train"], idx["val"]
    return np.sort(np.concatenate([idx["train"], idx["val"]])), None


def log_eta(run: Run, row: dict, epochs: int) -> None:
    """Once, after the first epoch (it measures this machine's speed on this data): how long the
    final model and the cross-fitting will take."""
    cfg = run.cfg
    if row["epoch"] != (run.resume_state or {}).get("epoch", 0) + 1:
        return
    per_row = row["seconds"] / max(1, len(run.fit_rows))
    head = row["seconds"] * (epochs - row["epoch"])
    crossfit = "no cross-fitting (--folds < 2)"
    if cfg.folds >= 2:   # the plan cross_fit_stage will follow, with the planned epochs for the best one
        cf_rows, cf_epochs, _ = crossfit_plan(cfg, run.labels, run.ok, epochs)
        crossfit = (f"about {per_row * len(cf_rows) * (cfg.folds - 1) * cf_epochs:.0f}s of cross-fitting "
                    f"({cfg.folds} folds x {cf_epochs} epochs over {len(cf_rows)} paintings)")
    log.info("estimate: at %.1fs an epoch, %s %.0fs more for the final model and %s", row["seconds"],
             "at most" if run.stop_rows is not None else "about", head, crossfit)


def split_metrics(run: Run, model: torch.nn.Module, splits: Sequence[str]) -> dict:
    """{split: {task: classification_metrics}} of `model` on each non-empty split."""
    out: dict = {}
    for s in splits:
        rows = run.idx[s]
        if len(rows) == 0:
            continue
        _, probs = predict(model, run.batch, rows, run.cfg.device, tta=run.tta)
        out[s] = {t: classification_metrics(run.labels[t][rows], probs[t], run.ps.classes[t])
                  for t in run.tasks if (run.labels[t][rows] >= 0).any()}
    return out


def refit_final(run: Run, rows: np.ndarray, best_epoch: int) -> torch.nn.Module:
    """--refit: a fresh model trained on `rows` (train + val) for one full schedule of `best_epoch`
    epochs, the length early stopping on val chose; no early stopping (val is in the training rows)."""
    cfg = run.cfg
    epochs = max(1, best_epoch)
    log.info("refit: train + val (%d paintings), %d epochs", len(rows), epochs)
    cw = task_weights(run.labels, rows, run.num_classes, cfg.balance)
    torch.manual_seed(cfg.seed)
    return fit(run.make_model(), run.batch, run.labels, rows, None, cfg, epochs, cw, desc="refit epoch").model


def frozen_maps(run: Run):
    """--finetune's cross-fitting inputs: (batcher, tta batcher, readable (N,), make_model) over the
    pretrained, frozen backbone's cached maps."""
    cfg, ps = run.cfg, run.ps
    frozen = build_backbone(run.backbone_name, cfg.weights, cfg.texture)
    views, ok_f, _, _ = extract_features(ps.root, ps.frame["path"].tolist(), frozen, cfg.cache_dir, run.size,
                                         sha1s=ps.file_sha1s(), views=("orig", "hflip"), device=cfg.device,
                                         desc="cross-fit: features", engine=cfg.engine, ray=ray_settings(cfg))
    tta = cached_batcher(views, cfg.seed, "hflip") if cfg.tta else None

    def make_model():
        return CRNNClassifier(cfg.arch, frozen.channels, run.num_classes, cfg.dropout, frozen.texture_dim)
    return cached_batcher(views, cfg.seed), tta, run.ok & ok_f, make_model


def crossfit_metrics(cf: CrossFit, labels: dict[str, np.ndarray], classes: dict[str, list[str]]) -> dict:
    """`classification_metrics` of the cross-fitted softmax {task: (P, C)} against labels {task: (P,)}
    over every painting it scored (all splits): how well the heads that judge the labels know them,
    on ten times the test split's paintings."""
    return {t: classification_metrics(labels[t], p, classes[t]) for t, p in cf.probs.items()
            if (labels[t] >= 0).any()}


def run_record(run: Run) -> RunRecord:
    """The typed record of a finished run (model.pt "meta", metrics.json)."""
    cfg, model, ps, res = run.cfg, run.model, run.ps, run.result
    return RunRecord(
        run_id=run.run_dir.name, arch=cfg.arch, backbone=run.bb.name, weights=run.bb.weights, image_size=run.size,
        tasks=run.tasks, classes={t: ps.classes[t] for t in run.tasks},
        embedding_dim=model.embedding_dim if hasattr(model, "embedding_dim") else model.head.embedding_dim,
        in_channels=run.bb.channels, texture_dim=run.bb.texture_dim, data=str(Path(cfg.data).resolve()),
        data_root=str(ps.root.resolve()), data_hash=run.data_hash, n_paintings=int(len(ps.frame)),
        unreadable=run.failed, splits={s: int(len(i)) for s, i in run.idx.items()}, best_epoch=res.best_epoch,
        best_val_macro_f1=res.best_score if run.stop_rows is not None else None, finetune=cfg.finetune,
        tune_tail=run.tune, tta=cfg.tta, fit_on=cfg.fit_on, refit=run.before_refit is not None,
        val_in_sample=cfg.fit_on == "train+val" or run.before_refit is not None, seconds=dict(run.seconds),
        folds=cfg.folds if cfg.folds >= 2 else 0, knn_k=cfg.knn_k, feature_cache=run.feat_stats,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        applied_tags={**run.applied, "tag_log": tag_log_name(cfg.tag_log)} if run.applied else None)


def tag_log_name(spec: str) -> str:
    """The tag log as a run records it: a file's absolute path, a database URL without its password."""
    from db.tags import redact
    from db.store import is_database_url
    return redact(spec) if is_database_url(spec) else str(Path(spec).resolve())


def subsample(ps: PaintingSet, n: int) -> PaintingSet:
    """Every k-th painting (sorted by path, so every style folder is represented)."""
    if not n or n >= len(ps.frame):
        return ps
    idx = np.linspace(0, len(ps.frame) - 1, n).round().astype(int)
    return dataclasses.replace(ps, frame=ps.frame.iloc[np.unique(idx)].reset_index(drop=True))


def ray_settings(cfg: TrainConfig):
    """--engine ray's settings (the import stays lazy: the default path never loads Ray)."""
    if cfg.engine != "ray":
        return None
    from trainer.ray_engine import RaySettings
    return RaySettings(address=cfg.ray_address, cpus=cfg.threads)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def summary_table(test_metrics: dict) -> str:
    lines = [f"{'task':<8}{'n':>6}{'top-1':>8}{'95% interval':>16}{'top-5':>8}{'macro-F1':>10}{'wF1':>8}"]
    for t, m in test_metrics.items():
        lo, hi = m.get("top1_ci95", (float("nan"), float("nan")))
        lines.append(f"{t:<8}{m['n']:>6}{m['top1']:>8.3f}{f'{lo:.3f}-{hi:.3f}':>16}{m['top5']:>8.3f}"
                     f"{m['macro_f1']:>10.3f}{m['weighted_f1']:>8.3f}")
    return "\n".join(lines)
