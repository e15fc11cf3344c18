"""The benchmarks' settings that run the product (`NoiseBenchConfig`, `LoopBenchConfig`, `SubsetConfig`,
`CatalogueConfig`, each field a CLI flag), torch-free so that `artlens bench noise --help` and a wrong
flag answer at once."""
from __future__ import annotations

from dataclasses import dataclass

from trainer.cli import field

MODES = ("uniform", "confusable", "artist")


@dataclass
class NoiseBenchConfig:
    run: str = field("", "clean run whose data and training settings to use (default runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    fraction: float = field(0.1, "share of each task's labels to flip")
    modes: list[str] = field(list(MODES), "flip kinds: uniform (to any other class), confusable (to the class a "
                                          "cross-fitted head of the clean run likes next), artist (to a label the "
                                          "painting's own artist carries elsewhere)")
    tasks: list[str] = field(["style", "genre"], "tasks to flip and grade")
    seed: int = field(1, "seed of the flips (the training seed stays the clean run's)")
    work_dir: str = field("bench/noise", "where the noisy copies, their runs and stores go")
    cache_dir: str = field("cache", "feature-map cache folder (shared with make train)")
    out: str = field("bench/noise.json", "result file (PR curves are written beside it)")
    grade_only: bool = field(False, "re-grade the stores an earlier run left in --work-dir (same seed) without "
                                    "retraining or re-embedding")
    reembed: bool = field(False, "run `make embed` again on the runs an earlier run left in --work-dir (same seed) "
                                 "and grade: after changing the score stage, without retraining")
    bootstrap: int = field(200, "bootstrap resamples for the 95% intervals of AUROC and precision@k (0 = none)")


@dataclass
class LoopBenchConfig:
    run: str = field("", "clean run whose data and settings the noisy copy uses (default runs/latest)")
    runs_dir: str = field("runs", "where runs are kept")
    seed: int = field(1, "flip seed (the noisy copy of `make bench-noise ARGS=\"--seed S\"` is reused if present)")
    fraction: float = field(0.1, "share of each task's labels flipped")
    tasks: list[str] = field(["style", "genre"], "tasks reviewed")
    review: int = field(100, "paintings the perfect reviewer decides per task, and the size of the next queue graded")
    spot_check: int = field(60, "paintings of the Review page's spot check the perfect reviewer decides per task and "
                                "store, for the refined wrong-label estimate")
    work_dir: str = field("bench/noise", "where the noisy copies live (shared with make bench-noise)")
    cache_dir: str = field("cache", "feature-map cache folder")
    out: str = field("", "result file (a markdown table is written beside it; default bench/loop-seed<S>.json)")


@dataclass
class SubsetConfig:
    data: str = field("../shared/data/wikiart-mini", "the collection: ArtGAN-layout folder or manifest CSV")
    every: int = field(2, "keep every k-th painting in path order (2: half the collection, 4: a quarter)",
                       bounds=(1, 1_000_000))
    offset: int = field(0, "start at this painting (0 to every - 1): another subset of the same size")
    out: str = field("bench/subset/data", "folder for the manifest and the links to the class folders")


@dataclass
class CatalogueConfig:
    data: str = field("../shared/data/wikiart-mini", "the collection: ArtGAN-layout folder or manifest CSV")
    every: int = field(8, "keep every k-th painting in path order", bounds=(1, 1_000_000))
    offset: int = field(0, "start at this painting (0 to every - 1)")
    seed: int = field(0, "seed of the date forms each dated painting is written in")
    out: str = field("bench/catalogue/data", "folder for the catalogue (manifest.csv) and its numbered image files")
