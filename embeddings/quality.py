"""Image quality of each reproduction: greyscale, very small, dark, washed out, blurred, odd
aspect ratio (a frame or a detail crop), low information.

A photograph of a painting can be bad in ways a reviewer reads as a style (a dark scan looks
tenebrist, a greyscale one like a drawing). Each check measures the file, not the art, as far as
a number can: the thresholds are round values set before looking at any collection, and several
of them also fire on art that is made that way (an ink drawing is greyscale, a colour field has
little detail). So flags are shown beside the label evidence and can be filtered on; the Review
default leaves out only the photo defects (`PHOTO_DEFECTS`), never the ones a style can cause.

`quality_measures` is numpy in, numpy out on one decoded image; `image_quality` reads files.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from trainer.data import upright_rgb, viewed_size

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("embeddings")

# (flag, what it means) in the order they are shown
FLAGS = (
    ("small", "shorter side under 128 px: too small to judge"),
    ("dark", "mean brightness under 0.12: an underexposed photograph"),
    ("washed_out", "mean brightness over 0.92: overexposed or faded"),
    ("blurred", "almost no edge energy (variance of the Laplacian under 20 at 256 px)"),
    ("greyscale", "no colour (mean channel spread under 0.02): a black-and-white photograph, or a drawing"),
    ("odd_aspect", "one side over 2.5 times the other: a frame, a strip or a detail"),
    ("low_information", "brightness histogram entropy under 3 bits: a near-uniform image"),
)
FLAG_NAMES = tuple(f for f, _ in FLAGS)
# Defects of the photograph only: the Review default leaves these out. Greyscale, odd aspect and
# low information are also what ink drawings, scrolls and colour fields are.
PHOTO_DEFECTS = ("small", "dark", "washed_out", "blurred")
MIN_SIDE, DARK, BRIGHT, BLUR, GREY, ASPECT, ENTROPY = 128, 0.12, 0.92, 20.0, 0.02, 2.5, 3.0
WORK_SIDE = 256


def quality_measures(rgb: np.ndarray) -> dict[str, float]:
    """Measures of one image, rgb (H, W, 3) uint8 at about WORK_SIDE px: brightness (0-1 mean luma),
    colour (0-1 mean of max minus min channel), sharpness (variance of the 4-neighbour Laplacian of
    luma in 0-255), entropy (bits, 64-bin luma histogram)."""
    x = rgb.astype(np.float32)
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)   # 20x faster than max(-1)
    lap = (luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1] - 4 * luma[1:-1, 1:-1])
    hist = np.bincount(np.clip(luma / 4, 0, 63).astype(int).ravel(), minlength=64).astype(float)
    p = hist[hist > 0] / hist.sum()
    return {"brightness": float(luma.mean() / 255), "colour": float(spread.mean() / 255),
            "sharpness": float(lap.var()) if lap.size else 0.0, "entropy": float(-(p * np.log2(p)).sum())}


def quality_flags(m: dict[str, float], width: int, height: int) -> list[str]:
    """The FLAG_NAMES that one image's measures (quality_measures) and size raise."""
    short, long = min(width, height), max(width, height)
    checks = {"small": short < MIN_SIDE, "dark": m["brightness"] < DARK, "washed_out": m["brightness"] > BRIGHT,
              "blurred": m["sharpness"] < BLUR, "greyscale": m["colour"] < GREY,
              "odd_aspect": short > 0 and long / short > ASPECT, "low_information": m["entropy"] < ENTROPY}
    return [f for f in FLAG_NAMES if checks[f]]


def flag_counts(flags) -> "pd.Series":
    """Paintings per flag, most first, from a Series of comma-separated flag strings ('' = none)."""
    names = flags.str.split(",").explode()
    return names[names.fillna("") != ""].value_counts()


def image_quality(root: Path, paths: list[str]):
    """DataFrame, one row per path: width, height, brightness, colour, sharpness, entropy, flags
    (comma-separated FLAG_NAMES, '' = none). An unreadable file gets NaN measures and no flags (the
    forward stage has already reported it)."""
    import pandas as pd
    rows = []
    for p in paths:
        try:
            with Image.open(root / p) as im:
                w, h = viewed_size(im)
                im.draft("RGB", (WORK_SIDE, WORK_SIDE))      # JPEG: decode at a fraction of the size
                im = upright_rgb(im)                         # the picture the model sees
                im.thumbnail((WORK_SIDE, WORK_SIDE))
                m = quality_measures(np.asarray(im))
            rows.append({"path": p, "width": w, "height": h, **m, "flags": ",".join(quality_flags(m, w, h))})
        except (OSError, ValueError, Image.DecompressionBombError):
            rows.append({"path": p, "width": np.nan, "height": np.nan, "brightness": np.nan, "colour": np.nan,
                         "sharpness": np.nan, "entropy": np.nan, "flags": ""})
    return pd.DataFrame(rows)
