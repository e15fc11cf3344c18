"""Grad-CAM: where in a painting the model finds a class (`artlens explain PATH --task style`).

The gradient of one task's class logit with respect to the backbone's last convolutional map (the
map the recurrent head reads), averaged per channel, weights that map; its positive part, scaled
to [0, 1] and upsampled, is the heat (Selvaraju et al. 2017). With the frozen backbone only the
head is differentiated: one backbone pass per painting, however many classes are explained.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from embeddings.config import ExplainConfig
from trainer.cli import UserError
from trainer.images import centre_crop, image_tensor

log = logging.getLogger("embeddings.explain")


def gradcam(head: torch.nn.Module, fmap: torch.Tensor, task: str, classes: Sequence[int]) -> np.ndarray:
    """Grad-CAM heat per class. head: CRNNClassifier; fmap (C, h, w) one painting's backbone map.

    Returns (len(classes), h, w) float32 in [0, 1] (all zeros where no location adds evidence).
    """
    x = fmap.detach().float().unsqueeze(0).requires_grad_(True)
    head.eval()
    with torch.enable_grad():
        _, logits = head(x)
        heats = []
        places = head.in_channels                                        # packed texture statistics are no places
        for c in classes:
            (g,) = torch.autograd.grad(logits[task][0, int(c)], x, retain_graph=True)
            weights = g[0, :places].mean((1, 2))                         # (C,) channel importance
            cam = F.relu((weights[:, None, None] * x[0, :places]).sum(0)).detach()
            heats.append((cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy())
    return np.stack(heats).astype(np.float32)


def upsample(heat: np.ndarray, size: int) -> np.ndarray:
    """(h, w) heat -> (size, size), bilinear."""
    t = torch.from_numpy(heat)[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(crop: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """The crop with the (S, S) heat in a colour map on top, transparent where the heat is low."""
    import matplotlib
    rgb = (matplotlib.colormaps["turbo"](heat)[..., :3] * 255).astype(np.float32)
    a = (alpha * np.clip(heat, 0, 1))[..., None]
    base = np.asarray(crop.convert("RGB"), dtype=np.float32)
    return Image.fromarray((base * (1 - a) + rgb * a).astype(np.uint8))


@dataclass
class Explanation:
    crop: Image.Image              # what the model sees (S x S)
    probs: dict[str, np.ndarray]   # task -> (C,) softmax of the final model
    classes: list[int]
    heats: np.ndarray              # (len(classes), S, S) in [0, 1]
    fmap: torch.Tensor             # (C, h, w) the backbone map, to explain more classes without a new pass


def explain(embedder, image: Image.Image, task: str, classes: Sequence[int] | None = None) -> Explanation:
    """Grad-CAM of `classes` of `task` (default: the model's top class) for one painting, through the
    run's model (trainer.checkpoint.Embedder). One backbone pass."""
    size = embedder.record.image_size
    crop = centre_crop(image.convert("RGB"), size)
    with torch.no_grad():
        fmap = embedder.bb.net.eval()(_normalise(embedder, crop)[None])[0]
        _, logits = embedder.head.eval()(fmap[None])
    probs = {t: torch.softmax(lg[0].float(), 0).numpy() for t, lg in logits.items()}
    classes = [int(probs[task].argmax())] if classes is None else [int(c) for c in classes]
    heats = gradcam(embedder.head, fmap, task, classes) if classes else np.zeros((0, 1, 1), np.float32)
    return Explanation(crop, probs, classes, np.stack([upsample(h, size) for h in heats]) if classes
                       else np.zeros((0, size, size), np.float32), fmap)


def _normalise(embedder, crop: Image.Image) -> torch.Tensor:
    """The crop as the model's input tensor: `image_tensor`, whose crop of an S x S image is a copy."""
    return image_tensor(crop, crop.size[0], embedder.bb.mean, embedder.bb.std)


def class_probability(embedder, crop: Image.Image, task: str, cls: int, masks: np.ndarray | None = None) -> np.ndarray:
    """p(cls) for the crop with each (S, S) bool mask's pixels blanked to the input mean (grey).
    masks (m, S, S) -> (m,); None -> (1,) for the crop as it is."""
    x = _normalise(embedder, crop)
    batch = x[None] if masks is None else x[None] * torch.from_numpy(~masks)[:, None].float()
    with torch.no_grad():
        _, logits = embedder.head(embedder.bb.net(batch))
    return torch.softmax(logits[task].float(), 1)[:, cls].numpy()


def deletion_drops(embedder, image: Image.Image, task: str, cls: int | None = None, fraction: float = 0.1,
                   n_random: int = 5, seed: int = 0) -> tuple[float, float]:
    """Faithfulness of the heat: (drop of p(cls) when the hottest `fraction` of pixels is blanked,
    mean drop when as many pixels in random blocks of the map's cell size are blanked).
    cls: default the model's top class."""
    ex = explain(embedder, image, task, None if cls is None else [cls])
    cls = ex.classes[0]
    heat = ex.heats[0]
    S = heat.shape[0]
    hot = heat >= np.quantile(heat, 1 - fraction)
    cell = max(1, S // 7)
    rng = np.random.default_rng(seed)
    grid = S // cell
    n_cells = max(1, round(fraction * grid * grid))
    rand = np.zeros((n_random, S, S), bool)
    for k in range(n_random):
        for c in rng.choice(grid * grid, n_cells, replace=False):
            r, q = divmod(int(c), grid)
            rand[k, r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] = True
    p0 = class_probability(embedder, ex.crop, task, cls)[0]
    p = class_probability(embedder, ex.crop, task, cls, np.concatenate([hot[None], rand]))
    return float(p0 - p[0]), float(np.mean(p0 - p[1:]))


def explanation_panels(embedder, image: Image.Image, task: str, given: int | None,
                       top: int | None = None) -> list[tuple[str, Image.Image]]:
    """[(caption, image)]: Grad-CAM for the given label and for the model's top class (one panel if
    they agree), as the dashboard and the CLI show them. `top`: the top class the reviewer sees, the
    cross-fitted prediction from the store; default the model's own argmax. Pass the fold head that
    held the painting out (`Embedder(run, fold=k)`): the final model trained on this painting's
    (possibly wrong) label and explains it from memory. Captions give the model's probability of
    each class and say which model it is (`embedder.source`)."""
    names = embedder.record.classes[task]
    given = given if given is not None and given >= 0 else None
    top = None if top is None or top < 0 else int(top)
    first = [given] if given is not None else ([top] if top is not None else None)
    ex = explain(embedder, image, task, first)
    top = int(ex.probs[task].argmax()) if top is None else top
    if top not in ex.classes:   # the top class's heat from the same backbone pass
        ex.classes.append(top)
        heat = upsample(gradcam(embedder.head, ex.fmap, task, [top])[0], ex.crop.size[0])
        ex.heats = np.concatenate([ex.heats, heat[None]])
    out = []
    for c, heat in zip(ex.classes, ex.heats):
        role = "given" if c == given else "model's top"
        out.append((f"{role}: {names[c]} ({embedder.source} p {ex.probs[task][c]:.2f})", overlay(ex.crop, heat)))
    return out


def side_by_side(panels: list[tuple[str, Image.Image]], title: str = "") -> Image.Image:
    """One PNG-ready image: the panels in a row with their captions above."""
    w, h = panels[0][1].size
    pad = 22
    sheet = Image.new("RGB", (w * len(panels), h + pad * (2 if title else 1)), "white")
    draw = ImageDraw.Draw(sheet)
    y0 = pad if title else 0
    if title:
        draw.text((4, 4), title, fill="black")
    for k, (caption, im) in enumerate(panels):
        draw.text((k * w + 4, y0 + 4), caption, fill="black")
        sheet.paste(im, (k * w, y0 + pad))
    return sheet


# ------------------------------------------------------------------ CLI
def write_explanation(cfg: ExplainConfig) -> Path:
    """The whole `artlens explain` command: Grad-CAM of one image for its given label and the
    model's top class, drawn by the cross-fitting head that held it out; returns the PNG written."""
    from trainer.checkpoint import Embedder, FoldIndex, resolve_run_dir
    from trainer.data import load_image
    run_dir = Path(cfg.run) if cfg.run else resolve_run_dir(cfg.runs_dir, "")
    try:
        image = load_image(Path(cfg.path))
    except ValueError as e:
        raise UserError(f"{cfg.path}: {e}") from None
    rel, stored, top = _store_lookup(cfg.store, Path(cfg.path), cfg.task)
    fold = FoldIndex(run_dir).fold_of(rel) if rel else None
    embedder = Embedder(run_dir, fold=fold)   # the head that never saw its label, where there is one
    names = embedder.record.classes.get(cfg.task)
    if names is None:
        raise UserError(f"--task {cfg.task}: the run {run_dir.name} has tasks {', '.join(embedder.record.classes)}")
    label = cfg.label or stored
    if label and label not in names:
        raise UserError(f"--label {label!r} is not a {cfg.task} class of run {run_dir.name}")
    t0 = time.time()
    panels = explanation_panels(embedder, image, cfg.task, names.index(label) if label else None,
                                names.index(top) if top in names else None)
    log.info("Grad-CAM for %s in %.2fs by the %s%s", cfg.path, time.time() - t0, embedder.source,
             f" head of fold {fold + 1}" if fold is not None else " (no cross-fitting head of this run held it out)")
    out = Path(cfg.out or f"{Path(cfg.path).stem}.gradcam-{cfg.task}.png")
    side_by_side(panels, f"{Path(cfg.path).name} · {cfg.task} · run {run_dir.name}").save(out)
    print(out)
    return out


def _store_lookup(store: str, image: Path, task: str) -> tuple[str, str, str]:
    """(path under the store's data root, given label, cross-fitted top class) of `image` if the
    store holds it, else ('', '', '')."""
    from db.store import Store, StoreError
    if not Path(store).is_file():
        return "", "", ""
    try:
        s = Store(store)
    except StoreError:
        return "", "", ""
    try:
        root = Path(s.info().get("data_root", "/nonexistent")).resolve()
        try:
            rel = image.resolve().relative_to(root).as_posix()
        except ValueError:
            return "", "", ""
        given, top = s.given_and_predicted(rel, task)
        return rel, given or "", top or ""
    finally:
        s.close()
