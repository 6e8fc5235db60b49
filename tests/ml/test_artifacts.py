import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.ml.artifacts import (
    atomic_save_npy,
    load_array,
    load_meta,
    load_net,
    save_checkpoint,
)
from app.ml.networks import MLPHeadNet
from app.ml.predict import predict_proba
from app.ml.train import TrainConfig, fit_supervised


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny nets train several times faster on one thread (and don't fight parallel jobs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> tuple[MLPHeadNet, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=120).astype(np.int64)
    x = (rng.normal(size=(3, 6))[y] * 3 + rng.normal(size=(120, 6))).astype(np.float32)
    net = fit_supervised(x, y, config=TrainConfig(hidden=16, epochs=10), seed=0, device="cpu")
    return net, x


def _arrays(net: MLPHeadNet, x: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "probs": predict_proba(net, x),
        "item_ids": np.arange(100, 100 + x.shape[0], dtype=np.int64),
    }


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_save_writes_complete_directory_atomically(
    trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path
) -> None:
    net, x = trained
    target = tmp_path / "ckpts" / "7"
    meta = {"checkpoint_id": 7, "labels": ["a", "b", "c"], "metrics": {"accuracy": 0.9}}
    assert save_checkpoint(target, net, meta=meta, arrays=_arrays(net, x)) == target
    assert sorted(p.name for p in target.iterdir()) == [
        "item_ids.npy",
        "meta.json",
        "net.pt",
        "probs.npy",
    ]
    assert _leftovers(target.parent) == []  # the temporary sibling was renamed away
    assert load_meta(target) == meta
    assert json.loads((target / "meta.json").read_text()) == meta


def test_round_trip_gives_identical_probs(
    trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path
) -> None:
    net, x = trained
    save_checkpoint(tmp_path / "c", net, meta={}, arrays=_arrays(net, x))
    loaded = load_net(tmp_path / "c", device="cpu")
    assert isinstance(loaded, MLPHeadNet) and not loaded.training
    assert loaded.init_kwargs == net.init_kwargs
    np.testing.assert_array_equal(predict_proba(loaded, x), predict_proba(net, x))
    probs = load_array(tmp_path / "c", "probs")
    assert isinstance(probs, np.memmap) and not probs.flags.writeable
    np.testing.assert_array_equal(probs, predict_proba(net, x))
    in_memory = load_array(tmp_path / "c", "item_ids", mmap=False)
    assert not isinstance(in_memory, np.memmap) and in_memory[0] == 100


def test_existing_target_raises_and_is_left_alone(
    trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path
) -> None:
    net, x = trained
    target = tmp_path / "c"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        save_checkpoint(target, net, meta={}, arrays=_arrays(net, x))
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert _leftovers(tmp_path) == []


def test_failure_mid_save_leaves_nothing(
    trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path
) -> None:
    net, x = trained
    arrays = {**_arrays(net, x), "objects": np.array([object(), None], dtype=object)}
    with pytest.raises(ValueError):  # np.save refuses pickles
        save_checkpoint(tmp_path / "c", net, meta={}, arrays=arrays)
    assert not (tmp_path / "c").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "probs.npy", ""])
def test_bad_array_names_are_refused(
    trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path, name: str
) -> None:
    net, _ = trained
    with pytest.raises(ValueError, match="array name"):
        save_checkpoint(tmp_path / "c", net, meta={}, arrays={name: np.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_non_json_meta_is_refused(trained: tuple[MLPHeadNet, np.ndarray], tmp_path: Path) -> None:
    net, _ = trained
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "c", net, meta={"loss": float("nan")}, arrays={})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "c", net, meta={"when": object()}, arrays={})
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_npy_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "pool" / "features.npy"
    atomic_save_npy(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    atomic_save_npy(path, np.ones((4, 3), dtype=np.float32))
    np.testing.assert_array_equal(np.load(path), np.ones((4, 3), dtype=np.float32))
    assert sorted(p.name for p in path.parent.iterdir()) == ["features.npy"]


def test_atomic_save_npy_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "features.npy"
    atomic_save_npy(path, np.zeros(3))
    with pytest.raises(ValueError):
        atomic_save_npy(path, np.array([object()], dtype=object))
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["features.npy"]


def test_load_net_rejects_foreign_files(tmp_path: Path) -> None:
    import torch

    (tmp_path / "c").mkdir()
    torch.save({"format": 99}, tmp_path / "c" / "net.pt")
    with pytest.raises(ValueError, match="format"):
        load_net(tmp_path / "c", device="cpu")
    with pytest.raises(FileNotFoundError):
        load_net(tmp_path / "missing", device="cpu")
