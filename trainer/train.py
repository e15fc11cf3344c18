"""`python -m trainer`: fit a multi-task CNN-RNN classifier (artist, genre, style).

Default path (CPU): the pretrained backbone is frozen, its feature maps are computed once and
cached (trainer/features.py), and only the recurrent head trains, on cached maps. `--finetune`
trains backbone + head end to end from images (meant for `--device cuda`, AMP on).

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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from trainer.backbones import BACKBONES, build_backbone
from trainer.cli import UserError, field, parse_config, progress
from trainer.crossfit import cross_fit
from trainer.data import PaintingSet, load_image, load_paintings
from trainer.augment import mix_batch
from trainer.features import check_images, extract_features, image_tensor, training_views
from trainer.metrics import classification_metrics, macro_f1
from trainer.model import ARCHS, CRNNClassifier, EndToEnd, TailHead, masked_multitask_loss, soft_multitask_loss
from trainer.relabel import apply_decisions, read_decisions

log = logging.getLogger("trainer")


@dataclass
class TrainConfig:
    data: str = field("../shared/data/wikiart-mini", "ArtGAN-layout folder or manifest CSV (path,artist,genre,style[,split])")
    arch: str = field("rowcol_bigru", "recurrent head", choices=list(ARCHS))
    backbone: str = field("auto", "CNN backbone; auto = efficientnet_lite0 (pixels for scratch_crnn)",
                          choices=["auto", *BACKBONES])
    weights: str = field("default", "torchvision backbones: none | imagenet (download) | PATH to a state_dict")
    image_size: int = field(0, "input size in px; 0 = the backbone's default (224)")
    out_dir: str = field("runs", "where runs/<id>/ is written")
    run_id: str = field("", "run folder name; default: a timestamp")
    cache_dir: str = field("cache", "feature-map cache folder")
    epochs: int = field(10, "epochs of the final model's one-cycle schedule (with --fit-on train the most: early "
                            "stopping may end it sooner)")
    batch_size: int = field(64, "batch size")
    lr: float = field(2e-3, "AdamW peak learning rate (cosine schedule)")
    weight_decay: float = field(0.05, "AdamW weight decay")
    label_smoothing: float = field(0.1, "cross-entropy label smoothing")
    dropout: float = field(0.3, "dropout in the head")
    balance: str = field("weights", "class balancing: inverse-sqrt-frequency loss weights, or none",
                         choices=["weights", "none"])
    patience: int = field(8, "early stopping: epochs without val macro-F1 gain")
    grad_clip: float = field(1.0, "gradient norm clip")
    folds: int = field(5, "K for cross-fitted scores over all labelled paintings (0 = skip: scores then come "
                          "from the final model, which saw the labels)")
    crossfit_epochs: int = field(4, "epochs per cross-fitting head (a full one-cycle schedule each); "
                                    "0 = the final model's best epoch")
    rows_per_head: int = field(100_000, "scale: a head sees about this many training rows in all; epochs shrink "
                                        "(at least 1) once the collection passes it, so the cost per painting of "
                                        "training and cross-fitting stays flat (0 = no cap)")
    min_steps: int = field(60, "small collections: every head (final and cross-fitting) takes at least this many "
                               "optimizer steps, in more epochs (measured: 16 steps per cross-fit head left a "
                               "322-painting collection's artist top-1 at half; 0 = no floor)")
    knn_k: int = field(10, "neighbours for the kNN-disagreement detectors")
    test_fraction: float = field(0.15, "share of train carved out as the held-out test split")
    seed: int = field(0, "random seed (splits, init, batches)")
    device: str = field("cpu", "cpu or cuda")
    engine: str = field("auto", "frozen-backbone inference: onnx (ONNX Runtime), eager (PyTorch), auto = onnx on a "
                                "CPU; ray = the feature stage as a Ray Data pipeline (pip install -r requirements-ray.txt)",
                        choices=["auto", "onnx", "eager", "ray"])
    ray_address: str = field("", "--engine ray: the cluster to join (ray://host:10001 or auto); empty = a local one")
    finetune: bool = field(False, "unfreeze the backbone and train end to end (for a GPU)")
    tune_tail: bool = field(True, "train the backbone's last stage + 1x1 head conv with the head, on cached "
                                  "last-stage inputs (Lite backbones: a partial fine-tune a CPU can afford); "
                                  "--no-tune-tail = the frozen backbone of v1")
    tail_lr: float = field(0.1, "--tune-tail: the tail's learning rate as a share of --lr (differential LR)")
    texture: bool = field(True, "Lite backbones: feed the head each stage's channel mean and std (brushwork, palette) "
                                "beside the final map (trainer/texture.py); --no-texture = the final map alone")
    crops: int = field(0, "random-resized-crop + colour-jitter views cached per painting, besides orig and hflip")
    mixup: float = field(0.0, "MixUp Beta alpha on cached maps (0 = off)")
    cutmix: float = field(0.0, "CutMix Beta alpha on cached maps, boxes of the spatial map (0 = off)")
    mix_prob: float = field(1.0, "share of batches mixed when --mixup or --cutmix is on (half CutMix when both)")
    tta: bool = field(False, "average predictions and embeddings over orig + hflip (test metrics, cross-fit, embed)")
    fit_on: str = field("train+val", "the final model's paintings: train+val = one --epochs schedule on both splits, "
                                     "no early stopping (val metrics become in-sample; test stays held out); train = "
                                     "early stopping on val, as before v4", choices=["train+val", "train"])
    refit: bool = field(False, "--fit-on train: after early stopping on val, train the final model again on train + "
                               "val for a full schedule of the best epoch's length")
    threads: int = field(0, "torch CPU threads; 0 = all cores")
    limit: int = field(0, "use only N paintings (evenly spread), for quick checks; 0 = all")
    resume: bool = field(False, "continue the interrupted run --run-id (default runs/latest)")
    apply_tags: bool = field(False, "train on the review decisions in --tag-log: mislabel + suggested label replaces "
                                    "the label, mislabel alone drops it, correct keeps it (the data folder is not touched)")
    tag_log: str = field("artlens.tags.duckdb", "the tag log --apply-tags reads")


# Fields added after runs were already saved: an older run's config, rebuilt, must give the model
# it trained (before --texture the head read the final map alone; before --fit-on the final model
# early-stopped on val, and before --min-steps no schedule had a floor).
SAVED_BEFORE = {"texture": False, "fit_on": "train", "min_steps": 0}


def saved_config(saved: dict, **overrides) -> TrainConfig:
    """The TrainConfig of a saved run (`model.pt` / `last.pt` "config"), with `overrides`."""
    return TrainConfig(**{**SAVED_BEFORE, **saved, **overrides})


# ------------------------------------------------------------------ helpers
def epochs_for(epochs: int, n_rows: int, rows_per_head: int, min_steps: int = 0, batch_size: int = 64) -> int:
    """`epochs` over n_rows training rows, raised so a small collection's head still takes min_steps
    optimizer steps, then capped so epochs * n_rows stays near rows_per_head (at least one epoch; 0 =
    no cap). From rows_per_head / epochs paintings up a head's cost stops growing, and past
    rows_per_head it grows linearly (one epoch)."""
    steps_per_epoch = max(1, -(-n_rows // max(1, batch_size)))
    epochs = max(epochs, -(-min_steps // steps_per_epoch))
    if rows_per_head <= 0:
        return epochs
    return max(1, min(epochs, rows_per_head // max(1, n_rows)))


def final_rows(cfg: "TrainConfig", idx: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows the final model trains on, rows it early-stops on or None) for --fit-on, from the
    split's row indices {train, val, test}."""
    if cfg.fit_on == "train":
        return idx["train"], idx["val"]
    return np.sort(np.concatenate([idx["train"], idx["val"]])), None


