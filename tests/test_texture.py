"""Texture statistics (trainer/texture.py): packing, the statistics themselves on real paintings,
the head's texture branch, CutMix's handling of packed channels, and whether the statistics carry
information the pooled final map lacks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MINI
from trainer import texture
from trainer.augment import mix_batch
from trainer.model import CRNNClassifier


@pytest.mark.parametrize("channels,dim,hw", [(192, 544, 7), (1280, 1568, 7), (4, 5, 3), (8, 49, 7), (3, 1, 9)])
def test_pack_and_unpack_round_trip_and_leave_the_map_alone(channels, dim, hw):
    g = torch.Generator().manual_seed(0)
    maps, vec = torch.randn(3, channels, hw, hw, generator=g), torch.randn(3, dim, generator=g)
    packed = texture.pack(maps, vec)
    assert packed.shape == (3, channels + texture.packed_channels(dim, hw, hw), hw, hw)
    assert texture.packed_channels(dim, hw, hw) * hw * hw >= dim > (texture.packed_channels(dim, hw, hw) - 1) * hw * hw
    m, v = texture.unpack(packed, channels, dim)
    assert torch.equal(m, maps) and torch.equal(v, vec)


def test_mean_std_are_each_channels_spatial_moments():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.0])[None, :, None, None] + 2
    got = texture.mean_std(x, eps=0).numpy()
    a = x.numpy().reshape(2, 3, -1)
    np.testing.assert_allclose(got, np.concatenate([a.mean(2), a.std(2)], 1), atol=1e-12)
    assert torch.isfinite(torch.autograd.functional.jacobian(lambda t: texture.mean_std(t).sum(), x[:, 2:])).all()


def test_stage_ends_of_lite0():
    chans = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    assert texture.stage_ends(chans) == [0, 2, 4, 7, 10, 14, 15]


def test_texture_backbone_packs_the_stage_statistics_of_real_paintings():
    """The texture stem's packed vector equals the mean/std of the blocks' outputs read off with
    hooks on the plain backbone; the tail adds its input's and last block's; the map is unchanged."""
    from trainer.backbones import build_backbone
    from trainer.data import load_image, load_paintings
    from trainer.images import image_tensor
    ps = load_paintings(MINI, test_fraction=0)
    x = torch.stack([image_tensor(load_image(ps.root / p), 224, (0.5,) * 3, (0.5,) * 3)
                     for p in ps.frame["path"].iloc[::900]])
    plain, tex = build_backbone("efficientnet_lite0"), build_backbone("efficientnet_lite0", with_texture=True)
    seen = {}
    blocks = plain.stem.model._blocks
    hooks = [b.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out)) for i, b in enumerate(blocks)]
    with torch.no_grad():
        final = plain.net.eval()(x)
        packed_stage, packed_final = tex.stem.eval()(x), tex.net.eval()(x)
    for h in hooks:
        h.remove()
    ends = [0, 2, 4, 7, 10]   # stage ends before the stem's own output (block 14) and the tail's block
    early = torch.cat([texture.mean_std(seen[i]) for i in ends], 1)
    stage_map, early_got = texture.unpack(packed_stage, 192, tex.stem.dim)
    assert tex.stem.dim == 544 and tex.texture_dim == 1568
    torch.testing.assert_close(stage_map, seen[14])
    torch.testing.assert_close(early_got, early)
    final_map, stats = texture.unpack(packed_final, 1280, tex.texture_dim)
    torch.testing.assert_close(final_map, final)
    torch.testing.assert_close(stats, torch.cat([early, texture.mean_std(seen[14]), texture.mean_std(seen[15])], 1))


def test_head_reads_the_texture_branch_and_ignores_the_padding():
    torch.manual_seed(0)
    head = CRNNClassifier("rowcol_bigru", 16, {"style": 5}, texture_dim=30).eval()
    maps, stats = torch.randn(4, 16, 7, 7), torch.randn(4, 30)
    packed = texture.pack(maps, stats)
    emb, logits = head(packed)
    assert emb.shape == (4, 960 + 256) and head.embedding_dim == 1216 and logits["style"].shape == (4, 5)
    padded = packed.clone()
    padded[:, 16:].view(4, -1)[:, 30:] = 9.0          # the pad behind the vector is not read
    assert torch.equal(head(padded)[1]["style"], logits["style"])
    other = texture.pack(maps, stats + 1.0)             # the statistics are
    assert not torch.allclose(head(other)[1]["style"], logits["style"])
    head.train()
    assert head(packed[:1])[0].shape == (1, 1216)       # a one-row last batch trains (BatchNorm's running stats)


def test_cutmix_boxes_places_and_blends_packed_statistics():
    """CutMix pastes a box of the partner's map but blends the packed statistics by the box's area
    share (a statistic is no place on the map): row r = lam * own + (1 - lam) * partner's."""
    x = texture.pack(torch.randn(16, 6, 7, 7, generator=torch.Generator().manual_seed(0)),
                     torch.randn(16, 40, generator=torch.Generator().manual_seed(1))).numpy()
    own_class = {"style": np.arange(16)}   # one class per row: the soft target names the partner and lam
    for seed in range(20):
        xm, soft, _ = mix_batch(x, own_class, {"style": 16}, np.random.default_rng(seed), 0.0, 1.0, spatial_channels=6)
        s = soft["style"]
        rows = [r for r in range(16) if 0 < s[r, r] < 1]
        for r in rows:
            lam, partner = s[r, r], int(np.argmax(np.where(np.arange(16) == r, -1, s[r])))
            from_partner = np.isclose(xm[r, :6], x[partner, :6]).all(0) & ~np.isclose(xm[r, :6], x[r, :6]).all(0)
            kept = np.isclose(xm[r, :6], x[r, :6]).all(0)
            assert (from_partner | kept).all() and np.isclose(kept.mean(), lam)   # a box, of area 1 - lam
            np.testing.assert_allclose(xm[r, 6:], lam * x[r, 6:] + (1 - lam) * x[partner, 6:], rtol=1e-5, atol=1e-5)
        if rows:
            return
    pytest.fail("no batch was CutMixed")


