"""The sharded feature cache: rows come back in order, missing rows read as zeros, and an
interrupted or damaged shard is never read."""
import numpy as np

from trainer.cache import FeatureCache, MapArray, pooled_means


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


def test_interrupted_and_damaged_shards_are_ignored(tmp_path):
    cache = FeatureCache(tmp_path, "bb", 224)
    shard = cache.write_shard("orig", [f"{1:040d}"], _maps(1))
    shard.with_name(shard.name.replace(".npy", ".keys.npy")).write_bytes(b"not numpy")   # damaged keys
    np.save(cache.dir / "orig" / "shard-half.npy", _maps(1))   # maps written, keys never: interrupted
    fresh = FeatureCache(tmp_path, "bb", 224)
    assert fresh.missing([f"{1:040d}"], "orig") == [f"{1:040d}"]


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