def class_weights(labels: np.ndarray, n: int) -> torch.Tensor:
    """Inverse-sqrt-frequency weights (C,), mean 1 over the classes present."""
    counts = np.bincount(labels[labels >= 0], minlength=n).astype(float)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def task_weights(labels: dict[str, np.ndarray], rows: np.ndarray, num_classes: dict[str, int],
                 balance: str) -> dict[str, torch.Tensor] | None:
    """{task: class_weights over `rows`} for --balance weights, else None (unweighted loss)."""
    if balance != "weights":
        return None
    return {t: class_weights(y[rows], num_classes[t]) for t, y in labels.items()}


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


Batcher = Callable[[np.ndarray, bool], torch.Tensor]  # (indices, training) -> model input


def cached_batcher(views: dict[str, np.ndarray], seed: int, eval_view: str = "orig") -> Batcher:
    """Batches from cached feature maps; in training each row takes a random augmentation view,
    in evaluation `eval_view`."""
    rng = np.random.default_rng(seed)
    names = list(views)

    def get(idx: np.ndarray, training: bool) -> torch.Tensor:
        if not training or len(names) == 1:
            return torch.from_numpy(views[eval_view if not training else names[0]][idx].astype(np.float32))
        pick = rng.integers(0, len(names), size=len(idx))
        out = np.empty((len(idx), *views["orig"].shape[1:]), np.float32)
        for j, v in enumerate(names):
            m = pick == j
            out[m] = views[v][idx[m]]
        return torch.from_numpy(out)
    return get


