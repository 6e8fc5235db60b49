"""Label spreading on a k-nearest-neighbour graph (transductive pseudo-labels for a whole pool).

Zhou, Bousquet, Lal, Weston & Schölkopf (2004), "Learning with Local and Global Consistency"
(NIPS): with a symmetric affinity ``W`` (zero diagonal), ``S = D^-1/2 W D^-1/2`` and the label
matrix ``Y`` (one column per class, non-zero on the labeled rows), the spread scores are the
fixed point ``F = (1 - alpha) (I - alpha S)^-1 Y``: every row's score is its own label plus
``alpha`` times its neighbours' scores, so labels flow along the manifold of the pool.

Iscen, Tolias, Avrithis & Chum (2019), "Label Propagation for Deep Semi-supervised Learning"
(CVPR) made it practical for large pools, and this module follows their recipe:

- the graph is a kNN graph on L2-normalized rows (cosine similarities) found with faiss;
  affinities ``w_ij = max(0, s_ij)^gamma`` (``gamma = 3``), ``W = A + A^T``. Their ``k = 50``
  and ``alpha = 0.99`` suit CIFAR-10's 5,000 images per class; the defaults here are ``k = 10``
  and ``alpha = 0.9`` (why: :class:`~app.ml.ssl_methods.SemiSupervisedConfig`);
- ``(I - alpha S) F = Y`` is solved with conjugate gradient (at most 20 iterations) instead
  of a dense inverse (``t`` iterations carry a label at most ``t`` edges: rows farther than
  that from every label get no score and weight 0); ``Y``'s column ``c`` is ``1 / |L_c|``
  on the labeled rows of class ``c``, so every class starts with the same mass (their
  class-size normalization; classes without labels get a zero column);
- the pseudo-label of row ``i`` is ``argmax_c F_ic`` and its weight is
  ``omega_i = 1 - H(z_i) / log C`` with ``z_i`` the L1-normalized non-negative scores
  (their eq. 11), divided by the largest weight; labeled rows keep their label at weight 1.

The conjugate gradient here is one vectorized loop over all class columns at once (each
column has its own step sizes, exactly the CG recurrences of a single right-hand side), in
float32 with one sparse matrix-matrix product per iteration.
"""

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from app.sampling.vector_index import VectorIndex, as_float_matrix
from app.strategies.base import FloatArray, IntArray

__all__ = [
    "DEFAULT_EXACT_BELOW",
    "Spreading",
    "batched_conjugate_gradient",
    "knn_graph",
    "normalized_affinity",
    "spread_labels",
]

# exact (IndexFlatIP) search costs n^2 d: about 8 s of 2 cores at 30k x 384; an IVF index
# (k-means cells, Jégou et al. 2011) above that keeps a 110k pool's graph to seconds
DEFAULT_EXACT_BELOW = 30_000
_SEARCH_BLOCK = 8_192  # rows searched per faiss call (bounds the [block, k] temporaries)


@dataclass(frozen=True)
class Spreading:
    """What :func:`spread_labels` returns (rows in the order of ``x``).

    Attributes:
        scores: float32 ``[n, c]`` non-negative spread scores ``max(F, 0)``.
        labels: int64 ``[n]`` ``argmax`` of the scores; labeled rows keep their own label.
        weights: float32 ``[n]`` certainty ``1 - H(z) / log C`` normalized to a maximum of 1
            over the unlabeled rows; 1 on labeled rows, 0 on rows the spreading never reached.
        iterations: conjugate-gradient iterations run.
        seconds: wall seconds of graph + solve.
    """

    scores: FloatArray
    labels: IntArray
    weights: FloatArray
    iterations: int
    seconds: float


