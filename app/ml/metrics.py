"""Checkpoint metrics: accuracy, macro-F1, per-class F1 and expected calibration error (numpy).

Pure functions over arrays indexed by position; no torch, no DB. F1 follows scikit-learn's
definitions (``f1_score(average=None | "macro", zero_division=0)``, labels ``0..c-1``); the
expected calibration error is the equal-width-bin estimator of Guo, Pleiss, Sun & Weinberger
(2017), "On Calibration of Modern Neural Networks", ICML, eq. (3):
``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over ``n_bins`` confidence bins.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_BINS = 15
"""Guo et al. (2017) use 15 equal-width bins."""


def _check_probs(probs: npt.ArrayLike, name: str = "probs") -> npt.NDArray[np.floating[Any]]:
    arr = np.asarray(probs)
    if not np.issubdtype(arr.dtype, np.floating):  # float32 stays float32: no [n, c] copy
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, c], got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def per_class_f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """F1 of every class ``0..n_classes-1`` (one-vs-rest), like sklearn's ``average=None``.

    ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)``; a class with ``TP + FP + FN = 0`` (absent from
    ``y_true`` and never predicted) gets 0, as with sklearn's ``zero_division=0``, and is flagged
    in the second array.

    Args:
        y_true: int ``[n]`` true classes in ``[0, n_classes)``.
        y_pred: int ``[n]`` predicted classes in ``[0, n_classes)``.
        n_classes: number of classes ``c >= 1``.

    Returns:
        ``(f1, present)``: float64 ``[c]`` F1 per class, bool ``[c]`` true where the class
        occurs in ``y_true`` or ``y_pred``.

    Raises:
        ValueError: on shape mismatch or classes outside ``[0, n_classes)``.
    """
    t, p = _check_labels(y_true, y_pred, n_classes)
    tp = np.bincount(t[t == p], minlength=n_classes).astype(np.float64)  # [c]
    n_true = np.bincount(t, minlength=n_classes).astype(np.float64)  # TP + FN
    n_pred = np.bincount(p, minlength=n_classes).astype(np.float64)  # TP + FP
    denom = n_true + n_pred  # = 2 TP + FP + FN
    present = denom > 0
    f1 = np.zeros(n_classes, dtype=np.float64)
    f1[present] = 2.0 * tp[present] / denom[present]
    return f1, present


def _check_labels(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {t.shape}, {p.shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t, p = t.astype(np.int64), p.astype(np.int64)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} must hold classes in [0, {n_classes})")
    return t, p


def macro_f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``.

    This is sklearn's ``f1_score(average="macro", zero_division=0)`` with its default label set
    (the union of the classes seen in either array): classes that neither occur nor are
    predicted do not drag the mean down.

    Args:
        y_true: int ``[n]`` true classes.
        y_pred: int ``[n]`` predicted classes.
        n_classes: number of classes (default ``max(y_true, y_pred) + 1``).

    Returns:
        Macro-F1 in ``[0, 1]``; 0.0 for empty inputs.

    Raises:
        ValueError: as :func:`per_class_f1`.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0:
        return 0.0
    c = int(max(t.max(), p.max())) + 1 if n_classes is None else n_classes
    f1, present = per_class_f1(t, p, c)
    return float(f1[present].mean()) if present.any() else 0.0


def confidence_bins(
    confidences: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, npt.NDArray[Any]]:
    """Reliability-diagram statistics over equal-width confidence bins ``(k/B, (k+1)/B]``.

    Bin ``k`` holds the predictions with ``k/B < confidence <= (k+1)/B`` (confidence 0 goes to
    the first bin), as in Guo et al. (2017), section 2.

    Args:
        confidences: float ``[n]`` confidence of each prediction, in ``[0, 1]``.
        correct: bool ``[n]`` whether each prediction was right.
        n_bins: number of bins ``B >= 1``.

    Returns:
        ``counts`` int64 ``[B]``, ``accuracy`` float64 ``[B]`` and ``confidence`` float64 ``[B]``
        (bin means; 0 in empty bins).

    Raises:
        ValueError: on shape mismatch, confidences outside ``[0, 1]`` or ``n_bins < 1``.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=bool)
    if conf.ndim != 1 or conf.shape != hit.shape:
        raise ValueError(
            f"confidences and correct must be 1-D of one length: {conf.shape}, {hit.shape}"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if conf.size and (not np.isfinite(conf).all() or conf.min() < 0.0 or conf.max() > 1.0 + 1e-6):
        raise ValueError("confidences must lie in [0, 1]")
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # [n]
    counts = np.bincount(bins, minlength=n_bins)
    sum_hit = np.bincount(bins, weights=hit.astype(np.float64), minlength=n_bins)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    safe = np.maximum(counts, 1)
    return {"counts": counts, "accuracy": sum_hit / safe, "confidence": sum_conf / safe}


def expected_calibration_error(
    probs: npt.ArrayLike,
    y_true: npt.ArrayLike,
    *,
    n_bins: int = DEFAULT_BINS,
    multilabel: bool = False,
) -> float:
    """Expected calibration error (Guo et al. 2017, eq. 3) of top-class predictions.

    Single-label: confidence is the top probability of each row and a prediction is correct
    when its argmax equals the true class. Multilabel: every (row, label) pair is one binary
    decision with confidence ``max(p, 1 - p)``, correct when ``(p >= 0.5) == y``.

    Args:
        probs: float ``[n, c]`` class probabilities (softmax rows, or independent sigmoids when
            ``multilabel``).
        y_true: int ``[n]`` true classes, or 0/1 ``[n, c]`` multi-hot when ``multilabel``.
        n_bins: number of equal-width bins (15 as in Guo et al.).
        multilabel: see above.

    Returns:
        ECE in ``[0, 1]``; 0.0 for no rows.

    Raises:
        ValueError: on bad shapes or non-finite probabilities.
    """
    p = _check_probs(probs)
    y = np.asarray(y_true)
    if multilabel:
        if y.shape != p.shape:
            raise ValueError(f"multilabel y_true must have shape {p.shape}, got {y.shape}")
        conf = np.maximum(p, 1.0 - p).ravel()
        correct = ((p >= 0.5) == (y >= 0.5)).ravel()
    else:
        if y.ndim != 1 or y.shape[0] != p.shape[0]:
            raise ValueError(f"y_true must be 1-D of length {p.shape[0]}, got {y.shape}")
        if p.shape[0] == 0:
            return 0.0
        pred = p.argmax(axis=1)
        conf = p[np.arange(p.shape[0]), pred]
        correct = pred == y
    return _ece(conf, correct, n_bins)


def _ece(conf: npt.NDArray[Any], correct: npt.NDArray[np.bool_], n_bins: int) -> float:
    if conf.size == 0:
        return 0.0
    stats = confidence_bins(np.clip(conf, 0.0, 1.0), correct, n_bins)
    weights = stats["counts"] / conf.size
    return float(np.sum(weights * np.abs(stats["accuracy"] - stats["confidence"])))


def negative_log_likelihood(
    probs: npt.ArrayLike, y_true: npt.ArrayLike, *, multilabel: bool = False
) -> float:
    """Mean negative log-likelihood of the true labels (nats; probabilities clipped at 1e-12).

    Args:
        probs: float ``[n, c]`` probabilities.
        y_true: int ``[n]`` classes, or 0/1 ``[n, c]`` when ``multilabel`` (mean binary
            cross-entropy over all entries).
        multilabel: see above.

    Raises:
        ValueError: on bad shapes.
    """
    p = _check_probs(probs)
    y = np.asarray(y_true)
    if p.shape[0] == 0:
        return 0.0
    if multilabel:
        if y.shape != p.shape:
            raise ValueError(f"multilabel y_true must have shape {p.shape}, got {y.shape}")
        p64 = p.astype(np.float64)
        likelihood = np.where(y >= 0.5, p64, 1.0 - p64)
        return float(-np.mean(np.log(np.clip(likelihood, 1e-12, 1.0))))
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true must be 1-D of length {p.shape[0]}, got {y.shape}")
    picked = p[np.arange(p.shape[0]), y.astype(np.int64)].astype(np.float64)  # [n]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def classification_report(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    *,
    label_names: list[str],
    task: str,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The metrics a checkpoint records, as a JSON-friendly dict.

    Keys: ``accuracy`` (subset accuracy for multilabel), ``macro_f1`` (sklearn's macro: over the
    classes present in truth or prediction; for multilabel over every label column, an absent
    one counting 0), ``per_class_f1`` ``{label: f1 or None}`` (None for a
    class absent from ``y_true`` and never predicted), ``ece`` (:func:`expected_calibration_error`),
    ``nll`` and ``n`` (rows scored).

    Args:
        y_true: int ``[n]`` classes, or 0/1 ``[n, c]`` multi-hot for ``task="multilabel"``.
        probs: float ``[n, c]`` probabilities of the same rows.
        label_names: the ``c`` class names, in column order.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        n_bins: ECE bins.

    Raises:
        ValueError: on shape mismatches or classes out of range.
    """
    p = _check_probs(probs)
    c = len(label_names)
    if p.shape[1] != c:
        raise ValueError(f"probs has {p.shape[1]} columns for {c} labels")
    y = np.asarray(y_true)
    multilabel = task == "multilabel"
    if multilabel:
        if y.shape != p.shape:
            raise ValueError(f"multilabel y_true must have shape {p.shape}, got {y.shape}")
        truth, pred = y >= 0.5, p >= 0.5
        accuracy = float(np.mean(np.all(truth == pred, axis=1))) if p.shape[0] else 0.0
        tp = np.sum(truth & pred, axis=0).astype(np.float64)
        denom = np.sum(truth, axis=0) + np.sum(pred, axis=0)
        present = denom > 0
        f1 = np.where(present, 2.0 * tp / np.maximum(denom, 1), 0.0)
        ece = expected_calibration_error(p, y, n_bins=n_bins, multilabel=True)
        nll = negative_log_likelihood(p, y, multilabel=True)
    else:
        if y.ndim != 1 or y.shape[0] != p.shape[0]:
            raise ValueError(f"y_true must be 1-D of length {p.shape[0]}, got {y.shape}")
        rows = np.arange(p.shape[0])
        pred_cls = p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)
        f1, present = per_class_f1(y, pred_cls, c)
        correct = pred_cls == y
        accuracy = float(np.mean(correct)) if p.shape[0] else 0.0
        ece = _ece(p[rows, pred_cls], correct, n_bins)  # one argmax for F1, accuracy and ECE
        picked = np.clip(p[rows, y.astype(np.int64)].astype(np.float64), 1e-12, 1.0)
        nll = float(-np.mean(np.log(picked))) if p.shape[0] else 0.0
    return {
        "accuracy": accuracy,
        "macro_f1": _macro(f1, present, multilabel),
        "per_class_f1": {
            name: (float(v) if ok else None)
            for name, v, ok in zip(label_names, f1, present, strict=True)
        },
        "ece": ece,
        "nll": nll,
        "n": int(p.shape[0]),
    }


def _macro(f1: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], multilabel: bool) -> float:
    if multilabel:
        return float(f1.mean()) if f1.size else 0.0
    return float(f1[present].mean()) if present.any() else 0.0


def wilson_interval(successes: int, n: int, *, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (Wilson 1927, JASA 22(158)).

    Better than the normal approximation for small ``n`` and proportions near 0 or 1, the usual
    case for the precision of confident pseudo-labels.

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials.
        z: normal quantile (1.96: a 95% interval).

    Returns:
        ``(low, high)`` in ``[0, 1]``; None when ``n == 0``.

    Raises:
        ValueError: for counts out of range.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}, {n}")
    if n == 0:
        return None
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
