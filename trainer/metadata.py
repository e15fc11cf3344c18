"""A painting's metadata (artist, title, date) from manifest columns or WikiArt-style file names.

Real catalogue errors look plausible to the eye (a painting filed under its artist's usual style,
a date outside the movement); the metadata is what gives them away, so every collection carries
it where it can: a manifest's `title` and `year`/`date` columns, else the file name
`<artist-slug>_<title-slug>[-<year>].jpg` (the WikiArt naming every ArtGAN download uses).

Pure functions; `add_metadata` is the one entry point the loader calls.
"""
from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

log = logging.getLogger("trainer.metadata")

# Dates outside this range are not painting dates (a catalogue number, a title like "1000 eyes").
YEAR_MIN, YEAR_MAX = 1000, 2100
METADATA_COLUMNS = ("artist_name", "artist_source", "title", "year_lo", "year_hi", "date_text")
# A manifest's own metadata columns, read by add_metadata.
MANIFEST_COLUMNS = ("title", "year", "date")

_YEAR = r"(1[0-9]{3}|20[0-9]{2})"
# a calendar date (1890-01-05, 1890/1/5) names one year, not a range
_CALENDAR = re.compile(_YEAR + r"[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])\b")
# between two dates: a dash or slash, or a word ("1890 to 1895", "1890 or 1891", "zwischen 1890 und 1895",
# "entre 1890 et 1895", "1890 a 1895")
_SEP = (r"(?:\s*[-–—/]\s*|\s+(?:to|till|until|or|and|bis|oder|und|tot|of|en|à|au|ou|et|al|a|o|y|e)\s+)")
# "about" before a range's second year ("1890 - c. 1900", "c.1890-c.1895"): still its end
_ABOUT = r"(?:(?:c\.?|ca\.?|circa|um|vers|hacia|verso)\s*)?"
# the end as written: "1890-1895", "1890-95", or after a dash "1890-5" (one digit, as older catalogues write it;
# after a word a digit is rarely a year: "1890 and 2 studies")
_RANGE = re.compile(_YEAR + r"(?:" + _SEP + _ABOUT + r"([0-9]{2,4})|\s*[-–—]\s*([0-9])(?![0-9]))")
# a decade's mark after it: "1890s", "1880's", German "1620er (Jahre)"
_DECADE_MARK = r"(?:\s*'?s|er)\b"
_DECADE = re.compile(_YEAR[:-1] + r")" + _DECADE_MARK, re.I)
# A part of a century or a decade ("late 19th century", "1. Hälfte 17. Jh.", "early 1890s", "third quarter of
# the 18th century") as a share of its span; "early", "mid" and "late" overlap by a tenth, as a catalogue's words
# blur into each other. Checked in this order: the first that matches names the part.
_PARTS = {(0.0, 0.5): r"first half|1st half|premi[eè]re moiti[eé]|1\. h[aä]lfte|erste h[aä]lfte|eerste helft|"
                      r"primera mitad|prima met[aà]",
          (0.5, 1.0): r"second half|2nd half|seconde moiti[eé]|deuxi[eè]me moiti[eé]|2\. h[aä]lfte|"
                      r"zweite h[aä]lfte|tweede helft|segunda mitad|seconda met[aà]",
          (0.0, 0.25): r"first quarter|1st quarter|premier quart|1er quart|1\. viertel|erstes viertel|"
                       r"eerste kwart|primer cuarto|primo quarto",
          (0.25, 0.5): r"second quarter|2nd quarter|second quart|deuxi[eè]me quart|2e quart|2\. viertel|"
                       r"zweites viertel|tweede kwart|segundo cuarto|secondo quarto",
          (0.5, 0.75): r"third quarter|3rd quarter|troisi[eè]me quart|3e quart|3\. viertel|drittes viertel|"
                       r"derde kwart|tercer cuarto|terzo quarto",
          (0.75, 1.0): r"(?:last|fourth|4th) quarter|dernier quart|quatri[eè]me quart|4e quart|4\. viertel|"
                       r"letztes viertel|viertes viertel|laatste kwart|vierde kwart|[uú]ltimo cuarto|"
                       r"cuarto cuarto|ultimo quarto|quarto quarto",
          (0.0, 1 / 3): r"first third|1st third|premier tiers|1er tiers|erstes drittel|1\. drittel|eerste derde|"
                        r"primer tercio|primo terzo",
          (1 / 3, 2 / 3): r"second third|2nd third|middle third|deuxi[eè]me tiers|second tiers|2e tiers|"
                          r"zweites drittel|2\. drittel|tweede derde|segundo tercio|secondo terzo",
          (2 / 3, 1.0): r"(?:last|final) third|dernier tiers|letztes drittel|3\. drittel|drittes drittel|"
                        r"laatste derde|[uú]ltimo tercio|ultimo terzo",
          (0.0, 0.4): r"early|d[eé]but|anfang|begin|principios|inizio",
          (0.3, 0.7): r"mid|middle|milieu|mitte|midden|mediados|met[aà]",
          (0.6, 1.0): r"late|fin|ende|eind|finales|fine"}
