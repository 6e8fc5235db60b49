"""Real datasets for the demo and benchmarks: scikit-learn's digits and ``text,label`` CSVs."""

import base64
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset whose labels the demo hides from the pool.

    Attributes:
        name: short name (project name).
        modality: ``"text"`` or ``"image"``.
        payloads: texts, or base64 PNG images, one per row.
        targets: label name of each row.
        labels: the label set, sorted.
    """

    name: str
    modality: str
    payloads: list[str]
    targets: list[str]
    labels: list[str]


def png_base64(pixels: np.ndarray) -> str:
    """Encode a 2-d uint8 grayscale array as base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).round().astype(np.uint8)
    return Dataset(
        name="digits",
        modality="image",
        payloads=[png_base64(img) for img in images],
        targets=[str(t) for t in digits.target],
        labels=[str(i) for i in range(10)],
    )


def load_csv_dataset(path: Path, text_column: str = "text", label_column: str = "label") -> Dataset:
    """A ``text,label`` CSV (e.g. ../shared/data/banking77/train.csv).

    Raises:
        ValueError: the file lacks the columns or has no rows.
    """
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks column(s) {sorted(missing)}")
        rows = [(r[text_column], r[label_column]) for r in reader if r[text_column]]
    if not rows:
        raise ValueError(f"{path} has no rows")
    texts, targets = zip(*rows, strict=True)
    return Dataset(
        name=path.stem if path.stem not in {"train", "all", "test"} else path.parent.name,
        modality="text",
        payloads=list(texts),
        targets=list(targets),
        labels=sorted(set(targets)),
    )
