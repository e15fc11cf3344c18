"""Image quality flags: crafted images raise exactly their flag; the store keeps them and the
Review queue leaves the photo defects out."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embeddings.quality import FLAG_NAMES, PHOTO_DEFECTS, image_quality


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A colourful, detailed picture: smooth colour blobs plus fine texture (no flag)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * 60 + 128 for c in range(3)], -1) + rng.normal(0, 30, (h, w, 3))
    base[..., 0] += 60 * (yy > 0.5)
    return np.clip(base, 0, 255).astype(np.uint8)


CRAFTED = {
    "fine.png": (_noise(300, 300), []),
    "tiny.png": (_noise(64, 80), ["small"]),
    # an under- or overexposed photograph also loses its tonal range: low information comes with it
    "dark.png": ((_noise(300, 300).astype(float) * 0.15).astype(np.uint8), ["dark", "low_information"]),
    "washed.png": ((255 - (255 - _noise(300, 300).astype(float)) * 0.1).astype(np.uint8),
                   ["washed_out", "low_information"]),
    "grey.png": (np.repeat(_noise(300, 300).mean(-1, keepdims=True), 3, -1).astype(np.uint8), ["greyscale"]),
    "strip.png": (_noise(150, 600), ["odd_aspect"]),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_images_raise_their_flag(tmp_path, name):
    arr, want = CRAFTED[name]
    Image.fromarray(arr).save(tmp_path / name)
    q = image_quality(tmp_path, [name]).iloc[0]
    assert [f for f in q["flags"].split(",") if f] == want, q.to_dict()


def test_a_flat_field_is_blurred_and_low_in_information_and_an_unreadable_file_is_not_flagged(tmp_path):
    yy = np.linspace(90, 110, 300)[:, None].repeat(300, 1)
    flat = np.stack([yy, yy * 0.8, yy * 0.5], -1).astype(np.uint8)       # a faint gradient, coloured
    Image.fromarray(flat).save(tmp_path / "flat.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    q = image_quality(tmp_path, ["flat.png", "broken.jpg"]).set_index("path")
    assert set(q.loc["flat.png", "flags"].split(",")) == {"blurred", "low_information"}
    assert q.loc["broken.jpg", "flags"] == "" and np.isnan(q.loc["broken.jpg", "brightness"])


def test_a_sideways_phone_photo_and_a_16_bit_scan_are_measured_as_seen(tmp_path):
    """Width and height as the picture is viewed (EXIF orientation), and a 16-bit grey scan's tones,
    not the white PIL's own conversion would make of them."""
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(_noise(300, 150)).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    grey = _noise(300, 300).mean(-1)
    Image.fromarray((grey * 257).astype(np.uint16)).save(tmp_path / "scan16.png")
    q = image_quality(tmp_path, ["phone.jpg", "scan16.png"]).set_index("path")
    assert (q.loc["phone.jpg", "width"], q.loc["phone.jpg", "height"]) == (300, 150)
    assert q.loc["scan16.png", "flags"] == "greyscale"
    assert abs(q.loc["scan16.png", "brightness"] - grey.mean() / 255) < 0.02


def test_the_store_keeps_quality_and_the_queue_leaves_flagged_paintings_out(store, tmp_path):
    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(store["store"], tags=tmp_path / "tags.duckdb"))
    try:
        images = app.store.images()
        stored = app.store.quality_flags()
        fresh = image_quality(store["root"], images["path"].tolist())
        want = fresh[fresh["flags"] != ""].set_index("path")["flags"]
        assert stored.set_index("path")["flags"].sort_index().equals(want.sort_index())
        assert len(stored) > 0      # real WikiArt photographs: some greyscale, some near-uniform
        summary, _ = app.image_quality()
        assert list(summary["flag"]) == list(FLAG_NAMES) and summary["paintings"].sum() >= len(stored)
        n = len(images)
        every = set(app.review_queue("style", "evidence", size=n, leave_out=[])["path"])
        flagged = set(stored["path"])
        leave = [f for f in FLAG_NAMES if f not in PHOTO_DEFECTS]       # flags this subset does raise
        kept = set(app.review_queue("style", "evidence", size=n, leave_out=leave)["path"])
        assert kept == every - set(stored.loc[stored["flags"].str.contains("|".join(leave)), "path"])
        assert flagged & every and not (kept & set(stored.loc[stored["flags"].str.contains("greyscale"), "path"]))
        some = stored.iloc[0]
        assert [f for f, _ in app.quality_of(int(some["image_id"]))] == some["flags"].split(",")
    finally:
        app.close()