def knn_graph(
    x: npt.ArrayLike,
    neighbors: int = 10,
    *,
    gamma: float = 3.0,
    exact_below: int = DEFAULT_EXACT_BELOW,
    seed: int = 0,
) -> sp.csr_matrix:
    """Symmetric kNN affinity ``W = A + A^T`` with ``A_ij = max(0, cos(x_i, x_j))^gamma``.

    ``A`` holds each row's ``neighbors`` most cosine-similar other rows
    (:class:`~app.sampling.vector_index.VectorIndex`: exact ``IndexFlatIP`` below
    ``exact_below`` rows, an IVF index above). The diagonal is zero.

    Args:
        x: float ``[n, d]`` finite features (n >= 2).
        neighbors: ``k >= 1`` neighbours per row (capped at ``n - 1``).
        gamma: similarity exponent ``> 0`` (Iscen et al.: 3).
        exact_below: pools of fewer rows use exact search.
        seed: k-means seed of the IVF index.

    Returns:
        float32 CSR ``[n, n]``, symmetric, non-negative, zero diagonal.

    Raises:
        ValueError: on a bad ``x`` (not 2-D, non-finite, fewer than 2 rows), ``neighbors < 1``
            or ``gamma <= 0``.
    """
    matrix = as_float_matrix(x, name="x")
    n = int(matrix.shape[0])
    if n < 2:
        raise ValueError(f"need at least 2 rows for a graph, got {n}")
    if neighbors < 1:
        raise ValueError(f"neighbors must be >= 1, got {neighbors}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    k = min(int(neighbors), n - 1)
    index = VectorIndex.build(
        matrix, kind="auto", exact_below=exact_below, approximate="ivf", seed=seed
    )
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _SEARCH_BLOCK):
        stop = min(start + _SEARCH_BLOCK, n)
        sims, pos = index.search(matrix[start:stop], k + 1)
        own = pos == np.arange(start, stop)[:, None]
        # drop the row itself, or the last hit when a duplicate outranked it
        own[~own.any(axis=1), -1] = True
        own &= np.cumsum(own, axis=1) == 1
        cols[start:stop] = pos[~own].reshape(-1, k)
        vals[start:stop] = sims[~own].reshape(-1, k)
    found = cols >= 0
    weight = np.power(np.maximum(np.where(found, vals, 0.0), 0.0), gamma).astype(np.float32)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    a = sp.csr_matrix(
        (weight.ravel(), (rows, np.where(found, cols, np.arange(n)[:, None]).ravel())),
        shape=(n, n),
        dtype=np.float32,
    )
    w = (a + a.T).tocsr()
    w.setdiag(0.0)
    w.eliminate_zeros()
    return w.astype(np.float32)


def normalized_affinity(w: sp.spmatrix) -> sp.csr_matrix:
    """``S = D^-1/2 W D^-1/2`` with ``D = diag(W 1)`` (rows without edges stay zero).

    Args:
        w: ``[n, n]`` symmetric non-negative sparse affinity.

    Returns:
        float32 CSR ``[n, n]``; its eigenvalues lie in ``[-1, 1]``.

    Raises:
        ValueError: if ``w`` is not square or has negative entries.
    """
    w = sp.csr_matrix(w, dtype=np.float32)
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"w must be square, got {w.shape}")
    if w.nnz and float(w.data.min()) < 0:
        raise ValueError("w must be non-negative")
    degree = np.asarray(w.sum(axis=1), dtype=np.float64).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-30)), 0.0)
    d = sp.diags(inv_sqrt.astype(np.float32))
    return (d @ w @ d).tocsr().astype(np.float32)


def batched_conjugate_gradient(
    s: sp.spmatrix,
    b: npt.ArrayLike,
    *,
    alpha: float,
    max_iter: int = 20,
    tol: float = 1e-6,
) -> tuple[FloatArray, int]:
    """Solve ``(I - alpha S) X = B`` column by column with conjugate gradient, vectorized.

    Each column runs the textbook CG recurrences (Hestenes & Stiefel 1952) with its own step
    sizes; the columns share one sparse product ``S @ P`` per iteration. ``I - alpha S`` is
    symmetric positive definite for symmetric ``S`` with spectrum in ``[-1, 1]`` and
    ``0 <= alpha < 1``. The loop stops after ``max_iter`` iterations or when every column's
    residual norm is at most ``tol`` times its right-hand side's norm (zero columns are done).

    Args:
        s: ``[n, n]`` symmetric sparse matrix (e.g. :func:`normalized_affinity`).
        b: float ``[n, c]`` right-hand sides.
        alpha: ``0 <= alpha < 1``.
        max_iter: at most this many iterations (>= 1).
        tol: relative residual tolerance (>= 0).

    Returns:
        ``(x, iterations)``: float32 ``[n, c]`` and the iterations run.

    Raises:
        ValueError: on mismatched shapes, ``alpha`` outside ``[0, 1)``, ``max_iter < 1`` or
            ``tol < 0``.
    """
    rhs = np.array(b, dtype=np.float32, copy=True)
    if rhs.ndim != 2 or s.shape != (rhs.shape[0], rhs.shape[0]):
        raise ValueError(f"need s [n, n] and b [n, c], got {s.shape} and {rhs.shape}")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    if max_iter < 1 or tol < 0:
        raise ValueError(f"need max_iter >= 1 and tol >= 0, got {max_iter}, {tol}")
    s = sp.csr_matrix(s, dtype=np.float32)
    x = np.zeros_like(rhs)
    r = rhs  # residual of x = 0
    p = r.copy()
    rs = np.einsum("ij,ij->j", r, r)
    limit = (tol**2) * rs
    iterations = 0
    for it in range(1, max_iter + 1):
        iterations = it
        ap = p - np.float32(alpha) * (s @ p)
        curvature = np.einsum("ij,ij->j", p, ap)
        step = np.where(curvature > 0, rs / np.where(curvature > 0, curvature, 1.0), 0.0)
        step = step.astype(np.float32)
        x += step * p
        r -= step * ap
        rs_new = np.einsum("ij,ij->j", r, r)
        if bool(np.all(rs_new <= limit)):
            break
        beta = np.where(rs > 0, rs_new / np.where(rs > 0, rs, 1.0), 0.0).astype(np.float32)
        p = r + beta * p
        rs = rs_new
    return x, iterations


