"""Smoke tests of bench/label_efficiency.py's helpers (the benchmark itself is not a test)."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import label_efficiency as le  # noqa: E402


def test_labels_to_reach_interpolates_and_says_never():
    grid = (10, 20, 40)
    assert le.labels_to_reach(grid, [0.5, 0.7, 0.9], 0.8) == pytest.approx(30.0)
    assert le.labels_to_reach(grid, [0.85, 0.9, 0.95], 0.8) == 10.0
    assert le.labels_to_reach(grid, [0.5, 0.6, 0.7], 0.8) == float("inf")


def test_normalized_auc_is_the_mean_height():
    assert le.normalized_auc((0, 10, 20), [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert le.normalized_auc((0, 10), [0.0, 1.0]) == pytest.approx(0.5)


def test_seed_set_covers_classes_first():
    y = np.repeat(np.arange(5), 20)
    labeled = le.seed_set(y, 7, np.random.default_rng(0))
    assert labeled.sum() == 7 and set(y[labeled]) == set(range(5))


@pytest.mark.parametrize("method", ["margin", "modal:margin", "alipy_margin"])
def test_curve_labels_exactly_the_grid_and_the_same_items_as_the_originals(method):
    ds = replace(le.load_dataset("digits"), grid=(10, 30, 60))
    accuracies, _ = le.curve(ds, method, seed=0)
    assert len(accuracies) == 3 and all(0.0 <= a <= 1.0 for a in accuracies)
    reference, _ = le.curve(ds, "margin", seed=0)
    assert accuracies == pytest.approx(reference)  # same scores -> same picks, same learner


def test_parse_method_reads_json_parameters():
    assert le.parse_method("margin") == ("margin", {})
    assert le.parse_method("diverse_margin[beta=3,max_iter=5]") == (
        "diverse_margin", {"beta": 3, "max_iter": 5}
    )
    with pytest.raises(ValueError, match="key=value"):
        le.parse_method("diverse_margin[beta]")
    with pytest.raises(ValueError, match="name\\[key=value"):
        le.parse_method("diverse_margin[beta=3")
