"""The activation decision: compare on the hold-out both checkpoints were validated on."""

from pathlib import Path

import numpy as np
import pytest

from app.models import Checkpoint
from app.services.training import decide_activation

SPLIT = {"fraction": 0.2, "min_holdout": 50, "hash": "splitmix64-v1", "salt": 0}
NAMES = ["a", "b"]


def _checkpoint(
    tmp_path: Path, probs: np.ndarray, *, validation: str = "holdout", split=SPLIT
) -> Checkpoint:
    directory = tmp_path / f"ck{np.random.default_rng().integers(1 << 30)}"
    directory.mkdir()
    np.save(directory / "probs.npy", probs.astype(np.float32))
    return Checkpoint(
        id=7,
        path=str(directory),
        pool_size=probs.shape[0],
        metrics={"validation": validation, "split": split},
    )


def _onehot(classes: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    out = np.full((classes.size, 2), 1 - confidence, dtype=np.float32)
    out[np.arange(classes.size), classes] = confidence
    return out


TRUTH = np.array([0, 1] * 10)
POSITIONS = np.arange(0, 40, 2)  # hold-out rows sit at even positions of a 40-row pool


def _pool(classes_at_holdout: np.ndarray) -> np.ndarray:
    pool = np.zeros(40, dtype=np.int64)
    pool[POSITIONS] = classes_at_holdout
    return _onehot(pool)


def _decide(active, new_probs, policy="if_better", metrics=None):
    return decide_activation(
        policy=policy,
        active=active,
        metrics=metrics or {"validation": "holdout", "split": SPLIT},
        holdout_positions=POSITIONS,
        holdout_targets=TRUTH,
        new_probs=new_probs,
        label_names=NAMES,
        task="binary",
    )


def test_worse_checkpoint_is_kept_inactive(tmp_path: Path) -> None:
    active = _checkpoint(tmp_path, _pool(TRUTH))  # perfect on the hold-out
    worse = TRUTH.copy()
    worse[:6] = 1 - worse[:6]
    decision = _decide(active, _pool(worse))
    assert decision["activated"] is False and decision["reason"] == "worse"
    assert decision["compared_on"] == 20 and decision["active_score"] == 1.0
    assert decision["score"] < 1.0 and decision["previous_checkpoint_id"] == 7
    assert _decide(active, _pool(worse), policy="always")["activated"] is True


def test_better_or_equal_checkpoint_is_activated(tmp_path: Path) -> None:
    flawed = TRUTH.copy()
    flawed[:4] = 1 - flawed[:4]
    active = _checkpoint(tmp_path, _pool(flawed))
    decision = _decide(active, _pool(TRUTH))
    assert decision["activated"] and decision["reason"] == "not_worse"
    assert decision["score"] == 1.0 and decision["active_score"] < 1.0
    assert _decide(active, _pool(flawed))["reason"] == "not_worse"  # a tie activates
    assert _decide(active, _pool(TRUTH), policy="never")["activated"] is False


def test_only_positions_the_active_checkpoint_scored_are_compared(tmp_path: Path) -> None:
    active = _checkpoint(tmp_path, _pool(TRUTH)[:20])  # older, smaller pool: positions 0..19
    decision = _decide(active, _pool(TRUTH))
    assert decision["compared_on"] == 10


@pytest.mark.parametrize(
    ("active_validation", "active_split", "new_validation"),
    [
        ("cv", SPLIT, "holdout"),
        ("holdout", {**SPLIT, "fraction": 0.3}, "holdout"),
        ("holdout", SPLIT, "cv"),
    ],
)
def test_not_comparable_activates(
    tmp_path: Path, active_validation, active_split, new_validation
) -> None:
    active = _checkpoint(tmp_path, _pool(TRUTH), validation=active_validation, split=active_split)
    worse = np.zeros(20, dtype=np.int64)
    decision = _decide(active, _pool(worse), metrics={"validation": new_validation, "split": SPLIT})
    assert decision["activated"] and decision["reason"] == "not_comparable"


def test_first_checkpoint_is_activated_unless_never() -> None:
    probs = _pool(TRUTH)
    assert _decide(None, probs)["reason"] == "no_active_model"
    assert _decide(None, probs, policy="never")["activated"] is False


def test_an_active_checkpoint_from_before_a_label_was_added_is_not_comparable(
    tmp_path: Path,
) -> None:
    active = _checkpoint(tmp_path, _pool(TRUTH))  # 2 columns
    three = np.concatenate([_pool(TRUTH) * 0.9, np.full((40, 1), 0.1, dtype=np.float32)], axis=1)
    decision = decide_activation(
        policy="if_better",
        active=active,
        metrics={"validation": "holdout", "split": SPLIT},
        holdout_positions=POSITIONS,
        holdout_targets=TRUTH,
        new_probs=three,
        label_names=["a", "b", "c"],
        task="multiclass",
    )
    assert decision["activated"] and decision["reason"] == "not_comparable"
