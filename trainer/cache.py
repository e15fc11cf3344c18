"""The feature-map cache: sharded float16 arrays keyed by image sha1.

Layout: `<cache_dir>/<backbone>[-stage]-<size>-decoder<N>/<view>/shard-<id>.npy` holds (M, C, h, w) maps
and `shard-<id>.keys.npy` the M sha1s, written in that order, each atomically: a shard without its
keys file is an interrupted write and is ignored (and overwritten later). Opening a view reads only
the small key files, so 100k paintings cost a few dozen open files, not one file per painting and
view. Maps are read with pread into the batch
being built (`ShardFile`), so RAM holds only that batch, not a map of the whole collection.

`MapArray` is the (N, C, h, w) array a run sees: rows gathered from shards on indexing, zeros for
paintings whose maps are missing (unreadable images), optionally passed through a module (the
backbone's tail) per batch so final maps never need to exist for the whole collection at once.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from trainer.data import DECODER_VERSION

SHARD_BYTES = 128 << 20   # a killed extraction loses at most one shard of work (seconds to a minute)


class ShardWriter:
    """Collects one view's computed maps row by row into a buffer allocated once, and writes it as
    a shard each time it fills. Why not a list of per-batch arrays: holding small slices of every
    batch while the next batch's large decode and backbone buffers are allocated fragments the heap,
    which then grows by about a batch per batch (measured: 2.7 GB for 2,000 paintings)."""

    def __init__(self, cache: "FeatureCache", view: str, rows_expected: int):
        self.cache, self.view, self.rows_expected = cache, view, rows_expected
        self.keys: list[str] = []
        self.buf: np.ndarray | None = None

    def add(self, sha1: str, maps: np.ndarray) -> None:
        """Append one painting's (C, h, w) maps; writes a shard when the buffer is full."""
        if self.buf is None:   # sized on the first row: a shard, or what is left to compute if less
            rows = max(1, min(SHARD_BYTES // max(1, maps.nbytes), self.rows_expected))
            self.buf = np.empty((rows, *maps.shape), np.float16)
        self.buf[len(self.keys)] = maps
        self.keys.append(sha1)
        if len(self.keys) == len(self.buf):
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as a shard (nothing if empty); the buffer is reused."""
        if self.keys:
            self.cache.write_shard(self.view, self.keys, self.buf[:len(self.keys)])
            self.rows_expected -= len(self.keys)
            self.keys = []


class FeatureCache:
    """Sharded maps of one backbone, input size and (stage or final) cut, of the pictures
    `trainer.data.load_image` gives now (DECODER_VERSION)."""

    def __init__(self, cache_dir: str | Path, backbone: str, size: int, stage: bool = False):
        self.name = f"{backbone}-stage-{size}" if stage else f"{backbone}-{size}"
        self.dir = Path(cache_dir) / f"{self.name}-decoder{DECODER_VERSION}"
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}

    def stale_folders(self) -> list[Path]:
        """This cache's folders from an earlier decoder: never read (a sideways or clipped picture's
        maps under the same sha1), left for the user to delete."""
        parent = self.dir.parent
        if not parent.is_dir():
            return []
        return sorted(d for d in parent.iterdir() if d != self.dir and d.is_dir()
                      and (d.name == self.name or d.name.startswith(f"{self.name}-decoder")))

    def index(self, view: str) -> dict[str, tuple[Path, int]]:
        """{sha1: (shard file, row)} over the view's complete shards (read once per instance)."""
        if view not in self._index:
            idx: dict[str, tuple[Path, int]] = {}
            for keys_file in sorted((self.dir / view).glob("shard-*.keys.npy")):
                shard = keys_file.with_name(keys_file.name.replace(".keys.npy", ".npy"))
                try:
                    keys = np.load(keys_file)
                    if not shard.is_file():
                        continue
                except (ValueError, OSError, EOFError):   # damaged key file: its maps are recomputed
                    continue
                for row, k in enumerate(keys.astype("U40").tolist()):
                    idx.setdefault(k, (shard, row))
            self._index[view] = idx
        return self._index[view]

    def missing(self, sha1s: list[str], view: str) -> list[str]:
        idx = self.index(view)
        return [s for s in sha1s if s not in idx]

    def write_shard(self, view: str, sha1s: list[str], maps: np.ndarray) -> Path:
        """Store maps (M, C, h, w) for sha1s (M,) as a new shard; returns its path."""
        d = self.dir / view
        d.mkdir(parents=True, exist_ok=True)
        shard = d / f"shard-{uuid.uuid4().hex[:12]}.npy"
        keys_file = shard.with_name(shard.name.replace(".npy", ".keys.npy"))
        for path, arr in ((shard, maps.astype(np.float16, copy=False)), (keys_file, np.array(sha1s, dtype="S40"))):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
        idx = self._index.get(view)
        if idx is not None:
            for row, k in enumerate(sha1s):
                idx.setdefault(k, (shard, row))
        return shard

    def maps(self, view: str, sha1s: list[str | None]) -> "MapArray":
        """The (N, C, h, w) MapArray for sha1s; None or uncached rows read as zeros."""
        idx = self.index(view)
        shards: dict[Path, int] = {}
        shard_of = np.full(len(sha1s), -1, np.int32)
        row_of = np.zeros(len(sha1s), np.int64)
        for i, s in enumerate(sha1s):
            hit = idx.get(s) if s is not None else None
            if hit is not None:
                shard_of[i] = shards.setdefault(hit[0], len(shards))
                row_of[i] = hit[1]
        return MapArray([ShardFile(p) for p in shards], shard_of, row_of)


class ShardFile:
    """One shard's rows read with pread into the caller's buffer: unlike a memory map, the pages
    read never count as this process's memory (the OS page cache still keeps them warm)."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype != np.float16:
            raise ValueError(f"{path}: not a C-order float16 shard")
        self.path, self.shape = path, shape
        self.row_bytes = int(np.prod(shape[1:])) * 2
        self.fd = os.open(path, os.O_RDONLY)

    def __del__(self):
        try:
            os.close(self.fd)
        except (AttributeError, OSError):
            pass

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        """out[j] = row rows[j], for ascending rows; consecutive rows are read in one call."""
        flat = out.reshape(len(rows), -1).view(np.uint8)
        j = 0
        while j < len(rows):
            k = j + 1
            while k < len(rows) and rows[k] == rows[k - 1] + 1:
                k += 1
            want = (k - j) * self.row_bytes
            got = os.preadv(self.fd, [memoryview(flat[j:k]).cast("B")], self.offset + int(rows[j]) * self.row_bytes)
            if got != want:
                raise OSError(f"{self.path}: short read ({got} of {want} bytes): a damaged cache shard")
            j = k


class MapArray:
    """(N, C, h, w) float16 maps gathered from the shard files (positioned reads) on indexing.

    `x[idx]` (an index array or a slice) returns a plain numpy array of those rows, in order, zeros
    for rows without a shard. With `transform` (a function (B, C, h, w) -> (B, C', h', w')) the
    rows pass through it, in batches, as they are read.
    """

    def __init__(self, arrays: list[np.ndarray], shard_of: np.ndarray, row_of: np.ndarray,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, out_shape: tuple | None = None):
        self.arrays, self.shard_of, self.row_of = arrays, shard_of, row_of
        self.transform = transform
        base = arrays[0].shape[1:] if arrays else (0,)
        self.shape = (len(shard_of), *(out_shape or base))
        self.dtype = np.dtype(np.float16)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def with_transform(self, transform: Callable[[np.ndarray], np.ndarray]) -> "MapArray":
        probe = transform(self._gather(np.zeros(1, np.int64))) if len(self) else None
        return MapArray(self.arrays, self.shard_of, self.row_of, transform,
                        probe.shape[1:] if probe is not None else None)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        base = self.arrays[0].shape[1:] if self.arrays else (0,)
        out = np.zeros((len(rows), *base), np.float16)
        shard = self.shard_of[rows]
        for s in np.unique(shard[shard >= 0]):
            m = np.flatnonzero(shard == s)
            r = self.row_of[rows[m]]
            order = np.argsort(r, kind="stable")   # ascending reads: runs of rows become one read
            buf = np.empty((len(m), *base), np.float16)
            self.arrays[s].read_rows(r[order], buf)
            out[m[order]] = buf
        return out

    def __getitem__(self, idx) -> np.ndarray:
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        if rows.ndim == 0:
            return self[rows[None]][0]
        if self.transform is None:
            return self._gather(rows)
        out = [self.transform(self._gather(rows[s:s + 256])) for s in range(0, len(rows), 256)]
        return np.concatenate(out) if out else np.zeros((0, *self.shape[1:]), np.float16)

    def materialize(self) -> np.ndarray:
        """All rows as one in-memory array (what small collections train from: no per-batch reads)."""
        return self[np.arange(len(self))]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 2


def pooled_means(maps, rows: np.ndarray, channels: int | None = None, chunk: int = 2048) -> np.ndarray:
    """(len(rows), C) float32 spatial means of maps[rows] over its first `channels` channels (None =
    all; packed texture statistics behind them are not places to average), read in chunks."""
    c = maps.shape[1] if channels is None else channels
    out = np.zeros((len(rows), c), np.float32)   # one array, not a list of chunks (heap fragmentation)
    for s in range(0, len(rows), chunk):
        out[s:s + chunk] = maps[rows[s:s + chunk]][:, :c].astype(np.float32).mean((2, 3))
    return out
