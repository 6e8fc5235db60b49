import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from app.ml.calibration import apply_temperature
from app.ml.networks import MLPHeadNet
from app.ml.predict import embed, mc_dropout_proba, predict_proba, resolve_device
from app.ml.train import TrainConfig, fit_supervised

CONFIG = TrainConfig(hidden=32, dropout=0.5, epochs=20, batch_size=64)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny nets train several times faster on one thread (and don't fight parallel jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=200).astype(np.int64)
    x = (rng.normal(size=(4, 10))[y] * 2 + rng.normal(size=(200, 10))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def net(data: tuple[np.ndarray, np.ndarray]) -> MLPHeadNet:
    x, y = data
    return fit_supervised(x, y, config=CONFIG, seed=0, device="cpu")


def test_probs_rows_sum_to_one(net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]) -> None:
    probs = predict_proba(net, data[0], device="cpu")
    assert probs.dtype == np.float32 and probs.shape == (200, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == data[1]).mean() > 0.9


def test_batching_matches_one_batch(net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0]
    whole = predict_proba(net, x, batch_size=10_000)
    np.testing.assert_allclose(predict_proba(net, x, batch_size=7), whole, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        embed(net, x, batch_size=13), embed(net, x, batch_size=10_000), rtol=1e-5, atol=1e-6
    )


def test_memmap_and_float64_inputs(
    net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x = data[0]
    np.save(tmp_path / "x.npy", x.astype(np.float64))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_allclose(predict_proba(net, mapped, batch_size=50), predict_proba(net, x))


def test_embed_shape_and_linear_head(net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    hidden = embed(net, x)
    assert hidden.shape == (200, 32) and hidden.dtype == np.float32
    assert (hidden >= 0).all()  # ReLU activations
    linear = fit_supervised(
        x, y, config=dataclasses.replace(CONFIG, hidden=0), seed=0, device="cpu"
    )
    assert np.array_equal(embed(linear, x), x)
    assert predict_proba(linear, x).shape == (200, 4)


def test_mc_dropout_shape_spread_and_seed(
    net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x = data[0][:50]
    samples = mc_dropout_proba(net, x, samples=8, seed=0)
    assert samples.shape == (8, 50, 4) and samples.dtype == np.float32
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, rtol=1e-5)
    assert samples.std(axis=0).mean() > 1e-3  # dropout is active
    assert np.array_equal(samples, mc_dropout_proba(net, x, samples=8, seed=0))
    assert not np.array_equal(samples, mc_dropout_proba(net, x, samples=8, seed=1))
    # the net is back in eval mode, so plain prediction is deterministic
    assert not any(m.training for m in net.modules())
    np.testing.assert_array_equal(predict_proba(net, x), predict_proba(net, x))


def test_mc_dropout_mean_is_close_to_deterministic(
    net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x = data[0]
    mean = mc_dropout_proba(net, x, samples=30, seed=0).mean(axis=0)
    assert (mean.argmax(axis=1) == predict_proba(net, x).argmax(axis=1)).mean() > 0.9


def test_temperature_matches_calibrating_stored_probabilities(
    net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x = data[0]
    for t in (0.5, 2.5):
        expected = apply_temperature(predict_proba(net, x), t)
        np.testing.assert_allclose(predict_proba(net, x, temperature=t), expected, atol=1e-5)
        mc = mc_dropout_proba(net, x, samples=4, seed=3, temperature=t)
        stored = np.stack(
            [apply_temperature(s, t) for s in mc_dropout_proba(net, x, samples=4, seed=3)]
        )
        np.testing.assert_allclose(mc, stored, atol=1e-5)
    multilabel = MLPHeadNet(10, 3, hidden=8, task="multilabel")
    expected = apply_temperature(predict_proba(multilabel, x), 2.0, multilabel=True)
    np.testing.assert_allclose(predict_proba(multilabel, x, temperature=2.0), expected, atol=1e-5)


def test_mc_dropout_reuses_hidden_layer_without_changing_samples(
    net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """The hidden layer runs once per row; the masks (and so the samples) are those of a full
    forward of the repeated batch under the same seed."""
    x = data[0][:37]
    got = mc_dropout_proba(net, x, samples=5, seed=11, batch_size=10_000)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(11)
        net.dropout.train()
        logits = net(torch.from_numpy(x).repeat(5, 1))
        net.dropout.eval()
    reference = torch.softmax(logits, dim=-1).reshape(5, 37, -1).numpy()
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-7)


def test_mc_dropout_float16_output(net: MLPHeadNet, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0][:50]
    half = mc_dropout_proba(net, x, samples=3, seed=0, dtype=np.float16)
    assert half.dtype == np.float16 and half.shape == (3, 50, 4)
    full = mc_dropout_proba(net, x, samples=3, seed=0)
    np.testing.assert_allclose(half.astype(np.float32), full, atol=1e-3)
    with pytest.raises(ValueError, match="dtype"):
        mc_dropout_proba(net, x, samples=3, seed=0, dtype=np.int32)


def test_input_validation(net: MLPHeadNet) -> None:
    with pytest.raises(ValueError, match="shape"):
        predict_proba(net, np.zeros((3, 9), dtype=np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        predict_proba(net, np.zeros((3, 10), dtype=np.float32), batch_size=0)
    with pytest.raises(ValueError, match="samples"):
        mc_dropout_proba(net, np.zeros((3, 10), dtype=np.float32), samples=0, seed=0)
    assert predict_proba(net, np.zeros((0, 10), dtype=np.float32)).shape == (0, 4)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            predict_proba(net, np.zeros((3, 10), dtype=np.float32), temperature=bad)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    cpu_net = fit_supervised(x, y, config=CONFIG, seed=0, device="cpu")
    gpu_net = fit_supervised(x, y, config=CONFIG, seed=0, device="cuda")
    on_gpu = predict_proba(gpu_net, x, device="cuda")
    assert on_gpu.shape == (200, 4)
    np.testing.assert_allclose(on_gpu.sum(axis=1), 1.0, rtol=1e-5)
    agreement = (on_gpu.argmax(1) == predict_proba(cpu_net, x).argmax(1)).mean()
    assert agreement > 0.9  # different RNG streams per device: same quality, not same bits
    np.testing.assert_allclose(
        predict_proba(gpu_net, x, device="cuda"), on_gpu
    )  # repeatable on the device
    assert mc_dropout_proba(gpu_net, x, samples=3, seed=0, device="cuda").shape == (3, 200, 4)