def spread_labels(
    x: npt.ArrayLike | None,
    labeled: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    neighbors: int = 10,
    alpha: float = 0.9,
    gamma: float = 3.0,
    max_iter: int = 20,
    exact_below: int = DEFAULT_EXACT_BELOW,
    seed: int = 0,
    graph: sp.spmatrix | None = None,
) -> Spreading:
    """Label spreading with Iscen et al.'s weights (module docstring) over all rows of ``x``.

    Args:
        x: float ``[n, d]`` features of every row, labeled and unlabeled (n >= 2). Ignored
            (may be None) when ``graph`` is given.
        labeled: int ``[l]`` distinct row indices into ``x`` that carry labels (l >= 1).
        labels: int ``[l]`` their classes in ``[0, n_classes)``.
        n_classes: number of classes ``C >= 2``.
        neighbors, gamma, exact_below, seed: of the graph (:func:`knn_graph`).
        alpha: propagation strength in ``(0, 1)`` (Zhou et al. / Iscen et al.: 0.99).
        max_iter: conjugate-gradient iterations (Iscen et al.: 20).
        graph: an affinity ``W`` from :func:`knn_graph` to reuse (e.g. the same pool spread
            from two label sets; normalized here); None builds it from ``x``.

    Returns:
        Spreading.

    Raises:
        ValueError: on bad shapes, repeated or out-of-range indices, labels outside
            ``[0, n_classes)``, ``n_classes < 2``, ``alpha`` outside ``(0, 1)`` or neither
            ``x`` nor ``graph``.
    """
    started = time.perf_counter()
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = normalized_affinity(graph) if graph is not None else None
    if s is None:
        if x is None:
            raise ValueError("need x or graph")
        s = normalized_affinity(
            knn_graph(x, neighbors, gamma=gamma, exact_below=exact_below, seed=seed)
        )
    n = int(s.shape[0])
    idx = np.asarray(labeled, dtype=np.int64).ravel()
    lab = np.asarray(labels, dtype=np.int64).ravel()
    if idx.size < 1 or idx.shape != lab.shape:
        raise ValueError(
            f"need labeled and labels of one length >= 1, got {idx.shape}, {lab.shape}"
        )
    if idx.min() < 0 or idx.max() >= n or np.unique(idx).size != idx.size:
        raise ValueError(f"labeled must be distinct row indices in [0, {n})")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes})")
    counts = np.bincount(lab, minlength=n_classes).astype(np.float32)
    y = np.zeros((n, n_classes), dtype=np.float32)
    y[idx, lab] = 1.0 / counts[lab]
    f, iterations = batched_conjugate_gradient(s, y, alpha=alpha, max_iter=max_iter)
    scores = np.maximum(f, 0.0)
    total = scores.sum(axis=1, keepdims=True)
    reached = total[:, 0] > 0
    z = scores / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(z > 0, z * np.log(z), 0.0).sum(axis=1)
    weights = np.where(reached, 1.0 - entropy / np.log(n_classes), 0.0).astype(np.float32)
    weights = np.clip(weights, 0.0, 1.0)
    unlabeled = np.ones(n, dtype=bool)
    unlabeled[idx] = False
    top = float(weights[unlabeled].max()) if unlabeled.any() else 0.0
    if top > 0:
        weights = weights / np.float32(top)
    pseudo = scores.argmax(axis=1).astype(np.int64)
    pseudo[idx], weights[idx] = lab, 1.0
    return Spreading(
        scores=scores.astype(np.float32),
        labels=pseudo,
        weights=weights.astype(np.float32),
        iterations=int(iterations),
        seconds=time.perf_counter() - started,
    )
