"""VectorIndex against a brute-force ``normalized @ normalized.T`` reference (faiss-style)."""

from pathlib import Path

import faiss
import numpy as np
import pytest

from app.sampling import vector_index
from app.sampling.vector_index import (
    VectorIndex,
    calibrate,
    exact_neighbours,
    normalize_rows,
    recall_at_k,
)


def brute_force_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k with numpy (the reference)."""
    base = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = (query @ base.T).astype(np.float32)
    positions = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarities, positions, axis=1), positions.astype(np.int64)


def clustered(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    """Gaussian blobs around random centers."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, d))
    assignment = rng.integers(0, n_clusters, size=n)
    return (centers[assignment] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)


def test_flat_search_equals_brute_force(vectors: np.ndarray) -> None:
    index = VectorIndex.build(vectors, kind="flat")
    queries = np.vstack(
        [vectors[:50], np.random.default_rng(1).normal(size=(30, 16)).astype(np.float32)]
    )
    similarities, positions = index.search(queries, 10)
    ref_similarities, ref_positions = brute_force_top_k(vectors, queries, 10)

    assert similarities.dtype == np.float32 and similarities.shape == (80, 10)
    assert positions.dtype == np.int64 and positions.shape == (80, 10)
    np.testing.assert_array_equal(positions, ref_positions)
    np.testing.assert_allclose(similarities, ref_similarities, atol=1e-5)
    np.testing.assert_array_equal(positions[:50, 0], np.arange(50))  # self first


def test_single_query_path_equals_brute_force(vectors: np.ndarray) -> None:
    # faiss uses a non-BLAS kernel under 20 queries; both paths must agree with the reference
    index = VectorIndex.build(vectors, kind="flat")
    similarities, positions = index.search(vectors[7:9], 5)
    ref_similarities, ref_positions = brute_force_top_k(vectors, vectors[7:9], 5)
    np.testing.assert_array_equal(positions, ref_positions)
    np.testing.assert_allclose(similarities, ref_similarities, atol=1e-5)


def test_hnsw_recall_at_10_vs_flat() -> None:
    data = clustered(5_000, 32, n_clusters=50, seed=0)
    queries = clustered(300, 32, n_clusters=50, seed=0)[:300] + 0.01
    flat = VectorIndex.build(data, kind="flat")
    hnsw = VectorIndex.build(data, kind="hnsw")
    assert hnsw.kind == "hnsw" and hnsw.ntotal == 5_000

    _, exact = flat.search(queries, 10)
    approx_similarities, approx = hnsw.search(queries, 10)
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True))
    recall = hits / exact.size
    assert recall >= 0.95, recall
    assert np.all(np.diff(approx_similarities, axis=1) <= 1e-6)  # best first


def test_auto_kind_follows_exact_below(vectors: np.ndarray) -> None:
    assert VectorIndex.build(vectors).kind == "flat"
    assert VectorIndex.build(vectors, exact_below=100).kind == "hnsw"
    assert VectorIndex.build(vectors, exact_below=201).kind == "flat"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path: Path, vectors: np.ndarray, kind: str) -> None:
    index = VectorIndex.build(vectors, kind=kind, ef_search=40)  # type: ignore[arg-type]
    path = tmp_path / "index.faiss"
    index.save(path)
    loaded = VectorIndex.load(path)

    assert (loaded.kind, loaded.ntotal, loaded.dim) == (index.kind, 200, 16)
    assert loaded.ef_search == index.ef_search
    for got, want in zip(loaded.search(vectors, 12), index.search(vectors, 12), strict=True):
        np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss"]  # no temp file left


def test_save_replaces_existing_file(tmp_path: Path, vectors: np.ndarray) -> None:
    path = tmp_path / "index.faiss"
    VectorIndex.build(vectors[:10]).save(path)
    VectorIndex.build(vectors).save(path)
    assert VectorIndex.load(path).ntotal == 200