_OF = r"(?:-|of the|of|du|de la|de los|des|del|de|della|dello|degli|dei|van de|van het|der)"
_PART_BEFORE = {share: re.compile(r"\b(?:" + words + r")\s*" + _OF + r"?\s*$", re.I) for share, words in _PARTS.items()}
# a part named again inside a span of two ("late 16th-early 17th century", "late 1880s-early 1890s")
_PART_INSIDE = r"(?P<inside>(?:" + "|".join(_PARTS.values()) + r")\s*" + _OF + r"?\s*)?"
# "1520s-1530s", and "1920s-30s" whose second decade keeps the first's century (or the next one's)
_DECADES = re.compile(r"(1[0-9]{2}0|20[0-9]0)" + _DECADE_MARK + _SEP + _PART_INSIDE + r"(1[0-9]{2}0|20[0-9]0|[0-9]0)"
                      + _DECADE_MARK, re.I)
# a decade named by a word before it: "années 1620", "década de 1620", "los años 1620", "anni 1620", "jaren 1620";
# and two ("les années 1920-1930", "anni 1920-30")
_DECADE_WORDED = re.compile(r"\b(?:(?:les\s+)?ann[ée]es|d[ée]cadas?\s+de(?:\s+los)?|(?:los\s+)?a[ñn]os|"
                            r"(?:gli\s+)?anni|(?:de\s+)?jaren)\s+(1[0-9]{2}0|20[0-9]0)"
                            r"(?:" + _SEP + r"(1[0-9]{2}0|20[0-9]0|[0-9]0))?(?![0-9])", re.I)
# "19th century", "XIX century", "16th-17th c.": arabic ordinals, or roman numerals with or without one;
# and as European catalogues write them: "XVIIe siècle", "17. Jahrhundert", "17de eeuw", "XVII secolo"
_NTH = (r"([1-9]|1[0-9]|20)(?:st|nd|rd|th|e|ème|eme|er|de|ste|\.)|([IVX]{1,5})(?:st|nd|rd|th|e|ème|eme|er)?")
_CENTURY = re.compile(r"\b(?:" + _NTH + r")(?:" + _SEP + _PART_INSIDE + r"(?:" + _NTH + r"))?\s*-?\s*"
                      r"(?:c(?:entur(?:y|ies)|ent\.?|\.)|si[eè]cles?|jahrhunderts?|jh\.|eeuw|secolo|secoli)", re.I)
# "siglo XVII", "sec. XVIII", "secolo XVII": the word before the numeral (same groups as _CENTURY)
_CENTURY_WORD_FIRST = re.compile(r"\b(?:siglos?|secolo|sec\.)\s*(?:" + _NTH + r")(?:" + _SEP + _PART_INSIDE
                                 + r"(?:" + _NTH + r"))?(?![a-z])", re.I)
# a date before Christ ("5th century BC", "Ier siècle av. J.-C."): no painting date this product reads
_BEFORE_CHRIST = re.compile(r"\b(?:b\.?\s?c\.?(?:\s?e\.?)?|av\.?\s?j\.?-?c\.?|v\.\s?chr\.?|a\.\s?c\.)(?![a-z])", re.I)
_ROMAN = {"I": 1, "V": 5, "X": 10}
_SINGLE = re.compile(_YEAR)
# the forms parse_date reads, longest first where two start at one place
_DATE_FORMS = {"calendar": _CALENDAR, "decades": _DECADES, "range": _RANGE, "decade": _DECADE, "year": _SINGLE,
               "century": _CENTURY, "century_word_first": _CENTURY_WORD_FIRST, "decade_worded": _DECADE_WORDED}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9.'()-]*$")
_NAME_YEAR = re.compile(r"^(.*?)-(1[0-9]{3}|20[0-9]{2})(?:-[0-9]{1,2})?(?:\(\d+\))?$")
# WikiArt names a painting without a known title `not_detected_<id>`: a placeholder, not a title.
# Read as one, it would teach the title model which classes the source left untitled.
_PLACEHOLDER_TITLE = re.compile(r"^not detected(?: \d+)?$")


