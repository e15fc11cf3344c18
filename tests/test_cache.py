"""The sharded feature cache: rows come back in order, missing rows read as zeros, and an
interrupted or damaged shard is never read."""
import numpy as np

import trainer.cache
from trainer.cache import FeatureCache, MapArray, ShardWriter, pooled_means


def _maps(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 4, 3, 3)).astype(np.float16)


def test_shards_round_trip_in_request_order(tmp_path):
    cache = FeatureCache(tmp_path, "bb", 224, stage=True)
    a, b = _maps(5, 1), _maps(3, 2)
    cache.write_shard("orig", [f"{i:040d}" for i in range(5)], a)
    cache.write_shard("orig", [f"{i:040d}" for i in range(5, 8)], b)
    both = np.concatenate([a, b])
    fresh = FeatureCache(tmp_path, "bb", 224, stage=True)   # a second run sees what the first wrote
    want = [f"{i:040d}" for i in (7, 0, 5, 2)] + [None, f"{99:040d}"]
    m = fresh.maps("orig", want)
    assert isinstance(m, MapArray) and m.shape == (6, 4, 3, 3)
    np.testing.assert_array_equal(m[np.arange(4)], both[[7, 0, 5, 2]])
    assert not m[[4, 5]].any()                     # None and unknown sha1: zeros
    np.testing.assert_array_equal(m[1:3], both[[0, 5]])
    np.testing.assert_array_equal(m.materialize()[:4], both[[7, 0, 5, 2]])
    assert fresh.missing([f"{i:040d}" for i in (1, 8)], "orig") == [f"{8:040d}"]
    assert fresh.missing([f"{1:040d}"], "hflip") == [f"{1:040d}"]   # views are separate


def test_shard_writer_fills_reuses_its_buffer_and_keeps_every_row(tmp_path, monkeypatch):
    # 3 rows per shard: 8 rows make shards of 3, 3 and 2; reusing the buffer must not alter written shards
    monkeypatch.setattr(trainer.cache, "SHARD_BYTES", 3 * _maps(1)[0].nbytes)
    cache = FeatureCache(tmp_path, "bb", 224, stage=True)
    maps, keys = _maps(8, 3), [f"{i:040d}" for i in range(8)]
    writer = ShardWriter(cache, "orig", rows_expected=8)
    for k, m in zip(keys, maps):
        writer.add(k, m)
    writer.flush()
    writer.flush()   # nothing left: no empty shard
    shards = sorted((cache.dir / "orig").glob("shard-*.keys.npy"))
    assert sorted(len(np.load(f)) for f in shards) == [2, 3, 3]
    fresh = FeatureCache(tmp_path, "bb", 224, stage=True)
    np.testing.assert_array_equal(fresh.maps("orig", keys).materialize(), maps)


def test_interrupted_and_damaged_shards_are_ignored(tmp_path):
    cache = FeatureCache(tmp_path, "bb", 224)
    shard = cache.write_shard("orig", [f"{1:040d}"], _maps(1))
    shard.with_name(shard.name.replace(".npy", ".keys.npy")).write_bytes(b"not numpy")   # damaged keys
    np.save(cache.dir / "orig" / "shard-half.npy", _maps(1))   # maps written, keys never: interrupted
    fresh = FeatureCache(tmp_path, "bb", 224)
    assert fresh.missing([f"{1:040d}"], "orig") == [f"{1:040d}"]


def test_maps_of_an_earlier_image_decoder_are_never_read_and_their_folder_is_named(tmp_path):
    """The cache keys maps by the file's sha1; a file the decoder now turns upright (EXIF) gives
    another picture under the same sha1, so an earlier decoder's folder is left unread."""
    key = f"{1:040d}"
    old = tmp_path / "bb-stage-224" / "orig"
    old.mkdir(parents=True)
    np.save(old / "shard-old.npy", _maps(1))
    np.save(old / "shard-old.keys.npy", np.array([key], dtype="S40"))
    cache = FeatureCache(tmp_path, "bb", 224, stage=True)
    assert cache.missing([key], "orig") == [key]
    assert cache.stale_folders() == [tmp_path / "bb-stage-224"]
    cache.write_shard("orig", [key], _maps(1))
    assert FeatureCache(tmp_path, "bb", 224, stage=True).missing([key], "orig") == []
    # another cut or backbone of the same cache folder is not this one's stale copy
    assert FeatureCache(tmp_path, "bb", 224).stale_folders() == []
    assert FeatureCache(tmp_path, "bb-texture", 224, stage=True).stale_folders() == []


