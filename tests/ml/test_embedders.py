import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.ml.embedders import (
    Embedder,
    MiniLMEmbedder,
    PixelEmbedder,
    VectorEmbedder,
    default_embedder_for,
    make_embedder,
)


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _rgb_jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (255, 255, 255)).save(buf, format="JPEG")
    return buf.getvalue()


def test_pixels_from_png_bytes() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5))  # 3 images, height 4, width 5
    progress: list[tuple[int, int]] = []
    embedder = PixelEmbedder(batch_size=2)
    out = embedder.embed(
        [_png(im) for im in images], on_progress=lambda d, t: progress.append((d, t))
    )
    assert out.dtype == np.float32 and out.shape == (3, 20)
    np.testing.assert_allclose(out, images.reshape(3, -1) / 255.0, rtol=1e-6)
    assert embedder.dim == 20 and embedder.size == (5, 4)
    assert progress == [(2, 3), (3, 3)]


def test_pixels_resize_to_first_image_and_keep_size() -> None:
    embedder = PixelEmbedder()
    out = embedder.embed([_png(np.zeros((8, 8))), _rgb_jpeg(16, 12)])
    assert out.shape == (2, 64)
    assert out[0].max() == 0.0 and out[1].min() > 0.9  # white JPEG, converted to "L"
    assert embedder.embed([_png(np.zeros((3, 3)))]).shape == (1, 64)  # later calls keep 8x8


def test_pixels_fixed_size() -> None:
    out = PixelEmbedder(size=(2, 3)).embed([_png(np.full((10, 10), 255))])
    assert out.shape == (1, 6)
    np.testing.assert_allclose(out, 1.0)


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,", "DATA:image/x-icon;base64,"])
def test_pixels_from_base64(prefix: str) -> None:
    image = np.arange(16).reshape(4, 4) * 16
    text = prefix + base64.b64encode(_png(image)).decode()
    out = PixelEmbedder().embed([text, base64.encodebytes(_png(image)).decode()])  # with newlines
    np.testing.assert_allclose(out[0], image.reshape(-1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize(
    "bad",
    [b"not an image", "data:image/png;base64,!!!", base64.b64encode(b"garbage").decode(), 3.5],
)
def test_pixels_bad_record_index_in_error(bad: object) -> None:
    good = _png(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="record 1: cannot decode image"):
        PixelEmbedder().embed([good, bad, good])  # type: ignore[list-item]


def test_pixels_truncated_png() -> None:
    data = _png(np.random.default_rng(0).integers(0, 256, size=(32, 32)))
    with pytest.raises(ValueError, match="record 0"):
        PixelEmbedder().embed([data[: len(data) // 2]])


def test_vector_embedder() -> None:
    embedder = VectorEmbedder()
    out = embedder.embed([[1, 2, 3], (4.5, 5, 6), np.array([7, 8, 9])])
    assert out.dtype == np.float32 and out.shape == (3, 3)
    assert embedder.dim == 3
    assert VectorEmbedder(dim=2).embed([]).shape == (0, 2)


@pytest.mark.parametrize(
    ("records", "row"),
    [
        ([[1.0, 2.0], [1.0, 2.0], [1.0]], 2),
        ([[1.0, 2.0], [1.0, 2.0, 3.0], [1.0]], 1),
        ([[1.0, 2.0], [np.nan, 2.0]], 1),
        ([[1.0, 2.0], [1.0, 2.0], [1.0, np.inf]], 2),
        ([[1.0, 2.0], [1e39, 2.0]], 1),  # overflows float32
        ([[1.0, 2.0], ["a", "b"]], 1),
        ([[1.0, 2.0], "ab"], 1),
    ],
)
def test_vector_embedder_names_first_bad_row(records: list[object], row: int) -> None:
    with pytest.raises(ValueError, match=f"row {row}:"):
        VectorEmbedder().embed(records)  # type: ignore[arg-type]


def test_vector_embedder_fixed_dim() -> None:
    with pytest.raises(ValueError, match="row 0: expected a numeric vector of length 3"):
        VectorEmbedder(dim=3).embed([[1.0, 2.0]])
    embedder = VectorEmbedder()
    embedder.embed([[1.0, 2.0]])
    with pytest.raises(ValueError, match="length 2"):
        embedder.embed([[1.0, 2.0, 3.0]])


def test_registry() -> None:
    assert isinstance(make_embedder("pixels", size=(2, 2)), PixelEmbedder)
    assert make_embedder("vector", dim=4).dim == 4
    assert isinstance(make_embedder("minilm", batch_size=8), MiniLMEmbedder)  # lazy: no load
    for name in ("minilm", "pixels", "vector"):
        assert isinstance(make_embedder(name), Embedder)
    with pytest.raises(ValueError, match="available: minilm, pixels, vector"):
        make_embedder("clip")
    with pytest.raises(ValueError, match="bad parameters"):
        make_embedder("vector", size=3)
    assert [default_embedder_for(m) for m in ("text", "image", "vector")] == [
        "minilm",
        "pixels",
        "vector",
    ]
    with pytest.raises(ValueError, match="modality"):
        default_embedder_for("audio")


def test_minilm_rejects_non_text_without_loading() -> None:
    with pytest.raises(ValueError, match="record 1: expected text"):
        MiniLMEmbedder().embed(["ok", b"bytes"])
    assert MiniLMEmbedder().embed([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_real_sentences() -> None:
    sentences = [
        "How do I reset my card PIN?",
        "I forgot the PIN of my card, how can I change it?",
        "The weather in Lisbon is sunny today.",
        "",
    ]
    progress: list[tuple[int, int]] = []
    out = MiniLMEmbedder(batch_size=2).embed(
        sentences, on_progress=lambda d, t: progress.append((d, t))
    )
    assert out.shape == (4, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    sims = out[:3] @ out[:3].T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2
    assert progress == [(2, 4), (4, 4)]
    # order-independent: the same sentence gets the same vector wherever it sits
    again = MiniLMEmbedder(batch_size=3).embed(sentences[::-1])
    np.testing.assert_allclose(again[::-1], out, atol=1e-5)
