"""Label spreading on a kNN graph (app.ml.label_propagation) and its checkpoint fit."""

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from sklearn.datasets import make_moons

from app.ml.label_propagation import (
    batched_conjugate_gradient,
    knn_graph,
    normalized_affinity,
    spread_labels,
)
from app.ml.predict import predict_proba
from app.ml.semi_supervised import SemiSupervisedConfig, fit_label_spreading, fit_semi_supervised
from app.ml.train import TrainConfig, fit_supervised

FAST = TrainConfig(hidden=32, epochs=30, min_steps=100, batch_size=64)
SPREAD = SemiSupervisedConfig(method="label_spreading")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _moons(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_moons(n_samples=n, noise=0.06, random_state=seed)
    # shift so that cosine similarity (the graph's metric) sees the two arcs apart: a third
    # constant coordinate keeps every row away from the origin
    x3 = np.column_stack([x - x.mean(axis=0), np.full(n, 3.0)]).astype(np.float32)
    return x3, y.astype(np.int64)


def _one_per_moon(y: np.ndarray) -> np.ndarray:
    return np.array([np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]])


def test_graph_is_symmetric_nonnegative_without_self_loops() -> None:
    x, _ = _moons(200)
    w = knn_graph(x, 7)
    assert w.shape == (200, 200) and w.dtype == np.float32
    assert abs(w - w.T).max() < 1e-6
    assert w.data.min() > 0 and np.all(w.diagonal() == 0)
    # every row keeps at least its own 7 neighbours (more where others chose it)
    assert np.all(np.diff(w.indptr) >= 7)


def test_duplicate_rows_do_not_drop_a_neighbour_or_link_to_themselves() -> None:
    x = np.repeat(np.eye(4, dtype=np.float32) + 0.1, 3, axis=0)  # each row three times
    w = knn_graph(x, 2)
    assert np.all(w.diagonal() == 0) and np.all(np.diff(w.indptr) >= 2)


def test_two_moons_one_label_each_spreads_along_the_arcs() -> None:
    """The textbook case of Zhou et al.: a kNN classifier on 2 labels fails, spreading works."""
    x, y = _moons()
    seeds = _one_per_moon(y)
    out = spread_labels(x, seeds, y[seeds], 2)
    assert out.scores.shape == (600, 2) and out.scores.dtype == np.float32
    assert out.labels.shape == (600,) and out.labels.dtype == np.int64
    assert (out.labels == y).mean() > 0.97
    nearest = np.argmax(x @ x[seeds].T / np.linalg.norm(x[seeds], axis=1), axis=1)
    assert (nearest == y).mean() < 0.9  # the geometry a graph is needed for
    assert np.all(out.weights[seeds] == 1) and out.weights.max() <= 1.0
    assert 1 <= out.iterations <= 20


def test_weights_are_lower_where_the_classes_meet() -> None:
    x, y = _moons(seed=1)
    seeds = _one_per_moon(y)
    out = spread_labels(x, seeds, y[seeds], 2)
    wrong = out.labels != y
    if wrong.any():
        assert out.weights[wrong].mean() < out.weights[~wrong].mean()
    assert out.weights[out.labels == y].mean() > 0.3


def test_a_disconnected_component_gets_zero_weight() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 3)).astype(np.float32) * 0.05 + np.array([1, 0, 0], "f4")
    b = rng.normal(size=(30, 3)).astype(np.float32) * 0.05 + np.array([-1, 0, 0], "f4")
    x = np.concatenate([a, b])
    out = spread_labels(x, np.array([0, 1]), np.array([0, 1]), 2, neighbors=5)
    # no label in the second cluster: cosine ~ -1 to the first, so no edge carries labels
    assert np.all(out.weights[30:] == 0)
    assert np.all(out.weights[2:30] > 0)


def test_batched_cg_matches_scipy_per_column() -> None:
    x, y = _moons(300)
    s = normalized_affinity(knn_graph(x, 10))
    b = np.zeros((300, 3), dtype=np.float32)
    b[[0, 5, 9], [0, 1, 2]] = 1.0  # third column: a third class
    ours, _ = batched_conjugate_gradient(s, b, alpha=0.9, max_iter=200, tol=1e-8)
    a = sp.identity(300, format="csr") - 0.9 * s
    for j in range(3):
        ref = sla.spsolve(a.tocsc().astype(np.float64), b[:, j].astype(np.float64))
        assert np.abs(ours[:, j] - ref).max() < 1e-4 * np.abs(ref).max()
    zero, _ = batched_conjugate_gradient(s, np.zeros((300, 2), "f4"), alpha=0.9)
    assert not zero.any()


