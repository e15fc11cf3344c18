"""Label Studio round trip, as plain functions (dicts and JSON in, dicts out).

Out: the review queue as Label Studio tasks, one per painting, with a single-choice question over
the task's classes, the given label and the evidence lines in the task data, and artlens's
suggested label as a prediction (Label Studio shows it as a pre-annotation). In: a Label Studio
JSON export of those tasks becomes review decisions: the given label chosen = `correct`, another
class chosen = `mislabel` with that class suggested; skipped (cancelled) annotations and tasks
nobody annotated give none. Formats: Label Studio's labeling config XML, task import JSON and
JSON export (checked with the label-studio-sdk in `tests/test_labelstudio.py`).
"""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

IMAGE = "image"   # the Image object tag's name in the config, and the task data key holding the URL


def label_config(task: str, classes: list[str]) -> str:
    """The labeling config (XML) for one task: the painting, its given label and the evidence,
    and one single choice over `classes`."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{IMAGE}" value="${IMAGE}" zoom="true"/>\n'
            f'  <Header value={quoteattr(f"Given {task}: $given")}/>\n'
            '  <Text name="evidence" value="$evidence"/>\n'
            f'  <Choices name={quoteattr(task)} toName="{IMAGE}" choice="single-radio" showInline="false" '
            'required="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def queue_tasks(rows: list[dict], task: str, image_url: str, model_version: str) -> list[dict]:
    """Label Studio tasks for queue rows {image_id, path, given, suggested, p_suggested, evidence, rank}.

    image_url: a prefix the painting's path (relative to the data root) is appended to, e.g.
    Label Studio's local-files route `/data/local-files/?d=` or an HTTP server of the data folder.
    """
    out = []
    for r in rows:
        data = {IMAGE: f"{image_url}{r['path']}", "path": r["path"], "given": r["given"] or "(none)",
                "evidence": r.get("evidence") or "", "artlens_image_id": int(r["image_id"]), "artlens_task": task,
                "artlens_rank": int(r["rank"]) if r.get("rank") is not None else None}
        item = {"data": data}
        if r.get("suggested"):
            item["predictions"] = [{"model_version": model_version, "score": round(float(r["p_suggested"]), 4),
                                    "result": [{"from_name": task, "to_name": IMAGE, "type": "choices",
                                                "value": {"choices": [r["suggested"]]}}]}]
        out.append(item)
    return out


def decisions_from_export(export: list[dict], task: str, classes: list[str], reviewer: str = "") -> tuple[list[dict], dict]:
    """(tag log rows, counts) from a Label Studio JSON export (a list of tasks with `annotations`).

    Per task the last annotation that was not cancelled and chose a class of `task` decides; its
    annotator (`completed_by`) is the reviewer unless `reviewer` is given. Raises ValueError naming
    the task for a choice that is not a class, or a task that lost its `path`."""
    rows, counts = [], {"tasks": len(export), "decisions": 0, "skipped": 0, "unannotated": 0}
    for t in export:
        data = t.get("data") or {}
        chosen = None
        annotation = None
        for a in t.get("annotations") or []:
            if a.get("was_cancelled"):
                continue
            picked = [r["value"]["choices"] for r in a.get("result") or []
                      if r.get("from_name") == task and r.get("type") == "choices" and r.get("value", {}).get("choices")]
            if picked:
                chosen, annotation = picked[-1][0], a
        if annotation is None:
            counts["skipped" if t.get("annotations") else "unannotated"] += 1
            continue
        where = f"Label Studio task {t.get('id', '?')}"
        if not data.get("path"):
            raise ValueError(f"{where}: its data has no 'path' (not a task artlens exported)")
        if chosen not in classes:
            raise ValueError(f"{where}: choice {chosen!r} is not a {task} class")
        given = data.get("given")
        who = reviewer or _annotator(annotation.get("completed_by"))
        rows.append({"path": data["path"], "task": task, "decision": "correct" if chosen == given else "mislabel",
                     "given_label": given if given in classes else None,
                     "suggested_label": None if chosen == given else chosen, "reviewer": who,
                     "note": f"Label Studio task {t.get('id', '?')}, annotation {annotation.get('id', '?')}"})
        counts["decisions"] += 1
    return rows, counts


def _annotator(completed_by) -> str:
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or "label-studio")
    return f"label-studio user {completed_by}" if completed_by is not None else "label-studio"
