"""`TrainConfig`: every setting of `artlens train`, each a CLI flag (trainer/cli.py makes them).

`saved_config` rebuilds the config a saved run trained with, for resume and the benchmarks that
retrain a run's recipe on other labels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainer.cli import UserError, field
from trainer.data import PaintingSet, check_trainable, load_paintings
from trainer.specs import BACKBONES, HEADS


@dataclass
class TrainConfig:
    data: str = field("../shared/data/wikiart-mini", "ArtGAN-layout folder, manifest CSV "
                      "(path,artist,genre,style[,split][,title][,year|date]) or class folders")
    task: str = field("style", "ImageFolder data (DIR/<class>/<image>, no CSV): the task its folder names are",
                      choices=["style", "genre", "artist"])
    arch: str = field("rowcol_bigru", "recurrent head", choices=list(HEADS))
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
    copies_together: bool = field(True, "identical files (same sha1) share one split and one cross-fitting fold "
                                        "(test wins, then train), the data's own train/val split included; "
                                        "--no-copies-together keeps the given split (crossings then show on Overview)")
    copy_hash_share: float = field(0.15, "--copies-together: files whose pictures' 256-bit difference hashes differ in "
                                         "at most this share of the bits (a rescan, a re-saved copy) count as copies "
                                         "too; 0 = identical files only", bounds=(0, 1))
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
    tag_log: str = field("artlens.tags.duckdb", "the tag log --apply-tags reads: a DuckDB file or a "
                                                "postgresql://user@host/db URL (a team's shared log)")


# Fields added after runs were already saved: an older run's config, rebuilt, must give the model
# it trained (before --texture the head read the final map alone; before --fit-on the final model
# early-stopped on val, before --min-steps no schedule had a floor, and before --copies-together
# identical files were split like any others, and before --copy-hash-share only identical files were
# copies).
SAVED_BEFORE = {"texture": False, "fit_on": "train", "min_steps": 0, "copies_together": False,
                "copy_hash_share": 0.0}


def saved_config(saved: dict | TrainConfig, **overrides) -> TrainConfig:
    """The TrainConfig of a saved run (`model.pt` / `last.pt` "config", or a loaded checkpoint's
    config), with `overrides`."""
    if isinstance(saved, TrainConfig):
        return dataclasses.replace(saved, **overrides)
    return TrainConfig(**{**SAVED_BEFORE, **saved, **overrides})


def check_settings(cfg: TrainConfig) -> None:
    """Raise UserError for flags that contradict each other: checked before any data or torch loads."""
    if cfg.refit and cfg.fit_on != "train":
        raise UserError("--refit retrains after early stopping on val: add --fit-on train (the default, "
                        "--fit-on train+val, already trains the final model on train + val)")


def run_paintings(cfg: TrainConfig, data: str | None = None, parse_names: bool = True) -> PaintingSet:
    """The paintings at `data` (default cfg.data) split as a run with settings `cfg` splits them
    (its test fraction, seed, ImageFolder task and copies-together rule): `make train`, `make
    embed` and the benchmarks that reread a run's data all load it this way, so their splits agree."""
    ps = load_paintings(data or cfg.data, cfg.test_fraction, cfg.seed, parse_names, cfg.task, cfg.copies_together,
                        cfg.copy_hash_share)
    check_trainable(ps, data or cfg.data)
    return ps
