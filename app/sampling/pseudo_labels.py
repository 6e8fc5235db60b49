"""Confidence-thresholded pseudo-labels for self-training (numpy only).

Lee, D.-H. (2013), "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks", ICML Workshop on Challenges in Representation Learning: treat the
predicted class of an unlabeled row as if it were a true label. As in FixMatch (Sohn et al.
2020), only predictions whose top probability clears a threshold are kept.
"""

from dataclasses import dataclass

import numpy as np

from app.strategies.base import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class PseudoLabels:
    """Rows chosen as pseudo-labeled, ascending by position.

    Attributes:
        positions: int64 ``[p]`` row indices into the ``probs`` that were scored.
        labels: int64 ``[p]`` predicted class (argmax) of each row.
        confidences: float32 ``[p]`` top probability of each row (``>= threshold``).
    """

    positions: IntArray
    labels: IntArray
    confidences: FloatArray

    def __len__(self) -> int:
        """Number of pseudo-labeled rows."""
        return int(self.positions.shape[0])

    def per_class(self, n_classes: int) -> IntArray:
        """int64 ``[n_classes]``: how many pseudo-labels each class received."""
        return np.bincount(self.labels, minlength=n_classes).astype(np.int64)

    @classmethod
    def empty(cls) -> "PseudoLabels":
        """No pseudo-labels."""
        return cls(
            positions=np.zeros(0, dtype=np.int64),
            labels=np.zeros(0, dtype=np.int64),
            confidences=np.zeros(0, dtype=np.float32),
        )


def select_pseudo_labels(
    probs: FloatArray, *, threshold: float, max_per_class: int | None = None
) -> PseudoLabels:
    """Keep the rows whose top class probability is at least ``threshold``.

    Args:
        probs: float ``[m, c]`` class probabilities of unlabeled rows (softmax rows).
        threshold: minimum top probability, in ``(0, 1]``.
        max_per_class: when set, keep at most this many rows per predicted class: the most
            confident ones (ties go to the lower position). Caps the class imbalance that
            self-training otherwise amplifies (confident classes flood the training set).

    Returns:
        PseudoLabels ascending by position.

    Raises:
        ValueError: if ``probs`` is not a finite 2-D array, ``threshold`` is outside ``(0, 1]``
            or ``max_per_class`` is negative.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D [m, c], got shape {probs.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if max_per_class is not None and max_per_class < 0:
        raise ValueError(f"max_per_class must be >= 0 or None, got {max_per_class}")
    if probs.shape[0] == 0 or probs.shape[1] == 0:
        return PseudoLabels.empty()
    if not np.isfinite(probs).all():
        raise ValueError("probs must be finite")

    labels = probs.argmax(axis=1)  # [m]
    confidences = probs[np.arange(probs.shape[0]), labels]  # [m]
    positions = np.flatnonzero(confidences >= threshold)  # [p'] ascending
    if max_per_class is not None and positions.size:
        kept_labels = labels[positions]
        # group by class, most confident first, lower position first on ties
        order = np.lexsort((positions, -confidences[positions], kept_labels))
        grouped = kept_labels[order]
        first_of_class = np.searchsorted(grouped, grouped, side="left")
        rank = np.arange(order.size) - first_of_class
        positions = np.sort(positions[order[rank < max_per_class]])
    return PseudoLabels(
        positions=positions.astype(np.int64),
        labels=labels[positions].astype(np.int64),
        confidences=confidences[positions].astype(np.float32),
    )
