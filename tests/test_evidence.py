"""Metadata parsing and the kinds of evidence, as pure functions, on real wikiart-mini names and labels."""
from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest

from conftest import MINI
from embeddings import evidence as E
from embeddings import verdicts as V
from bench.evaluation import artist_flips
from trainer.metadata import add_metadata, parse_date, parse_wikiart_name


@pytest.mark.parametrize("text, want", [
    ("1890", (1890, 1890)), ("c. 1890", (1890, 1890)), ("ca 1890", (1890, 1890)), ("1890-95", (1890, 1895)),
    ("1890–1895", (1890, 1895)), ("1890s", (1890, 1899)), ("19th century", (1800, 1899)),
    ("Painted 1764, retouched 1770", (1764, 1764)), ("1905-1", (1905, 1905)),
    ("unknown", None), ("", None), ("no. 12", None),
    # a calendar date is one year; decades and centuries in the forms catalogues write them
    ("1905-06-01", (1905, 1905)), ("signed 1764, dated 1890-01-05", (1764, 1764)), ("1520s-1530s", (1520, 1539)),
    ("1920s-30s", (1920, 1939)), ("1890s–00s", (1890, 1909)),
    ("1600s", (1600, 1699)), ("XIX century", (1800, 1899)), ("xvii c.", (1600, 1699)),
    ("16th-17th centuries", (1500, 1699)), ("mix century", None),
    ("1990s-2000s", (1990, 2009)), ("1890s-1900s", (1890, 1909)), ("1500s-1600s", (1500, 1699)),
    # centuries as European catalogues write them
    ("XIXe siècle", (1800, 1899)), ("XVIIe-XVIIIe siècles", (1600, 1799)), ("18ème siècle", (1700, 1799)),
    ("17. Jahrhundert", (1600, 1699)), ("17de eeuw", (1600, 1699)),
    ("siglo XVII", (1600, 1699)), ("sec. XVIII", (1700, 1799)), ("XVI secolo", (1500, 1599)),
    ("Saint Jerome XVII", None), ("sec. 5", None),
    # a part of one century or decade: the first or last 40%, the middle 30-70%, a half
    ("late 18th-century", (1760, 1799)), ("early 17th century", (1600, 1639)), ("mid 17th c.", (1630, 1669)),
    ("middle of the 19th century", (1830, 1869)), ("first half of the 17th century", (1600, 1649)),
    ("2nd half 19th c.", (1850, 1899)), ("the late 1880s", (1886, 1889)), ("mid-1890s", (1893, 1896)),
    ("early 1600s", (1600, 1639)), ("fin du XIXe siècle", (1860, 1899)), ("début du XXe siècle", (1900, 1939)),
    ("1. Hälfte 17. Jh.", (1600, 1649)), ("Mitte des 17. Jahrhunderts", (1630, 1669)),
    ("eind 17de eeuw", (1660, 1699)),
    ("principios del siglo XVII", (1600, 1639)), ("segunda mitad del siglo XIX", (1850, 1899)),
    ("prima metà del XVII secolo", (1600, 1649)), ("fine XVI secolo", (1560, 1599)),
    # a word that is not right before the date keeps the whole span
    ("Late Gothic, 15th century", (1400, 1499)), ("Fine art, 1890s", (1890, 1899)),
    # quarters; in a span of two, a part before each end names that end
    ("third quarter of the 18th century", (1750, 1774)), ("1st quarter 20th c.", (1900, 1924)),
    ("last quarter of the 19th century", (1875, 1899)), ("dernier quart du XIXe siècle", (1875, 1899)),
    ("3. Viertel des 18. Jahrhunderts", (1750, 1774)), ("primo quarto del XVII secolo", (1600, 1624)),
    ("late 16th-early 17th century", (1560, 1639)), ("late 16th-17th century", (1560, 1699)),
    ("fin du XVIe - début du XVIIe siècle", (1560, 1639)), ("early 16th to late 17th century", (1500, 1699)),
    ("late 1880s-early 1890s", (1886, 1893)), ("siglo XVI - principios del XVII", (1500, 1639)),
    # a range's words, and "about" before its end
    ("1890 - c. 1900", (1890, 1900)), ("c.1890-c.1895", (1890, 1895)), ("between 1890 and 1895", (1890, 1895)),
    ("1890 or 1891", (1890, 1891)), ("zwischen 1890 und 1895", (1890, 1895)), ("um 1890 bis 1895", (1890, 1895)),
    ("entre 1890 et 1895", (1890, 1895)), ("XVIth or XVIIth century", (1500, 1699)), ("19th cent.", (1800, 1899)),
    ("1890 and 2 dogs", (1890, 1890)),
    # one digit after a dash ends a range; decades as European catalogues name them; thirds
    ("c. 1890-5", (1890, 1895)), ("1890 - 5", (1890, 1895)), ("1905-1", (1905, 1905)),
    ("1620er Jahre", (1620, 1629)), ("Mitte der 1620er Jahre", (1623, 1626)), ("1620er-1630er Jahre", (1620, 1639)),
    ("les années 1620", (1620, 1629)), ("fin des années 1890", (1896, 1899)), ("années 1920-1930", (1920, 1939)),
    ("década de 1620", (1620, 1629)), ("finales de los años 1620", (1626, 1629)), ("anni 1920-30", (1920, 1939)),
    ("fine degli anni 1620", (1626, 1629)), ("jaren 1620", (1620, 1629)), ("1890 era", (1890, 1890)),
    ("first third of the 17th century", (1600, 1632)), ("2. Drittel des 17. Jahrhunderts", (1633, 1666)),
    ("dernier tiers du XIXe siècle", (1867, 1899)), ("primer tercio del siglo XVII", (1600, 1632)),
    # before Christ is no painting date this product reads
    ("5th century BC", None), ("1st c. B.C.E.", None), ("Ier siècle av. J.-C.", None)])
def test_parse_date(text, want):
    assert parse_date(text) == (None if want is None else tuple(float(x) for x in want))


