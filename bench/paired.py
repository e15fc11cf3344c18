"""`artlens bench paired --a RUN --b RUN`: two training runs' cross-fitted top-1 on the same
paintings, and B's gain over A with a paired bootstrap interval.

The cross-fitted softmax (runs/<id>/crossfit.npz, what `make train` writes and the detectors use)
covers every labelled painting, ten times the test split, and two runs with the same seed and data
hold the same paintings out in the same folds; resampling paintings as pairs gives an interval of
the gain itself, much tighter than two separate intervals. Prints a table; --out writes JSON.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from trainer.cli import UserError, field, parse_config, run_cli


@dataclass
class PairedConfig:
    a: str = field("", "baseline run folder (runs/<id>)")
    b: str = field("", "the run compared with it")
    out: str = field("", "also write the result as JSON here")


def check_run(run: str) -> None:
    """One clear error unless `run` holds what a comparison reads."""
    d = Path(run)
    if not (d / "crossfit.npz").is_file() or not (d / "metrics.json").is_file():
        raise UserError(f"{d}: no crossfit.npz and metrics.json (train it with --folds 2 or more)")


def load_run(run: str):
    """(metrics.json dict, CrossFit) of a checked run folder."""
    from trainer.crossfit import CrossFit
    d = Path(run)
    return json.loads((d / "metrics.json").read_text()), CrossFit.load(d / "crossfit.npz")


def compare(cfg: PairedConfig) -> dict:
    check_run(cfg.a)
    check_run(cfg.b)   # both before loading either: CrossFit's import loads FAISS, whose loader logs
    from trainer.data import load_paintings
    from trainer.metrics import bootstrap_interval, paired_gain
    (ma, ca), (mb, cb) = load_run(cfg.a), load_run(cfg.b)
    if ma["data_hash"] != mb["data_hash"] or not np.array_equal(ca.paths, cb.paths) \
            or not np.array_equal(ca.fold, cb.fold):
        raise UserError(f"{cfg.a} and {cfg.b} did not cross-fit the same paintings in the same folds "
                        "(same data and --seed needed)")
    ps = load_paintings(ma["data"], 0.0, 0)   # labels only: the split does not matter here
    where = {p: i for i, p in enumerate(ps.frame["path"])}
    rows = np.array([where[p] for p in ca.paths])
    out = {"a": cfg.a, "b": cfg.b, "tasks": {}}
    for t in ca.probs:
        y = ps.labels(t)[rows]
        known = y >= 0
        right_a = ca.probs[t][known].argmax(1) == y[known]
        right_b = cb.probs[t][known].argmax(1) == y[known]
        gain, low, high = paired_gain(right_a, right_b)
        out["tasks"][t] = {"n": int(known.sum()), "a_top1": float(right_a.mean()), "a_ci95": bootstrap_interval(right_a),
                           "b_top1": float(right_b.mean()), "b_ci95": bootstrap_interval(right_b),
                           "gain": gain, "gain_ci95": [low, high]}
    return out


def table(res: dict) -> str:
    lines = [f"| task | n | A: {res['a']} | B: {res['b']} | gain B - A (95% CI, paired) |", "|---|---|---|---|---|"]
    for t, r in res["tasks"].items():
        lines.append(f"| {t} | {r['n']} | {r['a_top1']:.3f} ({r['a_ci95'][0]:.3f}-{r['a_ci95'][1]:.3f}) | "
                     f"{r['b_top1']:.3f} ({r['b_ci95'][0]:.3f}-{r['b_ci95'][1]:.3f}) | "
                     f"{100 * r['gain']:+.1f} points ({100 * r['gain_ci95'][0]:+.1f} to {100 * r['gain_ci95'][1]:+.1f}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_config(PairedConfig, argv, "artlens bench paired", __doc__.split("\n\n")[0])
    if not cfg.a or not cfg.b:
        raise UserError("give both runs: --a runs/<baseline> --b runs/<other>")
    res = compare(cfg)
    print(table(res))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    sys.exit(run_cli(main))
