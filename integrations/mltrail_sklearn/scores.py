"""Training metrics computed with plain numpy, from one confusion matrix.

scikit-learn's metric functions validate their inputs on every call; for a
small model that validation costs more than the fit itself, and autolog calls
six of them per fit. The formulas here are the standard ones (weighted by
support, or binary for one positive label; zero where a ratio is 0/0) and the
tests check them against scikit-learn's own functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = np.finfo(np.float64).eps


def _weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    return np.asarray(sample_weight, dtype=np.float64).reshape(-1)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def classification(
    y: Any, y_pred: Any, labels: np.ndarray, sample_weight: Any, pos_label: Any = None
) -> dict[str, float]:
    """Accuracy, precision, recall and f1 (weighted, or binary for `pos_label`)."""
    y, y_pred = np.asarray(y).reshape(-1), np.asarray(y_pred).reshape(-1)
    all_labels = np.union1d(labels, np.union1d(y, y_pred))
    k = len(all_labels)
    weights = _weights(sample_weight, len(y))
    true_idx = np.searchsorted(all_labels, y)
    pred_idx = np.searchsorted(all_labels, y_pred)
    cm = np.bincount(true_idx * k + pred_idx, weights=weights, minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    precision = _divide(tp, cm.sum(axis=0))
    recall = _divide(tp, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    if pos_label is not None:
        i = int(np.searchsorted(all_labels, pos_label))
        p, r, f = precision[i], recall[i], f1[i]
    else:
        total = support.sum()
        p, r, f = (float(np.dot(v, support) / total) if total else 0.0
                   for v in (precision, recall, f1))
    return {
        "accuracy_score": float(tp.sum() / cm.sum()),
        "precision_score": float(p),
        "recall_score": float(r),
        "f1_score": float(f),
    }


def log_loss(y: Any, proba: np.ndarray, labels: np.ndarray, sample_weight: Any) -> float:
    """Log loss of one probability column per class of `labels` (two or more classes)."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1 - _EPS)
    proba = proba / proba.sum(axis=1, keepdims=True)
    idx = np.searchsorted(labels, np.asarray(y).reshape(-1))
    picked = proba[np.arange(len(idx)), idx]
    return float(np.average(-np.log(picked), weights=_weights(sample_weight, len(idx))))


def _binary_auc(is_pos: np.ndarray, score: np.ndarray, weights: np.ndarray) -> float:
    """Area under the ROC curve from the weighted ranking of scores (ties count half)."""
    order = np.argsort(-score, kind="mergesort")
    score, is_pos, weights = score[order], is_pos[order], weights[order]
    distinct = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]
    tps = np.cumsum(weights * is_pos)[distinct]
    fps = np.cumsum(weights * ~is_pos)[distinct]
    if tps[-1] == 0 or fps[-1] == 0:
        raise ValueError("only one class present: AUC is undefined")
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids


def roc_auc(y: Any, proba: np.ndarray, labels: np.ndarray, sample_weight: Any) -> float:
    """Binary AUC, or one-vs-rest AUC weighted by class support for several classes."""
    y = np.asarray(y).reshape(-1)
    weights = _weights(sample_weight, len(y))
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 2:
        return _binary_auc(y == labels[1], proba[:, 1], weights)
    aucs, supports = [], []
    for i, label in enumerate(labels):
        is_pos = y == label
        aucs.append(_binary_auc(is_pos, proba[:, i], weights))
        supports.append(weights[is_pos].sum())
    return float(np.average(aucs, weights=supports))


def regression(y: Any, y_pred: Any, sample_weight: Any) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y.ndim == 1:
        y, y_pred = y[:, None], y_pred.reshape(len(y), -1)
    weights = _weights(sample_weight, len(y))
    err = y - y_pred
    mse = np.average(err**2, axis=0, weights=weights)  # one value per output, then averaged
    mae = np.average(np.abs(err), axis=0, weights=weights)
    mean = np.average(y, axis=0, weights=weights)
    ss_res = np.sum(weights[:, None] * err**2, axis=0)
    ss_tot = np.sum(weights[:, None] * (y - mean) ** 2, axis=0)
    r2 = np.where(ss_tot != 0, 1 - _divide(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return {
        "mean_squared_error": float(np.mean(mse)),
        "root_mean_squared_error": float(np.mean(np.sqrt(mse))),
        "mean_absolute_error": float(np.mean(mae)),
        "r2_score": float(np.mean(r2)),
    }
