"""Label Studio's own check of what `artlens export --label-studio` wrote, and a Label Studio export
made from it: run with the label-studio-sdk (`.venv-labelstudio/bin/python`, `make labelstudio`),
not inside the artlens environment (the SDK pins its own numpy).

    python bench/labelstudio_check.py CONFIG.xml TASKS.json EXPORT_OUT.json

Validates the labeling config, every task's data and every prediction with the SDK's
LabelInterface; then writes a JSON export of those tasks as Label Studio would after a review:
annotations built by the SDK's own region builder (even tasks: the given label kept; odd tasks:
the prediction accepted; the first task also has a cancelled annotation; the last task none).
Prints a JSON summary; exits 1 with the SDK's messages if anything is invalid.
"""
import json
import sys

from label_studio_sdk.label_interface import LabelInterface


def main(config_path: str, tasks_path: str, export_path: str) -> int:
    li = LabelInterface(open(config_path).read())
    li.validate()
    tasks = json.load(open(tasks_path))
    control = next(c for c in li.controls if c.tag.lower() == "choices")
    errors = []
    export = []
    for i, t in enumerate(tasks):
        # the data alone: the SDK's validate_task calls validate_prediction() without its argument
        # when a task has predictions (label-studio-sdk 2.1.2), so those are checked one by one below
        if not li.validate_task({"data": t["data"]}):
            errors.append(f"task {i}: data does not fit the config: {sorted(t['data'])}")
        for p in t.get("predictions", []):
            errors += [f"task {i}: {e}" for e in li.validate_prediction(p, return_errors=True)]
        given = t["data"]["given"]
        predicted = t["predictions"][0]["result"][0]["value"]["choices"][0] if t.get("predictions") else given
        choice = given if i % 2 == 0 or given not in control.labels else predicted
        if choice not in control.labels:
            choice = control.labels[0]
        annotations = []
        if i == 0:
            annotations.append({"id": 9000, "completed_by": 3, "was_cancelled": True, "result": []})
        if i < len(tasks) - 1:
            region = json.loads(control.label([choice]).to_json())
            annotation = {"id": 1000 + i, "completed_by": {"id": 7, "email": "curator@example.org"},
                          "was_cancelled": False, "result": [region], "lead_time": 4.2}
            if not li.validate_annotation(annotation):
                errors.append(f"task {i}: the SDK's own annotation does not validate")
            annotations.append(annotation)
        export.append({"id": i + 1, "data": t["data"], "annotations": annotations,
                       "predictions": t.get("predictions", [])})
    json.dump(export, open(export_path, "w"), indent=1)
    print(json.dumps({"tasks": len(tasks), "errors": errors, "labels": len(control.labels)}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