@pytest.mark.parametrize("name, artist, title, year", [
    ("Baroque/joshua-reynolds_kitty-fisher-1764.jpg", "joshua-reynolds", "kitty fisher", 1764),
    ("Baroque/joshua-reynolds_george-ashby.jpg", "joshua-reynolds", "george ashby", None),
    ("Baroque/peter-paul-rubens_the-elevation-of-the-cross(1).jpg", "peter-paul-rubens", "the elevation of the cross",
     None),
    ("Abstract_Expressionism/clyfford-still_1947-h-no-3-1947.jpg", "clyfford-still", "1947 h no 3", 1947),
    ("Pointillism/marevna-(marie-vorobieff)_senegal-solgier-1936.jpg", "marevna-(marie-vorobieff)",
     "senegal solgier", 1936),
    ("Ukiyo_e/utagawa-kuniyoshi_women-23.jpg", "utagawa-kuniyoshi", "women 23", None),
    ("Minimalism/brice-marden_10-2011.jpg", "brice-marden", "10", 2011),
    # WikiArt's placeholder for an unknown title is no title, with either separator
    ("Abstract_Expressionism/joan-miro_not_detected_227956.jpg", "joan-miro", "", None),
    ("Pop_Art/hiro-yamagata_not-detected-272412.jpg", "hiro-yamagata", "", None),
    ("Pop_Art/someone_not-detected-by-radar-1990.jpg", "someone", "not detected by radar", 1990)])
def test_parse_wikiart_name(name, artist, title, year):
    got = parse_wikiart_name(name)
    assert got["artist_name"] == artist and got["title"] == title
    assert (np.isnan(got["year_lo"]) if year is None else got["year_lo"] == year)


def test_names_without_the_wikiart_shape_give_nothing():
    assert parse_wikiart_name("scans/IMG_0042.jpg") is None
    assert parse_wikiart_name("folder/plain.jpg") is None
    # lower-case camera and scanner names are counters, not an artist and a title
    for name in ("img_0042.jpg", "scans/scan_0007.tif", "dsc_1234(1).jpg", "photo_2019.jpg"):
        assert parse_wikiart_name(name) is None, name


def test_wikiart_mini_coverage_is_logged(caplog):
    from trainer.data import load_paintings
    with caplog.at_level(logging.INFO, logger="trainer.metadata"):
        f = load_paintings(MINI, test_fraction=0).frame
    assert (f["artist_name"] != "").all() and f["artist_name"].nunique() == 294
    assert f["year_lo"].notna().sum() == 1409
    assert (f["title"] == "").sum() == 36          # WikiArt's not_detected_<id> placeholders
    assert "artist for 2546 of 2546 paintings (294 artists)" in caplog.text


def test_manifest_columns_win_and_unreadable_dates_are_kept(tmp_path, caplog):
    from trainer.data import load_paintings
    src = "Baroque/joshua-reynolds_kitty-fisher-1764.jpg"
    (tmp_path / "Baroque").mkdir()
    (tmp_path / src).write_bytes((MINI / src).read_bytes())
    (tmp_path / "a.jpg").write_bytes((MINI / src).read_bytes())
    pd.DataFrame({"path": [src, "a.jpg"], "artist": ["", ""], "genre": ["portrait", "portrait"],
                  "style": ["Rococo", "Rococo"], "title": ["Kitty Fisher", ""], "date": ["1763-64", "spring"]}
                 ).to_csv(tmp_path / "m.csv", index=False)
    with caplog.at_level(logging.INFO, logger="trainer.metadata"):
        f = load_paintings(tmp_path / "m.csv", test_fraction=0).frame.set_index("path")
    assert f.loc[src, "title"] == "Kitty Fisher" and (f.loc[src, "year_lo"], f.loc[src, "year_hi"]) == (1763, 1764)
    assert f.loc[src, "artist_name"] == "joshua-reynolds"
    assert np.isnan(f.loc["a.jpg", "year_lo"]) and f.loc["a.jpg", "date_text"] == "spring"
    assert "1 dates could not be read" in caplog.text
    off = load_paintings(tmp_path / "m.csv", test_fraction=0, parse_names=False).frame.set_index("path")
    assert off.loc[src, "artist_name"] == "" and off.loc[src, "title"] == "Kitty Fisher"


def test_a_rows_year_wins_and_its_date_fills_in_where_the_year_is_empty():
    columns = {"year": pd.Series(["1890", "", None]), "date": pd.Series(["c. 1700", "late 17th c.", ""])}
    frame = add_metadata(pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"]}), parse_names=False, columns=columns)
    assert list(frame["year_lo"].fillna(0)) == [1890, 1660, 0]
    assert list(frame["date_text"]) == ["1890", "late 17th c.", ""]


def _toy():
    """Two artists, two classes: artist 0 paints class 0 in 1650-1660, artist 1 class 1 in 1760-1770;
    painting 5 is artist 0's, dated 1655, but filed under class 1."""
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    artist = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    years = np.array([1650, 1652, 1655, 1658, 1660, 1655, 1760, 1762, 1765, 1768, 1770], float)
    return labels, artist, years


def test_artist_and_period_evidence_leave_the_painting_out():
    labels, artist, years = _toy()
    pa = E.artist_evidence(labels, artist, years, 2)
    pp = E.period_evidence(labels, years, 2)
    # the misfiled painting: its artist's other paintings and its year both say class 0
    assert pa[5, 0] > 0.7 and pp[5, 0] > 0.7
    # a painting's own label never counts for itself: a lone class-1 painting among class 0 gets no support
    assert pa[5, 1] < 0.2
    np.testing.assert_allclose(pa.sum(1), 1) and np.testing.assert_allclose(pp.sum(1), 1)
    lonely = E.artist_evidence(np.array([0, 1]), np.array([0, 1]), np.array([np.nan, np.nan]), 2)
    assert np.isnan(lonely).all()          # no other painting of the artist: nothing to say
    undated = E.period_evidence(labels, np.full(len(labels), np.nan), 2)
    assert np.isnan(undated).all()


def test_artist_evidence_follows_the_career():
    """An artist who changes style: the nearer paintings in date weigh more."""
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    artist = np.zeros(7, int)
    years = np.array([1901, 1902, 1903, 1915, 1916, 1917, 1902], float)
    p = E.artist_evidence(labels, artist, years, 2)
    flat = E.artist_evidence(labels, artist, np.full(7, np.nan), 2)
    # filed under class 1 in 1902, when this artist painted class 0; undated, the career is a tie
    assert p[6, 0] > 0.7 and flat[6, 0] == pytest.approx(0.5, abs=0.05)


def test_title_evidence_is_cross_fitted():
    rng = np.random.default_rng(0)
    words = {0: ["portrait of", "madame", "lady"], 1: ["still life with", "apples", "flowers"]}
    labels = rng.integers(0, 2, 200)
    titles = np.array([f"{rng.choice(words[y])} {i}" for i, y in enumerate(labels)], dtype=object)
    titles[:5] = ""
    p = E.title_evidence(labels, titles, 2)
    assert np.isnan(p[:5]).all() and not np.isnan(p[5:]).any()
    assert (p[5:].argmax(1) == labels[5:]).mean() > 0.9
    # a painting whose title is unique to it (leave-one-out): the model cannot have memorised its label
    labels2 = labels.copy()
    labels2[10] = 1 - labels2[10]
    p2 = E.title_evidence(labels2, titles, 2)
    assert p2[10, labels2[10]] < 0.5


def test_combined_evidence_needs_agreement():
    """One kind against the label (the look) does not outrank two kinds against it."""
    prior = np.array([0.5, 0.5])
    look = np.array([[0.05, 0.95], [0.3, 0.7], [0.5, 0.5]])
    artist = np.array([[0.9, 0.1], [0.1, 0.9], [np.nan, np.nan]])
    labels = np.array([0, 0, 0])
    post = V.combine_evidence({"look": look, "artist": artist}, prior)
    s = V.wrong_log_odds(labels, post)
    assert s[1] > s[0]                  # look mildly against + artist against beats look strongly against alone
    np.testing.assert_allclose(post[2], [0.5, 0.5])   # no evidence: the prior
    votes = V.verdicts(labels, {"look": look, "artist": artist}, prior)
    assert list(votes["look"]) == ["against", "against", "supports"] and list(votes["artist"]) == ["supports", "against", ""]
    counted, strict, loose = V.wrong_count(labels, post, {"look": look, "artist": artist}, prior)
    # the high end counts every label the evidence finds less likely than another, one kind or not
    assert list(counted) == [False, True, False] and strict == 0 and loose == 2


def test_artist_flips_use_the_artists_other_labels():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 2, 2, 2, -1, 3])
    artist = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    noisy, flipped = artist_flips(labels, artist, 0.5, rng)
    assert flipped.sum() == 3                  # 7 labelled -> round(3.5) = 4, but artist 1 is all class 2
    for r in np.flatnonzero(flipped):
        assert noisy[r] != labels[r] and noisy[r] in labels[(artist == artist[r]) & (np.arange(8) != r)]
    assert not flipped[[3, 4, 5, 6, 7]].any()


