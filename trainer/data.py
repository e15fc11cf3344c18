"""Read painting collections: the ArtGAN WikiArt layout or a plain manifest CSV.

One `PaintingSet` holds every painting once, with one class index per task (-1 = no label for
that task) and a split (train / val / test). Paintings missing one or two labels are kept: the
loss masks the missing task instead of dropping the painting (dropping them loses whole classes).
"""
from __future__ import annotations

import difflib
import hashlib
import io
import logging
import os
import re
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import ExifTags, Image, ImageOps
from pi_heif import register_heif_opener

from trainer.cli import UserError
from trainer.label_names import spelling_variants_line
from trainer.metadata import MANIFEST_COLUMNS, add_metadata
from trainer.picture_hash import HASH_SIZE, MAX_HASH_SHARE, difference_hash, near_copy_pairs
from trainer.splits import copy_groups, keep_copies_together

log = logging.getLogger("trainer.data")

TASKS = ("artist", "genre", "style")
SPLITS = ("train", "val", "test")
# Decompression-bomb guard: WikiArt's largest scans are ~40 MP; anything far above is refused.
MAX_IMAGE_PIXELS = 80_000_000
# A phone's photographs (HEIC): PIL reads them once this decoder is registered, already turned by the
# file's own rotation box (EXIF orientation then reads 1), so upright_rgb and viewed_size need nothing more.
register_heif_opener()


