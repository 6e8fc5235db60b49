"""Near-duplicate detection for rows being added to an indexed pool.

Each new row is compared with the rows already indexed (one search of the pool index) and with
the *earlier* rows of the same batch (a temporary index over the batch), and reported when its
most similar match reaches a cosine-similarity threshold. Nothing is rejected: callers flag and
report. Exact search gives the true nearest match; an approximate pool index may miss some.

Sources:
    Broder (1997), "On the resemblance and containment of documents" (near-duplicate
    detection by similarity threshold); the search is the faiss wrapper in
    :mod:`app.sampling.vector_index`.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.sampling.vector_index import VectorIndex, as_float_matrix
from app.strategies.base import FloatArray, IntArray

_BATCH_CANDIDATES = 4  # neighbours looked at inside the batch (self + earlier rows)


@dataclass(frozen=True, eq=False)
class NearDuplicates:
    """New rows whose best match reaches the threshold.

    Attributes:
        rows: int64 ``[m]`` 0-based row numbers in the new batch, ascending.
        match_positions: int64 ``[m]`` the matched row: a pool position (``< start``) or, for a
            match inside the batch, ``start + earlier_row``.
        similarities: float32 ``[m]`` cosine similarity of each row and its match.
    """

    rows: IntArray
    match_positions: IntArray
    similarities: FloatArray


def find_near_duplicates(
    new_vectors: npt.ArrayLike,
    *,
    start: int,
    threshold: float,
    pool_index: VectorIndex | None = None,
    batch_index: VectorIndex | None = None,
) -> NearDuplicates:
    """Find rows of ``new_vectors`` that nearly duplicate a pool row or an earlier batch row.

    Args:
        new_vectors: float32 ``[b, d]`` the batch; row ``r`` will get position ``start + r``.
        start: position of the first new row (the pool size before the batch).
        threshold: cosine similarity at or above which a match is a near-duplicate, in
            ``(-1, 1]``.
        pool_index: index over positions ``0 .. start - 1`` (None or empty: no pool matches).
        batch_index: index over ``new_vectors`` (row ``r`` at index position ``r``); built
            exact here when None.

    Returns:
        :class:`NearDuplicates`; for a row with both kinds of match, the more similar one (ties
        go to the pool row).

    Raises:
        ValueError: for bad shapes, NaN/inf, an index of the wrong size or dimension, or a
            threshold outside ``(-1, 1]``.
    """
    matrix = as_float_matrix(new_vectors, name="new_vectors")
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (-1, 1], got {threshold}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    n_rows = int(matrix.shape[0])
    best_sims = np.full(n_rows, -np.inf, dtype=np.float32)
    best_positions = np.full(n_rows, -1, dtype=np.int64)
    if n_rows == 0:
        return NearDuplicates(best_positions, best_positions, best_sims)
    if pool_index is not None and pool_index.ntotal:
        if pool_index.ntotal != start:
            raise ValueError(f"pool_index holds {pool_index.ntotal} rows, expected {start}")
        sims, positions = pool_index.search(matrix, 1)
        best_sims, best_positions = sims[:, 0].copy(), positions[:, 0].copy()
    if n_rows > 1:
        if batch_index is None:
            batch_index = VectorIndex.build(matrix, kind="flat")
        if batch_index.ntotal != n_rows:
            raise ValueError(f"batch_index holds {batch_index.ntotal} rows, expected {n_rows}")
        sims, rows = batch_index.search(matrix, min(_BATCH_CANDIDATES, n_rows))
        earlier = (rows >= 0) & (rows < np.arange(n_rows)[:, None])
        masked = np.where(earlier, sims, -np.inf)
        pick = masked.argmax(axis=1)
        batch_sims = masked[np.arange(n_rows), pick]
        better = batch_sims > best_sims
        best_sims = np.where(better, batch_sims, best_sims).astype(np.float32)
        best_positions = np.where(better, start + rows[np.arange(n_rows), pick], best_positions)
    hit = np.flatnonzero((best_positions >= 0) & (best_sims >= np.float32(threshold)))
    return NearDuplicates(
        rows=hit.astype(np.int64),
        match_positions=best_positions[hit].astype(np.int64),
        similarities=best_sims[hit].astype(np.float32),
    )