def parse_date(text: str) -> tuple[float, float] | None:
    """(first year, last year) of a free-text date, or None when it names no year.

    "1890", "c. 1890", "ca 1890", "1890-01-05" -> (1890, 1890); "1890-95", "1890-1895", "1890-5", "1890 - c. 1895",
    "1890 or 1895", "zwischen 1890 und 1895" -> (1890, 1895); "1890s", "1890er Jahre", "les années 1890", "década
    de 1890", "anni 1890" -> (1890, 1899); "1520s-1530s", "1520s-30s", "anni 1520-30" -> (1520, 1539); "1600s" ->
    (1600, 1699) (a round hundred's "s" is the century: where a date is ambiguous the wider reading claims less);
    "19th century", "19th cent.", "XIX century", "XIXe siècle", "19. Jahrhundert", "siglo XIX" -> (1800, 1899);
    "16th-17th century" -> (1500, 1699). Words before a century or decade name a part of it: "early" its first
    40%, "mid" 30-70%, "late" the last 40%, either half, any third or quarter ("late 19th century" -> (1860, 1899),
    "1. Hälfte 17. Jh." -> (1600, 1649), "mid-1890s" -> (1893, 1896), "third quarter of the 18th century" ->
    (1750, 1774)); in a span of two, before each ("late 16th-early 17th century" -> (1560, 1639), "late
    16th-17th century" -> (1560, 1699)). The first date in the text wins; one followed by "BC" (or "av. J.-C.",
    "v. Chr.", "a.C.") is None.
    """
    text = str(text or "").strip()
    found = [(m.start(), i, form, m) for i, (form, rx) in enumerate(_DATE_FORMS.items()) if (m := rx.search(text))]
    if not found:
        return None
    _, _, form, m = min(found, key=lambda f: f[:2])        # the first date in the text; at one place, the longer form
    span = _date_span(form, m)
    if span is None or _BEFORE_CHRIST.search(text, m.end()):
        return None
    lo, hi, unit = span
    if unit is None:                                        # a year or a range of years: no part to name
        return lo, hi
    first = _part_of((lo, lo + unit - 1), text[:m.start()])
    if hi - lo + 1 == unit:
        return first
    return first[0], _part_of((hi - unit + 1, hi), m.groupdict().get("inside") or "")[1]


def _date_span(form: str, m: re.Match) -> tuple[float, float, int | None] | None:
    """(first year, last year, the century's or decade's length a part may be named of, else None) that one
    match of a `_DATE_FORMS` form names."""
    if form in ("calendar", "year"):
        return float(m.group(1)), float(m.group(1)), None
    if form == "decades":
        return _decades(m.group(1), m.group(3))
    if form == "decade_worded":
        return _decades(m.group(1), m.group(2)) if m.group(2) else _decades(m.group(1), m.group(1))
    if form == "range":
        lo, end = int(m.group(1)), m.group(2) or m.group(3)
        hi = int(str(lo)[: 4 - len(end)] + end) if len(end) < 4 else int(end)
        return (float(lo), float(hi), None) if lo <= hi <= lo + 100 else (float(lo), float(lo), None)
    if form == "decade":                                    # or a round hundred's century
        lo = int(m.group(1))
        unit = 100 if lo % 100 == 0 else 10 if lo % 10 == 0 else None
        return float(lo), float(lo + (unit or 1) - 1), unit
    first, last = _century(m.group(1), m.group(2)), _century(m.group(4), m.group(5))
    if first is None:
        return None
    last = last if last is not None and last >= first else first
    return float((first - 1) * 100), float((last - 1) * 100 + 99), 100


def _decades(first: str, last: str) -> tuple[float, float, int]:
    """(first year, last year, 10 or 100) from the decade `first` to the decade `last` ("1920", "30" or "1930")."""
    lo, hi = int(first), int(last)
    if len(last) == 2:                                      # "1920s-30s": a decade, in lo's century or the next
        hi += lo // 100 * 100 + (100 if hi < lo % 100 else 0)
        return float(lo), float(hi + 9), 10
    # "1500s-1600s" are centuries, but after a decade ("1990s-2000s", "1890s-1900s") a round hundred is one too
    unit = 100 if hi % 100 == 0 and lo % 100 == 0 else 10
    return (float(lo), float(hi + unit - 1), unit) if hi >= lo else (float(lo), float(lo + 9), 10)


def _part_of(span: tuple[float, float], before: str) -> tuple[float, float]:
    """The part of one century or decade `span` that the words `before` it name ("late", "first
    half of the", "fin du", "third quarter of the"), or the whole span."""
    lo, hi = span
    for (start, end), rx in _PART_BEFORE.items():
        if rx.search(before):
            length = hi - lo + 1
            return float(lo + round(start * length)), float(lo + round(end * length) - 1)
    return span


def _century(arabic: str | None, roman: str | None) -> int | None:
    """The century an ordinal names ("19", or "XIX"), None for none or a roman numeral out of 1-21."""
    if arabic:
        return int(arabic)
    if not roman:
        return None
    values = [_ROMAN[c] for c in roman.upper()]
    n = sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))
    return n if 1 <= n <= 21 else None


