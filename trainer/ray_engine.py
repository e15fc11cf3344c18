"""Feature maps past one machine: a Ray Data pipeline (`--engine ray`).

`ray_feature_maps` runs the uncached (painting, view) pairs of a feature pass as `map_batches`
over shards of image paths, on CPU or GPU actors that each hold the frozen backbone, and writes
Parquet shards (row, view, sha1, maps as float16 bytes, error); the driver ingests them into the
feature cache (trainer/cache.py) with DuckDB. Ray is an optional extra (requirements-ray.txt): the
default engines never import it. Every node must see the images and the shard folder at the same
paths (a shared file system), as with any Ray Data job reading files.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("trainer.ray")


@dataclass
class RaySettings:
    address: str = ""       # "" = start a local instance; "auto" or ray://host:10001 joins a cluster
    cpus: int = 0           # local instance only: CPUs it may use (0 = all)
    gpus: float = 0.0       # GPUs per actor (0 = CPU actors)
    actors: int = 0         # inference actors (0 = one per CPU, or one per GPU)


def init_ray(rs: RaySettings):
    """Import and start (or join) Ray; a clear error when the extra is not installed."""
    try:
        import ray
    except ImportError:
        from trainer.cli import UserError
        raise UserError("--engine ray needs Ray: pip install -r requirements-ray.txt") from None
    if not ray.is_initialized():
        kwargs = {"address": rs.address} if rs.address else {"num_cpus": rs.cpus or os.cpu_count()}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **kwargs)
        ray.data.DataContext.get_current().enable_progress_bars = False   # a log file gets no bar per block
    return ray


def actor_options(ray, rs: RaySettings) -> dict:
    """map_batches arguments for the inference actors."""
    if rs.gpus:
        n = rs.actors or max(1, int(ray.cluster_resources().get("GPU", 1) / rs.gpus))
        return {"num_gpus": rs.gpus, "concurrency": n}
    n = rs.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    return {"num_cpus": 1, "concurrency": n}


class MapsActor:
    """Ray actor: rows {row, path, view, key} -> their backbone maps (stem's for a split backbone)."""

    def __init__(self, net, size: int, mean, std, cache_dir: str, engine: str, device: str):
        import torch
        torch.set_num_threads(1)   # one core per actor: the pool, not the actor, is parallel
        from trainer.runtime import inference_fn
        self.forward, _ = inference_fn(net, size, cache_dir, engine, device)
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, batch: dict) -> dict:
        import torch

        from trainer.data import load_image
        from trainer.images import image_tensor
        n = len(batch["row"])
        tensors, good, errors = [], [], [""] * n
        for j in range(n):
            try:
                img = load_image(Path(batch["path"][j]), min_side=2 * self.size)
            except ValueError as e:
                errors[j] = str(e)
                continue
            tensors.append(image_tensor(img, self.size, self.mean, self.std, str(batch["view"][j]),
                                        key=str(batch["key"][j])))
            good.append(j)
        blobs = [b""] * n
        if tensors:
            out = self.forward(torch.stack(tensors)).astype(np.float16)
            for j, a in zip(good, out):
                blobs[j] = a.tobytes()
        return {"row": batch["row"], "view": batch["view"], "maps": np.array(blobs, dtype=object),
                "error": np.array(errors, dtype=object)}


def ray_feature_maps(rs: RaySettings, root: Path, paths: list[str], sha1s: list[str], todo: list[tuple[int, str]],
                     net, size: int, mean, std, cache_dir: str | Path, engine: str, device: str, batch_size: int,
                     shard_dir: Path | None = None):
    """Compute the maps of `todo` [(row, view)] on Ray; yields {row, view, maps (float16 bytes, empty
    where the image failed), error ('' or the reason)} chunks read back from the Parquet shards with DuckDB."""
    from db.store import read_parquet_shards
    ray = init_ray(rs)
    shard_dir = Path(shard_dir or Path(cache_dir) / "ray-shards") / uuid.uuid4().hex[:12]
    items = [{"row": int(i), "path": str((root / paths[i]).resolve()), "view": v, "key": sha1s[i]} for i, v in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(-(-len(items) // batch_size), 512)))
    engine = "onnx" if engine in ("auto", "ray") and device == "cpu" else ("eager" if engine == "ray" else engine)
    ds = ds.map_batches(MapsActor, batch_size=batch_size, batch_format="numpy",
                        fn_constructor_kwargs={"net": net, "size": size, "mean": mean, "std": std,
                                               "cache_dir": str(Path(cache_dir).resolve()), "engine": engine,
                                               "device": device},
                        **actor_options(ray, rs))
    log.info("Ray: %d maps over %s, shards in %s", len(items), ray.cluster_resources(), shard_dir)
    ds.write_parquet(str(shard_dir))
    try:
        yield from read_parquet_shards(shard_dir, ["row", "view", "maps", "error"], order_by="row, view")
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)   # ingested into the cache: the shards are spent
