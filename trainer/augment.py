"""MixUp and CutMix on cached feature maps, with targets that respect missing labels.

Numpy in, numpy out: `mix_batch(x, targets, n_classes, rng)` mixes a batch with a shuffled copy of
itself. CutMix pastes a rectangle of the partner's spatial map (on a 7 x 7 map a rectangle is a
block of cells, which is where CutMix's box lands after the backbone's downsampling anyway).
"""
from __future__ import annotations

import numpy as np


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A (top, bottom, left, right) box of about (1 - lam) of an h x w map, centre uniform."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(round(h * cut)), int(round(w * cut))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = np.clip(cy - ch // 2, 0, h), np.clip(cy - ch // 2 + ch, 0, h)
    left, right = np.clip(cx - cw // 2, 0, w), np.clip(cx - cw // 2 + cw, 0, w)
    return int(top), int(bottom), int(left), int(right)


def mix_batch(x: np.ndarray, targets: dict[str, np.ndarray], n_classes: dict[str, int], rng: np.random.Generator,
              mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
              spatial_channels: int | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Mix a batch with a permutation of itself (one lambda per batch, as in timm's Mixup).

    x (B, C, h, w) maps; targets {task: (B,) int, -1 = missing}. With probability `prob` the batch
    is mixed: CutMix (lambda ~ Beta(cutmix_alpha), then set to the box's exact area) with
    probability `switch_prob` when both alphas are on, else MixUp (lambda ~ Beta(mixup_alpha)).
    An alpha of 0 turns that method off. Channels from `spatial_channels` on are packed texture
    statistics (trainer/texture.py), not places: CutMix blends them by the box's area share instead.

    Returns (x_mixed (B, C, h, w), soft {task: (B, C_task)}, mask {task: (B,) bool}): soft rows sum
    to 1 where mask is True. A row whose own or partner's label is missing for a task has mask
    False for it (its mixed target is unknown) and an all-zero soft row.
    """
    B = len(x)
    lam, perm = 1.0, np.arange(B)
    use_mix = mixup_alpha > 0 or cutmix_alpha > 0
    if use_mix and B > 1 and rng.random() < prob:
        perm = rng.permutation(B)
        use_cut = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
        if use_cut:
            h, w = x.shape[2], x.shape[3]
            top, bottom, left, right = cutmix_box(h, w, float(rng.beta(cutmix_alpha, cutmix_alpha)), rng)
            c = x.shape[1] if spatial_channels is None else spatial_channels
            x = x.copy()
            x[:, :c, top:bottom, left:right] = x[perm][:, :c, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (h * w)
            x[:, c:] = lam * x[:, c:] + (1.0 - lam) * x[perm][:, c:]
        else:
            lam = float(rng.beta(mixup_alpha, mixup_alpha))
            x = lam * x + (1.0 - lam) * x[perm]
    soft, mask = {}, {}
    for t, y in targets.items():
        y = np.asarray(y)
        yp = y[perm]
        known = (y >= 0) & ((yp >= 0) | (lam == 1.0))
        s = np.zeros((B, n_classes[t]), np.float32)
        rows = np.flatnonzero(known)
        s[rows, y[rows]] += lam
        if lam < 1.0:
            s[rows, yp[rows]] += 1.0 - lam
        soft[t], mask[t] = s, known
    return x.astype(np.float32, copy=False), soft, mask