def test_normalized_affinity_spectrum_is_within_one() -> None:
    x, _ = _moons(150)
    s = normalized_affinity(knn_graph(x, 6)).toarray().astype(np.float64)
    eig = np.linalg.eigvalsh(s)
    assert eig.max() <= 1 + 1e-5 and eig.min() >= -1 - 1e-5
    assert abs(eig.max() - 1) < 1e-4  # the D^1/2 1 eigenvector


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labeled": [0, 0], "labels": [0, 1]}, "distinct"),
        ({"labeled": [0, 999], "labels": [0, 1]}, "distinct"),
        ({"labeled": [0, 1], "labels": [0, 2]}, "labels must be"),
        ({"labeled": [0, 1], "labels": [0]}, "one length"),
        ({"labeled": [0, 1], "labels": [0, 1], "alpha": 1.0}, "alpha"),
        ({"labeled": [0, 1], "labels": [0, 1], "n_classes": 1}, "n_classes"),
    ],
)
def test_spread_labels_rejects_bad_input(kwargs: dict, message: str) -> None:
    x, _ = _moons(50)
    args = {"n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        spread_labels(x, args.pop("labeled"), args.pop("labels"), args.pop("n_classes"), **args)


def test_graph_and_cg_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        knn_graph(np.ones((1, 3), "f4"))
    with pytest.raises(ValueError, match="neighbors"):
        knn_graph(np.eye(3, dtype="f4"), 0)
    with pytest.raises(ValueError, match="gamma"):
        knn_graph(np.eye(3, dtype="f4"), 1, gamma=0)
    with pytest.raises(ValueError, match="finite|NaN"):
        knn_graph(np.array([[np.nan, 1.0], [1.0, 0.0]], "f4"))
    with pytest.raises(ValueError, match="alpha"):
        batched_conjugate_gradient(sp.identity(3), np.ones((3, 1)), alpha=1.0)
    with pytest.raises(ValueError, match="shape|need"):
        batched_conjugate_gradient(sp.identity(3), np.ones((4, 1)), alpha=0.5)
    with pytest.raises(ValueError, match="non-negative"):
        normalized_affinity(-sp.identity(3))


def test_checkpoint_fit_beats_supervised_on_moons_with_three_labels_per_moon() -> None:
    x, y = _moons(700)
    rng = np.random.default_rng(0)
    seeds = np.concatenate(
        [rng.choice(np.flatnonzero(y[:600] == c), 3, replace=False) for c in (0, 1)]
    )
    rest = np.setdiff1d(np.arange(600), seeds)
    test = np.arange(600, 700)
    config = TrainConfig(hidden=64, epochs=100, batch_size=64, lr=3e-3)  # moons need a curve
    result = fit_label_spreading(
        x[seeds], y[seeds], x[rest], config=config, ssl=SPREAD, seed=0, device="cpu"
    )
    sup = fit_supervised(x[seeds], y[seeds], config=config, seed=0, device="cpu")
    acc = (predict_proba(result.net, x[test]).argmax(1) == y[test]).mean()
    acc_sup = (predict_proba(sup, x[test]).argmax(1) == y[test]).mean()
    assert acc > 0.95 and acc > acc_sup + 0.05
    m = result.metrics
    assert m["method"] == "label_spreading" and m["validation"] == "cv"
    assert m["cv_of"] == "supervised" and m["cv_folds"] == 3
    assert rest.size - 20 <= m["n_spread"] <= rest.size and 0 < m["mean_spread_weight"] <= 1
    assert m["n_pseudo"] == len(result.pseudo_positions) <= 2 * SPREAD.max_per_class
    assert np.all(np.diff(result.pseudo_positions) > 0)
    assert (y[rest][result.pseudo_positions] == result.pseudo_labels).mean() > 0.97
    assert np.all((result.pseudo_confidences > 0) & (result.pseudo_confidences <= 1))


def test_holdout_plan_early_stops_and_reports_holdout_scores() -> None:
    rng = np.random.default_rng(0)
    x, y = _moons(900)
    labeled = np.sort(rng.choice(900, 120, replace=False))
    rest = np.setdiff1d(np.arange(900), labeled)
    config = TrainConfig(hidden=32, epochs=60, min_steps=100, batch_size=64, min_validation=50)
    progress: list[float] = []
    result = fit_semi_supervised(
        x[labeled],
        y[labeled],
        x[rest],
        config=config,
        ssl=SPREAD,
        seed=0,
        device="cpu",
        on_progress=lambda p, msg: progress.append(p),
    )
    m = result.metrics
    assert m["validation"] == "holdout" and m["n_validation"] > 0
    assert m["best_epoch"] is not None and 1 <= m["best_epoch"] <= 60
    assert m["accuracy"] > 0.9 and m["cg_iterations"] >= 1
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)


def test_same_seed_is_reproducible() -> None:
    x, y = _moons(300)
    seeds = _one_per_moon(y)
    rest = np.setdiff1d(np.arange(300), seeds)
    a, b = (
        fit_label_spreading(
            x[seeds], y[seeds], x[rest], config=FAST, ssl=SPREAD, seed=3, device="cpu"
        )
        for _ in range(2)
    )
    assert np.array_equal(predict_proba(a.net, x), predict_proba(b.net, x))
    assert np.array_equal(a.pseudo_labels, b.pseudo_labels)


def test_checkpoint_fit_rejects_multilabel_and_empty_pools_fall_back() -> None:
    x, y = _moons(100)
    with pytest.raises(ValueError, match="single-label"):
        fit_label_spreading(
            x[:10],
            np.eye(2, dtype="f4")[y[:10]],
            x[10:],
            config=TrainConfig(task="multilabel"),
            ssl=SPREAD,
            seed=0,
            device="cpu",
        )
    with pytest.raises(ValueError, match="x_unlabeled"):
        fit_label_spreading(
            x[:10], y[:10], np.zeros((0, 3), "f4"), config=FAST, ssl=SPREAD, seed=0, device="cpu"
        )
    fallback = fit_semi_supervised(
        x[:10], y[:10], np.zeros((0, 3), "f4"), config=FAST, ssl=SPREAD, seed=0, device="cpu"
    )
    assert fallback.metrics["method"] == "none"


@pytest.mark.parametrize(
    ("field", "value"),
    [("neighbors", 0), ("alpha", 0.0), ("alpha", 1.0), ("gamma", 0.0), ("cg_iterations", 0)],
)
def test_config_rejects_bad_graph_settings(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SemiSupervisedConfig(method="label_spreading", **{field: value})
