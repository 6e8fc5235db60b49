"""Cosine-similarity nearest-neighbour search over position-indexed vectors (faiss wrapper).

This is the only module of the service that imports ``faiss``. Vectors are L2-normalized on the
way in (index and queries alike), so inner product equals cosine similarity; rows of all zeros
stay zero and score 0 against everything instead of producing NaN.

faiss's ``D, I`` are renamed at this boundary to ``similarities, positions``; ``-1`` in
``positions`` (and ``-inf`` in ``similarities``) marks "no result", as in faiss.

Sources:
    Johnson, Douze & Jégou (2019), "Billion-scale similarity search with GPUs" (faiss);
    ``IndexFlatIP`` is the exact brute-force reference.
    Malkov & Yashunin (2018), "Efficient and robust approximate nearest neighbor search using
    Hierarchical Navigable Small World graphs" (``IndexHNSWFlat``).
    Jégou, Douze & Schmid (2011), "Product quantization for nearest neighbor search" (the
    inverted file, ``IndexIVFFlat``: k-means cells, ``nprobe`` of them scanned per query).
"""

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from app.sampling.mapped_pages import gather_rows, release_rows
from app.strategies.base import FloatArray, IntArray

IndexKind = Literal["flat", "hnsw", "ivf"]
ApproximateKind = Literal["hnsw", "ivf"]

DEFAULT_EXACT_BELOW = 200_000
# HNSW build defaults. M=16 is hnswlib's default and mid-range of faiss's guidance (M 4-64);
# efConstruction=64 (4 M) sits between faiss's own default (40) and hnswlib's (200). Build time
# grows about linearly in both; M=32 / efConstruction=200 took several times as long at 1M
# rows on 2 cores, and the search-time ef_search is calibrated to the recall target anyway.
DEFAULT_HNSW_M = 16
DEFAULT_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 8
IVF_MIN_POINTS_PER_CELL = 39  # faiss warns below 39 training points per k-means centroid
IVF_TRAIN_POINTS_PER_CELL = 64  # k-means training sample: at most this many points per cell
_EXACT_BLOCK_ENTRIES = 1 << 21  # exact_neighbours: query x row similarities per block
_EXACT_CHUNK_ROWS = 4096  # exact_neighbours: indexed rows per pass (~6 MiB at d=384)
CHUNK_ROWS = 16_384  # rows checked / normalized / added per step (temporaries <= ~25 MiB)


def set_search_threads(n: int) -> None:
    """Use ``n`` OpenMP threads for faiss builds and searches in this process (0 keeps faiss's
    default, every core). Job processes pass their torch thread count: an index rebuilt after
    a retrain then leaves the other cores to the API on a shared host."""
    if n > 0:
        faiss.omp_set_num_threads(n)


def as_float_matrix(vectors: npt.ArrayLike, *, name: str, dim: int | None = None) -> FloatArray:
    """Validate a 2-D matrix of finite numbers and return it as float32 (no copy when possible).

    Args:
        vectors: array-like ``[n, d]`` of real numbers.
        name: argument name used in error messages.
        dim: required number of columns, or None for any ``d >= 1``.

    Returns:
        float32 ``[n, d]`` view or copy of ``vectors``.

    Raises:
        ValueError: if ``vectors`` is not 2-D, has the wrong number of columns, is not numeric,
            or holds NaN/inf.
    """
    array = np.asarray(vectors)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {array.shape}")
    if dim is None and array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got shape {array.shape}")
    array = array.astype(np.float32, copy=False)
    for start in range(0, array.shape[0], CHUNK_ROWS):  # no [n, d] bool temporary
        finite = bool(np.isfinite(array[start : start + CHUNK_ROWS]).all())
        release_rows(array, slice(start, start + CHUNK_ROWS))  # a read-only map: one chunk held
        if not finite:
            raise ValueError(f"{name} contains NaN or infinite values")
    return array