def test_texture_statistics_carry_what_the_pooled_map_lacks(trained):
    """On the subset's cached maps (what `make train` trained on), a linear probe on the texture
    statistics alone reaches a higher val style accuracy than one on the pooled 1280-channel map."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from trainer.backbones import build_backbone
    from trainer.data import load_paintings
    from trainer.features import extract_features
    ps = load_paintings(str(trained["manifest"]), 0.2, 0)
    bb = build_backbone("efficientnet_lite0", with_texture=True)
    views, ok, _, stats = extract_features(ps.root, ps.frame["path"].tolist(), bb, trained["work"] / "cache", 224)
    assert stats.misses == 0 and ok.all()              # the run's own cache, packed statistics included
    maps, tex = texture.unpack(torch.from_numpy(views["orig"].astype(np.float32)), 1280, bb.texture_dim)
    y, split = ps.labels("style"), ps.frame["split"].to_numpy()
    tr, va = (split != "val") & (y >= 0), (split == "val") & (y >= 0)
    acc = {}
    for name, feats in (("pooled", maps.mean((2, 3)).numpy()), ("texture", tex.numpy())):
        sc = StandardScaler().fit(feats[tr])
        clf = LogisticRegression(C=0.05, max_iter=3000).fit(sc.transform(feats[tr]), y[tr])
        acc[name] = float((clf.predict(sc.transform(feats[va])) == y[va]).mean())
    assert acc["texture"] > acc["pooled"], acc


def test_runs_saved_before_texture_rebuild_as_they_trained():
    """A checkpoint from before --texture (no texture_dim in its meta, no texture in its config)
    loads as the head it was, and its config (resume, noise and loop benches) rebuilds without texture
    and, from before --fit-on, with the final model early-stopped on train as it was."""
    from trainer.checkpoint import Checkpoint, build_model
    from trainer.config import TrainConfig, saved_config
    head = CRNNClassifier("rowcol_bigru", 1280, {"style": 27})
    meta = {"arch": "rowcol_bigru", "in_channels": 1280, "tasks": ["style"], "classes": {"style": ["s"] * 27},
            "backbone": "efficientnet_lite0"}
    loaded, bb = build_model(Checkpoint.from_saved({"meta": meta, "config": {"dropout": 0.3},
                                                "state_dict": head.state_dict()}))
    assert loaded.texture is None and bb.texture_dim == 0 and bb.cache_name == "efficientnet_lite0"
    old = {k: v for k, v in vars(TrainConfig()).items() if k not in ("texture", "fit_on")}
    assert saved_config(old).texture is False and saved_config({**old, "texture": True}).texture is True
    assert saved_config(old).fit_on == "train" and TrainConfig().fit_on == "train+val"
    assert saved_config(old, seed=5).seed == 5