@dataclass
class PaintingSet:
    """All paintings of a collection.

    frame: one row per painting; columns `path` (relative to root, '/' separated), one int column
        per task in TASKS (class index, -1 = unknown) and `split` in SPLITS.
    classes: task -> class names; index i of the list is class index i.
    problems: one line per row that could not be used (file:line: what), already logged.
    """
    root: Path
    frame: pd.DataFrame
    classes: dict[str, list[str]]
    problems: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Tasks that have classes and at least one labelled painting."""
        return [t for t in TASKS if self.classes.get(t) and (self.frame[t] >= 0).any()]

    def file_sha1s(self) -> list[str | None] | None:
        """Each painting's file sha1 as the loader read it (None = unreadable), or None when the
        loader did not hash the files (copies_together off): pass to extract_features / check_images
        so a collection is read for its hashes once."""
        return self.frame["sha1"].tolist() if "sha1" in self.frame else None

    def labels(self, task: str) -> np.ndarray:
        """(N,) int64 class indices, -1 where the painting has no label for `task`."""
        return self.frame[task].to_numpy(dtype=np.int64)

    def data_hash(self) -> str:
        """sha1 of paths, labels, splits and class lists: identifies what a model was trained on."""
        h = hashlib.sha1()
        h.update(pd.util.hash_pandas_object(self.frame[["path", *TASKS, "split"]], index=False).values.tobytes())
        for t in TASKS:
            h.update(("\n".join([t, *self.classes.get(t, [])])).encode())
        return h.hexdigest()


def load_paintings(data: str | Path, test_fraction: float = 0.15, seed: int = 0,
                   parse_names: bool = True, folder_task: str = "style", copies_together: bool = True,
                   copy_hash_share: float = MAX_HASH_SHARE) -> PaintingSet:
    """Read `data`: an ArtGAN-layout folder, a manifest CSV (`path,artist,genre,style[,split]`,
    optional `title` and `year` or `date`), or an ImageFolder (`DIR/<class>/<image>`, one folder per
    class of `folder_task`, torchvision's layout; used when DIR has no ArtGAN CSVs).

    Paintings whose split is not given become train; `test_fraction` of train (stratified by
    style, then genre, seeded) becomes the held-out test split used for reported numbers.
    The frame also carries trainer.metadata.METADATA_COLUMNS (artist, title, year), from the
    manifest's columns and, with parse_names, from WikiArt-style file names.
    copies_together: byte-identical files, and pictures whose difference hashes differ in at most
    `copy_hash_share` of their bits (0 = identical files only), share a `copy_group` (>= 0) and sit
    in one split, the given one included (trainer/splits.py); off, the data's own split stands and
    copy_group is -1.
    """
    data = Path(data)
    if not data.exists():
        raise UserError(f"data root {data} does not exist (pass --data PATH: an ArtGAN folder or a manifest .csv)")
    if data.is_dir():
        ps = _read_artgan(data) if has_artgan_csvs(data) else _read_image_folder(data, folder_task)
    else:
        ps = _read_manifest(data)
    meta_cols = {c: ps.frame.pop(c) for c in MANIFEST_COLUMNS if c in ps.frame}
    ps.frame = add_metadata(ps.frame, meta_cols, parse_names, ps.classes.get("artist"), f" of {data}")
    if len(ps.frame) == 0:
        raise UserError(f"{data}: no usable paintings (empty data set)" +
                        (f"; first problem: {ps.problems[0]}" if ps.problems else ""))
    if not ps.tasks:
        raise UserError(f"{data}: no painting carries any artist, genre or style label")
    for t in ps.tasks:
        counts = np.bincount(ps.frame[t][ps.frame[t] >= 0], minlength=len(ps.classes[t]))
        line = spelling_variants_line(t, ps.classes[t], counts.tolist())
        if line:
            log.warning("%s: %s", data, line)
    ps.frame = ps.frame.sort_values("path", kind="stable").reset_index(drop=True)
    if copies_together:
        ps.frame["sha1"], hashes = fingerprint_images(ps.root, ps.frame["path"], pictures=copy_hash_share > 0)
        near = near_copy_pairs(hashes, copy_hash_share) if copy_hash_share > 0 else None
        group = copy_groups(ps.frame["sha1"].tolist(), near)
    else:
        group = np.full(len(ps.frame), -1, np.int64)
    ps.frame["copy_group"] = group
    given = ps.frame["split"].to_numpy(object)
    # the test split is drawn as if there were no copies (the same draw as without them), then each
    # group joins the split of its most held-out copy
    ps.frame["split"], moved = keep_copies_together(carve_test_split(ps.frame, test_fraction, seed).to_numpy(), group)
    if (group >= 0).any():
        sha1 = ps.frame["sha1"].to_numpy(object)
        by_pixels = 0 if near is None else int((sha1[near[0]] != sha1[near[1]]).sum())
        # the largest group shows a chain of look-alike hashes, which would crowd one fold
        log.info("%s: %d groups of copies (%d paintings, at most %d in one; %d pairs of other files one picture "
                 "by their pixels), each kept in one split: %d paintings moved (%d of them out of the data's own "
                 "train/val split)", data, len(np.unique(group[group >= 0])), int((group >= 0).sum()),
                 int(np.bincount(group[group >= 0]).max()), by_pixels, moved,
                 int(((given != ps.frame["split"]) & (given != "train")).sum()))
    log.info("%s: %d paintings (%s), tasks %s, %d rows skipped", data, len(ps.frame),
             ", ".join(f"{s} {n}" for s, n in ps.frame["split"].value_counts().items()), ps.tasks, len(ps.problems))
    return ps


def carve_test_split(frame: pd.DataFrame, test_fraction: float, seed: int) -> pd.Series:
    """Move `test_fraction` of each train class (by style, else genre, else artist) to 'test'.

    Classes with fewer than 3 train paintings stay whole in train so every class is learnable.
    """
    split = frame["split"].copy()
    if test_fraction <= 0:
        return split
    rng = np.random.default_rng(seed)
    train = frame.index[split == "train"]
    strat = pd.Series("none", index=frame.index, dtype=object)
    for t in ("artist", "genre", "style"):  # last one wins: style first, fallbacks fill gaps
        has = frame[t] >= 0
        strat[has] = frame.loc[has, t].map(lambda v, t=t: f"{t}:{v}")
    for _, idx in strat.loc[train].groupby(strat.loc[train]).groups.items():
        idx = np.array(sorted(idx))
        n_test = int(round(len(idx) * test_fraction)) if len(idx) >= 3 else 0
        if n_test:
            split[rng.choice(idx, size=n_test, replace=False)] = "test"
    return split


# ---------------------------------------------------------------- ArtGAN layout
def _read_text(path: Path) -> list[str]:
    """Lines of a text file with CRLF/LF ends, in the encoding `csv_encoding` reads."""
    raw = path.read_bytes()
    text = raw.decode(csv_encoding(raw), errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _class_file(root: Path, task: str) -> Path | None:
    for name in (f"{task}_class.txt", f"{task}_class"):
        if (root / name).is_file():
            return root / name
    return None


def read_class_file(path: Path) -> list[str]:
    """`<index> <Name>` rows -> list where position i holds class i's name."""
    names: dict[int, str] = {}
    for lineno, line in enumerate(_read_text(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{path}:{lineno}: expected '<index> <Name>', got {line.strip()[:80]!r}")
        names[int(parts[0])] = parts[1].strip()
    if not names:
        raise UserError(f"{path}: class file is empty")
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        raise UserError(f"{path}: class indices are not contiguous, missing {missing[:5]}")
    return [names[i] for i in range(len(names))]


def fix_double_encoding(rel: str) -> str:
    """Undo UTF-8 text that was decoded as latin-1/cp1252 and re-encoded ('Ã©' -> 'é')."""
    for enc in ("cp1252", "latin-1"):
        try:
            return rel.encode(enc).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return rel


def resolve_image_path(root: Path, rel: str) -> str | None:
    """The relative path that exists under root: as given, with Windows separators made '/' (a
    manifest written on Windows), with double encoding undone, or with its accents composed or
    decomposed (a Mac names files "e" + a combining accent, a spreadsheet types "é": alike on screen,
    not to the file system)."""
    for candidate in dict.fromkeys((rel, rel.replace("\\", "/"))):
        if (root / candidate).is_file():
            return candidate
        fixed = fix_double_encoding(candidate)
        if fixed != candidate and (root / fixed).is_file():
            return fixed
        for form in ("NFC", "NFD"):
            other = unicodedata.normalize(form, candidate)
            if other != candidate and (root / other).is_file():
                return other
    return None


def _read_artgan(root: Path) -> PaintingSet:
    classes: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    problems: list[str] = []
    for task in TASKS:
        cf = _class_file(root, task)
        csvs = [(s, root / f"{task}_{s}.csv") for s in ("train", "val")]
        csvs = [(s, p) for s, p in csvs if p.is_file()]
        if not csvs:
            continue
        if cf is None:
            raise UserError(f"{root}: {csvs[0][1].name} exists but {task}_class.txt is missing")
        classes[task] = read_class_file(cf)
        for split, path in csvs:
            for lineno, line in enumerate(_read_text(path), 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                if "," not in line:
                    raise UserError(f"{where}: expected 'path,index' (2 columns), got {line[:80]!r}")
                rel, idx = line.rsplit(",", 1)
                idx = idx.strip()
                if not idx.lstrip("-").isdigit():
                    raise UserError(f"{where}: class index {idx!r} is not an integer")
                k = int(idx)
                if not 0 <= k < len(classes[task]):
                    raise UserError(f"{where}: class index {k} out of range: {cf.name} has "
                                    f"{len(classes[task])} classes (0..{len(classes[task]) - 1})")
                found = resolve_image_path(root, rel.strip())
                if found is None:
                    problems.append(f"{where}: image {rel.strip()!r} not found under {root}")
                    continue
                r = rows.setdefault(found, {"path": found, **{t: -1 for t in TASKS}, "split": None})
                r[task] = k
                if r["split"] is None or task == "style":  # the ArtGAN style split defines the split
                    r["split"] = split
    _log_problems(problems)
    frame = pd.DataFrame(list(rows.values()), columns=["path", *TASKS, "split"])
    return PaintingSet(root=root, frame=frame, classes=classes, problems=problems)


# ---------------------------------------------------------------- ImageFolder
# what PIL (with pi-heif) decodes: scans, web exports, a phone's HEIC, an archive's JPEG 2000 masters
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2",
                  ".j2k", ".jpx", ".gif")


def check_trainable(ps: PaintingSet, data) -> None:
    """A classifier needs some task with two classes to tell apart."""
    if all(len(ps.classes[t]) < 2 for t in ps.tasks):
        only = "; ".join(f"{t}: {ps.classes[t][0]}" for t in ps.tasks)
        raise UserError(f"{data}: every labelled task has one class ({only}): a classifier needs two to tell apart")


def has_artgan_csvs(root: Path) -> bool:
    return any((root / f"{t}_{s}.csv").is_file() for t in TASKS for s in ("train", "val"))


def _read_image_folder(root: Path, task: str) -> PaintingSet:
    """torchvision's ImageFolder layout: every sub-folder of root is a class of `task`, every image
    below it (any depth) a painting of that class; all train (test and val are carved later)."""
    if task not in TASKS:
        raise UserError(f"--task {task!r}: the class folders name one of {', '.join(TASKS)}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    listed = {f.name: sorted(p for p in f.rglob("*") if p.is_file() and not p.name.startswith(".")) for f in folders}
    images = {name: [p for p in fs if p.suffix.lower() in IMAGE_SUFFIXES] for name, fs in listed.items()}
    others = Counter(p.suffix.lower() or "(no suffix)" for fs in listed.values() for p in fs
                     if p.suffix.lower() not in IMAGE_SUFFIXES)
    if others:      # a camera's raw .cr2 or a .pdf would otherwise vanish without a word
        log.warning("%s: %d files in the class folders are not images artlens reads (%s) and are left out; "
                    "it reads %s", root, sum(others.values()), ", ".join(f"{n} {s}" for s, n in others.most_common()),
                    " ".join(IMAGE_SUFFIXES))
    classes = [name for name, files in images.items() if files]
    if not classes:
        raise UserError(f"{root}: no layout found: no ArtGAN label CSVs ({{artist,genre,style}}_{{train,val}}.csv) "
                        f"and no class folders with images ({root}/<class>/<image>.jpg, the ImageFolder layout); "
                        "or pass a manifest .csv")
    if len(classes) == 1:
        raise UserError(one_class_folder(root, classes[0]))
    rows = [{"path": p.relative_to(root).as_posix(), **{t: -1 for t in TASKS}, task: k, "split": "train"}
            for k, name in enumerate(classes) for p in images[name]]
    log.info("%s: ImageFolder layout, %d %s classes from its folders", root, len(classes), task)
    return PaintingSet(root=root, frame=pd.DataFrame(rows, columns=["path", *TASKS, "split"]),
                       classes={task: classes})


def one_class_folder(root: Path, name: str) -> str:
    """Why class folders with one class cannot be trained on, and where the classes may be: a
    folder one level too high holds a single folder whose sub-folders are the classes."""
    inner = [d.name for d in sorted((root / name).iterdir()) if d.is_dir()
             and any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.rglob("*"))]
    if len(inner) >= 2:
        return (f"{root}: one class folder, {name!r}, whose {len(inner)} sub-folders of images "
                f"({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''}) look like the classes: "
                f"pass --data {root / name}")
    return f"{root}: one class folder, {name!r}: a classifier needs at least two classes (one folder each)"


# ---------------------------------------------------------------- manifest CSV
MANIFEST_HEADER = "path,artist,genre,style[,split][,title][,year|date]"


def check_manifest_columns(path: Path, cols: list[str]) -> None:
    """A manifest needs `path` and at least one label column; a collection labelled for style
    only leaves out the others. A missing label column next to a column spelt like it
    (`artsit`, `styles`, `genre_label`) is a typo, not a task left out: that is an error, as no
    label column is."""
    missing = [t for t in TASKS if t not in cols]
    known = {"path", "split", *TASKS, *MANIFEST_COLUMNS}
    unknown = [c for c in cols if c not in known]
    typos = {t: m[0] for t in missing
             if (m := [c for c in unknown if t in c] or difflib.get_close_matches(t, unknown, n=1, cutoff=0.7))}
    if "path" not in cols or len(missing) == len(TASKS) or typos:
        need = [c for c in ("path", *TASKS) if c not in cols]
        hint = "".join(f"; is {c!r} meant to be {t!r}?" for t, c in typos.items())
        raise UserError(f"{path}: manifest is missing column(s) {', '.join(need)}; found {', '.join(cols)}{hint}"
                        f" (expected {MANIFEST_HEADER}; a label column may be left out)")
    if missing:
        log.info("%s: no %s column: %s not trained or scored", path, " or ".join(missing),
                 "those tasks are" if len(missing) > 1 else "that task is")
    # a catalogue's own names for the metadata ("creation_date", "painting_title") would be dropped
    # without a word, and the period and title evidence with them
    near = [c for c in unknown if any(m in c and m not in cols for m in MANIFEST_COLUMNS)]
    if near:
        log.warning("%s: column(s) %s not read: a painting's title and date are read from columns named title "
                    "and date (or year); rename to use them", path, ", ".join(near))
    if unknown:
        log.info("%s: column(s) not read: %s", path, ", ".join(unknown))


# a file's byte-order mark names its encoding (Excel's "CSV UTF-8" writes one, its "Unicode text" is UTF-16)
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def csv_encoding(raw: bytes) -> str:
    """The text encoding of a CSV's bytes: the one its byte-order mark names, else UTF-8 where its
    bytes decode as UTF-8 (or where characters UTF-8 encodes outnumber the bytes it cannot read: a
    UTF-8 file with a stray byte stays UTF-8), else Windows-1252: what Excel's plain "CSV" writes on
    Windows in Western locales, where "é" is one byte that UTF-8 would turn into a replacement
    character (and a label, an artist's name or an image path with it into another one)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    text = raw.decode("utf-8", errors="replace")
    unread = text.count("\ufffd") - raw.count("\ufffd".encode())
    if unread == 0:
        return "utf-8"
    read = sum(ord(c) > 127 for c in text) - text.count("\ufffd")
    return "utf-8" if read > unread else "cp1252"


def csv_format(path: Path) -> tuple[str, str, str]:
    """(separator, line ending, encoding) of a CSV. The separator is ',' unless the header has none
    and a ';' or a tab (a spreadsheet saved in a locale whose decimal mark is the comma writes ';';
    Excel's "Unicode text" tabs); the line ending '\r\n' where the header ends so, else '\n'."""
    raw = path.read_bytes()
    encoding = csv_encoding(raw)
    header = raw.decode(encoding, errors="replace").split("\n", 1)[0] + "\n"
    sep = "," if "," in header else ";" if ";" in header else "\t" if "\t" in header else ","
    return sep, "\r\n" if header.endswith("\r\n") else "\n", encoding


def data_root_of(root: Path, rels: list[str]) -> tuple[Path, list[str]]:
    """One data root under which every image path lies: (root, paths relative to it, '/' separated).

    A manifest may name images outside its own folder (absolute paths, `../images/x.jpg`); stored
    as written they would leave the data root, where the dashboard serves nothing. Such paths are
    rewritten relative to the manifest's folder when they lie inside it, and otherwise every path
    is rewritten relative to the deepest folder holding all the images. Paths already inside,
    written without `..`, are kept as they are (tags and caches know paintings by them)."""
    def outside(rel: str) -> bool:
        return os.path.isabs(rel) or ".." in Path(rel).parts
    if not any(outside(r) for r in rels):
        return root, rels
    base = os.path.abspath(root)
    full = [os.path.normpath(os.path.join(base, r)) for r in rels]        # lexically: a link stays a link
    full = [f if os.path.isfile(f) else os.path.realpath(os.path.join(base, r)) for f, r in zip(full, rels)]
    if all(f.startswith(base + os.sep) for f in full):
        return root, [Path(os.path.relpath(f, base)).as_posix() if outside(r) else r for f, r in zip(full, rels)]
    new = os.path.commonpath([os.path.dirname(f) for f in full])
    return Path(new), [Path(os.path.relpath(f, new)).as_posix() for f in full]


def read_manifest_csv(path: Path, sep: str = "", encoding: str = "") -> pd.DataFrame:
    """A manifest's rows as text, its column names as written (UserError if it cannot be read);
    sep, encoding: as the caller has read them (`csv_format`), else read here."""
    if path.suffix.lower() in (".xlsx", ".xls", ".ods", ".numbers"):
        raise UserError(f"{path}: a spreadsheet, not a CSV: save it as CSV (header {MANIFEST_HEADER}) and pass that")
    if not (sep and encoding):
        sep, _, encoding = csv_format(path)
    if encoding == "cp1252":
        log.warning("%s: not UTF-8: read as Windows-1252, as Excel saves a plain CSV on Windows (if accented "
                    "names read wrong, save it as \"CSV UTF-8\")", path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, encoding_errors="replace",
                           sep=sep)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: manifest CSV is empty (expected header {MANIFEST_HEADER})")
    except pd.errors.ParserError as e:
        raise UserError(f"{path}: cannot parse manifest CSV: {str(e).strip()}")


def stored_paths(root: Path, written: list[str]) -> tuple[Path, list[str | None]]:
    """(data root, each manifest path as the store knows it, None where no image is found) for
    the paths a manifest in folder `root` writes."""
    found = [resolve_image_path(root, p.strip()) for p in written]
    present = [f for f in found if f is not None]
    image_root, rebased = data_root_of(root, present)
    as_stored = dict(zip(present, rebased))
    return image_root, [as_stored[f] if f is not None else None for f in found]


def _read_manifest(path: Path) -> PaintingSet:
    root = path.parent
    df = read_manifest_csv(path)
    cols = [c.strip().lower() for c in df.columns]
    df.columns = cols
    check_manifest_columns(path, cols)
    for t in TASKS:                     # a task without a column has no labels: it is not trained
        if t not in cols:
            df[t] = ""
    classes = {t: sorted({v.strip() for v in df[t] if v.strip()}) for t in TASKS}
    extra = [c for c in MANIFEST_COLUMNS if c in cols]
    problems: list[str] = []
    image_root, found = stored_paths(root, df["path"].tolist())
    if image_root != root:
        log.info("%s: image paths reach outside the manifest's folder: they are read relative to %s, the "
                 "folder that holds them all", path, image_root)
    out, first_line = [], {}
    for i, (r, rel) in enumerate(zip(df.itertuples(index=False), found), 2):  # line 1 is the header
        where = f"{path}:{i}"
        if rel is None:
            problems.append(f"{where}: image {r.path.strip()!r} not found under {root}" + (
                " (a web address: artlens reads image files, download them first)" if _URL.match(r.path.strip()) else ""))
            continue
        split = (getattr(r, "split", "") or "train").strip().lower()
        if split not in SPLITS:
            raise UserError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        labels = {t: (classes[t].index(getattr(r, t).strip()) if getattr(r, t).strip() else -1) for t in TASKS}
        if rel in first_line:
            problems.append(duplicate_row(where, rel, first_line[rel], out[first_line[rel][1]], labels, classes))
            continue
        first_line[rel] = (i, len(out))
        out.append({"path": rel, **labels, "split": split, **{c: getattr(r, c) for c in extra}})
    dups = [p for p in problems if "already listed at line" in p]
    if dups:
        log.warning("%d rows list an image a row above already lists (the first row kept, %d with other labels); "
                    "first: %s", len(dups), sum("labels differ" in p for p in dups), dups[0])
    _log_problems([p for p in problems if p not in dups])
    frame = pd.DataFrame(out, columns=["path", *TASKS, "split", *extra])
    return PaintingSet(root=image_root, frame=frame, classes={t: c for t, c in classes.items() if c},
                       problems=problems)


def duplicate_row(where: str, rel: str, first: tuple[int, int], kept: dict, labels: dict[str, int],
                  classes: dict[str, list[str]]) -> str:
    """The problem line for a second row of one image: which line was kept and which labels conflict."""
    name = lambda t, k: classes[t][k] if k >= 0 else "(none)"
    conflicts = [f"{t} {name(t, kept[t])} vs {name(t, labels[t])}" for t in TASKS if kept[t] != labels[t]]
    return (f"{where}: {rel!r} already listed at line {first[0]}; kept that row"
            + (f" (labels differ: {'; '.join(conflicts)})" if conflicts else " (same labels)"))


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)   # a catalogue export that links its images


def _log_problems(problems: list[str]) -> None:
    if problems:
        log.warning("skipped %d label rows; first: %s", len(problems), problems[0])


# ---------------------------------------------------------------- images
# Bumped whenever load_image gives another picture for some file: the feature cache keys maps by the
# file's sha1, so its folder carries this number and maps of the old picture are never reused.
# 2: EXIF orientation applied, 16- and 32-bit grey scaled (1 read both as stored).
DECODER_VERSION = 2


def upright_rgb(im: Image.Image) -> Image.Image:
    """A loaded image in 8-bit RGB as a viewer sees it: turned by its EXIF orientation (a phone
    stores a photograph sideways with a tag that browsers obey, so the model and the dashboard must
    too), alpha composited on white, 16- and 32-bit grey scaled to 8 bits (PIL's own conversion
    clips them, so an archival 16-bit scan reads as white), palette and CMYK converted."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        # integers: 16-bit range (PNG and TIFF scanners); floats: 0-1 if they fit, else 0-255
        top = 65535.0 if im.mode != "F" else 1.0 if grey.size and grey.max() <= 1.0 else 255.0
        im = Image.fromarray(np.clip(grey * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
    return im.convert("RGB")


# EXIF orientations that store a picture turned by 90 degrees: as viewed, width and height swap
SIDEWAYS = (5, 6, 7, 8)


def viewed_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as `upright_rgb` will turn it, read from its header."""
    w, h = im.size
    return (h, w) if im.getexif().get(ExifTags.Base.Orientation, 1) in SIDEWAYS else (w, h)


class ImageRefused(ValueError):
    """An image load_image will not decode (too many pixels), named as such."""


def load_image(path: Path | io.BytesIO, min_side: int = 0) -> Image.Image:
    """Decode an image (a file, or its bytes) as upright 8-bit RGB (`upright_rgb`).

    min_side > 0 lets a JPEG decode at a power-of-two reduction (libjpeg's DCT scaling) as long as
    its shorter side stays >= min_side: a 3000 px scan then decodes ~10x faster, and the model,
    which sees 224-260 px, gets the same picture.

    Raises ValueError with a one-line reason for corrupt, truncated or oversized files.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageRefused(f"{w}x{h} pixels exceeds the {MAX_IMAGE_PIXELS:,} pixel limit")
                if min_side and im.format == "JPEG" and min(w, h) > 2 * min_side:
                    scale = min_side / min(w, h)
                    im.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
                im.load()
                return upright_rgb(im)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"refused as a decompression bomb: {e}") from None
    except FileNotFoundError:
        raise ValueError("file not found") from None
    # a decoder plugin's own errors too (pi-heif: ValueError over several lines, EOFError on a cut file)
    except (OSError, SyntaxError, EOFError, ValueError, Image.UnidentifiedImageError) as e:
        raise ValueError(f"cannot decode image: {' '.join(str(e).split())}") from None


def fingerprint_images(root: Path, paths, pictures: bool = True) -> tuple[list[str | None], list[np.ndarray | None]]:
    """(sha1s, hashes): each file's sha1 and, with `pictures`, its difference hash
    (trainer/picture_hash.py), from one read of the file (a collection on a slow disk is read once,
    not twice). None where the file cannot be read or decoded (reported by whoever decodes it for
    the model). A JPEG decodes at a reduced scale: about 1 s for wikiart-mini's 2,546 paintings."""
    sha1s, hashes = [], []
    for p in paths:
        try:
            data = (root / p).read_bytes()
        except OSError:
            sha1s.append(None)
            hashes.append(None)
            continue
        sha1s.append(hashlib.sha1(data).hexdigest())
        try:
            hashes.append(difference_hash(load_image(io.BytesIO(data), min_side=4 * HASH_SIZE)) if pictures else None)
        except ValueError:
            hashes.append(None)
    return sha1s, hashes


def hash_images(root: Path, paths) -> list[str | None]:
    """sha1 of each file under root (`fingerprint_images`), None where it cannot be read (reported
    by whoever decodes it)."""
    return fingerprint_images(root, paths, pictures=False)[0]


def picture_hashes(root: Path, paths) -> list[np.ndarray | None]:
    """The difference hash of each image under root (`fingerprint_images`), None where it cannot be
    decoded."""
    return fingerprint_images(root, paths)[1]


def file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