def image_batcher(root: Path, paths: list[str], size: int, mean, std, seed: int) -> Batcher:
    """Batches decoded from JPEGs (for --finetune); random horizontal flip in training."""
    rng = np.random.default_rng(seed)

    def get(idx: np.ndarray, training: bool) -> torch.Tensor:
        views = rng.choice(["orig", "hflip"], size=len(idx)) if training else ["orig"] * len(idx)
        return torch.stack([image_tensor(load_image(root / paths[i]), size, mean, std, v) for i, v in zip(idx, views)])
    return get


@torch.no_grad()
def predict(model: torch.nn.Module, batch: Batcher, idx: np.ndarray, device: str, batch_size: int = 256,
            desc: str | None = None, tta: Batcher | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(embeddings (n, D) float32, {task: softmax (n, C)}) for rows idx; with `tta` (a second view's
    batcher, e.g. hflip) the mean of both views' embeddings and softmax."""
    if tta is not None:
        e1, p1 = predict(model, batch, idx, device, batch_size, desc)
        e2, p2 = predict(model, tta, idx, device, batch_size)
        return (e1 + e2) / 2, {t: (p1[t] + p2[t]) / 2 for t in p1}
    model.eval()
    # Outputs go into arrays allocated once: a list of per-batch arrays, each allocated between
    # the batches' large input buffers, fragments the heap and grows it by about a batch per batch.
    embs, probs = None, {}
    it = range(0, len(idx), batch_size)
    for s in (progress(it, desc) if desc else it):
        with torch.autocast("cuda", enabled=device.startswith("cuda")):   # AMP on a GPU, as in training
            e, logits = model(batch(idx[s:s + batch_size], False).to(device))
        if embs is None:
            embs = np.zeros((len(idx), e.shape[1]), np.float32)
        embs[s:s + len(e)] = e.float().cpu().numpy()
        for t, lg in logits.items():
            if t not in probs:
                probs[t] = np.zeros((len(idx), lg.shape[1]), np.float32)
            probs[t][s:s + len(lg)] = torch.softmax(lg.float(), 1).cpu().numpy()
    if embs is None:   # no rows
        embs = np.zeros((0, getattr(model, "embedding_dim", None) or model.head.embedding_dim), np.float32)
    return embs, probs


def val_score(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray], idx: np.ndarray) -> float:
    """Mean over tasks of macro-F1 on rows idx (tasks with no labelled row skipped)."""
    scores = [macro_f1(labels[t][idx], probs[t].argmax(1), probs[t].shape[1])
              for t in probs if (labels[t][idx] >= 0).any()]
    return float(np.mean(scores)) if scores else 0.0


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict]
    best_epoch: int
    best_score: float