def parse_wikiart_name(path: str) -> dict | None:
    """{artist_name, title, year_lo, year_hi} from `<artist-slug>_<title-slug>[-<year>].<ext>`, or
    None when the file name does not have that shape (a title of digits only, without a year at the
    end, is a counter: `img_0042.jpg`). A copy suffix ("(1)") is ignored; the year is
    taken only from the end of the name (a year inside a title is part of the title); WikiArt's
    placeholder `not_detected_<id>` gives title "" (unknown)."""
    stem = str(path).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if "_" not in stem:
        return None
    artist, title = stem.split("_", 1)
    if not _SLUG.match(artist) or "-" not in artist and len(artist) < 3 or not title:
        return None
    out = {"artist_name": artist, "title": title, "year_lo": np.nan, "year_hi": np.nan}
    m = _NAME_YEAR.match(title)
    if m and YEAR_MIN <= int(m.group(2)) <= YEAR_MAX:
        out["title"], out["year_lo"] = m.group(1), float(m.group(2))
        out["year_hi"] = out["year_lo"]
    elif not re.search("[a-z]", title):
        return None     # a camera's or scanner's name (img_0042, scan_0007), no artist before the "_"
    out["title"] = re.sub(r"\(\d+\)$", "", out["title"]).replace("-", " ").replace("_", " ").strip()
    if _PLACEHOLDER_TITLE.match(out["title"]):
        out["title"] = ""
    return out


def display_name(slug: str) -> str:
    """An artist slug as a name: "claude-monet" -> "Claude Monet"; "" for none."""
    return " ".join(w.capitalize() for w in str(slug).replace("-", " ").split()) if slug else ""


def add_metadata(frame: pd.DataFrame, columns: dict[str, pd.Series] | None = None, parse_names: bool = True,
                 artist_labels: list[str] | None = None, where: str = "") -> pd.DataFrame:
    """`frame` with METADATA_COLUMNS added (NaN / "" where unknown).

    columns: a manifest's own `title`, `year` or `date` columns (aligned with frame); they win over
    the file name, and a row's `year` over its `date`. parse_names: read artist, title and year from
    WikiArt-style file names.
    artist_labels: the artist task's class names, used as the artist where the file name gives none.
    Logs the coverage, and how many dates could not be read (kept as text in `date_text`).
    """
    columns = columns or {}
    n = len(frame)
    out = frame.copy()
    parsed = [parse_wikiart_name(p) if parse_names else None for p in frame["path"]]
    artist = np.array([p["artist_name"] if p else "" for p in parsed], dtype=object)
    source = np.where(artist != "", "name", "").astype(object)
    if artist_labels is not None and "artist" in frame:
        y = frame["artist"].to_numpy()
        fill = (artist == "") & (y >= 0)
        artist[fill] = [artist_labels[i] for i in y[fill]]
        source[fill] = "label"     # no independent evidence about the artist label itself
    title = np.array([p["title"] if p else "" for p in parsed], dtype=object)
    lo = np.array([p["year_lo"] if p else np.nan for p in parsed], dtype=float)
    hi = np.array([p["year_hi"] if p else np.nan for p in parsed], dtype=float)
    date_text = np.full(n, "", dtype=object)
    if "title" in columns:
        given = columns["title"].fillna("").astype(str).str.strip().to_numpy()
        title = np.where(given != "", given, title)
    year, date = columns.get("year"), columns.get("date")
    date_col = year if date is None else date if year is None else \
        year.where(year.fillna("").astype(str).str.strip() != "", date)       # a row's year, else its date
    unreadable = 0
    if date_col is not None:
        for i, text in enumerate(date_col.fillna("").astype(str)):
            if not text.strip():
                continue
            date_text[i] = text.strip()
            d = parse_date(text)
            if d is None:
                unreadable += 1
            else:
                lo[i], hi[i] = d
    out["artist_name"], out["artist_source"], out["title"] = artist, source, title
    out["year_lo"], out["year_hi"], out["date_text"] = lo, hi, date_text
    if n:
        log.info("metadata%s: artist for %d of %d paintings (%d artists), title for %d, year for %d%s", where,
                 int((artist != "").sum()), n, len(set(artist) - {""}), int((title != "").sum()),
                 int((~np.isnan(lo)).sum()), f"; {unreadable} dates could not be read (kept as text)"
                 if unreadable else "")
    return out


def mid_year(frame: pd.DataFrame) -> np.ndarray:
    """(N,) float: the middle of each painting's date range, NaN where undated."""
    if "year_lo" not in frame:
        return np.full(len(frame), np.nan)
    return (frame["year_lo"].to_numpy(float) + frame["year_hi"].to_numpy(float)) / 2