def test_an_artist_read_from_the_artist_label_is_no_evidence_about_that_label():
    from embeddings.evidence_table import Metadata
    frame = add_metadata(pd.DataFrame({"path": ["a/x.jpg", "a/y.jpg", "a/z.jpg", "a/jan-steen_feast-1660.jpg"],
                                       "artist": [0, 0, 1, -1]}), parse_names=True, artist_labels=["Degas", "Cassatt"])
    md = Metadata.from_frame(frame)
    assert list(frame["artist_source"]) == ["label", "label", "label", "name"]
    assert (md.for_task("style").artist_id == md.artist_id).all()
    assert list(md.for_task("artist").artist_id[:3]) == [-1, -1, -1] and md.for_task("artist").artist_id[3] >= 0


def test_title_evidence_does_not_depend_on_the_global_random_state():
    """Embedding twice (a re-embed, another process) gives the same title evidence and so the same ranking."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    titles = np.array([f"{['portrait', 'landscape', 'still life'][y]} {rng.integers(0, 50)}" for y in labels],
                      dtype=object)
    np.random.seed(1)
    a = E.title_evidence(labels, titles, 3)
    np.random.seed(2)
    b = E.title_evidence(labels, titles, 3)
    np.testing.assert_array_equal(a, b)


def test_period_leaves_the_paintings_own_artist_out():
    """Two artists paint two years apart, one labels 0, the other 1. Judged from the year alone,
    a painting of the first artist should hear only the other artist's paintings: counting its own
    artist's would repeat the artist kind's vote. An unknown artist (-1) is nobody's colleague."""
    from embeddings.evidence import period_evidence
    years = np.array([1700.0] * 10 + [1698.0] * 10 + [1701.0])
    labels = np.array([0] * 10 + [1] * 10 + [0])
    artist = np.array([0] * 10 + [1] * 10 + [-1])
    with_own = period_evidence(labels, years, 2)
    without = period_evidence(labels, years, 2, artist)
    assert with_own[0, 0] > with_own[0, 1]          # its own artist's nine other paintings dominate
    assert without[0, 1] > 0.8                      # only the other artist's ten remain
    assert without[10, 0] > 0.8 and without[10, 1] < 0.2
    # the painting of an unknown artist still hears everyone but itself
    assert np.allclose(without[20], with_own[20])


def test_a_date_range_is_read_as_its_years():
    """A catalogue dates some paintings only to a century. Read at its middle, "20th century" is 1950,
    when class 1 (1950-1970 here) is everything and class 0 (1908-1925) nothing, and a class-0
    painting so dated would look misfiled; read as the century, both classes fit it. A single year
    given as a range of one reads as the year, and a range never vouches for its own label."""
    rng = np.random.default_rng(0)
    years = np.r_[rng.integers(1908, 1926, 60), rng.integers(1950, 1971, 60)].astype(float)
    labels = np.r_[np.zeros(60, int), np.ones(60, int), 0]
    artist = np.r_[np.arange(120), 120]
    as_mid = E.period_evidence(labels, np.r_[years, 1949.5], 2, artist)
    as_range = E.period_evidence(labels, np.c_[np.r_[years, 1900], np.r_[years, 1999]], 2, artist)
    assert as_mid[-1, 0] < 0.1 and 0.3 < as_range[-1, 0] < 0.7
    single = np.r_[years, 1915.0]
    np.testing.assert_array_equal(E.period_evidence(labels, single, 2, artist),
                                  E.period_evidence(labels, np.c_[single, single], 2, artist))
    np.testing.assert_array_equal(E.artist_evidence(labels, artist % 7, single, 2),
                                  E.artist_evidence(labels, artist % 7, np.c_[single, single], 2))
    # the only class-2 painting, dated to a century: its own years add nothing to class 2 there
    alone = E.period_evidence(np.r_[labels[:-1], 2], np.c_[np.r_[years, 1900], np.r_[years, 1999]], 3)
    assert alone[-1, 2] < 0.01


