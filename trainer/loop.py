"""The training loop: batchers over cached maps or images, `fit` (one-cycle AdamW, early stopping,
resumable checkpoints) and `predict` (embeddings and softmax). Shared by every stage that trains or
scores a head: the final model, cross-fitting, the embed command and the benchmarks.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from trainer.augment import mix_batch
from trainer.checkpoint import atomic_torch_save
from trainer.cli import progress
from trainer.config import TrainConfig
from trainer.data import load_image
from trainer.images import image_tensor
from trainer.metrics import macro_f1
from trainer.model import CRNNClassifier, EndToEnd, TailHead, masked_multitask_loss, soft_multitask_loss

log = logging.getLogger("trainer")


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
    model.to(cfg.device)
    opt, sched = one_cycle(model, cfg, epochs, len(train_idx))
    rng = np.random.default_rng(cfg.seed + 1)
    state = _FitState()
    if resume_state:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        state = _FitState(resume_state["history"], resume_state["best_score"], resume_state["best_epoch"],
                          resume_state["best_state"], resume_state["bad"], resume_state["epoch"])
        rng = np.random.default_rng(cfg.seed + 1 + state.start)
        log.info("resuming at epoch %d%s", state.start + 1, f" (best val macro-F1 {state.best_score:.3f} at epoch "
                 f"{state.best_epoch})" if val_idx is not None else "")
    step = _Stepper(model, batch, opt, sched, labels, cfg, class_w)
    for epoch in range(state.start, epochs):
        t0 = time.time()
        loss = step.epoch(rng.permutation(train_idx), epoch, epoch == state.start, epochs, desc)
        row = {"epoch": epoch + 1, "train_loss": loss, "seconds": time.time() - t0}
        if val_idx is not None and len(val_idx):
            _validate(model, batch, labels, val_idx, cfg.device, row, state, epoch)
            log.info("%s %d/%d  loss %.3f  val loss %.3f  val macro-F1 %.3f%s  (%.1fs)", desc, epoch + 1, epochs,
                     row["train_loss"], row["val_loss"], row["val_macro_f1"], " *" if state.bad == 0 else "",
                     row["seconds"])
        else:
            state.best_epoch = epoch + 1
            if log_epochs:
                log.info("%s %d/%d  loss %.3f  (%.1fs)", desc, epoch + 1, epochs, row["train_loss"], row["seconds"])
        state.history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        stop = val_idx is not None and state.bad >= cfg.patience
        if checkpoint is not None:
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "history": state.history,
                               "best_score": state.best_score, "best_epoch": state.best_epoch,
                               "best_state": state.best_state, "bad": state.bad,
                               "epoch": epochs if stop else epoch + 1, "config": dataclasses.asdict(cfg)}, checkpoint)
        if stop:
            log.info("early stop: no val macro-F1 gain for %d epochs; best epoch %d", cfg.patience, state.best_epoch)
            break
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return FitResult(model, state.history, state.best_epoch, state.best_score)


@dataclass
class _FitState:
    """What `fit` carries from epoch to epoch (and saves for --resume)."""
    history: list[dict] = dataclasses.field(default_factory=list)
    best_score: float = -1.0
    best_epoch: int = 0
    best_state: dict | None = None
    bad: int = 0
    start: int = 0


def one_cycle(model: torch.nn.Module, cfg: TrainConfig, epochs: int, n_rows: int):
    """(AdamW over the model's own parameter groups, its one-cycle cosine schedule) for `epochs`
    passes over n_rows rows."""
    groups, max_lr = model.optimizer_groups(cfg.lr, cfg.tail_lr)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, epochs * int(np.ceil(n_rows / cfg.batch_size)))
    # Warm up over 10% of the steps, but at least two: torch's OneCycleLR divides by zero when its
    # warm-up ends at step 0 (exactly 10 steps at 10%), which short runs on small collections hit.
    pct_start = 0.1 if steps <= 2 else max(0.1, 2 / steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=pct_start,
                                                anneal_strategy="cos")
    return opt, sched


class _Stepper:
    """One epoch of optimizer steps: batches, MixUp/CutMix, masked multitask loss, AMP on a GPU."""

    def __init__(self, model, batch: Batcher, opt, sched, labels: dict[str, np.ndarray], cfg: TrainConfig, class_w):
        self.model, self.batch, self.opt, self.sched, self.labels, self.cfg = model, batch, opt, sched, labels, cfg
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.mixing = cfg.mixup > 0 or cfg.cutmix > 0
        self.mix_rng = np.random.default_rng(cfg.seed + 7)
        self.use_amp = cfg.device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.tgt = {t: torch.from_numpy(np.array(y)) for t, y in labels.items()}
        self.n_classes = {t: h.out_features for t, h in _heads(model).items()}
        self.cw = {t: w.to(cfg.device) for t, w in class_w.items()} if class_w else None

    def epoch(self, order: np.ndarray, epoch: int, first: bool, epochs: int, desc: str) -> float:
        """Train over rows `order`; returns the mean training loss."""
        cfg, t0 = self.cfg, time.time()
        self.model.train()
        total, n = 0.0, 0
        bar = range(0, len(order), cfg.batch_size)  # one log line per epoch is progress enough
        for b, s in enumerate(bar):
            if b == 20 and first and len(bar) >= 60:   # a large collection: say early what an epoch costs
                el = time.time() - t0
                log.info("%s %d: 20 of %d batches in %.0fs: about %.0fs an epoch, %d epochs", desc, epoch + 1, len(bar),
                         el, el / 20 * len(bar), epochs)
            idx = order[s:s + cfg.batch_size]
            loss = self.step(idx)
            total += loss * len(idx)
            n += len(idx)
        return total / max(n, 1)

    def step(self, idx: np.ndarray) -> float:
        cfg, device, labels = self.cfg, self.cfg.device, self.labels
        x = self.batch(idx, True)
        if self.mixing:
            xm, soft, mask = mix_batch(x.numpy(), {t: labels[t][idx] for t in labels}, self.n_classes, self.mix_rng,
                                       cfg.mixup, cfg.cutmix, cfg.mix_prob, _spatial_channels(self.model))
            x = torch.from_numpy(xm)
        x = x.to(device)
        with torch.autocast("cuda", enabled=self.use_amp):
            _, logits = self.model(x)
            if self.mixing:
                loss = soft_multitask_loss(logits, {t: torch.from_numpy(soft[t]).to(device) for t in logits},
                                           {t: torch.from_numpy(mask[t]).to(device) for t in logits}, self.cw,
                                           cfg.label_smoothing)
            else:
                loss = masked_multitask_loss(logits, {t: self.tgt[t][idx].to(device) for t in logits}, self.cw,
                                             cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return loss.item()


def _validate(model, batch: Batcher, labels: dict[str, np.ndarray], val_idx: np.ndarray, device: str, row: dict,
              state: _FitState, epoch: int) -> None:
    """Val loss and macro-F1 into `row`; keeps the best epoch's weights in `state`."""
    _, probs = predict(model, batch, val_idx, device)
    vl = {t: labels[t][val_idx] for t in probs}
    with torch.no_grad():
        row["val_loss"] = float(masked_multitask_loss(
            {t: torch.log(torch.from_numpy(p).clamp_min(1e-8)) for t, p in probs.items()},
            {t: torch.from_numpy(y) for t, y in vl.items()}))
    row["val_macro_f1"] = val_score(labels, probs, val_idx)
    if row["val_macro_f1"] > state.best_score:
        state.best_score, state.best_epoch, state.bad = row["val_macro_f1"], epoch + 1, 0
        state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        state.bad += 1


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