def test_transform_and_pooled_means_read_in_chunks(tmp_path):
    cache = FeatureCache(tmp_path, "bb", 224)
    x = _maps(10)
    keys = [f"{i:040d}" for i in range(10)]
    cache.write_shard("orig", keys, x)
    m = cache.maps("orig", keys).with_transform(lambda a: a[:, :2] * 2)
    assert m.shape == (10, 2, 3, 3)
    np.testing.assert_array_equal(m[[3, 1]], x[[3, 1], :2] * 2)
    np.testing.assert_allclose(pooled_means(m, np.arange(10), chunk=3), (x[:, :2] * 2).astype(np.float32).mean((2, 3)),
                               rtol=1e-6)


def test_epochs_shrink_past_the_row_budget_so_cost_per_painting_stays_flat():
    from trainer.loop import epochs_for
    assert epochs_for(40, 1_800, 100_000) == 40          # wikiart-mini keeps every epoch
    assert epochs_for(6, 24_000, 100_000) == 4
    assert epochs_for(40, 76_000, 100_000) == 1          # 100k paintings: one pass
    assert epochs_for(40, 500_000, 100_000) == 1         # never zero
    assert epochs_for(40, 500_000, 0) == 40              # 0 = no cap
    sizes = (10_000, 30_000, 100_000, 300_000)
    rows = [n * epochs_for(6, n, 100_000) for n in sizes]   # rows trained on: never grows faster than the size
    assert all(r2 / r1 <= n2 / n1 for r1, r2, n1, n2 in zip(rows, rows[1:], sizes, sizes[1:]))
    # --min-steps: a small collection's head runs more epochs, so it still takes that many steps
    assert epochs_for(4, 215, 100_000, min_steps=60, batch_size=64) == 15    # 4 batches an epoch
    assert epochs_for(4, 2_037, 100_000, min_steps=60, batch_size=64) == 4   # wikiart-mini's fold heads: 128 steps
    assert epochs_for(10, 100_000, 100_000, min_steps=60, batch_size=64) == 1   # the cap still wins at scale


def test_every_short_schedule_trains(tmp_path):
    """Schedules of 1 to 25 steps all train: torch's OneCycleLR divides by zero when its 10% warm-up
    ends at step 0 (exactly 10 steps), which the step floor's short schedules reach."""
    import torch
    from trainer.model import CRNNClassifier
    from trainer.config import TrainConfig
    from trainer.loop import cached_batcher, fit
    rng = np.random.default_rng(0)
    views = {"orig": rng.normal(size=(8, 16, 3, 3)).astype(np.float32)}
    labels = {"style": rng.integers(0, 3, 8)}
    for steps in (1, 2, 3, 10, 25):
        torch.manual_seed(0)
        model = CRNNClassifier("rowcol_bigru", 16, {"style": 3})
        res = fit(model, cached_batcher(views, 0), labels, np.arange(8), None, TrainConfig(batch_size=8), steps, None,
                  log_epochs=False)
        assert len(res.history) == steps and np.isfinite(res.history[-1]["train_loss"])


def test_maps_read_per_batch_and_decode_workers_give_the_same_features(tmp_path, caplog):
    """Above the in-memory budget a run gets MapArrays (final maps through the tail per batch); a
    decode worker process gives the same maps and names a corrupt image once, and the folder of an
    earlier decoder's maps once."""
    import shutil

    from tests.conftest import MINI
    from trainer.backbones import build_backbone
    from trainer.data import load_paintings
    from trainer.features import extract_features
    ps = load_paintings(MINI, test_fraction=0)
    paths = ps.frame["path"].iloc[::600].tolist()
    root = tmp_path / "data"
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ps.root / p, root / p)
    (root / paths[2]).write_bytes(b"\xff\xd8 truncated")
    bb = build_backbone("efficientnet_lite0")
    ram, ok, _, _ = extract_features(root, paths, bb, tmp_path / "a", 224, views=("orig", "hflip"), workers=0)
    lazy, ok2, _, hit = extract_features(root, paths, bb, tmp_path / "a", 224, views=("orig", "hflip"),
                                         in_memory_bytes=0)
    assert isinstance(ram["orig"], np.ndarray) and isinstance(lazy["orig"], MapArray) and hit.misses == 2
    assert lazy["orig"].shape == ram["orig"].shape == (len(paths), 1280, 7, 7)
    np.testing.assert_array_equal(lazy["hflip"][np.arange(len(paths))], ram["hflip"])
    (tmp_path / "b" / "efficientnet_lite0-stage-224" / "orig").mkdir(parents=True)
    worker, ok3, _, stats = extract_features(root, paths, bb, tmp_path / "b", 224, views=("orig", "hflip"), workers=1)
    assert caplog.text.count("efficientnet_lite0-stage-224 holds maps of an earlier image decoder") == 1
    assert (ok == ok3).all() and not ok3[2] and len(stats.failed) == 1 and paths[2] in stats.failed[0]
    np.testing.assert_allclose(worker["orig"].astype(np.float32), ram["orig"].astype(np.float32), atol=1e-2)