def test_an_artists_paintings_dated_to_a_range_weigh_by_their_years():
    """The artist kind weighs another painting by the mean kernel over both dates' years: a painting
    dated to its century (1900-1999) weighs for one dated 1950 about the kernel's share of the
    century (8 years' Gaussian: sqrt(2 pi) 8 / 100, 0.2), less than an undated one (0.5) and far
    more than a painting of 1950 would for one of 1910."""
    from embeddings.years import pair_year_weights
    first, last = np.array([1950.0, 1900.0, 1910.0, np.nan]), np.array([1950.0, 1999.0, 1910.0, np.nan])
    w = pair_year_weights(first, last, np.full(4, E.ARTIST_SPAN), E.UNDATED_WEIGHT)
    assert w[0, 1] == pytest.approx(np.sqrt(2 * np.pi) * 8 / 100, rel=0.1) and w[1, 0] == pytest.approx(w[0, 1])
    assert w[0, 2] < 1e-5 and w[0, 3] == w[1, 3] == E.UNDATED_WEIGHT == w[3, 1]


def test_the_card_says_a_date_range_as_the_catalogue_gave_it():
    from embeddings.evidence_table import Metadata, period_line
    md = Metadata.from_frame(pd.DataFrame({"artist_name": ["a", "b", "c", "d"], "year_lo": [1890, 1600, np.nan, 1700],
                                           "year_hi": [1890, 1699, np.nan, np.nan], "title": ""}))
    assert [md.when(i) for i in range(4)] == ["1890", "1600-1699", "", "1700"]
    np.testing.assert_array_equal(md.mid_years()[:2], [1890, 1649.5])
    line = period_line(0, np.array([1600.0, 1680.0]), md.when(1), np.array([0.2, 0.8]), ["Baroque", "Rococo"])
    assert "this one 1600-1699, when Rococo is likelier" in line and "in those years" in line, line
    # the catalogue's own words are quoted beside their reading where they say more than the years
    dates = pd.Series(["late 17th century", "1650", "c. 1650", "", "1650-55"])
    md = Metadata.from_frame(add_metadata(pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]}),
                                          parse_names=False, columns={"date": dates}))
    assert [md.date_said(i) for i in range(5)] == ["late 17th century", "", "c. 1650", "", ""]
    line = period_line(0, np.array([1600.0, 1680.0]), md.when(0), np.array([0.2, 0.8]), ["Baroque", "Rococo"],
                       said=md.date_said(0))
    assert 'this one 1660-1699 (the catalogue: "late 17th century"), when Rococo' in line, line


def test_the_card_quotes_class_dates_from_paintings_dated_closely():
    """Class 0's paintings date 1905-1925, five more only to "20th century": the card quotes class
    0's dates from the close ones (the middle of a century is no painting's date), and an undated
    painting whose artist is dated only to the century is read at, and said to be at, the century."""
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    rng = np.random.default_rng(0)
    lo = np.r_[rng.integers(1905, 1926, 40), [1900] * 5, rng.integers(1600, 1700, 40), np.nan].astype(float)
    hi = np.r_[lo[:40], [1999] * 5, lo[45:85], np.nan]
    labels = np.r_[np.zeros(45, int), np.ones(40, int), 0]
    names = [f"a-{i % 20}" for i in range(40)] + ["late"] * 5 + [f"b-{i % 20}" for i in range(40)] + ["late"]
    md = Metadata.from_frame(pd.DataFrame({"artist_name": names, "year_lo": lo, "year_hi": hi, "title": ""}))
    n = len(labels)
    ev = task_evidence(labels, np.full((n, 2), 0.5), np.full((n, 1), -1), np.zeros((n, 1)), md.for_task("style"), 2)
    rows = evidence_rows("style", labels, np.full((n, 2), 0.5), ev, md, ["Cubism", "Baroque"])
    period = rows[rows.kind == "period"].set_index("image_id")["line"]
    first, last = map(int, re.search(r"Cubism paintings here date (\d+)-(\d+)", period[0]).groups())
    assert 1905 <= first and last <= 1925, period[0]
    assert "this one 1900-1999" in period[40], period[40]
    assert "this one undated, Late's dated paintings here 1900-1999" in period[85], period[85]


def test_a_short_movement_keeps_its_edges():
    """A movement that lasted five years (class 1, 1907-1911) among long ones (class 0 over 1850-1950):
    a painting filed under it but dated 1900 is from before the movement, and the period kind
    must say so; one dated 1909 is in the middle of it."""
    rng = np.random.default_rng(0)
    long_years = rng.uniform(1850, 1950, 300).round()
    short_years = np.repeat(np.arange(1907, 1912), 8).astype(float)
    years = np.r_[long_years, short_years, 1900.0, 1909.0]
    labels = np.r_[np.zeros(300, int), np.ones(40, int), 1, 1]
    artist = np.r_[np.arange(300), 300 + np.arange(40) % 8, 400, 401]
    prior = E.label_prior(labels, 2)
    pp = E.period_evidence(labels, years, 2, artist)
    verdict = V.kind_verdicts(labels, pp, prior)
    assert verdict[-2] == "against" and pp[-2, 1] < prior[1] / 2
    assert verdict[-1] == "supports"
    spans = E.period_spans(labels, years, 2)
    assert spans[1] < 5 < spans[0]


def test_a_movement_has_a_start_but_no_end():
    """Three years before a movement's first paintings is less plausible for it than three years
    after its last: painters take a style up again later, nobody paints in it before it exists.
    The long class's years are spread evenly, so only the movement's kernel differs on each side."""
    long_years = np.repeat(np.arange(1850, 1950), 3).astype(float)
    short_years = np.repeat(np.arange(1907, 1912), 8).astype(float)
    years = np.r_[long_years, short_years, 1904.0, 1914.0]
    labels = np.r_[np.zeros(300, int), np.ones(40, int), 1, 1]
    artist = np.r_[np.arange(300), 300 + np.arange(40) % 8, 400, 401]
    pp = E.period_evidence(labels, years, 2, artist)
    assert pp[-2, 1] < 0.5 * pp[-1, 1]
    # the artist's own paintings are left out with the same kernel: an artist of only this movement
    # leaves none of it behind for a painting of theirs dated before it
    alone = E.group_label_counts(labels[-42:], np.r_[np.zeros(40, int), 0, 0], years[-42:], 2,
                                 E.period_spans(labels, years, 2), 0.0, E.PERIOD_EARLY)[0]
    assert alone[-2, 1] < 0.5 * alone[-1, 1]