def test_save_into_missing_folder_raises(tmp_path: Path, vectors: np.ndarray) -> None:
    with pytest.raises(FileNotFoundError):
        VectorIndex.build(vectors).save(tmp_path / "missing" / "index.faiss")


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "nope.faiss")
    l2_path = tmp_path / "l2.faiss"
    faiss.write_index(faiss.IndexFlatL2(4), str(l2_path))
    with pytest.raises(ValueError, match="inner-product"):
        VectorIndex.load(l2_path)
    garbage = tmp_path / "garbage.faiss"
    garbage.write_bytes(b"not an index at all")
    with pytest.raises(ValueError, match="readable"):
        VectorIndex.load(garbage)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_add_continues_positions(vectors: np.ndarray, kind: str) -> None:
    index = VectorIndex.build(vectors[:120], kind=kind)  # type: ignore[arg-type]
    index.add(vectors[120:])
    assert index.ntotal == 200

    _, positions = index.search(vectors[120:], 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(120, 200))
    if kind == "flat":
        whole = VectorIndex.build(vectors, kind="flat")
        for got, want in zip(index.search(vectors, 10), whole.search(vectors, 10), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_k_larger_than_ntotal_pads(vectors: np.ndarray, kind: str) -> None:
    index = VectorIndex.build(vectors[:5], kind=kind)  # type: ignore[arg-type]
    similarities, positions = index.search(vectors[:3], 8)
    assert positions.shape == (3, 8)
    assert np.all(positions[:, 5:] == -1)
    assert np.all(np.isneginf(similarities[:, 5:]))
    assert np.array_equal(np.sort(positions[:, :5], axis=1), np.tile(np.arange(5), (3, 1)))


def test_empty_index_and_empty_queries() -> None:
    index = VectorIndex.build(np.zeros((0, 4), dtype=np.float32))
    similarities, positions = index.search(np.ones((2, 4), dtype=np.float32), 3)
    assert np.all(positions == -1) and np.all(np.isneginf(similarities))
    similarities, positions = index.search(np.zeros((0, 4), dtype=np.float32), 3)
    assert similarities.shape == positions.shape == (0, 3)


def test_zero_vectors_do_not_produce_nan(vectors: np.ndarray) -> None:
    data = vectors.copy()
    data[3] = 0.0
    index = VectorIndex.build(data)
    queries = np.vstack([np.zeros((1, 16), dtype=np.float32), data[:4]])
    similarities, positions = index.search(queries, 200)
    assert np.isfinite(similarities).all()
    np.testing.assert_allclose(similarities[0], 0.0)  # zero query scores 0 against everything
    zero_rank = np.flatnonzero(positions[4] == 3)
    assert similarities[4, zero_rank] == pytest.approx(0.0)
    assert not np.isnan(normalize_rows(np.zeros((2, 3), dtype=np.float32))).any()


def test_huge_values_normalize_without_overflow() -> None:
    rows = np.array([[3e38, 3e38], [1e-30, 0.0]], dtype=np.float32)
    normalized = normalize_rows(rows)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, rtol=1e-6)


def test_bad_inputs_raise_value_error(vectors: np.ndarray) -> None:
    index = VectorIndex.build(vectors)
    with pytest.raises(ValueError, match="2-D"):
        VectorIndex.build(vectors[0])
    with pytest.raises(ValueError, match="columns"):
        index.search(vectors[:, :8], 3)
    with pytest.raises(ValueError, match="2-D"):
        index.search(vectors[0], 3)
    with pytest.raises(ValueError, match="columns"):
        index.add(np.ones((2, 17), dtype=np.float32))
    with pytest.raises(ValueError, match="k must"):
        index.search(vectors[:2], 0)
    bad = vectors.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex.build(bad)
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad[:1] * np.inf, 3)
    with pytest.raises(ValueError, match="kind"):
        VectorIndex.build(vectors, kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="real numbers"):
        VectorIndex.build(np.array([["a", "b"]]))