def normalize_rows(vectors: FloatArray) -> FloatArray:
    """Return a float32 copy of ``vectors`` with every row scaled to unit L2 norm.

    Rows of all zeros stay zero (no NaN). Each row is first divided by its largest absolute
    value so that squaring cannot overflow float32.

    Args:
        vectors: float32 ``[n, d]`` finite values.

    Returns:
        float32 ``[n, d]`` new array; non-zero rows have norm 1 (to float32 precision).
    """
    out = np.array(vectors, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    peak = np.maximum(out.max(axis=1), -out.min(axis=1))  # no [n, d] np.abs temporary
    out /= np.where(peak > 0, peak, 1.0).astype(np.float32)[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    out /= np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]
    return out


class VectorIndex:
    """Exact, HNSW or IVF inner-product index over L2-normalized float32 vectors.

    Positions are the insertion order: the first vector given to :meth:`build` is position 0
    and :meth:`add` continues the numbering.

    Searching is safe from many threads at once; :meth:`add` is not (build first, then share).
    Create instances with :meth:`build` or :meth:`load`.
    """

    def __init__(self, index: Any, kind: IndexKind) -> None:
        """Wrap an existing faiss index (use :meth:`build` or :meth:`load` instead)."""
        self._index = index
        self._kind: IndexKind = kind

    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        *,
        kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto",
        exact_below: int = DEFAULT_EXACT_BELOW,
        approximate: ApproximateKind = "hnsw",
        hnsw_m: int = DEFAULT_HNSW_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        nlist: int | None = None,
        nprobe: int = DEFAULT_NPROBE,
        seed: int = 0,
    ) -> "VectorIndex":
        """Build an index over ``vectors`` (normalized here; the input is not modified).

        Args:
            vectors: float32 ``[n, d]`` finite vectors; row ``i`` becomes position ``i``.
            kind: ``"flat"`` for exact search (``IndexFlatIP``), ``"hnsw"`` for approximate
                search (``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``), ``"ivf"`` for an
                inverted file (``IndexIVFFlat``, k-means cells), ``"auto"`` for flat when
                ``n < exact_below`` and ``approximate`` otherwise.
            exact_below: size under which ``"auto"`` stays exact.
            approximate: the kind ``"auto"`` picks at or above ``exact_below``.
            hnsw_m: HNSW graph degree ``M``.
            ef_construction: HNSW build-time beam width.
            ef_search: default HNSW search-time beam width (raised to ``k`` when smaller).
            nlist: IVF cell count; default ``4 * sqrt(n)``, at most ``n / 39`` (at least 1).
            nprobe: default IVF cells scanned per query (at most ``nlist``).
            seed: k-means seed of the IVF training.

        Returns:
            A new VectorIndex holding ``n`` vectors.

        Raises:
            ValueError: for a non-2-D or non-finite ``vectors``, an unknown ``kind`` or
                non-positive HNSW/IVF parameters.
        """
        matrix = as_float_matrix(vectors, name="vectors")
        if kind not in ("auto", "flat", "hnsw", "ivf"):
            raise ValueError(f"kind must be 'auto', 'flat', 'hnsw' or 'ivf', got {kind!r}")
        if approximate not in ("hnsw", "ivf"):
            raise ValueError(f"approximate must be 'hnsw' or 'ivf', got {approximate!r}")
        if exact_below < 0:
            raise ValueError(f"exact_below must be >= 0, got {exact_below}")
        auto_kind: IndexKind = "flat" if matrix.shape[0] < exact_below else approximate
        resolved: IndexKind = auto_kind if kind == "auto" else kind
        dim = int(matrix.shape[1])
        index: Any
        if resolved == "flat":
            index = faiss.IndexFlatIP(dim)
        elif resolved == "hnsw":
            for param, value in (
                ("hnsw_m", hnsw_m),
                ("ef_construction", ef_construction),
                ("ef_search", ef_search),
            ):
                if value < 1:
                    raise ValueError(f"{param} must be >= 1, got {value}")
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            index = _trained_ivf(matrix, nlist=nlist, nprobe=nprobe, seed=seed)
        wrapped = cls(index, resolved)
        wrapped.add(matrix)
        return wrapped

    @property
    def kind(self) -> IndexKind:
        """``"flat"`` (exact), ``"hnsw"`` or ``"ivf"`` (approximate)."""
        return self._kind

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors (positions ``0 .. ntotal - 1``)."""
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension ``d``."""
        return int(self._index.d)

    @property
    def ef_search(self) -> int | None:
        """Default HNSW search beam width, or None for another kind."""
        return int(self._index.hnsw.efSearch) if self._kind == "hnsw" else None

    @property
    def nprobe(self) -> int | None:
        """Default IVF cells scanned per query, or None for another kind."""
        return int(self._index.nprobe) if self._kind == "ivf" else None

    @property
    def nlist(self) -> int | None:
        """IVF cell count, or None for another kind."""
        return int(self._index.nlist) if self._kind == "ivf" else None

    def search_params(self) -> dict[str, int]:
        """The default search-time knob: ``{"ef_search": ..}``, ``{"nprobe": .., "nlist": ..}``
        or ``{}`` for an exact index."""
        if self._kind == "hnsw":
            return {"ef_search": int(self._index.hnsw.efSearch)}
        if self._kind == "ivf":
            return {"nprobe": int(self._index.nprobe), "nlist": int(self._index.nlist)}
        return {}

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the default HNSW ``ef_search`` or IVF ``nprobe`` (not thread-safe: do it before
        sharing the index). Values for another kind are ignored.

        Raises:
            ValueError: for a value below 1.
        """
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self._kind == "hnsw" and ef_search is not None:
            self._index.hnsw.efSearch = int(ef_search)
        if self._kind == "ivf" and nprobe is not None:
            self._index.nprobe = int(min(nprobe, self._index.nlist))

    def __repr__(self) -> str:
        """Short description: kind, size and dimension."""
        return f"VectorIndex(kind={self._kind!r}, ntotal={self.ntotal}, dim={self.dim})"

    def add(self, vectors: npt.ArrayLike) -> None:
        """Append vectors; they get positions ``ntotal .. ntotal + m - 1``.

        Rows are normalized and added ``CHUNK_ROWS`` at a time, so the only full copy is the
        one FAISS stores; a read-only memory map's pages are released after each chunk
        (:func:`app.sampling.mapped_pages.release_rows`).

        Args:
            vectors: float32 ``[m, d]`` finite vectors (normalized here).

        Raises:
            ValueError: if ``vectors`` is not ``[m, dim]`` or holds NaN/inf.
        """
        matrix = as_float_matrix(vectors, name="vectors", dim=self.dim)
        for start in range(0, matrix.shape[0], CHUNK_ROWS):
            self._index.add(normalize_rows(matrix[start : start + CHUNK_ROWS]))
            release_rows(matrix, slice(start, start + CHUNK_ROWS))

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> tuple[FloatArray, IntArray]:
        """Find the ``k`` most cosine-similar indexed vectors of each query, best first.

        Args:
            queries: float32 ``[q, d]`` finite query vectors (normalized here).
            k: results per query, ``>= 1``; beyond ``ntotal`` the rows are padded.
            ef_search: HNSW beam width for this call only (thread-safe); defaults to the
                index's; always raised to at least ``k``. Ignored by other kinds.
            nprobe: IVF cells to scan for this call only (thread-safe); defaults to the
                index's. Ignored by other kinds.

        Returns:
            ``(similarities, positions)``: float32 ``[q, k]`` cosine similarities in descending
            order and int64 ``[q, k]`` positions; missing results have position ``-1`` and
            similarity ``-inf``.

        Raises:
            ValueError: if ``queries`` is not ``[q, dim]``, holds NaN/inf, or ``k < 1``.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        k = int(k)
        matrix = as_float_matrix(queries, name="queries", dim=self.dim)
        n_queries = int(matrix.shape[0])
        similarities = np.full((n_queries, k), -np.inf, dtype=np.float32)
        positions = np.full((n_queries, k), -1, dtype=np.int64)
        k_found = min(k, self.ntotal)
        if n_queries == 0 or k_found == 0:
            return similarities, positions
        normalized = normalize_rows(matrix)
        if self._kind == "hnsw":
            if ef_search is not None and ef_search < 1:
                raise ValueError(f"ef_search must be >= 1, got {ef_search}")
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef_search or int(self._index.hnsw.efSearch), k_found)
            found_sims, found_positions = self._index.search(normalized, k_found, params=params)
        elif self._kind == "ivf":
            if nprobe is not None and nprobe < 1:
                raise ValueError(f"nprobe must be >= 1, got {nprobe}")
            ivf_params = faiss.SearchParametersIVF()  # type: ignore[attr-defined]
            ivf_params.nprobe = min(nprobe or int(self._index.nprobe), int(self._index.nlist))
            found_sims, found_positions = self._index.search(normalized, k_found, params=ivf_params)
        else:
            found_sims, found_positions = self._index.search(normalized, k_found)
        found_positions = np.asarray(found_positions, dtype=np.int64)
        found_sims = np.where(found_positions >= 0, found_sims, -np.inf).astype(np.float32)
        similarities[:, :k_found] = found_sims
        positions[:, :k_found] = found_positions
        return similarities, positions

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically (temp file in the same folder, then rename).

        Args:
            path: destination file; its folder must exist. Readers never see a partial file.

        Raises:
            FileNotFoundError: if the destination folder does not exist.
        """
        target = Path(path)
        folder = target.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {str(folder)!r} does not exist")
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp_name)
            with open(tmp_name, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "VectorIndex":
        """Read an index written by :meth:`save`.

        Args:
            path: file written by :meth:`save` (or any faiss ``IndexFlatIP`` /
                inner-product ``IndexHNSWFlat`` / ``IndexIVFFlat`` over normalized vectors).

        Returns:
            The loaded VectorIndex (HNSW keeps its saved ``efSearch``).

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a faiss index, or holds another index type or
                metric.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"no index file at {str(source)!r}")
        try:
            index = faiss.read_index(str(source))
        except RuntimeError as exc:  # faiss reports corrupt / foreign files this way
            raise ValueError(f"{str(source)!r} is not a readable faiss index: {exc}") from exc
        if int(index.metric_type) != int(faiss.METRIC_INNER_PRODUCT):
            raise ValueError(f"{str(source)!r}: expected an inner-product index")
        if isinstance(index, faiss.IndexHNSWFlat):
            return cls(index, "hnsw")
        if isinstance(index, faiss.IndexIVFFlat):
            return cls(index, "ivf")
        if isinstance(index, faiss.IndexFlat):
            return cls(index, "flat")
        raise ValueError(f"{str(source)!r}: unsupported index type {type(index).__name__}")


