"""Classification metrics as pure numpy functions (no torch): labels (N,) int, probs (N, C) float.

Rows whose label is -1 (unknown) are ignored by every function.
"""
from __future__ import annotations

import numpy as np


def _known(labels: np.ndarray, *arrays):
    m = labels >= 0
    return (labels[m], *[a[m] for a in arrays])


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int counts; row = true class, column = predicted class."""
    labels, preds = _known(labels, preds)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest probabilities."""
    labels, probs = _known(labels, probs)
    if len(labels) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((topk == labels[:, None]).any(1).mean())


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1, support), each (C,), from a confusion matrix; 0 where undefined."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def macro_f1(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in `labels`."""
    cm = confusion_matrix(labels, preds, n_classes)
    _, _, f1, support = per_class_prf(cm)
    present = support > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def bootstrap_interval(correct: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean: correct (n,) 0/1 per test painting -> (low, high).
    The test split is small (155-262 paintings per task), so a point estimate alone over-claims."""
    correct = np.asarray(correct, dtype=float)
    if len(correct) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(n_boot, len(correct)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Everything reported for one task: top-1/top-5, macro/weighted F1, per-class report, confusion."""
    n = len(class_names)
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds, n)
    precision, recall, f1, support = per_class_prf(cm)
    present = support > 0
    known = int((labels >= 0).sum())
    m = labels >= 0
    return {
        "n": known,
        "top1": top_k_accuracy(labels, probs, 1),
        "top1_ci95": list(bootstrap_interval(preds[m] == labels[m])),
        "top5": top_k_accuracy(labels, probs, 5),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else float("nan"),
        "per_class_recall": {class_names[i]: float(recall[i]) for i in np.flatnonzero(present)},
        "report": {class_names[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                    "f1": float(f1[i]), "support": int(support[i])}
                   for i in np.flatnonzero(present)},
        "confusion_matrix": cm.tolist(),
        "classes": class_names,
    }


def paired_gain(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                seed: int = 0) -> tuple[float, float, float]:
    """Mean gain of B over A on the same paintings and its percentile bootstrap interval, resampling
    paintings (pairs), not each side alone: correct_a, correct_b (n,) 0/1 -> (gain, low, high).
    Pairing removes the between-painting spread that two separate intervals both carry."""
    d = np.asarray(correct_b, dtype=float) - np.asarray(correct_a, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_interval(d, n_boot, level, seed)
    return float(d.mean()), low, high
