"""What the dashboard (and `artlens export`) asks of the store, as plain functions.

`Artlens` bundles the read-only store, the FAISS index, the tag log and the data root. It holds
the logic the UI must not: neighbour search, review queues, path safety, exports.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from db.schema import AGAINST, MIXED, SUPPORTS
from db.store import Paths, Store, StoreError
from db.tags import open_tag_log
from embeddings.evidence import KINDS
from embeddings.index import load_index, search
from embeddings.detectors import DETECTORS
from embeddings.quality import FLAGS as QUALITY_FLAGS
from embeddings.quality import PHOTO_DEFECTS, flag_counts
from trainer.data import IMAGE_SUFFIXES

UPLOAD_MAX_BYTES = 20 * 1024 * 1024
# what the Neighbours page's upload takes: every kind of file a collection's paintings may be
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]


def safe_image_path(data_root: str | Path, rel: str) -> Path | None:
    """The file for `rel` if it lies inside data_root after resolving symlinks, else None: a path
    from the database never leads out of the data (`..` and absolute paths are refused, and so is
    a link out, with one exception). A folder link directly inside data_root is part of the data
    set: a manifest beside linked class folders, as `make bench-noise` writes its noisy copies and
    a user relabels a collection without copying it; training reads through such links, so the
    dashboard shows what lies inside their targets (and nothing that links out of those)."""
    if not rel or os.path.isabs(rel) or "\x00" in rel or ".." in Path(rel).parts:
        return None
    root = Path(data_root).resolve()
    try:
        p = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    allowed = [root]
    top = root / Path(rel).parts[0]
    if top.is_symlink() and top.is_dir():
        allowed.append(top.resolve())
    if not any(p == r or r in p.parents for r in allowed):
        return None
    return p if p.is_file() else None


def _and(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def thumbnail_bytes(path: Path, size: int = 256) -> bytes:
    """JPEG bytes of the image scaled to fit size x size (a grey tile if it cannot be decoded)."""
    from trainer.data import load_image
    try:
        im = load_image(path)
    except ValueError:
        im = Image.new("RGB", (size, size), (200, 200, 200))
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class Artlens:
    def __init__(self, paths: Paths, data_root: str | Path | None = None):
        self.paths = paths
        self.store = Store(paths.store)
        self.info = self.store.info()
        self.run = self.store.run()
        self.run_id = self.info.get("run_id", "")
        self.data_root = Path(data_root or self.info["data_root"])
        self.tags = open_tag_log(paths.tags)
        self._index = None
        self._folds = None   # trainer.checkpoint.FoldIndex, read on the first Grad-CAM
        # the ranking the Review page opens with: chosen by `make embed` (store_info.review_default)
        default = self.info.get("review_default", "consensus")
        self.review_default = default if default in DETECTORS else "consensus"

    def close(self) -> None:
        self.store.close()

    # --- neighbours
    @property
    def index(self):
        if self._index is None:
            self._index = load_index(self.paths.index)
            n = self.store.counts()["paintings"]
            if self._index.ntotal != n:
                raise StoreError(f"{self.paths.index} holds {self._index.ntotal} vectors but the store has {n} "
                                 "paintings: re-run `make embed`")
        return self._index

    def neighbours(self, image_id: int, k: int = 6) -> pd.DataFrame:
        """The k nearest other paintings: image_id, path, similarity (cosine), plus labels of `task` later."""
        vec = self.store.vectors([image_id])
        if len(vec) == 0:
            raise KeyError(f"no painting with id {image_id}")
        sim, ids = search(self.index, vec, k + 1)
        keep = (ids[0] >= 0) & (ids[0] != image_id)
        return pd.DataFrame({"image_id": ids[0][keep][:k], "similarity": sim[0][keep][:k]})

    def neighbours_of_vector(self, vec: np.ndarray, k: int = 6) -> pd.DataFrame:
        sim, ids = search(self.index, np.atleast_2d(vec).astype(np.float32), k)
        keep = ids[0] >= 0
        return pd.DataFrame({"image_id": ids[0][keep], "similarity": sim[0][keep]})

    def neighbour_table(self, task: str, nb: pd.DataFrame) -> pd.DataFrame:
        """Neighbours joined with their given/predicted labels for `task`, nearest first."""
        rows = self.store.paintings(task, nb["image_id"].tolist())
        return nb.merge(rows, on="image_id", how="left")

    # --- labels
    def top3_text(self, task: str, row) -> list[tuple[str, float]]:
        names = self.class_names(task)
        if row is None or row.get("top3") is None:
            return []
        return [(names[int(c)], float(p)) for c, p in zip(row["top3"], row["top3_probs"])]

    def suggested_label(self, image_id: int, task: str, given: str, top: list[tuple[str, float]]) -> str | None:
        """The label the tag form offers first: the class all kinds of evidence together favour
        (the card's combined line) where it is not the given one, else the model's top class (`top`,
        `top3_text`). The model alone may point elsewhere (Snyders' *Fish market*: model
        religious_painting, all kinds together genre_painting, its copy's label)."""
        ev = self.store.evidence_of(image_id, task)
        best = ev.loc[ev["kind"] == "combined", "best"]
        if len(best) and best.iloc[0] is not None and best.iloc[0] != given:
            return str(best.iloc[0])
        return top[0][0] if top else None

    def evidence_card(self, image_id: int, task: str) -> tuple[list[tuple[str, str]], str]:
        """Why a painting is in the queue: ([(verdict, line)] one per kind of evidence, model and
        look-alikes first; a summary: which kinds are against the label and which support it, and
        where no kind is decisive alone, which ones lean the same way and what they say together).
        Empty for a store written before the evidence table."""
        ev = self.store.evidence_of(image_id, task)
        if ev.empty:
            return [], ""
        combined = ev[ev["kind"] == "combined"]
        ev = ev[ev["kind"] != "combined"]
        lines = [(r.verdict, r.line + self._copy_paths(image_id, task) if r.kind == "copies" else r.line)
                 for r in ev.itertuples() if r.line]
        kinds = ev[ev["kind"].isin(KINDS)]
        name = {"copies": "its copies"}
        named = [name.get(k, f"the {k}") for k in kinds["kind"]]
        against = [n for n, v in zip(named, kinds["verdict"]) if v == AGAINST]
        support = [n for n, v in zip(named, kinds["verdict"]) if v == SUPPORTS]
        parts = []
        if against:
            odd = " (only the look is odd: check the metadata before calling it wrong)" \
                if against == ["the look"] and not support else ""
            parts.append(f"Against the label: {_and(against)}{odd}")
        if support:
            parts.append(f"For it: {_and(support)}")
        if len(combined) and combined["verdict"].iloc[0] != SUPPORTS:
            # kinds that are not decisive alone can still agree: each finds the same other class likeliest
            alt = combined["best"].iloc[0]
            lean = [n for n, v, b in zip(named, kinds["verdict"], kinds["best"]) if v == MIXED and b == alt]
            if lean:
                also = "also " if against else ""
                verb = f"each {also}find" if len(lean) > 1 else f"{also}finds"
                parts.append(f"Not decisive alone, {_and(lean)} {verb} {alt} likeliest")
        summary = ". ".join(parts) if parts else "No kind of evidence is clearly for or against the label"
        if len(combined):
            summary += f". {combined['line'].iloc[0]}"
        return lines, summary

    def _copy_paths(self, image_id: int, task: str) -> str:
        """Where the copies the `copies` line counts are filed (" The copy: `path` (label)."), so a
        reviewer can open them."""
        image = self.store.image_by_id(image_id)
        copies = self.store.other_label_copies(task, [image["path"]]) if image is not None else None
        if copies is None or copies.empty:
            return ""
        return (f" The cop{'y' if len(copies) == 1 else 'ies'}: "
                + ", ".join(f"`{c.copy_path}` ({c.given})" for c in copies.itertuples()) + ".")

    def leaky_duplicates(self) -> tuple[str, pd.DataFrame]:
        """(a sentence, the paintings) for duplicate groups that cross splits: a painting in test
        with a copy in train or val is scored from memory (the final model trains on both)."""
        rows = self.store.duplicates_across_splits()
        if rows.empty:
            return "", rows
        groups = rows.groupby("group_id")
        test = sum(1 for _, g in groups if "test" in set(g["split"]))
        exact = int(groups["exact"].first().sum())
        n = groups.ngroups
        text = (f"{n} group{'s' * (n != 1)} of duplicate paintings ({exact} of identical files) "
                f"{'sit' if n != 1 else 'sits'} in more than one split; {test} put{'s' * (test == 1)} a painting in test "
                "while a copy is in train or val, so part of the test score is memory, not generalisation.")
        return text, rows

    def image_quality(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(one row per quality flag: flag, meaning, paintings, whether the Review default leaves them
        out; the flagged paintings: image_id, path, flags). Both empty for a store from before image
        quality was measured."""
        flagged = self.store.quality_flags()
        if not self.store.has_quality():
            return pd.DataFrame(columns=["flag", "meaning", "paintings", "in the Review default"]), flagged
        counts = flag_counts(flagged["flags"])
        summary = pd.DataFrame([{"flag": f, "meaning": m, "paintings": int(counts.get(f, 0)),
                                 "in the Review default": "left out" if f in PHOTO_DEFECTS else "kept"}
                                for f, m in QUALITY_FLAGS])
        return summary, flagged

    def quality_of(self, image_id: int) -> list[tuple[str, str]]:
        """[(flag, meaning)] of one painting's image."""
        rows = self.store.quality_flags(image_id)
        names = rows["flags"].iloc[0].split(",") if len(rows) else []
        meaning = dict(QUALITY_FLAGS)
        return [(f, meaning.get(f, "")) for f in names if f]

    def class_names(self, task: str) -> list[str]:
        return self.store.class_names(task)

    def image_file(self, rel: str) -> Path | None:
        return safe_image_path(self.data_root, rel)

    # --- evidence
    def fold_of(self, rel: str) -> int | None:
        """The cross-fitting fold that held the painting at `rel` out, if the run kept its head."""
        if self._folds is None:
            from trainer.checkpoint import FoldIndex
            self._folds = FoldIndex(Path(self.info["run_dir"]))
        return self._folds.fold_of(rel)

    def gradcam_panels(self, embedder_for, rel: str, task: str, given: str | None) -> list[tuple[str, bytes]]:
        """[(caption, PNG bytes)]: Grad-CAM for the given label and for the top class the pages show
        (the store's cross-fitted prediction; embeddings.explain), for the painting at `rel`, drawn
        by the fold head that never saw its label (`embedder_for(fold)`; fold None = the final
        model, for a run that kept no fold heads); [] if its file cannot be read."""
        from embeddings.explain import explanation_panels
        from trainer.data import load_image
        f = self.image_file(rel)
        if f is None:
            return []
        try:
            img = load_image(f)
        except ValueError:
            return []
        embedder = embedder_for(self.fold_of(rel))
        names = embedder.record.classes[task]
        top = self.store.given_and_predicted(rel, task)[1]    # the cross-fitted top the pages show
        out = []
        for caption, im in explanation_panels(embedder, img, task, names.index(given) if given in names else None,
                                              names.index(top) if top in names else None):
            buf = io.BytesIO()
            im.save(buf, "PNG")
            out.append((caption, buf.getvalue()))
        return out

    # --- review
    def reviewed_paths(self, task: str) -> set[str]:
        latest = self.tags.latest()
        return set(latest.loc[latest["task"] == task, "path"]) if len(latest) else set()

    def review_queue(self, task: str, detector: str, size: int = 200, min_score: float | None = None,
                     leave_out: Sequence[str] = PHOTO_DEFECTS) -> pd.DataFrame:
        """The next `size` most suspicious paintings for `task` that nobody has tagged yet, a picture
        filed twice under one label once (its copies are tagged with it: `tag`), without the
        paintings whose image has a quality flag in `leave_out` (embeddings.quality)."""
        return self.store.ranked(task, detector, limit=size, min_score=min_score,
                                 exclude_paths=self.reviewed_paths(task), one_per_copy=True,
                                 leave_out_flags=leave_out)

    def review_progress(self, task: str, detector: str, queue_size: int, min_score: float | None = None,
                        leave_out: Sequence[str] = PHOTO_DEFECTS) -> dict:
        """Reviewed of the queued paintings (top `queue_size` of the ranking), and precision so far."""
        latest = self.tags.latest()
        latest = latest[latest["task"] == task] if len(latest) else latest
        ranked = self.store.ranked(task, detector, limit=queue_size, min_score=min_score, one_per_copy=True,
                                   leave_out_flags=leave_out)
        in_queue = latest[latest["path"].isin(ranked["path"])] if len(latest) else latest
        reviewed = len(in_queue)
        mislabel = int((in_queue["decision"] == "mislabel").sum()) if reviewed else 0
        return {"reviewed": reviewed, "queued": len(ranked), "mislabel": mislabel,
                "precision": mislabel / reviewed if reviewed else float("nan")}

    def applied_tags_text(self) -> str:
        """One sentence on the review decisions the run trained with (`make train --apply-tags`), or ''."""
        import json
        a = json.loads(self.info.get("applied_tags") or "{}")
        if not a:
            return ""
        return (f"This run trained on the review decisions in `{a.get('tag_log')}`: {a['decisions']:,} decisions, "
                f"**{a['replaced']:,} labels replaced** by the suggested label, **{a['dropped']:,} dropped** "
                f"(mislabel without a suggestion), {a['kept']:,} kept. The store keeps both the given and the "
                "trained-on label; reviewed paintings stay out of the queue.")

    def review_decisions(self, depths: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(decision (N,) int: 1 mislabel, 0 correct, -1 none or unsure; sampled (N,) bool) for the
        rows of `review_depths`. Only decisions made on this run's ranking are a sample of it; one
        made on another run is a known outcome. A mislabel the run already trained away (its
        trained-on label differs from the given one: `--apply-tags`) is no longer a wrong label."""
        latest = self.tags.latest()
        mine = latest[latest["task"] == task] if len(latest) else latest
        if not len(mine):
            return np.full(len(depths), -1), np.ones(len(depths), bool)
        mine = mine.set_index("path")
        code = np.array(depths["path"].map(mine["decision"].map({"mislabel": 1, "correct": 0})).fillna(-1), int)
        run = depths["path"].map(mine["run_id"])
        sampled = (run.isna() | (run == self.run_id)).to_numpy()
        retrained = (depths["trained_on"].fillna("").to_numpy(object) != depths["label"].to_numpy(object))
        applied = (code == 1) & retrained
        code[applied] = 0
        return code, sampled & ~retrained

    def wrong_label_refined(self, task: str) -> dict:
        """The store's estimate of wrong labels refined by the review so far (embeddings.prevalence),
        over the review default's ranking; {} for a store without estimates."""
        from embeddings.prevalence import refined_wrong_label_estimate
        w = self.store.wrong_labels(task)
        if not w:
            return {}
        depths = self.store.review_depths(task, self.review_default)
        decision, sampled = self.review_decisions(depths, task)
        weight = depths["wrong_weight"].to_numpy(float)
        if np.isnan(weight).all():    # a store from before per-painting weights: no refinement possible
            return {**w, "reviewed": 0, "confirmed": 0, "refined": False}
        r = refined_wrong_label_estimate(depths["rank"].to_numpy(), weight, decision, w["low"], w["high"],
                                         sampled=sampled)
        confirmed = (pd.Series(decision == 1).groupby(depths["label"].to_numpy()).sum()
                     .rename("confirmed by review").rename_axis("label").reset_index())
        per_class = w["per_class"].merge(confirmed, on="label", how="left").fillna({"confirmed by review": 0})
        if r["reviewed"] == 0:
            return {**w, "per_class": per_class, "reviewed": 0, "confirmed": 0, "refined": False}
        return {**w, "model_estimate": w["estimate"], "model_low": w["low"], "model_high": w["high"],
                "estimate": r["estimate"], "low": r["low"], "high": r["high"], "reviewed": r["reviewed"],
                "confirmed": r["confirmed"], "strata": pd.DataFrame(r["strata"]), "per_class": per_class,
                "refined": True}

    def spot_check_queue(self, task: str, size: int = 50, seed: int | None = None) -> pd.DataFrame:
        """The next `size` untagged paintings of the spot check: random paintings from every depth of
        the review default's ranking in turn (`embeddings.prevalence.spot_check_order`). Deciding them
        replaces the model's guess of how many labels are wrong deep in the queue by an observed share.
        Same columns as `review_queue` (score NaN). The seed defaults to one per task, so the tasks'
        samples do not share their luck."""
        import zlib

        from embeddings.prevalence import spot_check_order
        depths = self.store.review_depths(task, self.review_default)
        order = spot_check_order(depths["rank"].to_numpy(), zlib.crc32(task.encode()) if seed is None else seed)
        open_ = ~depths["path"].iloc[order].isin(self.reviewed_paths(task)).to_numpy()
        pick = depths.iloc[order[open_][:size]]
        rows = self.store.paintings(task, pick["image_id"].tolist())
        return rows.assign(rank=pick["rank"].to_numpy(), score=np.nan, flag=False)

    def wrong_label_summary(self, task: str) -> tuple[str, pd.DataFrame | None]:
        """(a sentence: how many of the task's labels look wrong and what the review has confirmed,
        the per-class estimates most first); ("", None) for a store without estimates; (why not, None)
        where no label has the two kinds of evidence the count needs."""
        w = self.wrong_label_refined(task)
        if not w:
            return "", None
        words = {"look": "the look", "artist": "the artist's other paintings", "period": "the date",
                 "title": "the title", "copies": "a copy filed under another label"}
        held = self.store.evidence_kinds(task)
        kinds = ", ".join(words[k] for k in KINDS if k in held) or "the look"
        # a label is counted only where two kinds agree: one with a single kind never is
        alone = self.store.labels_unjudged(task)
        few = self.store.labels_with_few_kinds(task, list(KINDS)) if held else 0
        if few and few + alone == w["labelled"] and not w["refined"]:
            return (f"No {task} label can be counted as wrong: a label is counted only where two independent "
                    f"kinds of evidence agree, and here every one has fewer than two ({kinds}; no date, no "
                    "title, no other painting by the artist). A manifest's artist, title and date columns, or "
                    "WikiArt-style file names, add them. The evidence as a whole finds another class likelier "
                    f"than the given one for {w['high']:,.0f} of {w['labelled']:,}, the classifier's own "
                    "confusions included.", None)
        text = (f"About **{w['estimate']:,.0f}** of {w['labelled']:,} {task} labels look wrong "
                f"(range {w['low']:,.0f}–{w['high']:,.0f}")
        if w["refined"]:
            text += (f"; the evidence alone said {w['model_estimate']:,.0f}, refined by your {w['reviewed']:,} "
                     "decisions at each depth of the review queue)")
        else:
            text += (f"; counted where at least two independent kinds of evidence ({kinds}) agree on another "
                     "label and, weighing the catalogue's own "
                     "word, wrong is likelier than right. The range runs from three kinds agreeing to every "
                     "label the evidence as a whole finds less likely than another; only that high end "
                     "counts the classifier's own confusions. Labels given at artist level, which the "
                     "artist's other paintings then back, are under-counted, and when common fall even "
                     "beyond the high end)")
            if few:
                one = few == 1
                text += (f". {few:,} of these labels {'has' if one else 'have'} fewer than two kinds of evidence "
                         f"(no date, no title, no other painting by the artist here) and cannot be counted; "
                         f"{'if wrong, it is' if one else 'those that are wrong are'} in the high end only")
            if alone:
                one = alone == 1
                text += (f". {alone:,} {'label is' if one else 'labels are'} the only painting of {'its' if one else 'their'} "
                         f"class here: the evidence learns a class from its other paintings, so it cannot judge "
                         f"{'it' if one else 'them'}, and {'it is' if one else 'they are'} counted nowhere, "
                         "not even in the range")
        if w["reviewed"]:
            text += (f"; your review so far confirms {w['confirmed']} of {w['reviewed']} reviewed "
                     f"({w['confirmed'] / w['reviewed']:.0%})")
        return text + ".", w["per_class"]

    def spelling_variants(self, task: str) -> str:
        """A warning naming the task's classes that look like one class spelt two ways
        (`trainer.label_names`), with their paintings; "" when there are none."""
        from trainer.label_names import spelling_variants_line
        names = self.class_names(task)
        dist = self.store.label_distribution(task).set_index("label")["paintings"]
        return spelling_variants_line(task, names, [int(dist.get(n, 0)) for n in names])

    def other_spellings(self, task: str, given: str) -> list[str]:
        """The task's other class names that look like `given` spelt another way (`Pop_Art` for
        `pop art`), so a card can say its label may be one of them; [] when none."""
        from trainer.label_names import spelling_key
        key = spelling_key(given)
        return [n for n in self.class_names(task) if n != given and key and spelling_key(n) == key]

    def copies_of(self, path: str, task: str) -> pd.DataFrame:
        """The same picture filed again under the same label: copy_path, given, similarity."""
        return self.store.same_label_copies(task, [path])

    def _with_copies(self, task: str, rows: list[dict]) -> list[dict]:
        """rows plus, after each, its copies filed under the same label (same fields, their own path
        and sha1): a decision about a picture's label is a decision about every copy that carries it."""
        copies = self.store.same_label_copies(task, [r["path"] for r in rows]) if rows else None
        out, seen = [], {r["path"] for r in rows}
        for r in rows:
            out.append(r)
            for c in copies[copies["path"] == r["path"]].itertuples(index=False):
                if c.copy_path not in seen:
                    seen.add(c.copy_path)
                    out.append({**r, "path": c.copy_path, "sha1": c.copy_sha1})
        return out

    def tag(self, task: str, rows: pd.DataFrame, decision: str, reviewer: str, suggested: str | None = None,
            note: str | None = None) -> list[int]:
        """Tag every painting in `rows` (columns path, sha1, given), and its copies filed under the
        same label, with one decision, in one transaction."""
        return self.tags.add_many(self._with_copies(task, [
            dict(path=r.path, sha1=getattr(r, "sha1", None), task=task, decision=decision,
                 given_label=getattr(r, "given", None), suggested_label=suggested or None,
                 note=note or None, reviewer=reviewer, run_id=self.run_id) for r in rows.itertuples(index=False)]))

    # --- export
    def label_studio_queue(self, task: str, ranking: str | None = None, size: int = 200, spot: bool = False,
                           image_url: str = "/data/local-files/?d=") -> tuple[str, list[dict]]:
        """(labeling config XML, tasks) for the next `size` untagged paintings of the review queue (or
        of the spot check): dashboard/labelstudio.py. Each task's prediction is the likeliest class
        other than the given one; its data carries the evidence lines of the Review card."""
        from dashboard.labelstudio import label_config, queue_tasks
        ranking = ranking or self.review_default
        queue = self.spot_check_queue(task, size) if spot else self.review_queue(task, ranking, size)
        rows = []
        for r in queue.to_dict("records"):
            other = [(n, p) for n, p in self.top3_text(task, r) if n != r["given"]]
            lines, summary = self.evidence_card(int(r["image_id"]), task)
            rows.append({**r, "suggested": other[0][0] if other else None, "p_suggested": other[0][1] if other else 0.0,
                         "evidence": "\n".join([summary, *(f"{v}: {line}" for v, line in lines)]).strip()})
        version = f"artlens {self.run_id} {'spot check' if spot else ranking}"
        return label_config(task, self.class_names(task)), queue_tasks(rows, task, image_url, version)

    def import_label_studio(self, export: list[dict], task: str, reviewer: str = "") -> dict:
        """Record the decisions of a Label Studio JSON export in the tag log (one transaction);
        returns the counts of dashboard.labelstudio.decisions_from_export."""
        from dashboard.labelstudio import decisions_from_export
        rows, counts = decisions_from_export(export, task, self.class_names(task), reviewer)
        if rows:
            self.tags.add_many(self._with_copies(task, [{**r, "sha1": None, "run_id": self.run_id} for r in rows]))
        return counts

    def fiftyone_dataset(self) -> dict:
        """Every painting as a FiftyOne sample (dashboard/fiftyone_export.py): labels, the model's
        predictions, every detector's score, metadata, quality flags, the embedding and the tags."""
        from dashboard.fiftyone_export import fiftyone_samples
        cat = self.store.catalogue()
        tasks = {}
        for t in self.store.tasks():
            frame, probs = self.store.label_probabilities(t)
            names = np.array(self.class_names(t), dtype=object)
            rows = np.arange(len(frame))
            label = frame["label"].to_numpy(int)
            wide = pd.DataFrame({"given": names[label], "predicted": names[probs.argmax(1)],
                                 "confidence": probs.max(1), "p_given": probs[rows, label]},
                                index=frame["path"].to_numpy())
            scores = self.store.detector_scores(t).pivot(index="path", columns="detector", values="score")
            tasks[t] = (wide, scores)
        return fiftyone_samples(cat, self.data_root, tasks, self.store.vectors(cat["image_id"]), self.tags.latest())

    def tags_csv(self, history: bool = True) -> bytes:
        df = self.tags.history() if history else self.tags.latest()
        return df.to_csv(index=False).encode()

    def corrected_labels(self) -> dict[str, bytes]:
        """ArtGAN-layout files: {task}_{train,val}.csv ('path,index' rows, CRLF) and {task}_class.txt,
        with the given label replaced by the suggested one wherever the latest decision is `mislabel`."""
        latest = self.tags.latest()
        out: dict[str, bytes] = {}
        for task in self.store.tasks():
            df = self.store.export_labels(task, latest)
            for split in ("train", "val"):
                part = df[df["split"] == split]
                out[f"{task}_{split}.csv"] = "".join(f"{p},{int(c)}\r\n" for p, c in
                                                     zip(part["path"], part["class_index"])).encode()
            out[f"{task}_class.txt"] = "".join(f"{i} {n}\r\n" for i, n in enumerate(self.class_names(task))).encode()
        return out

    def manifest_path(self) -> Path | None:
        """The manifest CSV the store was embedded from (it may have moved since), or None where the
        collection was read from folders."""
        data = self.info.get("data", "")
        return Path(data) if data.lower().endswith(".csv") else None

    def corrected_manifest(self, manifest: str | Path | None = None) -> tuple[str, bytes, dict[str, int]] | None:
        """(file name, CSV bytes, counts) of the manifest (default: the store's own) with every
        `mislabel` decision's suggested label in its label column (trainer.relabel.corrected_manifest);
        None without a manifest. StoreError if the manifest is not there."""
        from trainer.relabel import corrected_manifest
        path = Path(manifest) if manifest else self.manifest_path()
        if path is None:
            return None
        if not path.is_file():
            raise StoreError(f"manifest {path} is not there" + ("" if manifest else " (moved since `make embed`?)"))
        data, counts = corrected_manifest(path, self.tags.latest())
        return f"{path.stem}_corrected.csv", data, counts

    def exports(self, manifest: str | Path | None = None, skip_missing: bool = False
                ) -> tuple[dict[str, bytes], dict[str, int] | None, str]:
        """({file name: bytes} of every export file, the corrected manifest's counts or None, '' or why
        the manifest is left out (skip_missing: a manifest that is not there or cannot be read; else
        StoreError / UserError))."""
        from trainer.cli import UserError
        files = {**self.corrected_labels(), "tags.csv": self.tags_csv()}
        try:
            fixed = self.corrected_manifest(manifest)
        except (StoreError, UserError) as e:
            if not skip_missing:
                raise
            return files, None, str(e)
        if fixed is not None:
            files[fixed[0]] = fixed[1]
        return files, fixed[2] if fixed else None, ""

    def corrected_labels_zip(self) -> tuple[bytes, str]:
        """(the export files as a zip, '' or why the corrected manifest is not in it)."""
        files, _, missing = self.exports(skip_missing=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
        return buf.getvalue(), missing

    def write_exports(self, out_dir: str | Path, manifest: str | Path | None = None
                      ) -> tuple[list[Path], dict[str, int] | None]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files, counts, _ = self.exports(manifest)
        for name, data in files.items():
            (out / name).write_bytes(data)
        return [out / name for name in files], counts


def decode_upload(data: bytes) -> Image.Image:
    """Decode uploaded bytes safely (size cap, decompression-bomb guard) as RGB; ValueError if not an image."""
    import tempfile

    from trainer.data import load_image
    if len(data) > UPLOAD_MAX_BYTES:
        raise ValueError(f"upload is {len(data) / 1e6:.1f} MB; the limit is {UPLOAD_MAX_BYTES / 1e6:.0f} MB")
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        return load_image(Path(f.name))
