"""Batched inference: probabilities, embeddings and MC-dropout samples; device resolution.

Inputs may be ``np.memmap`` views of a whole pool: each batch is read, converted and moved to
the device on its own, so memory stays ``O(batch_size)`` apart from the output array.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.ml.networks import HeadNet, MLPHeadNet
from app.strategies.base import FloatArray


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda"`` (``"cuda:1"``) into a ``torch.device``.

    Args:
        device: ``"auto"`` picks CUDA when available, else CPU. A ``torch.device`` passes
            through the same checks.

    Returns:
        The resolved device.

    Raises:
        ValueError: for an unknown name, or ``"cuda"`` when CUDA is not available.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'")


def fork_rng(device: torch.device) -> AbstractContextManager[None]:
    """Save the global torch RNG state (CPU, plus ``device`` when CUDA) and restore it on exit.

    Lets seeded code call ``torch.manual_seed`` without changing the caller's random stream.
    """
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.random.fork_rng(devices=[index])


@contextmanager
def _inference(net: nn.Module, device: torch.device, *, mc_dropout: bool = False) -> Iterator[None]:
    """Eval mode (dropout on if ``mc_dropout``) under inference_mode; restores the old modes."""
    modes = [(m, m.training) for m in net.modules()]
    net.to(device)
    net.eval()
    if mc_dropout:
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.train()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, was_training in modes:
            m.training = was_training


def _check_input(net: HeadNet, x: npt.ArrayLike, batch_size: int) -> npt.NDArray[np.generic]:
    arr = x if isinstance(x, np.ndarray) else np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != net.in_dim:
        raise ValueError(f"x must have shape [n, {net.in_dim}], got {arr.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return arr


def _map_batches(
    x: npt.NDArray[np.generic],
    out: FloatArray,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    device: torch.device,
) -> FloatArray:
    """Write ``fn(batch)`` for each row batch of ``x`` into ``out`` (rows on axis -2)."""
    dtype = torch.from_numpy(out[..., :0, :]).dtype  # cast in torch (numpy's f16 cast is slow)
    for start in range(0, x.shape[0], batch_size):
        chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        result = fn(torch.from_numpy(chunk).to(device, non_blocking=True))
        out[..., start : start + chunk.shape[0], :] = result.to(dtype).cpu().numpy()
    return out


def _probs(net: HeadNet, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    if temperature != 1.0:
        logits = logits / temperature
    if net.task == "multilabel":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not np.isfinite(t) or t <= 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return t


def predict_proba(
    net: HeadNet,
    x: npt.ArrayLike,
    *,
    batch_size: int = 8192,
    device: str | torch.device = "cpu",
    temperature: float = 1.0,
) -> FloatArray:
    """Class probabilities of every row, in batches, with dropout off.

    Args:
        net: a trained head (moved to ``device``; its train/eval modes are restored after).
        x: float ``[n, d]`` inputs (any float dtype, ``np.memmap`` welcome).
        batch_size: rows per forward pass.
        device: where to compute (``"auto"``/``"cpu"``/``"cuda"`` or a ``torch.device``).
        temperature: ``T > 0`` dividing the logits before the softmax/sigmoid (temperature
            scaling, Guo et al. 2017; :mod:`app.ml.calibration` fits ``T``); 1 leaves them.

    Returns:
        float32 ``[n, c]``: softmax rows summing to 1 for ``binary``/``multiclass``; independent
        sigmoids per column for ``multilabel``.

    Raises:
        ValueError: on a shape mismatch, ``batch_size < 1``, ``temperature <= 0`` or an
            unavailable device.
    """
    arr = _check_input(net, x, batch_size)
    t = _check_temperature(temperature)
    dev = resolve_device(device)
    out = np.empty((arr.shape[0], net.n_classes), dtype=np.float32)
    with _inference(net, dev):
        return _map_batches(
            arr, out, lambda b: _probs(net, net(b), t), batch_size=batch_size, device=dev
        )


def embed(
    net: HeadNet,
    x: npt.ArrayLike,
    *,
    batch_size: int = 8192,
    device: str | torch.device = "cpu",
) -> FloatArray:
    """The net's learned representation of every row (see :meth:`MLPHeadNet.embed`).

    Args:
        net: a trained head.
        x: float ``[n, d]`` inputs.
        batch_size: rows per forward pass.
        device: where to compute.

    Returns:
        float32 ``[n, h]`` with ``h = net.embed_dim`` (hidden ReLU activations, or the input for a
        linear head).

    Raises:
        ValueError: on a shape mismatch, ``batch_size < 1`` or an unavailable device.
    """
    arr = _check_input(net, x, batch_size)
    dev = resolve_device(device)
    out = np.empty((arr.shape[0], net.embed_dim), dtype=np.float32)
    with _inference(net, dev):
        return _map_batches(arr, out, net.embed, batch_size=batch_size, device=dev)


def mc_dropout_proba(
    net: HeadNet,
    x: npt.ArrayLike,
    *,
    samples: int = 10,
    seed: int,
    batch_size: int = 8192,
    device: str | torch.device = "cpu",
    temperature: float = 1.0,
    dtype: npt.DTypeLike = np.float32,
) -> npt.NDArray[np.floating]:
    """Monte-Carlo dropout: ``samples`` stochastic forward passes with dropout kept on.

    Gal, Islam & Ghahramani (2017), "Deep Bayesian Active Learning with Image Data" (ICML), after
    Gal & Ghahramani (2016): dropout at test time approximates sampling from a Bayesian posterior;
    the spread across samples feeds BALD and variation-ratio strategies. Every other layer stays
    in eval mode.

    Reproducible for the same ``seed``, ``batch_size`` and device: the masks are drawn from the
    global torch RNG seeded with ``seed`` inside ``torch.random.fork_rng`` (the caller's RNG
    state is restored afterwards).

    For an :class:`MLPHeadNet` with a hidden layer (dropout sits after it) the hidden
    activations are computed once per row and only dropout and the output layer run ``t``
    times; the masks are drawn in the same order as a full forward of the repeated batch, so
    the result is the same, at about a fifth of the arithmetic.

    Args:
        net: a trained head (a net with ``dropout == 0`` gives ``samples`` identical copies).
        x: float ``[n, d]`` inputs.
        samples: number of passes ``t`` (>= 1).
        seed: seed of the dropout masks.
        batch_size: rows per forward pass, counting the ``t`` repeats (each pass takes
            ``max(1, batch_size // samples)`` input rows, so memory does not grow with ``t``).
        device: where to compute.
        temperature: ``T > 0`` dividing every sample's logits (as :func:`predict_proba`).
        dtype: float dtype of the returned array (e.g. ``np.float16`` for a stored file: each
            batch is cast on the device, no full-size float32 copy is made).

    Returns:
        ``dtype`` ``[t, n, c]`` probabilities (softmax or sigmoid, as :func:`predict_proba`).

    Raises:
        ValueError: on ``samples < 1``, a shape mismatch, ``temperature <= 0``, a non-float
            ``dtype`` or an unavailable device.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be a float dtype, got {dtype}")
    arr = _check_input(net, x, batch_size)
    t = _check_temperature(temperature)
    dev = resolve_device(device)
    out = np.empty((samples, arr.shape[0], net.n_classes), dtype=dtype)
    split = isinstance(net, MLPHeadNet) and net.hidden_layer is not None

    def passes(batch: torch.Tensor) -> torch.Tensor:
        if split:  # hidden activations once; dropout + output layer per sample
            hidden = net.embed(batch).repeat(samples, 1)
            logits = net.output(net.dropout(hidden))
        else:
            logits = net(batch.repeat(samples, 1))  # [t * b, c], one forward for all samples
        return _probs(net, logits, t).reshape(samples, batch.shape[0], -1)

    with fork_rng(dev), _inference(net, dev, mc_dropout=True):
        torch.manual_seed(seed)
        rows = max(1, batch_size // samples)
        return _map_batches(arr, out, passes, batch_size=rows, device=dev)