def fit(model: torch.nn.Module, batch: Batcher, labels: dict[str, np.ndarray], train_idx: np.ndarray,
        val_idx: np.ndarray | None, cfg: TrainConfig, epochs: int, class_w: dict[str, torch.Tensor] | None,
        checkpoint: Path | None = None, resume_state: dict | None = None, desc: str = "epoch",
        on_epoch: Callable[[dict], None] | None = None, log_epochs: bool = True) -> FitResult:
    """Train `model` on rows train_idx; early-stop on val macro-F1 when val_idx is given (else the
    last epoch's model is the result). `log_epochs=False` keeps a line per epoch out of the log
    when there is no val (the cross-fitting heads log per fold).

    With `checkpoint`, the full training state is saved after every epoch (atomic), so a killed
    run continues from the last finished epoch with `resume_state`.
    """
    device = cfg.device
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups, max_lr = param_groups(model, cfg)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, epochs * int(np.ceil(len(train_idx) / cfg.batch_size)))
    # Warm up over 10% of the steps, but at least two: torch's OneCycleLR divides by zero when its
    # warm-up ends at step 0 (exactly 10 steps at 10%), which short runs on small collections hit.
    pct_start = 0.1 if steps <= 2 else max(0.1, 2 / steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=pct_start,
                                                anneal_strategy="cos")
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    mix_rng = np.random.default_rng(cfg.seed + 7)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    rng = np.random.default_rng(cfg.seed + 1)
    history: list[dict] = []
    best_score, best_epoch, best_state, bad, start = -1.0, 0, None, 0, 0
    if resume_state:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        history, best_score, best_epoch = resume_state["history"], resume_state["best_score"], resume_state["best_epoch"]
        best_state, bad, start = resume_state["best_state"], resume_state["bad"], resume_state["epoch"]
        rng = np.random.default_rng(cfg.seed + 1 + start)
        log.info("resuming at epoch %d%s", start + 1, f" (best val macro-F1 {best_score:.3f} at epoch {best_epoch})"
                 if val_idx is not None else "")
    tgt = {t: torch.from_numpy(np.array(y)) for t, y in labels.items()}
    n_classes = {t: h.out_features for t, h in _heads(model).items()}
    cw = {t: w.to(device) for t, w in class_w.items()} if class_w else None
    for epoch in range(start, epochs):
        model.train()
        t0 = time.time()
        order = rng.permutation(train_idx)
        total, n = 0.0, 0
        bar = range(0, len(order), cfg.batch_size)  # one log line per epoch is progress enough
        for b, s in enumerate(bar):
            if b == 20 and epoch == start and len(bar) >= 60:   # a large collection: say early what an epoch costs
                el = time.time() - t0
                log.info("%s %d: 20 of %d batches in %.0fs: about %.0fs an epoch, %d epochs", desc, epoch + 1, len(bar),
                         el, el / 20 * len(bar), epochs)
            idx = order[s:s + cfg.batch_size]
            x = batch(idx, True)
            if mixing:
                xm, soft, mask = mix_batch(x.numpy(), {t: labels[t][idx] for t in labels}, n_classes, mix_rng,
                                           cfg.mixup, cfg.cutmix, cfg.mix_prob, _spatial_channels(model))
                x = torch.from_numpy(xm)
            x = x.to(device)
            with torch.autocast("cuda", enabled=use_amp):
                _, logits = model(x)
                if mixing:
                    loss = soft_multitask_loss(logits, {t: torch.from_numpy(soft[t]).to(device) for t in logits},
                                               {t: torch.from_numpy(mask[t]).to(device) for t in logits}, cw,
                                               cfg.label_smoothing)
                else:
                    loss = masked_multitask_loss(logits, {t: tgt[t][idx].to(device) for t in logits}, cw,
                                                 cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        row = {"epoch": epoch + 1, "train_loss": total / max(n, 1), "seconds": time.time() - t0}
        if val_idx is not None and len(val_idx):
            _, probs = predict(model, batch, val_idx, device)
            vl = {t: labels[t][val_idx] for t in probs}
            with torch.no_grad():
                row["val_loss"] = float(masked_multitask_loss(
                    {t: torch.log(torch.from_numpy(p).clamp_min(1e-8)) for t, p in probs.items()},
                    {t: torch.from_numpy(y) for t, y in vl.items()}))
            row["val_macro_f1"] = val_score(labels, probs, val_idx)
            if row["val_macro_f1"] > best_score:
                best_score, best_epoch, bad = row["val_macro_f1"], epoch + 1, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            log.info("%s %d/%d  loss %.3f  val loss %.3f  val macro-F1 %.3f%s  (%.1fs)", desc, epoch + 1, epochs,
                     row["train_loss"], row["val_loss"], row["val_macro_f1"], " *" if bad == 0 else "", row["seconds"])
        else:
            best_epoch = epoch + 1
            if log_epochs:
                log.info("%s %d/%d  loss %.3f  (%.1fs)", desc, epoch + 1, epochs, row["train_loss"], row["seconds"])
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        stop = val_idx is not None and bad >= cfg.patience
        if checkpoint is not None:
            _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "history": history, "best_score": best_score,
                                "best_epoch": best_epoch, "best_state": best_state, "bad": bad,
                                "epoch": epochs if stop else epoch + 1, "config": dataclasses.asdict(cfg)},
                               checkpoint)
        if stop:
            log.info("early stop: no val macro-F1 gain for %d epochs; best epoch %d", cfg.patience, best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(model, history, best_epoch, best_score)


def _spatial_channels(model: torch.nn.Module) -> int | None:
    """Channels of the model's input that are places on the map (CutMix pastes boxes of those only)."""
    if not _head_of(model).texture_dim:
        return None
    return model.tail.stage_channels if isinstance(model, TailHead) else _head_of(model).in_channels


def _head_of(model: torch.nn.Module) -> CRNNClassifier:
    """The CRNNClassifier inside a TailHead or EndToEnd model (or the model itself)."""
    return model.head if isinstance(model, (TailHead, EndToEnd)) else model


def _heads(model: torch.nn.Module) -> dict:
    return dict(_head_of(model).heads.items())


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> tuple[list[dict], list[float]]:
    """AdamW groups and their peak LRs: a --tune-tail model's tail at lr * tail_lr (the seeds'
    differential learning rates: pretrained layers move less than the new head)."""
    if isinstance(model, TailHead):
        tail = [p for p in model.tail.parameters() if p.requires_grad]
        rest = [p for p in model.head.parameters() if p.requires_grad]
        return ([{"params": tail, "lr": cfg.lr * cfg.tail_lr}, {"params": rest, "lr": cfg.lr}],
                [cfg.lr * cfg.tail_lr, cfg.lr])
    return [{"params": [p for p in model.parameters() if p.requires_grad]}], [cfg.lr]


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def refit_final(make_model: Callable, batch: Batcher, labels: dict[str, np.ndarray], rows: np.ndarray,
                cfg: TrainConfig, best_epoch: int, num_classes: dict[str, int]) -> torch.nn.Module:
    """--refit: a fresh model trained on `rows` (train + val) for one full schedule of `best_epoch`
    epochs, the length early stopping on val chose; no early stopping (val is in the training rows)."""
    epochs = max(1, best_epoch)
    log.info("refit: train + val (%d paintings), %d epochs", len(rows), epochs)
    cw = task_weights(labels, rows, num_classes, cfg.balance)
    torch.manual_seed(cfg.seed)
    return fit(make_model(), batch, labels, rows, None, cfg, epochs, cw, desc="refit epoch").model


# ------------------------------------------------------------------ main
def resolve_run_dir(out_dir: str, run_id: str) -> Path:
    """runs/<run_id>, or what runs/latest points to when run_id is empty."""
    base = Path(out_dir)
    if run_id:
        return base / run_id
    latest = base / "latest"
    if not latest.exists():
        raise UserError(f"no run found: {latest} does not exist (run `make train` first, or pass the run id)")
    return latest.resolve()


def point_latest(run_dir: Path) -> None:
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


def crossfit_plan(cfg: TrainConfig, labels: dict[str, np.ndarray], ok: np.ndarray, best_epoch: int
                  ) -> tuple[np.ndarray, int, np.ndarray]:
    """(rows to cross-fit: readable and labelled for some task, epochs per fold head, strata (N,)
    that balance the folds)."""
    has_label = np.any([labels[t] >= 0 for t in labels], axis=0)
    rows = np.flatnonzero(ok & has_label)
    epochs = epochs_for(cfg.crossfit_epochs or max(1, best_epoch), len(rows) * (cfg.folds - 1) // cfg.folds,
                        cfg.rows_per_head, cfg.min_steps, cfg.batch_size)
    return rows, epochs, labels["style"] if "style" in labels else labels[next(iter(labels))]


def run_crossfit(cfg: TrainConfig, ps: PaintingSet, backbone_name: str, size: int,
                 labels: dict[str, np.ndarray], num_classes: dict[str, int], ok: np.ndarray, cw,
                 batch: Batcher | None, tta: Batcher | None, make_model: Callable, best_epoch: int):
    """The cross-fitting stage of `make train`: K heads (with their own tuned tail under
    --tune-tail) on the cached maps the final model trained on.

    A --finetune run cross-fits heads on the pretrained (frozen) backbone's maps: K end-to-end
    trainings would cost K times the fine-tune, and what matters is that no score saw its label.
    """
    if batch is None:
        frozen = build_backbone(backbone_name, cfg.weights, cfg.texture)
        views, ok_f, _, _ = extract_features(ps.root, ps.frame["path"].tolist(), frozen, cfg.cache_dir, size,
                                             views=("orig", "hflip"), device=cfg.device, desc="cross-fit: features",
                                             engine=cfg.engine, ray=ray_settings(cfg))
        ok, batch = ok & ok_f, cached_batcher(views, cfg.seed)
        tta = cached_batcher(views, cfg.seed, "hflip") if cfg.tta else None

        def make_model():
            return CRNNClassifier(cfg.arch, frozen.channels, num_classes, cfg.dropout, frozen.texture_dim)
    rows, epochs, strata = crossfit_plan(cfg, labels, ok, best_epoch)
    log.info("cross-fitting: %d folds x %d epochs over %d labelled paintings (all splits)", cfg.folds, epochs, len(rows))

    def fit_head(model, train_rows, desc):
        return fit(model, batch, labels, train_rows, None, cfg, epochs, cw, desc=desc, log_epochs=False).model

    cf = cross_fit(make_model, fit_head, lambda m, r: predict(m, batch, r, cfg.device, tta=tta), labels, rows,
                   strata, cfg.folds, cfg.seed, cfg.knn_k)
    cf.paths = np.array(ps.frame["path"].tolist(), dtype=object)[rows].astype(str)
    return cf, rows


def crossfit_metrics(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray], classes: dict[str, list[str]]
                     ) -> dict:
    """`classification_metrics` of the cross-fitted softmax {task: (P, C)} against labels {task: (P,)}
    over every painting it scored (all splits): how well the heads that judge the labels know them,
    on ten times the test split's paintings."""
    return {t: classification_metrics(labels[t], p, classes[t]) for t, p in probs.items() if (labels[t] >= 0).any()}


