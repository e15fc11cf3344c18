"""Frozen-backbone feature maps, computed once and cached on disk.

Key: (image sha1, backbone, input size, view), stored in float16 shard files
(trainer/cache.py), written atomically, so a killed run leaves no half shard and a second run over
the same images reads every map from disk. What a caller gets is a (N, C, h, w) array: in RAM when
the collection is small, else a `MapArray` that reads the rows a batch needs from the shards.

For a backbone split in stem + tail (the Lite ones) the cache holds the stem's output, the input of
the last stage (192 x 7 x 7 for Lite0, 7x smaller than the final 1280 x 7 x 7 map); the frozen
tail turns it into the final map as rows are read (`apply_tail`), and `--tune-tail` trains the tail on it.

Views: `orig` (centre crop), `hflip`, and `crop0`, `crop1`, ...: a random-resized crop with mild
colour jitter, fixed per (image, view) so a cached map always matches the crop it came from.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


from trainer.backbones import Backbone
from trainer.cache import FeatureCache, MapArray, ShardWriter
from trainer.cli import progress
from trainer.data import hash_images, load_image
from trainer.images import image_tensor
from trainer.runtime import inference_fn

log = logging.getLogger("trainer.features")

VIEWS = ("orig", "hflip")  # hflip is the training augmentation; eval uses orig


def training_views(crops: int) -> tuple[str, ...]:
    """The cached views a run trains on: orig, hflip and `crops` random-resized crops."""
    return VIEWS + tuple(f"crop{k}" for k in range(crops))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason" for images that could not be read


def check_images(root: Path, paths: list[str], sha1s: list[str | None] | None = None
                 ) -> tuple[list[str | None], np.ndarray, list[str]]:
    """Hash (unless sha1s are given) and decode every image once (the --finetune path reads JPEGs
    each epoch, so bad files must be found up front). Returns (sha1s, ok (N,) bool, failed 'path:
    reason' lines)."""
    if sha1s is None:
        sha1s = hash_images(root, paths)
    ok = np.array([s is not None for s in sha1s])
    failed = [f"{root / paths[i]}: cannot read file" for i in np.flatnonzero(~ok)]
    for i in np.flatnonzero(ok):
        try:
            load_image(root / paths[i])
        except ValueError as e:
            ok[i] = False
            failed.append(f"{root / paths[i]}: {e}")
    if failed:
        log.warning("%d images could not be read and are skipped; first: %s", len(failed), failed[0])
    return sha1s, ok, failed


@torch.no_grad()
def apply_tail(maps: np.ndarray, tail: torch.nn.Module, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Stage maps (N, C, h, w) -> the backbone's final maps (N, C', h, w) float16, through `tail`
    (the pretrained one, or a --tune-tail run's) in eval mode."""
    tail = tail.to(device).eval()
    out = [tail(torch.from_numpy(maps[s:s + batch_size]).to(device).float()).float().cpu().numpy().astype(np.float16)
           for s in range(0, len(maps), batch_size)]
    if not out:
        return np.zeros((0, 0), np.float16)
    return np.concatenate(out)


class _DecodedBatches(torch.utils.data.Dataset):
    """Item b = the b-th batch of `todo` decoded: ((B, 3, S, S) tensor or None, [(i, view)], [(i, reason)])."""

    def __init__(self, root, paths, sha1s, todo, size, mean, std, batch_size):
        self.args = root, paths, sha1s, size, mean, std
        self.todo, self.batch_size = todo, batch_size

    def __len__(self) -> int:
        return -(-len(self.todo) // self.batch_size)

    def __getitem__(self, b: int):
        root, paths, sha1s, size, mean, std = self.args
        tensors, items, failures, bad = [], [], [], {}
        for i, v in self.todo[b * self.batch_size:(b + 1) * self.batch_size]:
            if i in bad:
                continue
            try:
                img = load_image(root / paths[i], min_side=2 * size)   # 2x: random crops keep their detail
            except ValueError as e:
                bad[i] = str(e)
                failures.append((i, str(e)))
                continue
            tensors.append(image_tensor(img, size, mean, std, v, key=sha1s[i]))
            items.append((i, v))
        return (torch.stack(tensors) if tensors else None), items, failures


def decode_workers() -> int:
    """Decode processes beside the backbone: none on 2 cores (measured, `make bench ARGS="--steps
    features"`: one worker beside ONNX Runtime's 2 threads halves the rate, the cores are the
    bottleneck), one per 4 cores above that, at most 4."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, max(1, cores // 4))


def decoded_batches(root, paths, sha1s, todo, size, mean, std, batch_size, workers):
    """Decoded batches of todo [(i, view)], in order, decoded by `workers` processes ahead of the
    backbone (0 = in this process)."""
    ds = _DecodedBatches(root, paths, sha1s, todo, size, mean, std, batch_size)
    if workers <= 0:
        return (ds[b] for b in range(len(ds)))
    return iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=4,
                                            worker_init_fn=_one_thread))


def _one_thread(_):
    torch.set_num_threads(1)   # a decode worker must not start its own thread pool on the backbone's cores


def _local_maps(root, paths, sha1s, todo, backbone, size, cache_dir, engine, device, batch_size, workers, desc, hits):
    """Yields (items [(i, view)], maps (B, C, h, w) float16, failures [(i, reason)]) computed here."""
    split = backbone.stem is not None
    forward, used = inference_fn(backbone.stem if split else backbone.net, size, cache_dir, engine, device)
    log.info("computing %d feature maps with %s at %dpx on %s (%d cached)", len(todo), backbone.name, size, used, hits)
    batches = decoded_batches(root, paths, sha1s, todo, size, backbone.mean, backbone.std, batch_size, workers)
    for batch, items, failures in progress(batches, desc, total=-(-len(todo) // batch_size)):
        yield items, (forward(batch).astype(np.float16) if batch is not None else []), failures


def _ray_maps(root, paths, sha1s, todo, backbone, size, cache_dir, device, batch_size, ray, desc):
    """As _local_maps, on Ray actors (the batches come back from the Parquet shards)."""
    from trainer.ray_engine import RaySettings, ray_feature_maps
    net = backbone.stem if backbone.stem is not None else backbone.net
    with torch.no_grad():
        shape = tuple(net.eval()(torch.zeros(1, 3, size, size)).shape[1:])
    chunks = ray_feature_maps(ray or RaySettings(), root, paths, sha1s, todo, net, size, backbone.mean, backbone.std,
                              cache_dir, "auto", device, batch_size)
    for chunk in progress(chunks, f"{desc} (ray)", total=-(-len(todo) // 4096)):
        items, maps, failures = [], [], []
        for i, v, blob, err in zip(chunk["row"], chunk["view"], chunk["maps"], chunk["error"]):
            if err:
                failures.append((int(i), str(err)))
            else:
                items.append((int(i), str(v)))
                maps.append(np.frombuffer(blob, np.float16).reshape(shape))
        yield items, maps, failures


IN_MEMORY_BYTES = 2 << 30   # below this the maps a run uses are held in RAM; above, read from shards per batch


def extract_features(root: Path, paths: list[str], backbone: Backbone, cache_dir: str | Path, size: int,
                     views: tuple[str, ...] = ("orig",), batch_size: int = 32, device: str = "cpu",
                     sha1s: list[str | None] | None = None, desc: str = "features", stage: bool = False,
                     engine: str = "auto", in_memory_bytes: int = IN_MEMORY_BYTES, workers: int = -1,
                     ray=None) -> tuple[dict[str, np.ndarray | MapArray], np.ndarray, list[str], CacheStats]:
    """Feature maps for every image and view, from cache where present.

    Returns (feats, ok, sha1s, stats): feats[view] is (N, C, h, w) float16 (a numpy array when all
    views fit in `in_memory_bytes`, else a MapArray read per batch) with zeros where the image
    failed; ok is (N,) bool; stats counts cache hits/misses and lists failed images.
    A split backbone (stem + tail) caches the stem's maps; `stage=True` returns those, else they
    go through `backbone.tail` (its current weights) to the final maps. `engine` runs the
    uncached maps: see trainer/runtime.py; `workers` processes decode JPEGs meanwhile (-1 = auto);
    engine 'ray' computes them on a Ray cluster (trainer/ray_engine.py; `ray` = its RaySettings).
    """
    feats, ok, sha1s, stats = _cached_maps(root, paths, backbone, cache_dir, size, views, batch_size, device,
                                           sha1s, desc, engine, decode_workers() if workers < 0 else workers, ray)
    if not any(len(f.arrays) for f in feats.values()):   # nothing readable: (N, 0) placeholders
        return {v: np.zeros((len(paths), 0), np.float16) for v in views}, ok, sha1s, stats
    if backbone.tail is not None and not stage:
        tail = backbone.tail
        feats = {v: f.with_transform(lambda x: apply_tail(x, tail, device=device)) for v, f in feats.items()}
    return maps_for_run(feats, in_memory_bytes), ok, sha1s, stats


def maps_for_run(feats: dict[str, MapArray], in_memory_bytes: int = IN_MEMORY_BYTES) -> dict:
    """The views a run trains or embeds from: in RAM when they all fit in in_memory_bytes (no
    per-batch reads), else the MapArrays themselves (memory stays flat at any collection size)."""
    if sum(f.nbytes for f in feats.values()) <= in_memory_bytes:
        return {v: f.materialize() for v, f in feats.items()}
    return feats


@torch.no_grad()
def _cached_maps(root, paths, backbone: Backbone, cache_dir, size, views, batch_size, device, sha1s, desc, engine,
                 workers, ray):
    split = backbone.stem is not None
    cache = FeatureCache(cache_dir, backbone.cache_name, size, stage=split)
    for d in cache.stale_folders():
        log.warning("%s holds maps of an earlier image decoder (EXIF orientation and 16-bit grey read "
                    "as stored); they are not used, delete it to free the space", d)
    stats = CacheStats()
    if sha1s is None:
        sha1s = hash_images(root, paths)
    ok = np.array([s is not None for s in sha1s])
    for i in np.flatnonzero(~ok):
        stats.failed.append(f"{root / paths[i]}: cannot read file")
    todo: list[tuple[int, str]] = []
    for v in views:
        index = cache.index(v)
        for i in np.flatnonzero(ok):
            if sha1s[i] in index:
                stats.hits += 1
            else:
                todo.append((i, v))
    todo.sort()   # image-major: each JPEG is decoded once for all its missing views
    stats.misses = len(todo)
    if todo:
        bad: set[int] = set()
        writers = {v: ShardWriter(cache, v, sum(1 for _, w in todo if w == v)) for v in views}
        computed = (_ray_maps(root, paths, sha1s, todo, backbone, size, cache_dir, device, batch_size, ray, desc)
                    if engine == "ray" else
                    _local_maps(root, paths, sha1s, todo, backbone, size, cache_dir, engine, device, batch_size,
                                workers, desc, stats.hits))
        for items, out, failures in computed:
            for i, reason in failures:
                if i not in bad:   # an image's views may span two batches: report it once
                    bad.add(i)
                    stats.failed.append(f"{root / paths[i]}: {reason}")
            for (i, v), a in zip(items, out):
                writers[v].add(sha1s[i], a)
        for w in writers.values():
            w.flush()
        ok[list(bad)] = False
    if stats.failed:
        log.warning("%d images could not be read and are skipped; first: %s", len(stats.failed), stats.failed[0])
    live = [s if good else None for s, good in zip(sha1s, ok)]
    return {v: cache.maps(v, live) for v in views}, ok, sha1s, stats
