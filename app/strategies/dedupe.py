"""Keep near-duplicates out of a batch: a greedy cosine-similarity filter over a ranked list.

Every native strategy that ranks candidates by a score (uncertainty, BALD, information density)
takes its batch through :func:`select_distinct`: it ranks the candidates with
:func:`app.strategies.base.top_k`, then walks the ranking best first and drops any row whose
cosine similarity to a row already kept is at least ``max_similarity``. Only a shortlist
(``4 n`` rows, doubled while too few survive) is ever compared, so the cost is
``O(shortlist**2 * d)`` whatever the pool size. When the view carries no embeddings, or
``max_similarity >= 1``, the filter is off.
"""

import numpy as np
import numpy.typing as npt

from app.strategies.base import FloatArray, IntArray, Selection, top_k

DEFAULT_MAX_SIMILARITY = 0.99
_SHORTLIST_FACTOR = 4


def _unit_rows(x: npt.ArrayLike) -> FloatArray:
    """float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    array = np.array(x, dtype=np.float32)  # a private copy, [k, d]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array


def greedy_distinct(embeddings: FloatArray, max_similarity: float) -> npt.NDArray[np.bool_]:
    """Which rows of a ranked list survive a greedy near-duplicate filter.

    Row 0 is always kept; row ``i`` is kept when its cosine similarity to every row kept before
    it is below ``max_similarity``.

    Args:
        embeddings: float ``[k, d]`` vectors in rank order (best first).
        max_similarity: cosine threshold in ``(-1, 1]``; rows at or above it count as duplicates.

    Returns:
        bool ``[k]``: true for kept rows.

    Raises:
        ValueError: if ``embeddings`` is not 2-D or ``max_similarity`` is outside ``(-1, 1]``.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [k, d], got shape {x.shape}")
    if not -1.0 < max_similarity <= 1.0:
        raise ValueError(f"max_similarity must be in (-1, 1], got {max_similarity}")
    k = x.shape[0]
    unit = _unit_rows(x)
    similarities = unit @ unit.T  # [k, k]
    kept = np.zeros(k, dtype=bool)
    blocked = np.zeros(k, dtype=bool)
    for i in range(k):  # one vector operation per row of the shortlist, never per pool row
        if blocked[i]:
            continue
        kept[i] = True
        blocked |= similarities[i] >= max_similarity
    return kept


def select_distinct(
    candidates: IntArray,
    scores: npt.NDArray[np.floating],
    n: int,
    rng: np.random.Generator,
    *,
    embeddings: npt.NDArray[np.generic] | None,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
) -> Selection:
    """Top-``n`` candidates by score with no two rows at cosine similarity ``>= max_similarity``.

    Args:
        candidates: int64 ``[m]`` positions.
        scores: float ``[m]`` score per candidate (higher is better).
        n: batch size (``1 <= n <= m``).
        rng: seeded generator (tie-breaking in :func:`top_k`).
        embeddings: float ``[N, d]`` pool embeddings indexed by *position*, or None to skip the
            filter.
        max_similarity: cosine threshold; ``>= 1`` turns the filter off.

    Returns:
        Selection best first; ``info["n_near_duplicates_dropped"]`` counts rows skipped. If fewer
        than ``n`` distinct rows exist among all candidates, the best skipped rows fill the batch
        (``info["n_duplicates_refilled"]``), so a request the pool can satisfy never fails.

    Raises:
        PoolExhausted: if ``n > m``.
    """
    if embeddings is None or max_similarity >= 1.0:
        return top_k(candidates, scores, n, rng)
    m = int(candidates.shape[0])
    shortlist = min(m, _SHORTLIST_FACTOR * n)
    while True:
        ranked = top_k(candidates, scores, shortlist, rng)  # best first
        kept = greedy_distinct(np.asarray(embeddings[ranked.positions]), max_similarity)
        if int(kept.sum()) >= n or shortlist == m:
            break
        shortlist = min(m, 2 * shortlist)
    keep_rows = np.flatnonzero(kept)[:n]
    n_refilled = n - keep_rows.size
    if n_refilled > 0:  # the pool holds too few distinct rows: fill with the best dropped ones
        keep_rows = np.sort(np.concatenate([keep_rows, np.flatnonzero(~kept)[:n_refilled]]))
    last = int(keep_rows[-1]) + 1
    selection = Selection(
        positions=ranked.positions[keep_rows], scores=ranked.scores[keep_rows]
    )
    selection.info["n_near_duplicates_dropped"] = int((~kept[:last]).sum()) - n_refilled
    if n_refilled:
        selection.info["n_duplicates_refilled"] = int(n_refilled)
    return selection
