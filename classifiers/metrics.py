"""Classification metrics without extra dependencies (the package does not need scikit-learn)."""

from __future__ import annotations

import numpy as np


def roc_auc(scores, positive) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative
    (Mann-Whitney U with average ranks for ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Accuracy and per-label precision, recall, F1 and support."""
    gold_a, pred_a = np.asarray(gold), np.asarray(predicted)
    per_label = {}
    for label in labels:
        tp = int(((pred_a == label) & (gold_a == label)).sum())
        fp = int(((pred_a == label) & (gold_a != label)).sum())
        fn = int(((pred_a != label) & (gold_a == label)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int((gold_a == label).sum())}
    accuracy = float((gold_a == pred_a).mean()) if len(gold_a) else float("nan")
    return {"accuracy": accuracy, "n": len(gold_a), "labels": per_label}