def test_the_evidence_bench_step_times_the_product_stage():
    """`make bench --steps evidence` builds the evidence of wikiart-mini's metadata resampled to n
    paintings with the product's own task_evidence and evidence_rows: every labelled painting gets its
    model, look and combined rows, and the artists are split as the docstring says."""
    from bench.run import step_evidence
    r = step_evidence(3000)
    assert r["n"] == 3000 and r["artists"] > 294 and r["rows"] >= 3 * 3000
    assert 0 < r["title_s"] and 0 < r["evidence_s"] and 0 < r["card_lines_s"]
    assert r["centuries"] > 200 and 0 < r["evidence_ranges_s"]                 # a catalogue's century dates


def test_a_date_is_evidence_about_style_and_artist_but_not_genre():
    """Movements and careers have dates, subjects do not: portraits and landscapes are painted in
    every century, and what a year says about genre in one collection is which movements it holds.
    For genre the period kind says nothing (no score, no card line); the artist kind still weighs
    the artist's paintings by date."""
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    rng = np.random.default_rng(0)
    n = 120
    years = np.r_[rng.uniform(1600, 1700, n // 2), rng.uniform(1880, 1950, n // 2)].round()
    frame = pd.DataFrame({"artist_name": [f"artist-{i % 12}" for i in range(n)],
                          "year_lo": years, "year_hi": years,
                          "title": ["" for _ in range(n)]})
    md = Metadata.from_frame(frame)
    labels = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    probs = np.full((n, 2), 0.5)
    nb_ids = np.full((n, 1), -1)
    nb_sim = np.zeros((n, 1))
    style = task_evidence(labels, probs, nb_ids, nb_sim, md.for_task("style"), 2)
    genre = task_evidence(labels, probs, nb_ids, nb_sim, md.for_task("genre"), 2)
    assert md.for_task("style").dates_classes and not md.for_task("genre").dates_classes
    assert not np.isnan(style.kinds["period"]).any() and np.isnan(genre.kinds["period"]).all()
    # each artist paints both eras; weighed by date, the artist's paintings near this one win
    own_era = np.r_[genre.kinds["artist"][: n // 2, 0], genre.kinds["artist"][n // 2:, 1]]
    assert (own_era >= 0.5 - 1e-9).all() and own_era.mean() > 0.6
    rows = evidence_rows("genre", labels, probs, genre, md.for_task("genre"), ["a", "b"])
    assert "period" not in set(rows["kind"]) and "artist" in set(rows["kind"])
    assert "period" in set(evidence_rows("style", labels, probs, style, md.for_task("style"), ["a", "b"])["kind"])


def test_for_the_artist_task_a_date_says_whose_career_it_falls_in():
    """The artist task's classes are the artists: leaving the painting's artist out of the period
    would leave out the given class itself, and every artist label would read as misdated (1,323 of
    wikiart-mini's 1,453 did). A painting of 1660 labelled with the artist of 1650-1670 is supported,
    one of 1660 labelled with the artist of 1750-1770 is not; undated, the period says nothing (read
    at the artist's dates it would repeat the artist kind)."""
    from embeddings.evidence_table import Metadata, task_evidence
    rng = np.random.default_rng(0)
    years = np.r_[rng.integers(1650, 1671, 30), rng.integers(1750, 1771, 30), 1660, 1660, np.nan].astype(float)
    labels = np.r_[np.zeros(30, int), np.ones(30, int), 0, 1, 0]
    names = ["early"] * 30 + ["late"] * 30 + ["early", "late", "early"]
    md = Metadata.from_frame(pd.DataFrame({"artist_name": names, "year_lo": years, "year_hi": years, "title": "",
                                           "artist_source": "name"})).for_task("artist")
    n = len(labels)
    ev = task_evidence(labels, np.full((n, 2), 0.5), np.full((n, 1), -1), np.zeros((n, 1)), md, 2)
    prior = E.label_prior(labels, 2)
    period = V.kind_verdicts(labels, ev.kinds["period"], prior)
    assert period[60] == "supports" and period[61] == "against"
    assert (period[:60] == "supports").all() and np.isnan(ev.kinds["period"][62]).all()
    assert md.classes_are_artists and (md.look_groups()[:, 0] == -1).all()


def test_a_label_no_other_painting_carries_cannot_be_judged():
    """Every kind learns a class from the other paintings that carry it. A catalogue's artist with one
    painting, or a class whose only other member is the painting's own copy, leaves every kind with
    its smoothing alone for that class, and the label would read as wrong whether or not it is: it
    gets no posterior and no evidence score, is not counted, and its card says why."""
    from db.schema import UNJUDGED
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    labels = np.array([0, 0, 0, 1, 2, 2, 3, -1] + [0] * 20 + [3] * 20)
    copies = np.array([-1, -1, -1, -1, 7, 7, -1, -1] + [-1] * 40)
    assert E.lone_labels(labels, copies).tolist()[:8] == [False, False, False, True, True, True, False, False]
    assert E.lone_labels(labels).tolist()[:8] == [False] * 3 + [True] + [False] * 4
    n, C = len(labels), 4
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"artist_name": [f"a{i % 5}" for i in range(n)], "year_lo": rng.integers(1900, 1920, n),
                          "title": ""})
    frame["year_hi"] = frame["year_lo"]
    md = Metadata.from_frame(frame).with_copies(copies)
    probs = rng.dirichlet(np.ones(C), n)
    ev = task_evidence(labels, probs, np.full((n, 1), -1), np.zeros((n, 1)), md.for_task("style"), C)
    assert ev.alone[[3, 4, 5]].all() and not ev.alone[[0, 6, 7]].any()
    assert np.isnan(ev.posterior[[3, 4, 5]]).all() and not np.isnan(ev.posterior[[0, 6]]).any()
    assert np.isnan(V.wrong_log_odds(labels, ev.posterior)[[3, 4, 5]]).all()
    counted, _, _ = V.wrong_count(labels, ev.posterior, ev.kinds, ev.prior)
    assert not counted[[3, 4, 5]].any()
    assert all((v[[3, 4, 5]] == UNJUDGED).all() for v in ev.votes.values())
    rows = evidence_rows("style", labels, probs, ev, md.for_task("style"), ["A", "B", "C", "D"])
    card = rows[rows.image_id == 3].set_index("kind")
    assert set(card.index) <= {"model", "neighbours", "combined"} and (card["verdict"] == UNJUDGED).all()
    assert card.loc["combined", "line"].startswith("No other painting here is labelled B (its copies aside)")


def test_a_class_of_few_paintings_votes_less_surely():
    """A kind learns a class from its other paintings: from one, what it says of the class is mostly
    chance. Each vote for a class of n < 9 other paintings is mixed with the prior by 1 / (n + 1)
    (one more painting like the collection as a whole), so the same readings doubt a label of a
    two-painting class less than one of a large class; a class of 9 others or more, and one no
    painting carries, keep the plain 10% mix (wikiart-mini's scores are unchanged)."""
    labels = np.r_[np.zeros(50, int), np.ones(2, int), np.full(50, 2), 0]
    others = V.other_class_counts(labels, 4)
    assert others[0].tolist()[:3] == [50, 2, 50] and np.isnan(others[0, 3]) and others[50, 1] == 1
    mix = V.class_mix(others)
    assert mix[0, 0] == V.MIX and mix[0, 3] == V.MIX and mix[50, 1] == 0.5 and mix[0, 1] == pytest.approx(1 / 3)
    prior = E.label_prior(labels, 4)
    reading = np.tile([[0.049, 0.001, 0.9, 0.05]], (len(labels), 1))          # every kind: "looks like class 2"
    kinds = {"look": reading, "title": reading}
    plain = V.combine_evidence(kinds, prior)
    shrunk = V.combine_evidence(kinds, prior, mix)
    assert shrunk[50, 1] > 2 * plain[50, 1]                       # the two-painting class's label
    large = np.r_[np.zeros(10, int), np.ones(10, int), np.full(10, 2)]
    assert (V.class_mix(V.other_class_counts(large, 4)) == V.MIX).all()   # 9 others each, and an absent class


def test_the_card_and_the_count_read_each_kind_as_it_votes():
    """A kind's line says 'against', and counts towards the wrong-label count, by the Bayes factor of
    the vote it casts in the ranking (mixed with the prior, more for a class the kind learnt from
    few paintings): a catalogue artist with three paintings, read by a near-flat title model, was
    counted wrong on two weak readings whose votes the ranking itself discounts. The class a line
    names as the kind's likeliest is the kind's own, as its words say."""
    labels = np.r_[np.zeros(50, int), np.ones(3, int), np.full(50, 2)]
    prior = E.label_prior(labels, 3)
    mix = V.class_mix(V.other_class_counts(labels, 3))
    i = 50                                                           # a label of the three-painting class
    assert mix[i].tolist() == pytest.approx([0.1, 1 / 3, 0.1])
    weak = np.tile([[0.32, 0.024, 0.656]], (len(labels), 1))        # class 2 by a factor of 2.1 raw, 1.75 as voted
    assert V.kind_verdicts(labels, weak, prior, mix=0.0)[i] == "against"
    assert V.kind_verdicts(labels, weak, prior, mix)[i] == "mixed"
    post = np.tile([[0.05, 0.01, 0.94]], (len(labels), 1))
    two = {"look": weak, "title": weak}
    assert V.wrong_count(labels, post, two, prior, mix=0.0)[0][i]
    assert not V.wrong_count(labels, post, two, prior, mix)[0][i]
    strong = np.tile([[0.10, 0.005, 0.895]], (len(labels), 1))      # a factor of 14 raw, 4.2 as voted
    assert V.kind_verdicts(labels, strong, prior, mix)[i] == "against"
    assert V.wrong_count(labels, post, {"look": strong, "title": strong}, prior, mix)[0][i]
    # its own likeliest class is the given one, though the mix would favour a commoner class
    own = np.tile([[0.45, 0.46, 0.09]], (len(labels), 1))
    assert V.as_voted(own, prior, mix)[i].argmax() == 0 and V.kind_verdicts(labels, own, prior, mix)[i] == "supports"

def test_an_undated_painting_is_read_at_its_artists_dates():
    """Half of WikiArt's file names carry no year. An undated painting of an artist whose other
    paintings here are dated comes from that career: the period kind reads it at the artist's dates,
    from other artists' paintings (the artist's own labels stay out, as for a dated painting). An
    artist with no dated painting gives no period; the card says what the reading rests on."""
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    rng = np.random.default_rng(0)
    years = np.r_[rng.integers(1700, 1721, 40), rng.integers(1900, 1921, 40), [1905, 1908, 1910], np.nan, np.nan]
    labels = np.r_[np.zeros(40, int), np.ones(40, int), [0, 0, 0], 0, 0]
    names = [f"old-{i % 10}" for i in range(40)] + [f"new-{i % 10}" for i in range(40)] + ["jan-late"] * 4 + ["nobody"]
    md = Metadata.from_frame(pd.DataFrame({"artist_name": names, "year_lo": years, "year_hi": years, "title": ""}))
    pp = E.period_evidence(labels, years, 2, md.artist_id)
    prior = E.label_prior(labels, 2)
    # jan-late's dated paintings are all labelled 0, but 1905-1910 is class 1's time for everyone else
    assert pp[83, 1] > 0.8 and V.kind_verdicts(labels, pp, prior)[83] == "against"
    assert np.isnan(pp[84]).all()                                 # no dated painting of this artist
    n = len(labels)
    ev = task_evidence(labels, np.full((n, 2), 0.5), np.full((n, 1), -1), np.zeros((n, 1)), md.for_task("style"), 2)
    rows = evidence_rows("style", labels, np.full((n, 2), 0.5), ev, md, ["Rococo", "Cubism"])
    line = rows[(rows.image_id == 83) & (rows.kind == "period")]["line"].item()
    assert "this one undated, Jan Late's dated paintings here 1905-1910, when Cubism is likelier" in line, line
    assert rows[(rows.image_id == 84) & (rows.kind == "period")].empty


def test_the_look_reads_other_artists_neighbours():
    """An artist's paintings look alike and fill each other's nearest list, and their labels are the
    ones the artist kind already counts (kinds are combined as independent). So the look's neighbours
    for style and genre are the nearest paintings by other artists; for the artist task, whose
    classes are the artists, they stay; a painting with no known artist keeps all of them. The
    card says whose look-alikes it counted."""
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    names = ["ann"] * 4 + ["bob", "bob", "cy", ""]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    md = Metadata.from_frame(pd.DataFrame({"artist_name": names, "title": ""}))
    n = len(labels)
    # every painting's candidates, nearest first: ann's paintings first, then bob's and cy's
    order = [1, 2, 3, 0, 4, 5, 6, 7]
    nb_ids = np.array([[j for j in order if j != i] for i in range(n)])
    nb_sim = np.tile(np.linspace(0.9, 0.3, n - 1), (n, 1))
    ids, sim = E.other_group_neighbours(nb_ids, nb_sim, md.artist_id, 3)
    assert ids[0].tolist() == [4, 5, 6] and ids[4].tolist() == [1, 2, 3]   # ann's nearest skip ann, bob's skip bob
    assert ids[7].tolist() == [1, 2, 3]                                     # no known artist: nothing skipped
    few, _ = E.other_group_neighbours(nb_ids[:, :4], nb_sim[:, :4], md.artist_id, 3)
    assert few[0].tolist() == [4, -1, -1]                                   # padded where the candidates run out
    probs = np.full((n, 2), 0.5)

    def look(task):   # the look's neighbours for a task, chosen as score_stage.look_neighbours does
        md_t = md.for_task(task)
        return task_evidence(labels, probs, *E.other_group_neighbours(nb_ids, nb_sim, md_t.look_groups(), 3), md_t, 2)
    style = look("style")
    assert style.neighbour_ids[0].tolist() == [4, 5, 6] and style.neighbour_probs[0, 1] > 0.6
    artist = look("artist")
    assert artist.neighbour_ids[0].tolist() == [1, 2, 3] and artist.neighbour_probs[0, 0] > 0.6
    rows = evidence_rows("style", labels, probs, style, md.for_task("style"), ["a", "b"])
    line = rows[(rows.image_id == 0) & (rows.kind == "neighbours")]["line"].item()
    assert line == "Look-alikes by other artists: 0 of 3 nearest are a; 3 are b", line
    plain = rows[(rows.image_id == 7) & (rows.kind == "neighbours")]["line"].item()
    assert plain.startswith("Look-alikes: 3 of 3 nearest are a"), plain


def test_read_as_other_counts_the_labels_the_evidence_doubts_per_class():
    from embeddings.evidence_table import combined_line, read_as_other
    labels = np.array([0, 0, 0, 0, 1, 1, -1])
    post = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9], [0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_allclose(read_as_other(labels, post), [0.25, 0.0, 1 / 6])
    assert np.isnan(read_as_other(np.array([0, 0]), post[:2])[1])        # a class with no label
    line = combined_line(0, post[2], ["sketch", "landscape"], read_as_other(labels, post))
    assert line == ("All kinds together, the label itself left out: sketch 0.30, landscape 0.70. "
                    "Together they read 25% of the sketch labels here as another class (17% of all labels)")


def test_an_artist_filed_wholesale_under_one_label_does_not_vouch_for_itself():
    """Artist 0's six paintings are all filed under class 0 while the look, date and title read
    every one of them as class 1 (a catalogue that labelled the artist, not the paintings); artist
    1's six are class 0 and read so. Counting labels, each of artist 0's paintings has five others
    vouching for class 0; counting each other painting as what the other kinds and its label make
    of it, they vouch for class 1. Artist 1's keep their support."""
    labels = np.zeros(12, int)
    artist = np.repeat([0, 1], 6)
    years = np.full(12, np.nan)
    others = np.r_[np.tile([0.001, 0.999], (6, 1)), np.tile([0.9, 0.1], (6, 1))]
    hard = E.artist_evidence(labels, artist, years, 2)
    soft = E.artist_evidence(labels, artist, years, 2, E.soft_labels(labels, others, V.CATALOGUE_ERROR_RATE))
    assert (hard[:, 0] > 0.8).all()
    assert (soft[:6, 1] > 0.7).all() and (soft[6:, 0] > 0.9).all()
    np.testing.assert_allclose(E.soft_labels(np.array([0, -1]), np.array([[0.5, 0.5], [0.5, 0.5]]), 0.1),
                               [[0.9, 0.1], [0.0, 0.0]])         # the label alone; no label, never counted


def test_a_paintings_copies_are_left_out_with_it():
    """wikiart-mini files 18 pictures twice (the same bytes under two names, four under two
    artists). A copy's label is the painting's own label again, so no kind may read it: with the
    copies known, giving every second copy another label leaves the first copy's artist, period and
    title evidence as it was (the class shares aside); read as other paintings, the copies move it."""
    import hashlib
    from embeddings.duplicates import duplicate_groups
    from embeddings.evidence_table import Metadata
    from trainer.data import load_paintings
    ps = load_paintings(MINI, test_fraction=0)
    frame = ps.frame
    sha1s = [hashlib.sha1((MINI / p).read_bytes()).hexdigest() for p in frame["path"]]
    copies, _ = duplicate_groups(len(frame), np.array([], int), np.array([], int), np.array([]), sha1s)
    assert copies.max() + 1 == 18
    md = Metadata.from_frame(frame).with_copies(copies)
    labels = ps.labels("style")
    C = int(labels.max()) + 1
    pairs, seen = [], set()
    for g in range(18):
        members = np.flatnonzero(copies == g)
        artists = set(md.artist_id[members].tolist())
        if not artists & seen:
            pairs.append(members)
            seen |= artists
    firsts, seconds = np.array([m[0] for m in pairs]), np.array([m[1] for m in pairs])
    moved = labels.copy()
    moved[seconds] = (labels[seconds] + 1) % C

    def kinds(y, cp):
        return {"artist": E.artist_evidence(y, md.artist_id, md.year, C, copies=cp),
                "period": E.period_evidence(y, md.year, C, md.artist_id, copies=cp),
                "title": E.title_evidence(y, md.title, C, copies=cp)}

    def shift(cp):   # the largest change of the first copies' evidence, per kind
        before, after = kinds(labels, cp), kinds(moved, cp)
        return {k: np.nanmax(np.abs(after[k][firsts] - before[k][firsts])) for k in before}

    left_out, counted = shift(md.copies), shift(None)
    assert max(left_out.values()) < 0.02, left_out
    assert counted["artist"] > 0.1 and counted["title"] > 0.1, counted
    # the look skips a painting's copies, even for the artist task, whose look keeps the artist's own
    groups = md.for_task("artist").look_groups()
    ids, _ = E.other_group_neighbours(np.array([[seconds[0], 0, 1, 2]]), np.ones((1, 4)), groups, 2,
                                      own=groups[firsts[:1]])
    assert seconds[0] not in ids[0] and ids[0].tolist() == [0, 1]
    # a copy filed under another artist's name and dated: the period leaves it out too
    years = np.r_[1900.0, 1900.0, np.full(6, 1901.0), np.full(6, 1850.0)]
    y = np.r_[0, 0, np.ones(6, int), np.zeros(6, int)]
    artist = np.arange(len(y))
    twins = np.r_[0, 0, np.full(12, -1)]
    with_twin, without = E.period_evidence(y, years, 2, artist), E.period_evidence(y, years, 2, artist, copies=twins)
    assert with_twin[0, 0] > without[0, 0] + 0.05 and without[0, 1] > 0.7


def test_a_copy_under_another_label_is_evidence_and_one_under_the_same_label_is_none():
    """A copy's label mostly travels with the file, so a copy that agrees says nothing; one filed
    under another label was labelled apart, and then at most one label is right. On wikiart-mini's
    real genre labels the fish market is Cornelis de Vos's genre painting and Frans Snyders' still
    life: each copy's `copies` kind points at the other's class. Filing the second copy of an
    agreeing pair under another class moves the first copy's combined evidence toward that class."""
    import hashlib
    from embeddings.duplicates import duplicate_groups
    from embeddings.evidence_table import Metadata, task_evidence
    from trainer.data import load_paintings
    ps = load_paintings(MINI, test_fraction=0)
    frame = ps.frame
    sha1s = [hashlib.sha1((MINI / p).read_bytes()).hexdigest() for p in frame["path"]]
    copies, _ = duplicate_groups(len(frame), np.array([], int), np.array([], int), np.array([]), sha1s)
    labels = ps.labels("genre")
    C = len(ps.classes["genre"])
    ev = E.copy_evidence(labels, copies, C)
    said = ~np.isnan(ev).any(1)
    assert not said[copies < 0].any()
    conflicting = []
    for g in range(copies.max() + 1):
        members = np.flatnonzero((copies == g) & (labels >= 0))
        if len(members) == 2 and labels[members[0]] != labels[members[1]]:
            conflicting.append(members)
            for mine, other in (members, members[::-1]):
                assert ev[mine].argmax() == labels[other] and ev[mine].max() == 1.0
        elif len(members) == 2:
            assert not said[members].any()
    paths = {frame["path"].iat[i] for m in conflicting for i in m}
    assert {"Baroque/cornelis-de-vos_fish-market.jpg", "Baroque/frans-snyders_fish-market.jpg"} <= paths
    # an agreeing pair, then its second copy filed under another class
    first, second = next(np.flatnonzero(copies == g) for g in range(copies.max() + 1)
                         if len(set(labels[copies == g])) == 1 and labels[copies == g][0] >= 0)
    md = Metadata.from_frame(frame).with_copies(copies).for_task("genre")
    n = len(labels)
    flat, no_nb = np.full((n, C), 1.0 / C), np.full((n, 1), -1)
    other_class = (labels[second] + 1) % C
    moved = labels.copy()
    moved[second] = other_class
    before = task_evidence(labels, flat, no_nb, np.zeros((n, 1)), md, C)
    after = task_evidence(moved, flat, no_nb, np.zeros((n, 1)), md, C)
    assert np.isnan(before.kinds["copies"][first]).all()
    assert after.kinds["copies"][first].argmax() == other_class
    assert after.posterior[first, other_class] > 3 * before.posterior[first, other_class]
    assert (V.wrong_log_odds(moved, after.posterior)[first] > V.wrong_log_odds(labels, before.posterior)[first] + 1)
    assert after.votes["copies"][first] == "against"


def _half_as_sure(rng, n: int, c: int, spread: float):
    """(truth, unsure, labels): softmax of N(0, spread) logits (N, C), softmax of half those logits (a
    model half as sure as it is right), and labels (N,) drawn from truth."""
    logits = rng.normal(0, spread, (n, c))
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    truth = softmax(logits)
    return truth, softmax(logits / 2), (truth.cumsum(1) < rng.random((n, 1))).sum(1)


def test_the_look_reads_under_confident_probabilities_at_the_labels_temperature():
    """A classifier trained with label smoothing sounds less sure than it is right. Labels drawn from
    softmax(logits); a model that gives softmax(logits / 2) is fitted T = 0.5, which gives back the
    true probabilities; one that gives the true ones keeps T = 1. NaN rows (the look left out) and
    unlabelled paintings take no part in the fit and stay NaN."""
    truth, unsure, labels = _half_as_sure(np.random.default_rng(0), 4000, 5, 2.5)
    t = E.calibration_temperature(unsure, labels)
    assert 0.45 < t < 0.55, t
    assert abs(E.calibration_temperature(truth, labels) - 1) < 0.05
    np.testing.assert_allclose(E.temperature_scaled(unsure, t), truth, atol=0.03)
    unsure[:100], labels[100:200] = np.nan, -1
    assert abs(E.calibration_temperature(unsure, labels) - t) < 0.02
    assert np.isnan(E.temperature_scaled(unsure, t)[:100]).all()
    assert E.calibration_temperature(unsure, np.full(len(labels), -1)) == 1.0


def test_the_classifier_kinds_are_read_at_their_temperatures_and_the_card_keeps_the_models_word():
    """task_evidence reads the cross-fitted model (here with no look-alikes: the look is the model
    alone) and the title model at their fitted temperatures; the model's card line prints the
    probabilities as the model gave them."""
    from embeddings.evidence_table import Metadata, evidence_rows, task_evidence
    rng = np.random.default_rng(1)
    n, c = 600, 3
    _, unsure, labels = _half_as_sure(rng, n, c, 3.0)
    words = ["portrait", "still life", "landscape"]
    titles = [f"{words[y] if rng.random() < 0.7 else words[rng.integers(c)]} {i}" for i, y in enumerate(labels)]
    md = Metadata.from_frame(pd.DataFrame({"artist_name": [""] * n, "title": titles}))
    ev = task_evidence(labels, unsure, np.full((n, 1), -1), np.zeros((n, 1)), md, c)
    assert 0.35 < ev.temperatures["model"] < 0.65, ev.temperatures
    np.testing.assert_allclose(ev.kinds["look"], E.temperature_scaled(unsure, ev.temperatures["model"]), atol=1e-6)
    title = E.title_evidence(labels, md.title, c, copies=md.copies)
    assert ev.temperatures["title"] == E.calibration_temperature(title, labels)
    np.testing.assert_allclose(ev.kinds["title"], E.temperature_scaled(title, ev.temperatures["title"]))
    rows = evidence_rows("style", labels, unsure, ev, md, words).query("kind == 'model'")
    np.testing.assert_allclose(rows["p_given"].to_numpy(), unsure[np.arange(n), labels])
