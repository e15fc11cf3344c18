"""Training plots: loss curves and the confusion matrix of the 10 most frequent classes, PNG + HTML."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def top_confusion(cm: np.ndarray, classes: list[str], k: int = 10) -> tuple[np.ndarray, list[str]]:
    """Sub-matrix (k, k) of the k classes with most true examples, and their names."""
    cm = np.asarray(cm)
    keep = np.argsort(-cm.sum(1), kind="stable")[:k]
    keep = keep[cm.sum(1)[keep] > 0]
    return cm[np.ix_(keep, keep)], [classes[i] for i in keep]


def write_plots(run_dir: Path, history: list[dict], test_metrics: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [h["train_loss"] for h in history], label="train loss")
    if history and "val_loss" in history[0]:
        ax.plot(ep, [h["val_loss"] for h in history], label="val loss")
        ax2 = ax.twinx()
        ax2.plot(ep, [h["val_macro_f1"] for h in history], "g--", label="val macro-F1")
        ax2.set_ylabel("val macro-F1")
    ax.set_xlabel("epoch")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png", dpi=100)
    plt.close(fig)
    pf = go.Figure()
    pf.add_scatter(x=ep, y=[h["train_loss"] for h in history], name="train loss")
    if history and "val_loss" in history[0]:
        pf.add_scatter(x=ep, y=[h["val_loss"] for h in history], name="val loss")
        pf.add_scatter(x=ep, y=[h["val_macro_f1"] for h in history], name="val macro-F1", yaxis="y2")
        pf.update_layout(yaxis2=dict(overlaying="y", side="right", title="macro-F1"))
    pf.update_layout(title="loss curves", xaxis_title="epoch")
    pf.write_html(run_dir / "loss.html", include_plotlyjs="cdn")

    if not test_metrics:
        return
    tasks = list(test_metrics)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 5.5))
    axes = np.atleast_1d(axes)
    hf = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks)
    for j, t in enumerate(tasks):
        cm, names = top_confusion(test_metrics[t]["confusion_matrix"], test_metrics[t]["classes"])
        short = [n[:14] for n in names]
        axes[j].imshow(cm, cmap="Blues")
        axes[j].set_xticks(range(len(short)), short, rotation=60, ha="right", fontsize=7)
        axes[j].set_yticks(range(len(short)), short, fontsize=7)
        for (a, b), v in np.ndenumerate(cm):
            axes[j].text(b, a, str(v), ha="center", va="center", fontsize=6)
        axes[j].set_title(f"{t} (test, top-{len(names)} classes)")
        axes[j].set_xlabel("predicted")
        axes[j].set_ylabel("given")
        hf.add_heatmap(z=cm, x=names, y=names, colorscale="Blues", showscale=False, row=1, col=j + 1)
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=100)
    plt.close(fig)
    hf.update_layout(title="confusion matrices (test split)")
    hf.write_html(run_dir / "confusion.html", include_plotlyjs="cdn")
