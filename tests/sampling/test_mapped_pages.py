"""release_rows / gather_rows: read-only memory maps are streamed (RSS stays flat), other arrays
untouched."""

from pathlib import Path

import numpy as np
import pytest

from app.sampling.hard_negatives import mine_hard_negatives
from app.sampling.mapped_pages import gather_rows, release_rows
from app.sampling.vector_index import VectorIndex

ROWS, DIM = 40_000, 256  # 40 MiB of float32


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


@pytest.fixture
def mapped(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(0).normal(size=(ROWS, DIM)).astype(np.float32)
    path = tmp_path / "vectors.npy"
    np.save(path, data)
    return path, data


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_streaming_a_read_only_map_keeps_rss_flat(mapped: tuple[Path, np.ndarray]) -> None:
    path, _ = mapped
    released = np.load(path, mmap_mode="r")
    before = _rss_mib()
    for start in range(0, ROWS, 4096):
        released[start : start + 4096].sum()
        release_rows(released, slice(start, start + 4096))
    assert _rss_mib() - before < 10  # one chunk (4 MiB) at a time, not 40 MiB
    kept = np.load(path, mmap_mode="r")
    before = _rss_mib()
    kept.sum()
    assert _rss_mib() - before > 30  # the control: reading without release keeps the pages


def test_values_survive_and_writable_maps_are_left_alone(
    mapped: tuple[Path, np.ndarray],
) -> None:
    path, data = mapped
    read_only = np.load(path, mmap_mode="r")
    view = np.asarray(read_only[100:200])  # a plain-ndarray view still finds its map
    release_rows(view, np.array([3, 50]))
    np.testing.assert_array_equal(view, data[100:200])
    copy_on_write = np.load(path, mmap_mode="c")
    copy_on_write[0, 0] = 123.0
    release_rows(copy_on_write, slice(0, 10))
    assert copy_on_write[0, 0] == 123.0  # MADV_DONTNEED would have dropped this change
    in_memory = data.copy()
    release_rows(in_memory, slice(0, ROWS))
    release_rows(in_memory, np.zeros(0, dtype=np.int64))
    np.testing.assert_array_equal(in_memory, data)


def test_mining_a_memory_map_equals_mining_in_memory(mapped: tuple[Path, np.ndarray]) -> None:
    path, data = mapped
    vectors = np.load(path, mmap_mode="r")[:3000]
    index_mapped = VectorIndex.build(vectors, kind="flat")
    index_memory = VectorIndex.build(data[:3000], kind="flat")
    labels = np.full(3000, -1, dtype=np.int64)
    kwargs = {
        "anchor_positions": np.arange(2500, 3000),
        "labels": labels,
        "k": 5,
        "positive_positions": np.arange(500),
        "exclude_same_label": False,
    }
    got = mine_hard_negatives(index_mapped, vectors, **kwargs)  # type: ignore[arg-type]
    want = mine_hard_negatives(index_memory, data[:3000], **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.negative_positions, want.negative_positions)
    np.testing.assert_array_equal(got.negative_similarities, want.negative_similarities)


def test_gather_rows_equals_fancy_indexing(mapped: tuple[Path, np.ndarray]) -> None:
    path, data = mapped
    rows = np.random.default_rng(1).integers(-ROWS, ROWS, size=5000)  # any order, dupes, < 0
    rows[:3] = [7, 7, -1]
    for source in (np.load(path, mmap_mode="r"), data):
        np.testing.assert_array_equal(gather_rows(source, rows), data[rows])
        assert gather_rows(source, np.zeros(0, dtype=np.int64)).shape == (0, DIM)
    with pytest.raises(IndexError):
        gather_rows(np.load(path, mmap_mode="r"), np.array([ROWS]))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_gather_rows_leaves_a_scattered_read_unresident(mapped: tuple[Path, np.ndarray]) -> None:
    path, _ = mapped
    rows = np.random.default_rng(2).choice(ROWS, size=4000, replace=False)  # every 10th row
    gathered = np.load(path, mmap_mode="r")
    before = _rss_mib()
    out = gather_rows(gathered, rows)  # 4 MiB copy; the 40 MiB file is streamed
    assert _rss_mib() - before < 15
    del out
    plain = np.load(path, mmap_mode="r")
    before = _rss_mib()
    kept = plain[rows]
    assert _rss_mib() - before > 20  # the control: a scattered read faults in most pages
    del kept