def _trained_ivf(matrix: FloatArray, *, nlist: int | None, nprobe: int, seed: int) -> Any:
    """An ``IndexIVFFlat`` (inner product) whose cells are k-means trained on ``matrix``.

    k-means sees a random sample of at most ``IVF_TRAIN_POINTS_PER_CELL`` rows per cell (faiss
    recommends 30-256 training points per centroid and subsamples above 256 itself), gathered
    and normalized ``CHUNK_ROWS`` at a time into one float32 matrix that is freed after
    training.
    """
    n_rows, dim = int(matrix.shape[0]), int(matrix.shape[1])
    if n_rows < 1:
        raise ValueError("an IVF index needs at least one vector to train its cells")
    if nlist is None:
        nlist = int(round(4 * math.sqrt(n_rows)))
        nlist = max(1, min(nlist, n_rows // IVF_MIN_POINTS_PER_CELL))
    if nlist < 1 or nlist > n_rows:
        raise ValueError(f"nlist must lie in [1, {n_rows}], got {nlist}")
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
    index.cp.min_points_per_centroid = 1
    sample_size = min(n_rows, nlist * IVF_TRAIN_POINTS_PER_CELL)
    sample = np.sort(np.random.default_rng(seed).choice(n_rows, size=sample_size, replace=False))
    training = np.empty((sample_size, dim), dtype=np.float32)  # the only copy: filled by chunks
    for start in range(0, sample_size, CHUNK_ROWS):
        rows = sample[start : start + CHUNK_ROWS]
        training[start : start + rows.size] = normalize_rows(gather_rows(matrix, rows))
    index.train(training)
    del training
    index.nprobe = min(nprobe, nlist)
    index.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees its quantizer
    return index


def exact_neighbours(
    vectors: npt.ArrayLike, queries: npt.ArrayLike, k: int, *, block: int = 512
) -> IntArray:
    """Brute-force cosine top-``k`` (the reference for recall), one pass over ``vectors``.

    The indexed vectors are read ``_EXACT_CHUNK_ROWS`` rows at a time (normalized per chunk; a
    read-only memory map's pages are released after each chunk), and each query keeps a running
    top-``k``, so memory is one chunk plus ``[q, k]`` results, not a copy of ``vectors``.
    Ties go to the lower position.

    Args:
        vectors: float32 ``[n, d]`` the indexed vectors (may be a memory map).
        queries: float32 ``[q, d]``.
        k: neighbours per query, ``1 <= k``; capped at ``n``.
        block: queries per matrix product (at most ``2**21 / _EXACT_CHUNK_ROWS``: bounds the
            similarity block).

    Returns:
        int64 ``[q, min(k, n)]`` positions, most similar first.

    Raises:
        ValueError: for bad shapes, NaN/inf or ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    matrix = as_float_matrix(vectors, name="vectors")
    query_matrix = normalize_rows(as_float_matrix(queries, name="queries", dim=matrix.shape[1]))
    n_rows, n_queries = int(matrix.shape[0]), int(query_matrix.shape[0])
    k = min(k, n_rows)
    best_positions = np.zeros((n_queries, 0), dtype=np.int64)
    best_sims = np.zeros((n_queries, 0), dtype=np.float32)
    if k == 0 or n_queries == 0:
        return np.zeros((n_queries, k), dtype=np.int64)
    chunk_rows = _EXACT_CHUNK_ROWS
    block = max(1, min(block, _EXACT_BLOCK_ENTRIES // chunk_rows))
    for first in range(0, n_rows, chunk_rows):
        chunk = normalize_rows(matrix[first : first + chunk_rows])
        release_rows(matrix, slice(first, first + chunk_rows))
        take = min(k, chunk.shape[0])
        chunk_positions = np.empty((n_queries, take), dtype=np.int64)
        chunk_sims = np.empty((n_queries, take), dtype=np.float32)
        for start in range(0, n_queries, block):
            sims = query_matrix[start : start + block] @ chunk.T
            top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
            chunk_positions[start : start + block] = top + first
            chunk_sims[start : start + block] = np.take_along_axis(sims, top, axis=1)
        merged_positions = np.concatenate([best_positions, chunk_positions], axis=1)
        merged_sims = np.concatenate([best_sims, chunk_sims], axis=1)
        order = np.lexsort((merged_positions, -merged_sims), axis=-1)[:, :k]
        best_positions = np.take_along_axis(merged_positions, order, axis=1)
        best_sims = np.take_along_axis(merged_sims, order, axis=1)
    return best_positions


def _drop_self(positions: IntArray, sample: IntArray, k: int) -> IntArray:
    """int64 ``[s, k]``: each row's first ``k`` positions other than the query row itself."""
    not_self = positions != sample[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")  # keeps rank order among non-self
    return np.take_along_axis(positions, order, axis=1)[:, :k]


def recall_at_k(
    index: VectorIndex,
    vectors: npt.ArrayLike,
    *,
    sample_positions: npt.ArrayLike,
    k: int = 10,
    reference: IntArray | None = None,
    ef_search: int | None = None,
    nprobe: int | None = None,
) -> float:
    """Mean recall@k of ``index`` against exact search, querying with indexed rows.

    recall@k = |approximate top-k ∩ exact top-k| / k per query, averaged. The query row
    itself is left out of both lists (it is trivially found and would inflate the recall of
    queries that are not in the index).

    Args:
        index: the index under test, built over ``vectors``.
        vectors: float32 ``[n, d]`` the indexed vectors.
        sample_positions: int64 ``[s]`` rows used as queries.
        k: neighbours compared.
        reference: int64 ``[s, k]`` exact neighbours of the sample without the query row
            (computed here when None).
        ef_search: HNSW beam width to test (default: the index's).
        nprobe: IVF cells to test (default: the index's).

    Returns:
        Recall in ``[0, 1]``; 1.0 for an empty sample.
    """
    sample = np.asarray(sample_positions, dtype=np.int64)
    if sample.size == 0:
        return 1.0
    queries = np.asarray(gather_rows(vectors, sample), dtype=np.float32)
    if reference is None:
        reference = _drop_self(exact_neighbours(vectors, queries, k + 1), sample, k)
    width = reference.shape[1]
    _, found = index.search(queries, width + 1, ef_search=ef_search, nprobe=nprobe)
    found = _drop_self(found, sample, width)
    hits = (found[:, :, None] == reference[:, None, :]).any(axis=2).sum()
    return float(hits / (sample.size * width))


CALIBRATION_SHIFT = 0.25
"""Calibration queries are indexed rows moved this far toward another random indexed row."""


def calibration_queries(vectors: npt.ArrayLike, sample_size: int, seed: int) -> FloatArray:
    """Out-of-sample but embedding-like queries: ``normalize(0.75 x_i + 0.25 x_j)`` for random
    rows ``i, j`` of ``vectors`` (float32 ``[min(sample_size, n), d]``).

    Querying with indexed rows themselves overstates recall (a row's nearest neighbours are
    often its own near-copies, which share its cell or graph region); rows shifted toward
    another row behave more like new queries.
    """
    matrix = np.asarray(vectors)
    n_rows = int(matrix.shape[0])
    rng = np.random.default_rng(seed)
    size = min(sample_size, n_rows)
    first = np.sort(rng.choice(n_rows, size=size, replace=False))
    second = rng.integers(0, n_rows, size=size)
    # gather_rows: scattered reads of a memory map would leave much of the file resident
    mixed = (1.0 - CALIBRATION_SHIFT) * normalize_rows(
        as_float_matrix(gather_rows(matrix, first), name="vectors")
    ) + CALIBRATION_SHIFT * normalize_rows(
        as_float_matrix(gather_rows(matrix, second), name="vectors")
    )
    return normalize_rows(mixed.astype(np.float32))


def calibrate(
    index: VectorIndex,
    vectors: npt.ArrayLike,
    *,
    target: float,
    sample_size: int = 200,
    k: int = 10,
    seed: int = 0,
) -> float:
    """Set the default ``ef_search`` / ``nprobe`` so that recall@k reaches ``target``.

    Doubles the knob (HNSW ``ef_search`` from 16, IVF ``nprobe`` from 1) until the recall@k
    measured against exact search on :func:`calibration_queries` reaches the stricter
    ``1 - (1 - target) / 2``, then doubles it once more as head room (the sample is small and
    real queries vary). The result is a floor, not an estimate. A flat index is exact. Not
    thread-safe: calibrate before sharing the index.

    Args:
        index: the index, built over ``vectors``.
        vectors: float32 ``[n, d]``.
        target: recall@k wanted, in ``(0, 1]``.
        sample_size: calibration queries.
        k: neighbours compared.
        seed: query seed.

    Returns:
        The recall@k measured at the chosen setting.

    Raises:
        ValueError: if ``target`` is outside ``(0, 1]``.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must lie in (0, 1], got {target}")
    n_rows = index.ntotal
    if n_rows == 0 or index.kind == "flat":
        return 1.0
    queries = calibration_queries(vectors, sample_size, seed)
    reference = exact_neighbours(vectors, queries, k)
    width = reference.shape[1]

    def measure(**knob: int) -> float:
        _, found = index.search(queries, width, **knob)
        return float((found[:, :, None] == reference[:, None, :]).any(axis=2).mean())

    if index.kind == "hnsw":
        key, limit = "ef_search", max(16, n_rows)
        settings = [16 << i for i in range(20) if (16 << i) <= limit]
    else:
        key, limit = "nprobe", int(index.nlist or 1)
        settings = [1 << i for i in range(32) if (1 << i) < limit] + [limit]
    strict = 1.0 - (1.0 - target) / 2.0
    chosen = settings[-1]
    for value in settings:
        if measure(**{key: value}) >= strict:
            chosen = min(2 * value, limit)
            break
    index.set_search_params(**{key: chosen})
    return measure(**{key: chosen})
