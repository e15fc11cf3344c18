"""Loader: both layouts, the real ArtGAN quirks, and one-line errors for bad input."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import HEIC, MINI, run_cli, start_cli
from trainer.cli import UserError
from trainer.data import load_image, load_paintings


def test_reads_wikiart_mini():
    ps = load_paintings(MINI)
    f = ps.frame
    assert len(f) == 2546
    assert len(ps.classes["style"]) == 27 and len(ps.classes["genre"]) == 10 and len(ps.classes["artist"]) == 24
    assert (f["style"] >= 0).all() and (f["genre"] >= 0).all()
    assert (f["artist"] >= 0).sum() == 1453 - 0  # artist CSVs list 1018 + 435 paintings
    assert (f["artist"] < 0).sum() == 2546 - 1453  # kept, with the missing task masked
    assert set(f["split"]) == {"train", "val", "test"}
    # the ArtGAN style val split is kept, but for 10 copies (7 identical files, 3 the same picture by
    # their pixels) whose other copy ArtGAN put in train
    assert (f["split"] == "val").sum() == 794 - 10
    # test split is carved from train only, stratified: every style with >= 3 train paintings appears
    assert 0.1 < (f["split"] == "test").sum() / 1752 < 0.2
    assert f.loc[f.split == "test", "style"].nunique() == f.loc[f.split != "val", "style"].nunique()


def test_test_split_is_seeded():
    a = load_paintings(MINI, seed=1).frame
    b = load_paintings(MINI, seed=1).frame
    c = load_paintings(MINI, seed=2).frame
    assert (a["split"] == b["split"]).all() and not (a["split"] == c["split"]).all()


def test_copies_share_one_split_on_wikiart_mini(caplog):
    """wikiart-mini's 18 byte-identical pairs: ArtGAN's own split puts 7 across train and val, and a
    test split drawn painting by painting puts more across test. With copies kept together none
    crosses, the test split is the same draw plus the copies of what it drew, and it is logged.
    Four pairs of other files are one picture by their pixels too, Rubens' rescan among them; with
    --copy-hash-share 0 only identical files are."""
    import logging
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        f = load_paintings(MINI).frame
    apart = load_paintings(MINI, copies_together=False).frame
    identical = load_paintings(MINI, copy_hash_share=0).frame
    groups = f[f["copy_group"] >= 0]
    assert groups["copy_group"].nunique() == 22 and len(groups) == 44
    assert (identical["copy_group"] >= 0).sum() == 36 and identical["copy_group"].max() == 17
    by_path = f.set_index("path")
    rubens = by_path.loc[["Baroque/peter-paul-rubens_the-elevation-of-the-cross(1).jpg",
                          "Baroque/peter-paul-rubens_the-raising-of-the-cross.jpg"]]
    assert rubens["copy_group"].nunique() == 1 and rubens["copy_group"].iloc[0] >= 0
    assert (groups.groupby("copy_group")["split"].nunique() == 1).all()
    in_apart = apart.loc[groups.index]
    assert (in_apart.groupby(groups["copy_group"])["split"].nunique() > 1).sum() >= 7
    assert (apart["copy_group"] == -1).all()
    moved = f["split"] != apart["split"]
    assert (f.loc[moved, "copy_group"] >= 0).all()                     # only copies move
    assert set(apart.index[apart["split"] == "test"]) <= set(f.index[f["split"] == "test"])
    assert ("22 groups of copies (44 paintings, at most 2 in one; 4 pairs of other files one picture by "
            "their pixels), each kept in one split") in caplog.text


def test_runs_saved_before_copy_hash_share_resplit_as_they_trained():
    """A run saved before --copy-hash-share grouped identical files only: make embed and the
    benchmarks, which reread its data with its saved config, split it as it trained."""
    from trainer.config import TrainConfig, run_paintings, saved_config
    old = {k: v for k, v in vars(TrainConfig(data=str(MINI))).items() if k != "copy_hash_share"}
    assert saved_config(old).copy_hash_share == 0.0 and TrainConfig().copy_hash_share == 0.15
    before = run_paintings(saved_config(old)).frame
    now = run_paintings(saved_config({**old, "copy_hash_share": 0.15})).frame
    assert (before["copy_group"] >= 0).sum() == 36 and (now["copy_group"] >= 0).sum() == 44
    assert (before["split"] != now["split"]).sum() == 4


def test_copy_groups_keep_together_and_share_a_fold():
    from trainer.splits import copies_share_fold, copy_groups, keep_copies_together
    g = copy_groups(["a", "b", "a", None, "c", "b", None, "a"])
    assert g.tolist() == [0, 1, 0, -1, -1, 1, -1, 0]
    split, moved = keep_copies_together(np.array(["train", "val", "test", "val", "train", "train", "val", "val"]), g)
    assert split.tolist() == ["test", "train", "test", "val", "train", "train", "val", "test"] and moved == 3
    fold = copies_share_fold(np.array([0, 1, 2, 3, 4, 0, 1, 2]), g)
    assert fold.tolist() == [0, 1, 0, 3, 4, 1, 1, 0]
    # a pair by pixels joins two files (and, transitively, their identical copies) into one group
    near = copy_groups(["a", "b", "a", None, "c", "b", None, "a"], (np.array([4, 6]), np.array([5, 3])))
    assert near.tolist() == [0, 1, 0, 2, 1, 1, 2, 0]


def test_a_head_that_trained_on_a_copy_is_found():
    """A rescan is found after training, in whatever fold it fell: the head that scored a painting
    trained on its copy where the copy sits in another fold, not where it shares the fold or was not
    cross-fitted."""
    from trainer.splits import head_saw_a_copy
    group = np.array([0, 0, 1, 1, 1, 2, 2, -1])
    fold = np.array([3, 2, 1, 1, 4, 0, -1, 2])
    assert head_saw_a_copy(fold, group).tolist() == [True, True, True, True, True, False, False, False]
    assert not head_saw_a_copy(np.array([1, 1, 0]), np.array([0, 0, -1])).any()
    assert head_saw_a_copy(np.array([], int), np.array([], int)).shape == (0,)


def _artgan(tmp_path, style_rows: list[bytes], class_name="style_class.txt"):
    (tmp_path / "Cubism").mkdir()
    img = Image.new("RGB", (32, 32), (200, 10, 10))
    img.save(tmp_path / "Cubism" / "a.jpg")
    img.save(tmp_path / "Cubism" / "pablo-picasso_caf\u00e9.jpg")
    (tmp_path / class_name).write_bytes(b"0 Abstract\r\n1 Cubism\r\n")
    (tmp_path / "style_train.csv").write_bytes(b"".join(style_rows))
    return tmp_path


def test_artgan_quirks_crlf_double_encoding_and_class_file_without_txt(tmp_path):
    double = "Cubism/pablo-picasso_caf\u00e9.jpg".encode("utf-8").decode("latin-1").encode("utf-8")
    _artgan(tmp_path, [b"Cubism/a.jpg,1\r\n", double + b",1\r\n", b"Cubism/missing.jpg,1\r\n"], "style_class")
    ps = load_paintings(tmp_path, test_fraction=0)
    assert sorted(ps.frame["path"]) == ["Cubism/a.jpg", "Cubism/pablo-picasso_caf\u00e9.jpg"]
    assert ps.classes["style"] == ["Abstract", "Cubism"]
    assert len(ps.problems) == 1 and "style_train.csv:3" in ps.problems[0] and "missing.jpg" in ps.problems[0]


def test_class_index_out_of_range_names_file_and_line(tmp_path):
    _artgan(tmp_path, [b"Cubism/a.jpg,1\r\n", b"Cubism/a.jpg,7\r\n"])
    with pytest.raises(UserError, match=r"style_train.csv:2: class index 7 out of range"):
        load_paintings(tmp_path)


def test_wrong_column_count_is_one_clear_error(tmp_path):
    _artgan(tmp_path, [b"Cubism/a.jpg\r\n"])
    with pytest.raises(UserError, match=r"style_train.csv:1: expected 'path,index'"):
        load_paintings(tmp_path)


def test_manifest_layout_with_missing_labels(tmp_path):
    shutil.copytree(MINI / "Pop_Art", tmp_path / "Pop_Art")
    files = sorted(p.name for p in (tmp_path / "Pop_Art").iterdir())[:6]
    rows = ["path,artist,genre,style,split"]
    rows += [f"Pop_Art/{f},Andy,portrait,Pop_Art,train" for f in files[:3]]
    rows += [f"Pop_Art/{f},,landscape,Pop_Art,val" for f in files[3:5]]
    rows += [f"Pop_Art/{files[5]},,,Cubism,"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    ps = load_paintings(tmp_path / "m.csv", test_fraction=0)
    assert len(ps.frame) == 6
    assert ps.classes == {"artist": ["Andy"], "genre": ["landscape", "portrait"], "style": ["Cubism", "Pop_Art"]}
    assert (ps.frame["artist"] == -1).sum() == 3 and (ps.frame["genre"] == -1).sum() == 1
    assert ps.frame.set_index("path").loc[f"Pop_Art/{files[5]}", "split"] == "train"


def test_a_manifest_naming_images_outside_its_folder_reads_them_under_one_data_root(tmp_path, caplog):
    """Absolute paths and `../` paths are common in manifests. Stored as written they lay outside
    the data root, where the dashboard shows nothing; they are read relative to the folder that
    holds every image, and an image listed twice, once each way, is one painting."""
    import os
    from dashboard.service import safe_image_path
    cubism, baroque = (sorted((MINI / c).iterdir())[:3] for c in ("Cubism", "Baroque"))
    (tmp_path / "lists").mkdir()
    rel = lambda f: os.path.relpath(f, tmp_path / "lists")
    rows = ["path,style", *(f"{f},Cubism" for f in cubism), *(f"{rel(f)},Baroque" for f in baroque),
            f"{rel(cubism[0])},Cubism"]
    (tmp_path / "lists" / "m.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO):
        ps = load_paintings(tmp_path / "lists" / "m.csv", test_fraction=0)
    assert ps.root == MINI and "read relative to" in caplog.text
    assert sorted(ps.frame["path"]) == sorted(f"{f.parent.name}/{f.name}" for f in cubism + baroque)
    assert any("already listed at line 2" in p for p in ps.problems)
    assert all(safe_image_path(ps.root, p) == (MINI / p) for p in ps.frame["path"])
    assert (ps.frame["artist_name"].str.len() > 0).all()      # the file names still give the artist
    # absolute paths inside the manifest's own folder become relative to it; the root stays
    shutil.copytree(MINI / "Pop_Art", tmp_path / "Pop_Art")
    files = sorted((tmp_path / "Pop_Art").iterdir())[:2]
    (tmp_path / "n.csv").write_text("path,style\n" + f"{files[0]},Pop_Art\nPop_Art/{files[1].name},Pop_Art\n")
    ps = load_paintings(tmp_path / "n.csv", test_fraction=0)
    assert ps.root == tmp_path and sorted(ps.frame["path"]) == [f"Pop_Art/{f.name}" for f in files]


def test_manifest_wrong_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\nx.jpg,1\n")
    with pytest.raises(UserError, match="missing column\\(s\\) path, artist, genre, style"):
        load_paintings(tmp_path / "m.csv")
    # a label column spelt another way is named, not taken for a task the collection leaves out
    (tmp_path / "t.csv").write_text("path,artsit,genre,style_name\nx.jpg,a,b,c\n")
    with pytest.raises(UserError, match="missing column\\(s\\) artist, style; .*is 'artsit' meant to be 'artist'\\?; "
                                        "is 'style_name' meant to be 'style'\\?"):
        load_paintings(tmp_path / "t.csv")
    (tmp_path / "labels.xlsx").write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(UserError, match="labels.xlsx: a spreadsheet, not a CSV: save it as CSV"):
        load_paintings(tmp_path / "labels.xlsx")


def test_a_manifest_of_style_labels_only_trains_style(tmp_path, caplog):
    """A collection labelled for one task leaves the other columns out; other columns of its own
    (an inventory number) are ignored, a path with Windows separators is found, and a spreadsheet's
    ';'-separated export reads as the ','-separated one."""
    shutil.copytree(MINI / "Pop_Art", tmp_path / "Pop_Art")
    files = sorted(p.name for p in (tmp_path / "Pop_Art").iterdir())[:4]
    rows = ["path,style,inventory"] + [f"Pop_Art{'/' if i else chr(92)}{f},{'Pop_Art' if i % 2 else 'Cubism'},INV-{i}"
                                       for i, f in enumerate(files)]   # the first written on Windows
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        ps = load_paintings(tmp_path / "m.csv", test_fraction=0)
    assert ps.classes == {"style": ["Cubism", "Pop_Art"]} and len(ps.frame) == 4
    assert ps.frame["path"].iloc[0] == f"Pop_Art/{files[0]}"
    assert (ps.frame["artist"] == -1).all() and (ps.frame["genre"] == -1).all()
    assert "no artist or genre column: those tasks are not trained or scored" in caplog.text
    assert "column(s) not read: inventory" in caplog.text and "rename to use them" not in caplog.text
    # a catalogue's own name for the date is not read: said, with the name that is
    (tmp_path / "d.csv").write_text("\n".join(r + (",creation_date" if i == 0 else ",1965") for i, r in enumerate(rows))
                                    + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        dated = load_paintings(tmp_path / "d.csv", test_fraction=0)
    assert len(dated.frame) == 4 and (dated.frame["year_lo"] != 1965).all()     # the file names' years, if any
    assert "column(s) creation_date not read: a painting's title and date are read from columns named title and " \
           "date (or year); rename to use them" in caplog.text
    # the same saved by a spreadsheet whose locale separates with ';'
    (tmp_path / "semi.csv").write_text("\n".join(r.replace(",", ";") for r in rows) + "\n")
    semi = load_paintings(tmp_path / "semi.csv", test_fraction=0)
    assert semi.classes == ps.classes and semi.frame["path"].tolist() == ps.frame["path"].tolist()


def test_a_manifest_excel_saved_on_windows_keeps_its_accents(tmp_path, caplog):
    """Excel's plain "CSV" on a French Windows: Windows-1252, ';' and CRLF. Accented classes, artists,
    dates and image paths read as written (UTF-8 with replacement characters lost the paths and
    renamed the classes), as does the same table as Excel's "Unicode text" (UTF-16, tabs); an image
    a Mac named with a decomposed accent is found from the composed one a spreadsheet types; and the
    corrected manifest comes back in the file's own encoding."""
    import unicodedata

    import pandas as pd
    from trainer.relabel import corrected_manifest
    (tmp_path / "img").mkdir()
    shutil.copyfile(min((MINI / "Baroque").iterdir()), tmp_path / "img" / "gérôme.jpg")
    shutil.copyfile(min((MINI / "Cubism").iterdir()), tmp_path / "img" / unicodedata.normalize("NFD", "cézanne.jpg"))
    rows = [["path", "artist", "style", "title", "date"],
            ["img\\gérôme.jpg", "Jean-Léon Gérôme", "Académisme", "Pollice verso", "années 1870"],
            ["img\\cézanne.jpg", "Paul Cézanne", "Cubisme", "Nature morte", "vers 1890"]]
    table = "".join(";".join(r) + "\r\n" for r in rows)
    (tmp_path / "excel.csv").write_bytes(table.encode("cp1252"))
    (tmp_path / "unicode.csv").write_bytes(table.replace(";", "\t").encode("utf-16"))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        ps = load_paintings(tmp_path / "excel.csv", test_fraction=0)
    assert "excel.csv: not UTF-8: read as Windows-1252" in caplog.text
    assert ps.classes["style"] == ["Académisme", "Cubisme"]
    assert ps.classes["artist"] == ["Jean-Léon Gérôme", "Paul Cézanne"]
    read = ps.frame.set_index("path")
    assert sorted(read.index) == sorted(["img/gérôme.jpg", unicodedata.normalize("NFD", "img/cézanne.jpg")])
    assert read.loc["img/gérôme.jpg", ["year_lo", "year_hi", "title"]].tolist() == [1870, 1879, "Pollice verso"]
    wide = load_paintings(tmp_path / "unicode.csv", test_fraction=0)
    assert wide.classes == ps.classes and wide.frame["path"].tolist() == ps.frame["path"].tolist()
    # the review's correction goes back in the encoding the file came in; a label it cannot hold, in UTF-8
    latest = pd.DataFrame([{"path": "img/gérôme.jpg", "task": "style", "decision": "mislabel",
                            "given_label": "Académisme", "suggested_label": "Réalisme"}])
    data, counts = corrected_manifest(tmp_path / "excel.csv", latest)
    assert counts["replaced"] == 1 and data == table.replace("Académisme", "Réalisme").encode("cp1252")
    data, _ = corrected_manifest(tmp_path / "unicode.csv", latest)
    assert data.decode("utf-16") == table.replace(";", "\t").replace("Académisme", "Réalisme")
    # a UTF-8 file with one stray byte stays UTF-8: the accents it holds outnumber the byte it cannot read
    from trainer.data import csv_encoding
    assert csv_encoding(table.encode("utf-8") + b"\x96") == "utf-8" and csv_encoding(table.encode("cp1252")) == "cp1252"
    latest.loc[0, "suggested_label"] = "浮世絵"
    data, _ = corrected_manifest(tmp_path / "excel.csv", latest)
    assert data.decode("utf-8-sig") == table.replace("Académisme", "浮世絵")


