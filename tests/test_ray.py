"""`--engine ray` on a local Ray instance with 2 CPUs: the store and the feature cache it builds
equal the default (single-process) ones."""
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import MINI, run_cli

pytest.importorskip("ray", reason="the Ray extra: pip install -r requirements-ray.txt (make test installs it)")


def _table(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_ray_store_equals_the_default_store(store, tmp_path):
    ray_store = tmp_path / "ray" / "artlens.duckdb"
    r = run_cli("embed", "--run", str(store["run_dir"]), "--store", str(ray_store), "--engine", "ray",
                "--ray-cpus", "2", "--cache-dir", str(tmp_path / "cache"), "--projection", "pca", "--batch-size", "32")
    assert r.returncode == 0, r.stderr[-3000:]
    assert not any((tmp_path / "ray").glob("artlens.shards/*/*.parquet"))   # shards ingested, then removed
    for sql in ("SELECT image_id, path, sha1, split FROM images ORDER BY image_id",
                "SELECT image_id, task, class_index, training_index FROM labels ORDER BY image_id, task"):
        pd.testing.assert_frame_equal(_table(store["store"], sql), _table(ray_store, sql))
    sql = "SELECT image_id, vector FROM embeddings ORDER BY image_id"
    a, b = (np.stack(_table(p, sql)["vector"]) for p in (store["store"], ray_store))
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(a).max())
    sql = "SELECT image_id, task, probs FROM predictions ORDER BY image_id, task"
    pa_, pb = (np.concatenate(_table(p, sql)["probs"].to_list()) for p in (store["store"], ray_store))
    assert np.abs(pa_ - pb).max() < 1e-3
    sql = "SELECT image_id, task, detector, score FROM scores WHERE detector = '{}' ORDER BY image_id, task"
    sa, sb = (_table(p, sql.format("confidence")) for p in (store["store"], ray_store))
    assert len(sa) == len(sb) > 0 and np.allclose(sa["score"], sb["score"], atol=1e-3)
    sa, sb = (_table(p, sql.format("knn_backbone")) for p in (store["store"], ray_store))   # label-free kNN:
    assert len(sa) == len(sb) > 0 and (np.abs(sa["score"] - sb["score"]) < 1e-6).mean() > 0.95   # near-ties may swap


def test_ray_feature_stage_fills_the_same_cache_and_names_bad_images(tmp_path):
    from trainer.backbones import build_backbone
    from trainer.data import load_paintings
    from trainer.features import extract_features
    from trainer.ray_engine import RaySettings
    ps = load_paintings(MINI, test_fraction=0)
    paths = ps.frame["path"].iloc[::300].tolist()
    root = tmp_path / "data"
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ps.root / p, root / p)
    (root / paths[1]).write_bytes(b"not a jpeg")
    bb = build_backbone("efficientnet_lite0")
    local, ok_l, _, _ = extract_features(root, paths, bb, tmp_path / "a", 224, views=("orig", "hflip"), stage=True)
    remote, ok_r, _, stats = extract_features(root, paths, bb, tmp_path / "b", 224, views=("orig", "hflip"),
                                              stage=True, engine="ray", ray=RaySettings(cpus=2))
    assert (ok_l == ok_r).all() and not ok_r[1] and ok_r.sum() == len(paths) - 1
    assert len(stats.failed) == 1 and paths[1] in stats.failed[0] and "cannot decode" in stats.failed[0]
    for v in ("orig", "hflip"):
        np.testing.assert_allclose(remote[v].astype(np.float32), local[v].astype(np.float32), atol=1e-2)
    again = extract_features(root, paths, bb, tmp_path / "b", 224, views=("orig", "hflip"), stage=True)[3]
    assert again.misses == 2 and again.hits == 2 * (len(paths) - 1)   # only the bad image is retried
