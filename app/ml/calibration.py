"""Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
Networks", ICML, section 4.2) on stored probabilities (numpy only).

Temperature scaling divides a network's logits by one scalar ``T > 0`` fitted to minimize the
negative log-likelihood on held-out labeled rows; the argmax (so accuracy) never changes. Because
``softmax(z / T) == softmax(log_softmax(z) / T)`` (a per-row shift cancels in the softmax), it can
be applied to stored softmax probabilities directly: ``log(p)`` is a valid logit vector. For
independent sigmoids (multilabel) the logit is ``log(p / (1 - p))``, one ``T`` for all labels.

The fit is a Newton method safeguarded by bisection on ``beta = 1 / T``: the NLL of
``softmax(beta * z)`` is convex in ``beta`` (log-sum-exp of functions linear in ``beta``),
with gradient ``mean(E_p[z] - z_y)`` and curvature ``mean(Var_p[z])``; for sigmoids both have
closed forms too.
"""

import numpy as np
import numpy.typing as npt

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_EPS = 1e-12
_LOGIT_CLIP = 30.0


def logits_from_probs(probs: npt.ArrayLike, *, multilabel: bool = False) -> npt.NDArray[np.float64]:
    """Logits that reproduce ``probs``: ``log p`` (softmax rows) or ``log(p / (1 - p))``.

    Probabilities are clipped to ``[1e-12, 1 - 1e-12]``, so an exact 0 becomes a logit of about
    -27.6 rather than ``-inf``.

    Args:
        probs: float ``[n, c]`` probabilities.
        multilabel: sigmoid outputs instead of softmax rows.

    Returns:
        float64 ``[n, c]`` logits.

    Raises:
        ValueError: for a non-2-D or non-finite array.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, c], got shape {p.shape}")
    if p.size and not np.isfinite(p).all():
        raise ValueError("probs must be finite")
    p = np.clip(p, _EPS, 1.0 - _EPS)
    if multilabel:
        return np.log(p) - np.log1p(-p)
    return np.log(p)


def _softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def apply_temperature(
    probs: npt.ArrayLike, temperature: float, *, multilabel: bool = False
) -> npt.NDArray[np.float32]:
    """Calibrated probabilities ``softmax(log p / T)`` (or ``sigmoid(logit(p) / T)``).

    Args:
        probs: float ``[n, c]`` probabilities (a memory map is fine; it is read, not written).
        temperature: ``T > 0``; 1 returns the input (as float32).
        multilabel: sigmoid outputs instead of softmax rows.

    Returns:
        float32 ``[n, c]``; rows sum to 1 for softmax; argmax per row unchanged.

    Raises:
        ValueError: for ``T <= 0`` or bad ``probs``.
    """
    if not np.isfinite(temperature) or temperature <= 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, c], got shape {p.shape}")
    if temperature == 1.0:
        return np.asarray(p, dtype=np.float32).copy()
    out = np.empty(p.shape, dtype=np.float32)
    for start in range(0, p.shape[0], 65_536):  # bounded memory on big pools
        z = logits_from_probs(p[start : start + 65_536], multilabel=multilabel) / temperature
        out[start : start + z.shape[0]] = _sigmoid(z) if multilabel else _softmax(z)
    return out


def temperature_nll(
    logits: npt.ArrayLike, y_true: npt.ArrayLike, temperature: float, *, multilabel: bool = False
) -> float:
    """Mean NLL (nats) of ``y_true`` under the logits divided by ``temperature``.

    Args:
        logits: float ``[n, c]``.
        y_true: int ``[n]`` classes, or 0/1 ``[n, c]`` when ``multilabel``.
        temperature: ``T > 0``.
        multilabel: mean binary cross-entropy over all entries instead.
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y_true)
    if multilabel:
        s = np.where(y >= 0.5, 1.0, -1.0)
        return float(np.mean(np.logaddexp(0.0, -s * z)))
    shifted = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(z.shape[0]), y.astype(np.int64)]))


def fit_temperature(
    logits: npt.ArrayLike,
    y_true: npt.ArrayLike,
    *,
    multilabel: bool = False,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> float:
    """The temperature minimizing held-out NLL (Guo et al. 2017), in ``[0.05, 20]``.

    Args:
        logits: float ``[n, c]`` logits (e.g. :func:`logits_from_probs`) of held-out rows.
        y_true: int ``[n]`` true classes, or 0/1 ``[n, c]`` multi-hot when ``multilabel``.
        multilabel: one temperature for independent sigmoids.
        max_iter: Newton iterations.
        tol: stop when the step in ``beta = 1/T`` is below this.

    Returns:
        ``T``; 1.0 when there are no rows or the logits carry no signal (all rows constant).

    Raises:
        ValueError: on shape mismatch or classes out of range.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D [n, c], got shape {z.shape}")
    if multilabel:
        if y.shape != z.shape:
            raise ValueError(f"multilabel y_true must have shape {z.shape}, got {y.shape}")
    elif y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"y_true must be 1-D of length {z.shape[0]}, got {y.shape}")
    elif y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"y_true must hold classes in [0, {z.shape[1]})")
    if z.shape[0] == 0 or not np.isfinite(z).all():
        return 1.0
    z = np.clip(z, -_LOGIT_CLIP * 10, _LOGIT_CLIP * 10)
    grad_hess = _grad_hess_sigmoid if multilabel else _grad_hess_softmax
    lo, hi = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    # the NLL is convex in beta, so its derivative is non-decreasing: bracket its root
    if grad_hess(z, y, lo)[0] >= 0.0:
        return MAX_TEMPERATURE
    if grad_hess(z, y, hi)[0] <= 0.0:
        return MIN_TEMPERATURE
    beta = float(np.clip(1.0, lo, hi))
    for _ in range(max_iter):
        grad, hess = grad_hess(z, y, beta)
        if grad > 0.0:
            hi = beta
        else:
            lo = beta
        newton = beta - grad / hess if hess > 1e-15 else np.nan
        # Newton step when it stays inside the bracket, else bisection (Numerical Recipes rtsafe)
        new_beta = float(newton) if lo < newton < hi else 0.5 * (lo + hi)
        if abs(new_beta - beta) < tol or hi - lo < tol:
            beta = new_beta
            break
        beta = new_beta
    return float(1.0 / beta)


def _grad_hess_softmax(
    z: npt.NDArray[np.float64], y: npt.NDArray[np.int64], beta: float
) -> tuple[float, float]:
    p = _softmax(beta * z)  # [n, c]
    mean_z = np.sum(p * z, axis=1)  # E_p[z]
    var_z = np.sum(p * z * z, axis=1) - mean_z**2  # Var_p[z]
    grad = float(np.mean(mean_z - z[np.arange(z.shape[0]), y.astype(np.int64)]))
    return grad, float(np.mean(np.maximum(var_z, 0.0)))


def _grad_hess_sigmoid(
    z: npt.NDArray[np.float64], y: npt.NDArray[np.float64], beta: float
) -> tuple[float, float]:
    t = (np.asarray(y) >= 0.5).astype(np.float64)
    s = _sigmoid(beta * z)
    grad = float(np.mean((s - t) * z))
    hess = float(np.mean(s * (1.0 - s) * z * z))
    return grad, hess
