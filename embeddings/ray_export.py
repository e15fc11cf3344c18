"""`artlens embed --engine ray`: the forward stage as a Ray Data pipeline.

Actors each hold the trained model (checkpoint shipped through Ray's object store) and map
shards of image paths to what the store needs per painting: sha1, embedding, softmax per task
and the pretrained backbone's pooled features (the label-free kNN), through the same functions
the default path runs (`load_image`, `image_tensor`, `inference_fn`, `apply_tail`, the head). They
write Parquet shards; the driver reads them back in path order with DuckDB and hands the same
`Forward` to the store stage as the default engine does.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np

from embeddings.config import EmbedConfig, Forward
from trainer.checkpoint import Checkpoint, build_model, pretrained_backbone
from trainer.cli import UserError
from trainer.ray_engine import RaySettings, actor_options, init_ray

log = logging.getLogger("embeddings.ray")


class EmbedActor:
    """Ray actor: rows {row, path} -> {row, sha1, error, emb, probs__<task>, pooled} (float32 bytes)."""

    def __init__(self, ckpt: "Checkpoint", cache_dir: str, device: str):
        import torch
        torch.set_num_threads(1)   # one core per actor
        from trainer.runtime import inference_fn
        self.record = ckpt.record
        self.head, self.bb = build_model(ckpt)
        self.head.to(device)
        self.device, self.size = device, self.record.image_size
        self.split = self.bb.stem is not None
        self.forward, _ = inference_fn(self.bb.stem if self.split else self.bb.net, self.size, cache_dir,
                                       "auto", device)
        # the label-free kNN reads the pretrained tail's maps when the run tuned its own tail
        self.pretrained_tail = pretrained_backbone(self.record).tail if ckpt.tail_state else None
        self.views = ("orig", "hflip") if self.record.tta else ("orig",)

    def __call__(self, batch: dict) -> dict:
        import torch

        from trainer.cache import pooled_means
        from trainer.data import file_sha1, load_image
        from trainer.features import apply_tail
        from trainer.images import image_tensor
        n = len(batch["row"])
        sha1s, errors, tensors, good = [""] * n, [""] * n, {v: [] for v in self.views}, []
        for j in range(n):
            path = Path(batch["path"][j])
            try:
                sha1s[j] = file_sha1(path)
                img = load_image(path, min_side=2 * self.size)
            except (OSError, ValueError) as e:
                errors[j] = str(e) if isinstance(e, ValueError) else "cannot read file"
                continue
            for v in self.views:
                tensors[v].append(image_tensor(img, self.size, self.bb.mean, self.bb.std, v, key=sha1s[j]))
            good.append(j)
        out = {"row": batch["row"], "sha1": np.array(sha1s, dtype=object), "error": np.array(errors, dtype=object)}
        blobs: dict[str, list[bytes]] = {}
        if good:
            embs, probs, pooled = [], [], None
            for v in self.views:
                maps = self.forward(torch.stack(tensors[v])).astype(np.float16)   # the cache's precision
                final = apply_tail(maps, self.bb.tail, device=self.device) if self.split else maps
                with torch.no_grad():
                    e, logits = self.head(torch.from_numpy(final.astype(np.float32)).to(self.device))
                embs.append(e.float().cpu().numpy())
                probs.append({t: torch.softmax(lg.float(), 1).cpu().numpy() for t, lg in logits.items()})
                if pooled is None:
                    base = apply_tail(maps, self.pretrained_tail) if self.pretrained_tail is not None else final
                    pooled = pooled_means(base, np.arange(len(base)), self.record.in_channels)
            cols = {"emb": np.mean(embs, 0), "pooled": pooled,
                    **{f"probs__{t}": np.mean([p[t] for p in probs], 0) for t in probs[0]}}
            for c, arr in cols.items():
                blobs[c] = [b""] * n
                for j, row in zip(good, arr.astype(np.float32)):
                    blobs[c][j] = row.tobytes()
        for c in ["emb", "pooled", *[f"probs__{t}" for t in self.record.tasks]]:
            out[c] = np.array(blobs.get(c, [b""] * n), dtype=object)
        return out


def ray_forward_stage(cfg: EmbedConfig, run_dir: Path, ckpt: "Checkpoint", ps) -> Forward:
    """The forward stage on Ray: same Forward as embeddings.export.forward_stage."""
    from db.store import Paths, read_parquet_shards
    if ckpt.backbone_state:
        raise UserError("--engine ray embeds cached-feature runs; this run fine-tuned its backbone end to end "
                        "(--finetune): use the default engine")
    ray = init_ray(RaySettings(cfg.ray_address, cfg.ray_cpus, cfg.ray_gpus, cfg.ray_actors))
    meta = ckpt.record
    frame = ps.frame
    base = Path(cfg.shard_dir) if cfg.shard_dir else Paths.from_store(cfg.store).store.with_suffix(".shards")
    shard_dir = base / uuid.uuid4().hex[:12]
    items = [{"row": i, "path": str((ps.root / p).resolve())} for i, p in enumerate(frame["path"])]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(-(-len(items) // cfg.batch_size), 512)))
    ds = ds.map_batches(EmbedActor, batch_size=cfg.batch_size, batch_format="numpy",
                        fn_constructor_kwargs={"ckpt": ckpt, "cache_dir": str(Path(cfg.cache_dir).resolve()),
                                               "device": cfg.device},
                        **actor_options(ray, RaySettings(cfg.ray_address, cfg.ray_cpus, cfg.ray_gpus, cfg.ray_actors)))
    log.info("Ray: embedding %d paintings on %s; shards in %s", len(items), ray.cluster_resources(), shard_dir)
    ds.write_parquet(str(shard_dir))
    tasks = meta.tasks
    cols = ["row", "sha1", "error", "emb", "pooled", *[f"probs__{t}" for t in tasks]]
    rows, sha1s, failed, parts = [], [], [], {c: [] for c in cols[3:]}
    try:
        for chunk in read_parquet_shards(shard_dir, cols, order_by="row"):
            for k, (i, err) in enumerate(zip(chunk["row"], chunk["error"])):
                if err:
                    failed.append(f"{ps.root / frame['path'].iloc[int(i)]}: {err}")
                    continue
                rows.append(int(i))
                sha1s.append(str(chunk["sha1"][k]))
                for c in parts:
                    parts[c].append(np.frombuffer(chunk[c][k], np.float32))
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
    if not rows:
        raise UserError(f"none of the {len(frame)} images under {ps.root} could be read; previous store left as it was")
    if failed:
        log.warning("%d images could not be read and are skipped; first: %s", len(failed), failed[0])
    return Forward(frame.iloc[rows].reset_index(drop=True), sha1s, np.stack(parts["emb"]),
                   {t: np.stack(parts[f"probs__{t}"]) for t in tasks}, np.stack(parts["pooled"]), failed)
