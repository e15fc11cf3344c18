"""Image to tensor: the centre crop the model sees, seeded random-resized crops, normalisation.

Shared by feature extraction, the Ray engine, the embed command and Grad-CAM.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from PIL import Image, ImageEnhance


def centre_crop(img: Image.Image, size: int) -> Image.Image:
    """The size x size square the model sees: shorter side resized to `size`, centre cropped."""
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_resized_crop(img: Image.Image, size: int, key: str) -> Image.Image:
    """A seeded RandomResizedCrop (area 35-100%, aspect 3/4-4/3, flip half the time) with mild
    colour jitter (brightness, contrast, saturation x0.8-1.2); the same key gives the same crop."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.35, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw = ch = min(w, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(rng.uniform(0.8, 1.2))
    return img


def image_tensor(img: Image.Image, size: int, mean, std, view: str = "orig", key: str = "") -> torch.Tensor:
    """RGB PIL image -> (3, size, size) float tensor: resize shorter side, centre crop, normalise.

    view 'hflip' mirrors it; 'cropK' is `random_resized_crop` seeded by (key, view) instead."""
    if view.startswith("crop"):
        img = random_resized_crop(img, size, f"{key}-{view}")
    else:
        img = centre_crop(img, size)
    if view == "hflip":
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