def _clustered(n: int = 2000, dim: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    return (centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)


def test_ivf_with_every_cell_probed_equals_brute_force() -> None:
    data = _clustered()
    index = VectorIndex.build(data, kind="ivf")
    assert index.kind == "ivf" and index.nlist is not None and index.nlist > 1
    sims, positions = index.search(data[:20], 5, nprobe=index.nlist)
    reference = exact_neighbours(data, data[:20], 5)
    assert np.array_equal(positions, reference)
    normalized = data / np.linalg.norm(data, axis=1, keepdims=True)
    expected = np.take_along_axis(normalized[:20] @ normalized.T, reference, axis=1)
    np.testing.assert_allclose(sims, expected, rtol=1e-5, atol=1e-5)


def test_exact_neighbours_matches_argsort() -> None:
    data = _clustered(300)
    normalized = data / np.linalg.norm(data, axis=1, keepdims=True)
    expected = np.argsort(-(normalized[:7] @ normalized.T), axis=1, kind="stable")[:, :4]
    assert np.array_equal(exact_neighbours(data, data[:7], 4), expected)


def test_exact_neighbours_in_chunks_equals_one_pass_and_breaks_ties_by_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _clustered(300)
    data[[40, 140, 240]] = data[10]  # exact ties across chunk boundaries
    whole = exact_neighbours(data, data[:12], 6)
    monkeypatch.setattr(vector_index, "_EXACT_CHUNK_ROWS", 7)
    chunked = exact_neighbours(data, data[:12], 6, block=5)
    np.testing.assert_array_equal(chunked, whole)
    assert chunked[10, :4].tolist() == [10, 40, 140, 240]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_calibrate_reaches_the_recall_target(kind: str) -> None:
    data = _clustered()
    index = (
        VectorIndex.build(data, kind=kind, nprobe=1, ef_search=1)
        if kind == "ivf"
        else (VectorIndex.build(data, kind=kind, hnsw_m=4, ef_construction=8))
    )
    recall = calibrate(index, data, target=0.97, sample_size=100)
    assert recall >= 0.97
    sample = np.arange(0, 2000, 20)
    assert recall_at_k(index, data, sample_positions=sample) >= 0.9  # default knob was set
    if kind == "ivf":
        assert index.nprobe is not None and index.nprobe > 1


def test_flat_recall_is_one() -> None:
    data = _clustered(300)
    index = VectorIndex.build(data, kind="flat")
    assert calibrate(index, data, target=0.99) == 1.0


def test_ivf_round_trip_keeps_nprobe(tmp_path: Path) -> None:
    data = _clustered()
    index = VectorIndex.build(data, kind="ivf", nprobe=3)
    index.save(tmp_path / "ivf.faiss")
    loaded = VectorIndex.load(tmp_path / "ivf.faiss")
    assert loaded.kind == "ivf" and loaded.nprobe == 3 and loaded.ntotal == 2000
    loaded.add(data[:5])
    _, positions = loaded.search(data[:1], 2, nprobe=loaded.nlist)
    assert set(positions[0].tolist()) == {0, 2000}


def test_auto_picks_the_approximate_kind_asked_for() -> None:
    data = _clustered(400)
    assert VectorIndex.build(data, exact_below=100, approximate="ivf").kind == "ivf"
    with pytest.raises(ValueError, match="approximate"):
        VectorIndex.build(data, approximate="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nlist"):
        VectorIndex.build(data, kind="ivf", nlist=401)
    with pytest.raises(ValueError, match="target"):
        calibrate(VectorIndex.build(data, kind="flat"), data, target=1.5)


def test_add_in_chunks_equals_one_shot_and_checks_every_chunk(
    monkeypatch: pytest.MonkeyPatch, vectors: np.ndarray
) -> None:
    """Rows are normalized / added CHUNK_ROWS at a time (no second full copy of a memory-mapped
    corpus); the result is the same index, and NaN in a late chunk is still refused."""
    whole = VectorIndex.build(vectors, kind="flat")
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 7)
    chunked = VectorIndex.build(vectors, kind="flat")
    assert chunked.ntotal == len(vectors)
    for got, want in zip(chunked.search(vectors, 10), whole.search(vectors, 10), strict=True):
        np.testing.assert_array_equal(got, want)
    bad = vectors.copy()
    bad[-1, 0] = np.nan  # in the last chunk only
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex.build(bad, kind="flat")
    assert chunked.ntotal == len(vectors)
