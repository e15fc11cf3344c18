"""`artlens bench audit` (`make bench-audit`): how many of each ranking's top paintings a blind
panel found really mislabelled, on a store `make train embed` built from real labels.

Injected flips measure a detector; this measures the product: for every ranking stored in the
`scores` table, the paintings in its top k (k = 20, 50) that the audit calls wrong, plainly right
or debatable, and how many nobody audited (never counted as either). Beside it, the store's count
of wrong labels and the audit's own estimate. The audit is a check, never training data: nothing
in the product reads it.

Audit file: `path,task,given_label,verdict,...` (verdict: wrong | right | debatable), e.g.
../shared/data/wikiart-mini/audit.csv. Writes bench/audit.json and bench/audit.md.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.suggestions import queue_suggestions, suggestion_hits
from db.store import Store, StoreError
from embeddings.quality import PHOTO_DEFECTS
from trainer.cli import UserError, field, parse_config

log = logging.getLogger("bench.audit")
VERDICTS = ("wrong", "right", "debatable")


@dataclass
class AuditConfig:
    store: str = field("artlens.duckdb", "store built by `make train embed` on the collection's real labels")
    audit: str = field("../shared/data/wikiart-mini/audit.csv", "panel verdicts: path,task,given_label,verdict")
    top: list[int] = field([20, 50], "depths of the queue to grade")
    out: str = field("bench/audit.json", "result file (a markdown table is written beside it)")


def read_audit(path: str | Path) -> pd.DataFrame:
    """The audit's rows (path, task, given_label, verdict), checked: one clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no audit file at {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise UserError(f"{path}: cannot read the audit CSV ({str(e).strip()[:120]})") from None
    missing = [c for c in ("path", "task", "verdict") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: audit is missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    bad = sorted(set(df["verdict"]) - set(VERDICTS))
    if bad:
        raise UserError(f"{path}: unknown verdict(s) {bad[:3]}; expected one of {', '.join(VERDICTS)}")
    return df


def grade_top(ranked_paths: list[str], verdict_of: dict[str, str], k: int) -> dict:
    """{wrong, right, debatable, unaudited, k} among the first k paths of a ranking."""
    top = ranked_paths[:k]
    v = [verdict_of.get(p, "unaudited") for p in top]
    return {**{x: v.count(x) for x in (*VERDICTS, "unaudited")}, "k": len(top)}


def unaudited_evidence(store: Store, task: str, verdict_of: dict[str, str], ranking: str, k: int) -> list[dict]:
    """The paintings in the top k of `ranking`'s queue that nobody audited, each with the evidence
    lines that put it there (they are the next ones to audit): [{rank, path, lines: ["verdict: line"]}]."""
    top = store.ranked(task, ranking, limit=k, one_per_copy=True, leave_out_flags=PHOTO_DEFECTS)
    out = []
    for r in top.itertuples():
        if r.path in verdict_of:
            continue
        ev = store.evidence_of(int(r.image_id), task)
        out.append({"rank": int(r.rank), "path": r.path,
                    "lines": [f"{e.verdict}: {e.line}" for e in ev.itertuples() if e.line]})
    return out


def audit_suggestions(store_path: str | Path, task: str, audit: pd.DataFrame, classes: list[str],
                      top: Sequence[int]) -> dict:
    """{k: {verdict: {n, suggested_right, model_top_right}}} for the audited-wrong and debatable
    paintings in the Review queue's first k whose panel named a better label among the collection's
    classes (`bench.suggestions`): how often the card's suggested label is the panel's."""
    if "better_label" not in audit.columns:
        return {}
    rows = audit[(audit["task"] == task) & audit["better_label"].isin(classes)]
    queue = queue_suggestions(store_path, task, max(top))
    out = {}
    for k in top:
        first = queue.head(k)
        out[str(k)] = {v: suggestion_hits(first, dict(rows.loc[rows["verdict"] == v, ["path", "better_label"]]
                                                       .itertuples(index=False)))
                       for v in ("wrong", "debatable")}
    return out


def check_audit_in_store(audit: pd.DataFrame, store: Store, cfg: AuditConfig) -> None:
    """An audit of another collection, or one whose paths are written another way, would grade every
    ranking as all unaudited: say so in one line instead; log how many verdicts the store holds."""
    paths = store.images()["path"]
    inside = audit["path"].isin(set(paths))
    if not inside.any():
        raise UserError(f"{cfg.audit}: none of its {len(audit)} audited paintings is in {cfg.store} (the audit names "
                        f"{audit['path'].iloc[0]!r}, the store {paths.iloc[0] if len(paths) else 'nothing'!r}): an "
                        "audit of another collection, or paths written another way (relative to the data root)")
    if not inside.all():
        log.info("%d of the audit's %d verdicts are on paintings in %s; the others are left out",
                 int(inside.sum()), len(audit), cfg.store)


def audit_store(cfg: AuditConfig) -> dict:
    audit = read_audit(cfg.audit)
    try:
        store = Store(cfg.store)
    except StoreError as e:
        raise UserError(str(e)) from None
    try:
        check_audit_in_store(audit, store, cfg)
        info = store.info()
        result = {"store": str(cfg.store), "audit": str(cfg.audit), "run_id": info.get("run_id"),
                  "review_default": info.get("review_default"), "command": "make bench-audit", "tasks": {}}
        for task in sorted(set(audit["task"]) & set(store.tasks())):
            verdict_of = dict(audit.loc[audit["task"] == task, ["path", "verdict"]].itertuples(index=False))
            rankings, unscored = {}, []
            for det in store.detectors():
                # the queue as the Review page shows it: a picture filed twice under one label once,
                # photo defects left out
                paths = store.ranked(task, det, limit=max(cfg.top), one_per_copy=True,
                                     leave_out_flags=PHOTO_DEFECTS)["path"].tolist()
                if not paths:          # a detector with nothing to say about this task (period on genre)
                    unscored.append(det)
                    continue
                rankings[det] = {str(k): grade_top(paths, verdict_of, k) for k in cfg.top}
            w = store.wrong_labels(task)
            result["tasks"][task] = {"rankings": rankings, "unscored": unscored, "audited": len(verdict_of),
                                     "suggestions": audit_suggestions(cfg.store, task, audit, store.class_names(task),
                                                                      cfg.top),
                                     "store_count": {k: w.get(k) for k in ("estimate", "low", "high", "labelled")},
                                     "unaudited_in_default": unaudited_evidence(store, task, verdict_of,
                                                                                result["review_default"], cfg.top[0])}
    finally:
        store.close()
    return result


def markdown(result: dict, top: Sequence[int]) -> str:
    """One table per task: wrong / right / debatable / unaudited in each ranking's top k."""
    default = result.get("review_default")
    out = [f"`make bench-audit` on {result['store']} (run {result['run_id']}), audit {result['audit']}"]
    for task, r in result["tasks"].items():
        c = r["store_count"]
        out += ["", f"**{task}**: the store counts {c['estimate']:.0f} wrong labels "
                    f"({c['low']:.0f}-{c['high']:.0f}) of {c['labelled']}" if c.get("estimate") is not None else "",
                "", "| ranking | " + " | ".join(f"top {k}: wrong / right / debatable / unaudited" for k in top) + " |",
                "|---|" + "---|" * len(top)]
        order = sorted(r["rankings"], key=lambda d: (-r["rankings"][d][str(top[0])]["wrong"],
                                                     r["rankings"][d][str(top[0])]["right"], d))
        for det in order:
            g = r["rankings"][det]
            name = f"**{det}** (default)" if det == default else f"`{det}`"
            out.append(f"| {name} | " + " | ".join(f"{g[str(k)]['wrong']} / {g[str(k)]['right']} / "
                                                    f"{g[str(k)]['debatable']} / {g[str(k)]['unaudited']}"
                                                    for k in top) + " |")
        if r.get("unscored"):
            out += ["", f"No {task} scores (nothing to say about this task): "
                        + ", ".join(f"`{d}`" for d in r["unscored"])]
        sg = r.get("suggestions") or {}
        if sg:
            out += ["", f"The label the Review card suggests ({task}) is the panel's better label (where that is "
                        "one of the collection's classes), in the default queue's", ""]
            out += [f"- top {k}: " + "; ".join(f"for {h['suggested_right']} of the {h['n']} {v} "
                                              f"(the model's first choice for {h['model_top_right']})"
                                              for v, h in by.items()) for k, by in sg.items()]
        un = r.get("unaudited_in_default") or []
        if un:
            out += ["", f"Not audited in the top {top[0]} of `{default}` ({task}), with the evidence that put them there:", ""]
            for u in un:
                out.append(f"- {u['rank']}. `{u['path']}`")
                out += [f"  - {line}" for line in u["lines"]]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_config(AuditConfig, argv, "artlens bench audit", __doc__.split("\n\n")[0])
    result = audit_store(cfg)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = markdown(result, cfg.top)
    out.with_suffix(".md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    import sys

    from trainer.cli import run_cli
    sys.exit(run_cli(main))
