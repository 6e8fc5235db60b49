"""Negative ("not c") rows: the loss terms against direct formulas, and training with them."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from app.ml.negatives import NegativeRows, append_negatives, per_row_loss, training_rows
from app.ml.predict import predict_proba
from app.ml.train import TrainConfig, fit_self_training, fit_supervised_with_info

FAST = TrainConfig(hidden=32, epochs=40, min_steps=200, batch_size=64, pseudo_rounds=0)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n: int, n_classes: int, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1).normal(size=(n_classes, dim)) * 4.0
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def _rows(x: np.ndarray, classes: np.ndarray, weight: float = 1.0) -> NegativeRows:
    return NegativeRows(
        x=x.astype(np.float32),
        classes=classes.astype(np.int64),
        weights=np.full(len(classes), weight, dtype=np.float32),
    )


def test_complementary_softmax_loss_is_minus_log_one_minus_p() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([0, 1, 2])
    comp = torch.tensor([True, False, True])
    got = per_row_loss(logits, target, "multiclass", comp)
    p = torch.softmax(logits, dim=1)
    expected = torch.stack(
        [-torch.log(1 - p[0, 0]), -torch.log(p[1, 1]), -torch.log(1 - p[2, 2])]
    )
    torch.testing.assert_close(got, expected)


def test_complementary_multilabel_loss_touches_only_the_excluded_column() -> None:
    logits = torch.tensor([[0.3, -0.2, 1.5], [0.3, -0.2, 1.5]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    comp = torch.tensor([True, False])
    loss = per_row_loss(logits, target, "multilabel", comp)
    torch.testing.assert_close(loss[0], torch.nn.functional.softplus(torch.tensor(1.5)))
    loss[0].backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[0, :2]) == 0 and logits.grad[0, 2] > 0
    assert torch.count_nonzero(logits.grad[1]) == 0


def test_binary_negatives_become_the_other_class() -> None:
    rows = _rows(np.zeros((3, 2)), np.array([1, 0, 1]))
    _, y, _, comp = training_rows(rows, "binary", 2)
    assert y.tolist() == [0, 1, 0] and not comp.any()
    _, y, _, comp = training_rows(rows, "multiclass", 3)
    assert y.tolist() == [1, 0, 1] and comp.all()
    _, y, _, comp = training_rows(rows, "multilabel", 3)
    assert y.tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]] and comp.all()


def test_append_negatives_checks_shapes() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    y = np.zeros(4, dtype=np.int64)
    w = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        append_negatives(x, y, w, _rows(np.zeros((2, 5)), np.array([0, 1])), task="binary",
                         n_classes=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        append_negatives(x, y, w, _rows(np.zeros((2, 3)), np.array([0, 2])), task="binary",
                         n_classes=2)
    x2, y2, w2, comp = append_negatives(
        x, y, w, _rows(np.ones((2, 3)), np.array([0, 1]), 0.5), task="multiclass", n_classes=3
    )
    assert x2.shape == (6, 3) and y2.tolist() == [0, 0, 0, 0, 0, 1]
    assert w2.tolist() == [1, 1, 1, 1, 0.5, 0.5] and comp.tolist() == [False] * 4 + [True] * 2


def test_complementary_labels_teach_a_class_nobody_labeled() -> None:
    """Class 2 has no label at all; its items are only known to be "not 0" and "not 1"."""
    x, y = _blobs(600, 3)
    known = y < 2
    third = np.flatnonzero(y == 2)
    x_neg = np.concatenate([x[third], x[third]])
    classes = np.concatenate([np.zeros(third.size), np.ones(third.size)])
    x_fit, y_fit, w_fit, comp = append_negatives(
        x[known], y[known], np.ones(int(known.sum()), dtype=np.float32), _rows(x_neg, classes),
        task="multiclass", n_classes=3,
    )
    net, _ = fit_supervised_with_info(
        x_fit, y_fit, config=FAST, seed=0, device="cpu", sample_weight=w_fit, n_classes=3,
        complementary=comp,
    )
    x_test, y_test = _blobs(300, 3, seed=5)
    predicted = predict_proba(net, x_test, device="cpu").argmax(1)
    assert (predicted[y_test == 2] == 2).mean() > 0.9
    assert (predicted == y_test).mean() > 0.9
    # without the complementary rows class 2 is never predicted
    plain, _ = fit_supervised_with_info(
        x[known], y[known], config=FAST, seed=0, device="cpu", n_classes=3
    )
    assert (predict_proba(plain, x_test, device="cpu").argmax(1) == 2).mean() < 0.05


def test_positive_only_binary_trains_with_negative_rows() -> None:
    x, y = _blobs(400, 2)
    positives = np.flatnonzero(y == 1)[:40]
    negatives = np.flatnonzero(y == 0)[:150]
    result = fit_self_training(
        x[positives], np.ones(positives.size, dtype=np.int64), x[:0], config=FAST, seed=0,
        device="cpu", negatives=_rows(x[negatives], np.ones(negatives.size), 0.5),
    )
    assert result.metrics["n_negatives"] == negatives.size
    x_test, y_test = _blobs(300, 2, seed=7)
    predicted = predict_proba(result.net, x_test, device="cpu").argmax(1)
    assert (predicted == y_test).mean() > 0.95