def test_empty_manifest_and_empty_dataset(tmp_path):
    (tmp_path / "m.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        load_paintings(tmp_path / "m.csv")
    (tmp_path / "h.csv").write_text("path,artist,genre,style\n")
    with pytest.raises(UserError, match="no usable paintings"):
        load_paintings(tmp_path / "h.csv")
    # a catalogue export that links its images instead of holding them
    (tmp_path / "urls.csv").write_text("path,style\nhttps://uploads.wikiart.org/a.jpg,Baroque\n"
                                       "https://uploads.wikiart.org/b.jpg,Cubism\n")
    with pytest.raises(UserError, match=r"urls.csv:2: image 'https://uploads.wikiart.org/a.jpg' not found .*"
                                        r"\(a web address: artlens reads image files, download them first\)"):
        load_paintings(tmp_path / "urls.csv")


def test_image_decoding_edge_cases(tmp_path):
    src = next((MINI / "Cubism").iterdir())
    data = src.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.new("L", (20, 20), 80).save(tmp_path / "grey.jpg")
    Image.new("CMYK", (20, 20), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    for bad in ("trunc.jpg", "garbage.jpg", "nope.jpg"):
        with pytest.raises(ValueError):
            load_image(tmp_path / bad)
    alpha = np.asarray(load_image(tmp_path / "alpha.png"))
    assert alpha.shape == (20, 20, 3) and (alpha == 255).all()  # transparent -> white, not black
    assert load_image(tmp_path / "grey.jpg").mode == "RGB"
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"


def test_a_phone_photo_stored_sideways_is_read_upright_and_a_16_bit_scan_keeps_its_tones(tmp_path):
    """A painting stored turned with an EXIF orientation tag (as phones save them; browsers obey the
    tag) is the painting the model, the copy finder and the dashboard see; so are web exports (AVIF,
    GIF) and an archive's JPEG 2000 master; a 16-bit grey scan is not read as white (PIL's own
    conversion clips it)."""
    from trainer.data import fingerprint_images
    from trainer.picture_hash import MAX_HASH_SHARE
    with Image.open(next((MINI / "Baroque").iterdir())) as im:
        painting = im.convert("RGB")
    painting.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "turn 90 degrees clockwise to view"
    painting.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    painting.save(tmp_path / "web.avif", quality=95)                 # web exports, an archive's master
    painting.save(tmp_path / "web.gif")
    painting.save(tmp_path / "archive.jp2", quality_mode="dB", quality_layers=[45])
    grey16 = np.asarray(painting.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "scan16.png")
    with Image.open(tmp_path / "scan16.png") as stored:
        assert stored.mode.startswith("I")

    for name in ("phone.jpg", "web.avif", "web.gif", "archive.jp2"):
        phone = np.asarray(load_image(tmp_path / name), dtype=np.float32)
        assert phone.shape == np.asarray(painting).shape, name
        assert np.abs(phone - np.asarray(painting, dtype=np.float32)).mean() < 4, name     # codec noise only
    scan = np.asarray(load_image(tmp_path / "scan16.png"), dtype=np.float32)
    assert np.abs(scan[..., 0] - np.asarray(painting.convert("L"), dtype=np.float32)).max() <= 1
    _, hashes = fingerprint_images(tmp_path, ["upright.png", "phone.jpg", "scan16.png", "web.avif", "web.gif",
                                              "archive.jp2"])
    assert all((h != hashes[0]).mean() <= MAX_HASH_SHARE for h in hashes[1:])   # found as copies


def test_an_iphones_heic_photograph_is_read_upright(tmp_path):
    """tests/data/*.heic: wikiart-mini paintings as a phone stores them (HEIC, HEVC-coded), one turned on
    its side with the turn in the file's rotation box (written by pillow-heif 1.9, quality 90, from an
    EXIF orientation 6); the product decodes them with pi-heif."""
    from trainer.data import fingerprint_images
    from trainer.picture_hash import MAX_HASH_SHARE
    for heic in sorted(HEIC.glob("*.heic")):
        source = next(MINI.glob(f"*/{heic.stem}.jpg"))
        painting = np.asarray(load_image(source), dtype=np.float32)
        phone = np.asarray(load_image(heic), dtype=np.float32)
        assert phone.shape == painting.shape and np.abs(phone - painting).mean() < 4, heic.name   # codec noise only
        shutil.copyfile(heic, tmp_path / heic.name)
        shutil.copyfile(source, tmp_path / source.name)
        _, hashes = fingerprint_images(tmp_path, [source.name, heic.name])
        assert (hashes[0] != hashes[1]).mean() <= MAX_HASH_SHARE       # found as a copy of the scan
    # a file cut short (a sync that stopped): the decoder's several-line complaint as one line
    (tmp_path / "cut.heic").write_bytes(heic.read_bytes()[:400])
    with pytest.raises(ValueError) as refused:
        load_image(tmp_path / "cut.heic")
    assert str(refused.value).startswith("cannot decode image: ") and "\n" not in str(refused.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import trainer.data as d
    monkeypatch.setattr(d, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="pixel limit|decompression bomb"):
        load_image(tmp_path / "big.png")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    r = run_cli("train", "--data", str(tmp_path / "nowhere"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: data root")
    assert "Traceback" not in r.stderr
    r = run_cli("train", "--arch", "transformer")
    assert r.returncode == 2 and "invalid choice: 'transformer'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "--finetune" in r.stdout and "--folds" in r.stdout
    store = tmp_path / "kept.duckdb"
    store.write_bytes(b"a store")
    r = run_cli("embed", "--duplicate-hash-share", "1.5", "--store", str(store))
    assert r.returncode == 2 and r.stderr.strip() == "error: --duplicate-hash-share 1.5 is not between 0 and 1"
    assert store.read_bytes() == b"a store"
    r = run_cli("train", "--copy-hash-share", "-0.1", "--out-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and r.stderr.strip() == "error: --copy-hash-share -0.1 is not between 0 and 1"
    assert not (tmp_path / "runs").exists()


def test_non_utf8_csv_and_class_with_one_image(tmp_path):
    """A latin-1 CSV (not UTF-8) still finds its file; a class with one painting stays in train."""
    (tmp_path / "Cubism").mkdir()
    name = "Cubism/juan-gris_caf\u00e9.jpg"
    Image.new("RGB", (16, 16)).save(tmp_path / name)
    for i in range(6):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "Cubism" / f"p{i}.jpg")
    (tmp_path / "style_class.txt").write_text("0 Abstract\n1 Cubism\n")
    rows = [name.encode("latin-1") + b",0\r\n"] + [f"Cubism/p{i}.jpg,1\r\n".encode() for i in range(6)]
    (tmp_path / "style_train.csv").write_bytes(b"".join(rows))
    ps = load_paintings(tmp_path, test_fraction=0.5)
    f = ps.frame.set_index("path")
    assert f.loc[name, "style"] == 0 and f.loc[name, "split"] == "train"  # the lone Abstract painting
    assert (f["split"] == "test").sum() == 3  # half of the 6 Cubism paintings


CLIS = ["", "train", "embed", "bench noise", "bench loop", "explain", "bench", "bench ablation", "bench paired",
        "bench audit", "bench synthetic", "dashboard", "export"]


def test_every_cli_has_help():
    """--help prints usage and exits 0 (a '%' in a help text once made noise_bench's --help crash).
    The CLIs start side by side: each spends its few seconds importing torch."""
    procs = {m: start_cli(m, "--help") for m in CLIS}
    for m, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.startswith("usage:") and "Traceback" not in err, (m, err[-500:])


def test_ablation_rerun_of_one_variant_keeps_the_other_rows(tmp_path):
    """Re-running (here: re-reading) one variant rewrites its row only; rows of other seeds are
    not mixed into the table."""
    out = tmp_path / "abl"
    kept = {"name": "+ TTA", "flags": ["--tta"], "seed": 0, "folds": 0, "best_epoch": 9, "refit": False,
            "seconds": {"features": 1, "train": 2, "total": 3}, "feature_cache": {"misses": 0},
            "val": {"style": {"top1": 0.5, "n": 10}},
            "test": {"style": {"top1": 0.625, "ci95": [0.5, 0.75], "n": 8}}}
    other_seed = {**kept, "name": "+ 2 crop views", "seed": 1}
    out.with_suffix(".json").write_text(json.dumps([kept, other_seed]))
    r = run_cli("bench ablation", "--table-only", "--variants", "frozen (v1 default)", "--out", str(out),
                "--out-dir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr[-1000:]
    md = out.with_suffix(".md").read_text()
    assert "| + TTA | `--tta` | 0.625 (0.50-0.75) | 0.500 |" in md
    # its run folder does not exist here; v1's flags pin v1's schedule as well as its head
    assert "| frozen (v1 default) | `--epochs 40 --fit-on train --no-tune-tail --no-texture` | no " in md
    assert "+ 2 crop views" not in md


def test_repeated_manifest_rows_are_reported_and_the_first_kept(tmp_path, caplog):
    shutil.copytree(MINI / "Pop_Art", tmp_path / "Pop_Art")
    a, b = sorted(p.name for p in (tmp_path / "Pop_Art").iterdir())[:2]
    rows = ["path,artist,genre,style", f"Pop_Art/{a},Andy,portrait,Pop_Art", f"Pop_Art/{b},,portrait,Pop_Art",
            f"Pop_Art/{a},Andy,portrait,Cubism", f"Pop_Art/{b},,portrait,Pop_Art"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING"):
        ps = load_paintings(tmp_path / "m.csv", test_fraction=0)
    assert len(ps.frame) == 2
    style = dict(zip(ps.frame["path"], ps.frame["style"]))
    assert ps.classes["style"][style[f"Pop_Art/{a}"]] == "Pop_Art"        # the first row wins
    assert ps.problems == [
        f"{tmp_path / 'm.csv'}:4: 'Pop_Art/{a}' already listed at line 2; kept that row "
        "(labels differ: style Pop_Art vs Cubism)",
        f"{tmp_path / 'm.csv'}:5: 'Pop_Art/{b}' already listed at line 3; kept that row (same labels)"]
    assert "2 rows list an image a row above already lists (the first row kept, 1 with other labels)" in caplog.text


def _image_folder(root, classes: dict[str, int]):
    """A torchvision ImageFolder of small real paintings: root/<class>/<file>.jpg."""
    for name, n in classes.items():
        src = sorted((MINI / name).iterdir())[:n]
        for p in src:
            (root / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, root / name / p.name)


def test_image_folder_layout_reads_one_task_from_its_folders(tmp_path, caplog):
    _image_folder(tmp_path, {"Cubism": 4, "Pop_Art": 5})
    (tmp_path / "Pop_Art" / "nested").mkdir()
    shutil.copyfile(next((MINI / "Rococo").iterdir()), tmp_path / "Pop_Art" / "nested" / "r.JPG")
    (tmp_path / ".thumbs").mkdir()
    (tmp_path / "Pop_Art" / "notes.txt").write_text("not an image")
    for name in ("IMG_0001.CR2", "IMG_0002.cr2"):           # a camera's raw files, which PIL cannot read
        (tmp_path / "Cubism" / name).write_bytes(b"II*\x00\x10\x00\x00\x00CR")
    phone = next(HEIC.glob("*.heic"))                             # a phone's photograph, which it can
    shutil.copyfile(phone, tmp_path / "Cubism" / (phone.stem + ".HEIC"))
    (tmp_path / "Cubism" / ".DS_Store").write_bytes(b"\x00")
    with caplog.at_level(logging.WARNING):
        ps = load_paintings(tmp_path, test_fraction=0)
    assert "3 files in the class folders are not images artlens reads (2 .cr2, 1 .txt) and are left out" in caplog.text
    assert ps.classes == {"style": ["Cubism", "Pop_Art"]} and ps.tasks == ["style"] and len(ps.frame) == 11
    assert load_image(tmp_path / "Cubism" / (phone.stem + ".HEIC")).size == (224, 224)
    by = ps.frame.set_index("path")
    assert by.loc["Pop_Art/nested/r.JPG", "style"] == 1 and (by["genre"] == -1).all()
    assert by.drop("Pop_Art/nested/r.JPG")["artist_name"].str.len().gt(0).all()   # WikiArt names give the artist
    genre = load_paintings(tmp_path, test_fraction=0, folder_task="genre")
    assert genre.classes == {"genre": ["Cubism", "Pop_Art"]}
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no layout found: no ArtGAN label CSVs .* and no class folders with images"):
        load_paintings(empty)


def test_one_class_folder_is_an_error_that_points_at_the_classes(tmp_path):
    """--data one level too high (a folder holding the class folders) read as a single class, and
    the run trained a classifier with nothing to tell apart; a manifest of one class is refused too."""
    _image_folder(tmp_path / "images", {"Cubism": 2, "Pop_Art": 2})
    with pytest.raises(UserError, match=r"one class folder, 'images', whose 2 sub-folders of images "
                                        r"\(Cubism, Pop_Art\) look like the classes: pass --data .*images$"):
        load_paintings(tmp_path)
    _image_folder(tmp_path / "solo", {"Cubism": 2})
    with pytest.raises(UserError, match="one class folder, 'Cubism': a classifier needs at least two classes"):
        load_paintings(tmp_path / "solo")
    (tmp_path / "solo" / "m.csv").write_text("path,style\n" + "".join(f"Cubism/{p.name},Cubism\n"
                                                                      for p in (tmp_path / "solo" / "Cubism").iterdir()))
    r = run_cli("train", "--data", str(tmp_path / "solo" / "m.csv"), "--out-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "m.csv: every labelled task has one class (style: Cubism): a classifier needs two to tell apart")
    assert not (tmp_path / "runs").exists()


def test_one_class_spelt_two_ways_is_named_not_merged(tmp_path, caplog):
    """A catalogue from several sources files one movement as `Pop_Art` and `pop art`: the loader
    names such classes with their paintings and keeps both (which spelling is right is the curator's
    call); wikiart-mini's 27 styles, 10 genres and 24 artists have none."""
    import pandas as pd

    from trainer.label_names import spelling_key, spelling_variants
    assert spelling_key("Naïve Art (Primitivism)") == spelling_key("Naive_Art_Primitivism")
    assert spelling_variants(["Pop_Art", "Cubism", "pop art", "POP-ART", "Pop Art 2", "", "--"]) == [[0, 2, 3]]
    mini = load_paintings(MINI, test_fraction=0, copies_together=False)
    assert all(spelling_variants(names) == [] for names in mini.classes.values())
    style = np.array(mini.classes["style"], dtype=object)[mini.frame["style"]]
    rows = pd.concat([mini.frame[style == "Pop_Art"].iloc[:10], mini.frame[style == "Cubism"].iloc[:10]])
    styles = ["pop art"] * 3 + ["Pop_Art"] * 7 + ["Cubism"] * 10
    pd.DataFrame({"path": rows["path"], "artist": "", "genre": "", "style": styles}).to_csv(tmp_path / "m.csv", index=False)
    for p in rows["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MINI / p, tmp_path / p)
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        ps = load_paintings(tmp_path / "m.csv", test_fraction=0, copies_together=False)
    assert "pop art" in ps.classes["style"] and "Pop_Art" in ps.classes["style"]   # nothing merged
    assert any("style classes that differ only in case, spaces, punctuation or accents: 'Pop_Art' (7) and "
               "'pop art' (3)." in r.getMessage() for r in caplog.records), caplog.text