def train(cfg: TrainConfig) -> Path:
    """Run the whole training command; returns the run folder."""
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
        saved = resume_state["config"]
        cfg = saved_config(saved, resume=True, device=cfg.device, threads=cfg.threads)
    else:
        run_dir = Path(cfg.out_dir) / (cfg.run_id or time.strftime("%Y%m%d-%H%M%S"))
    if cfg.refit and cfg.fit_on != "train":
        raise UserError("--refit retrains after early stopping on val: add --fit-on train (the default, "
                        "--fit-on train+val, already trains the final model on train + val)")
    if cfg.arch == "scratch_crnn" and cfg.backbone not in ("auto", "pixels"):
        raise UserError("scratch_crnn learns from raw pixels: use --backbone pixels (or auto)")
    if cfg.backbone == "pixels" and cfg.arch != "scratch_crnn":
        raise UserError(f"--backbone pixels only works with --arch scratch_crnn, not {cfg.arch}")
    backbone_name = cfg.backbone if cfg.backbone != "auto" else ("pixels" if cfg.arch == "scratch_crnn" else "efficientnet_lite0")
    seed_everything(cfg.seed)
    t_start = time.time()
    ps = subsample(load_paintings(cfg.data, cfg.test_fraction, cfg.seed), cfg.limit)
    data_hash = ps.data_hash()   # of the data as given: `make embed` compares it with what it reads
    changes, applied = None, None
    if cfg.apply_tags:
        ps.frame, changes, applied = apply_decisions(ps.frame, ps.classes, read_decisions(cfg.tag_log))
        log.info("--apply-tags %s: %d decisions: %d labels replaced, %d dropped, %d kept (%d for paintings or tasks "
                 "not in this data)", cfg.tag_log, applied["decisions"], applied["replaced"], applied["dropped"],
                 applied["kept"], applied["not_in_data"])
    try:  # fail before hours of work, not at the first checkpoint
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {run_dir}: {e.strerror or e}") from None
    tasks = ps.tasks
    bb = build_backbone(backbone_name, cfg.weights, cfg.texture)
    size = cfg.image_size or bb.default_size
    frame = ps.frame
    labels = {t: ps.labels(t) for t in tasks}
    num_classes = {t: len(ps.classes[t]) for t in tasks}
    log.info("run %s: arch %s on %s (%s), %dpx, tasks %s", run_dir.name, cfg.arch, bb.name, bb.weights, size, tasks)

    paths = frame["path"].tolist()
    tune = cfg.tune_tail and bb.tail is not None and not cfg.finetune   # --finetune trains all of it anyway
    if cfg.tune_tail and bb.tail is None and bb.name != "pixels":
        log.warning("%s has no stem/tail split (only the Lite backbones do): its head trains on frozen maps", bb.name)
    tta = None
    pristine_tail = copy.deepcopy(bb.tail) if tune else None   # every fold starts from ImageNet's
    if cfg.finetune:
        sha1s, ok, failed = check_images(ps.root, paths)
        batch = image_batcher(ps.root, paths, size, bb.mean, bb.std, cfg.seed)
        feat_stats = {"hits": 0, "misses": 0}
        t_feat = 0.0
    else:
        t0 = time.time()
        views, ok, sha1s, stats = extract_features(ps.root, paths, bb, cfg.cache_dir, size,
                                                   views=training_views(cfg.crops), device=cfg.device,
                                                   stage=tune, engine=cfg.engine, ray=ray_settings(cfg))
        t_feat = time.time() - t0
        failed = stats.failed
        feat_stats = {"hits": stats.hits, "misses": stats.misses}
        log.info("feature cache: %d hits, %d computed, %d unreadable (%.0fs)", stats.hits, stats.misses,
                 len(failed), t_feat)
        batch = cached_batcher(views, cfg.seed)
        tta = cached_batcher(views, cfg.seed, "hflip") if cfg.tta else None
    if not ok.any():
        raise UserError(f"{cfg.data}: none of the {len(paths)} images could be read; first: {failed[0] if failed else '?'}")

    split = frame["split"].to_numpy()
    idx = {s: np.flatnonzero((split == s) & ok) for s in ("train", "val", "test")}
    if len(idx["train"]) == 0:
        raise UserError(f"{cfg.data}: no readable training paintings")
    if len(idx["val"]) == 0:  # no ArtGAN val split given: carve one so early stopping still works
        rng = np.random.default_rng(cfg.seed + 3)
        pick = rng.permutation(idx["train"])
        idx["val"], idx["train"] = np.sort(pick[: max(1, len(pick) // 10)]), np.sort(pick[max(1, len(pick) // 10):])
    # --fit-on train+val: the final model sees val's labels too, for one fixed schedule; measured on
    # three seeds, 10 epochs on train + val beat 40 early-stopped ones on train alone (README).
    fit_rows, stop_rows = final_rows(cfg, idx)
    cw = task_weights(labels, fit_rows, num_classes, cfg.balance)

    def make_model():
        # the map's own channels; texture statistics, if any, are packed behind them
        head = CRNNClassifier(cfg.arch, bb.channels, num_classes, cfg.dropout, bb.texture_dim)
        if cfg.finetune:
            return EndToEnd(bb.net, head)
        if tune:
            return TailHead(copy.deepcopy(pristine_tail), head)
        return head

    def log_eta(row: dict) -> None:
        if row["epoch"] != (resume_state or {}).get("epoch", 0) + 1:
            return   # once, after the first epoch: it measures this machine's speed on this data
        per_row = row["seconds"] / max(1, len(fit_rows))
        head = row["seconds"] * (epochs - row["epoch"])
        crossfit = "no cross-fitting (--folds < 2)"
        if cfg.folds >= 2:   # the plan run_crossfit will follow, with the planned epochs for the best one
            cf_rows, cf_epochs, _ = crossfit_plan(cfg, labels, ok, epochs)
            crossfit = (f"about {per_row * len(cf_rows) * (cfg.folds - 1) * cf_epochs:.0f}s of cross-fitting "
                        f"({cfg.folds} folds x {cf_epochs} epochs over {len(cf_rows)} paintings)")
        log.info("estimate: at %.1fs an epoch, %s %.0fs more for the final model and %s", row["seconds"],
                 "at most" if stop_rows is not None else "about", head, crossfit)

    epochs = epochs_for(cfg.epochs, len(fit_rows), cfg.rows_per_head, cfg.min_steps, cfg.batch_size)
    if epochs != cfg.epochs:
        log.info("%d training paintings: %d epochs instead of %d (%s)", len(fit_rows), epochs, cfg.epochs,
                 f"--rows-per-head {cfg.rows_per_head} keeps the cost per painting flat" if epochs < cfg.epochs
                 else f"--min-steps {cfg.min_steps}: a small collection's heads need more passes")
    log.info("final model: %d epochs on %s (%d paintings)%s", epochs, cfg.fit_on, len(fit_rows),
             ", early stopping on val" if stop_rows is not None else "; val metrics are in-sample")
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    res = fit(make_model(), batch, labels, fit_rows, stop_rows, cfg, epochs, cw,
              checkpoint=run_dir / "last.pt", resume_state=resume_state, on_epoch=log_eta)
    model = res.model

    def split_metrics(m: torch.nn.Module, splits: Sequence[str]) -> dict:
        out: dict = {}
        for s in splits:
            if len(idx[s]) == 0:
                continue
            _, probs = predict(m, batch, idx[s], cfg.device, tta=tta)
            out[s] = {t: classification_metrics(labels[t][idx[s]], probs[t], ps.classes[t])
                      for t in tasks if (labels[t][idx[s]] >= 0).any()}
        return out

    before_refit = None
    if cfg.refit:   # idx["val"] is never empty here: one is carved from train when the data gives none
        before_refit = split_metrics(model, ["test", "val"])   # the early-stopped model, for the ablation
        model = refit_final(make_model, batch, labels, np.concatenate([idx["train"], idx["val"]]), cfg,
                            res.best_epoch, num_classes)
    t_train = time.time() - t0

    # Held-out test metrics (the reported numbers), plus val for reference (in-sample after --refit).
    metrics: dict = {"test": {}, "val": {}, **split_metrics(model, ["test", "val"])}
    if before_refit is not None:
        metrics["before_refit"] = before_refit
    for t, m in metrics["test"].items():
        log.info("test %-6s top-1 %.3f (95%% interval %.3f-%.3f)  top-5 %.3f  macro-F1 %.3f  (n=%d)", t, m["top1"],
                 *m["top1_ci95"], m["top5"], m["macro_f1"], m["n"])

    t0 = time.time()
    crossfit_path = run_dir / "crossfit.npz"
    crossfit_path.unlink(missing_ok=True)   # a resumed or re-used run folder must not keep stale scores
    if cfg.folds >= 2:
        cf, cf_rows = run_crossfit(cfg, ps, backbone_name, size, labels, num_classes, ok, cw,
                                   batch if not cfg.finetune else None, tta, make_model, res.best_epoch)
        cf.save(crossfit_path)
        metrics["crossfit"] = crossfit_metrics(cf.probs, {t: y[cf_rows] for t, y in labels.items()}, ps.classes)
        for t, m in metrics["crossfit"].items():
            log.info("cross-fitted %-6s top-1 %.3f (95%% interval %.3f-%.3f) over %d paintings: what the detectors see",
                     t, m["top1"], *m["top1_ci95"], m["n"])
    t_crossfit = time.time() - t0

    meta = {
        "run_id": run_dir.name, "arch": cfg.arch, "backbone": bb.name, "weights": bb.weights, "image_size": size,
        "tasks": tasks, "classes": {t: ps.classes[t] for t in tasks}, "embedding_dim": model.embedding_dim
        if hasattr(model, "embedding_dim") else model.head.embedding_dim,
        "in_channels": bb.channels, "texture_dim": bb.texture_dim, "data": str(Path(cfg.data).resolve()), "data_root": str(ps.root.resolve()),
        "data_hash": data_hash, "n_paintings": int(len(frame)), "unreadable": failed,
        "splits": {s: int(len(i)) for s, i in idx.items()}, "best_epoch": res.best_epoch,
        "best_val_macro_f1": res.best_score if stop_rows is not None else None, "finetune": cfg.finetune,
        "tune_tail": tune, "tta": cfg.tta, "fit_on": cfg.fit_on, "refit": before_refit is not None,
        "val_in_sample": cfg.fit_on == "train+val" or before_refit is not None,
        "seconds": {"features": t_feat, "train": t_train, "crossfit": t_crossfit, "total": time.time() - t_start},
        "folds": cfg.folds if cfg.folds >= 2 else 0, "knn_k": cfg.knn_k,
        "feature_cache": feat_stats, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "applied_tags": {**applied, "tag_log": str(Path(cfg.tag_log).resolve())} if applied else None,
    }
    if changes is not None:   # which labels this run trained on differently from the data (make embed reads it)
        changes.to_csv(run_dir / "label_changes.csv", index=False)
    else:
        (run_dir / "label_changes.csv").unlink(missing_ok=True)
    state = model.head.state_dict() if isinstance(model, (EndToEnd, TailHead)) else model.state_dict()
    backbone_state = model.backbone.state_dict() if cfg.finetune else None
    tail_state = model.tail.state_dict() if tune else None   # loads into Backbone.tail
    _atomic_torch_save({"state_dict": state, "backbone_state": backbone_state, "tail_state": tail_state,
                        "config": dataclasses.asdict(cfg), "meta": meta}, run_dir / "model.pt")
    (run_dir / "metrics.json").write_text(json.dumps({**meta, "metrics": metrics, "history": res.history}, indent=1))
    from trainer.plots import write_plots
    write_plots(run_dir, res.history, metrics.get("test", {}))
    point_latest(run_dir)
    log.info("wrote %s (total %.0fs: features %.0fs, head %.0fs, cross-fitting %.0fs)", run_dir / "model.pt",
             time.time() - t_start, t_feat, t_train, t_crossfit)
    print(summary_table(metrics.get("test", {})))
    return run_dir


def summary_table(test_metrics: dict) -> str:
    lines = [f"{'task':<8}{'n':>6}{'top-1':>8}{'95% interval':>16}{'top-5':>8}{'macro-F1':>10}{'wF1':>8}"]
    for t, m in test_metrics.items():
        lo, hi = m.get("top1_ci95", (float("nan"), float("nan")))
        lines.append(f"{t:<8}{m['n']:>6}{m['top1']:>8.3f}{f'{lo:.3f}-{hi:.3f}':>16}{m['top5']:>8.3f}"
                     f"{m['macro_f1']:>10.3f}{m['weighted_f1']:>8.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Path:
    cfg = parse_config(TrainConfig, argv, "python -m trainer", __doc__.split("\n\n")[0])
    return train(cfg)
