"""Weak/strong perturbations: shapes, no mutation, seeded, and what each image op does."""

import numpy as np
import pytest
import torch

from app.ml.augment import (
    STRONG_FEATURES,
    WEAK_FEATURES,
    FeatureAugment,
    ImageAugment,
    _cutout,
    _flip,
    _translate,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_feature_views_keep_shape_leave_input_alone_and_are_seeded() -> None:
    x = torch.randn(50, 12)
    before = x.clone()
    scale = torch.full((12,), 2.0)
    a, b = WEAK_FEATURES(x, scale, _gen(1)), WEAK_FEATURES(x, scale, _gen(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(x, before)
    assert not torch.equal(a, WEAK_FEATURES(x, scale, _gen(2)))


def test_strong_feature_view_perturbs_more_than_weak() -> None:
    x = torch.randn(2000, 16)
    scale = torch.ones(16)
    weak = (WEAK_FEATURES(x, scale, _gen()) - x).pow(2).mean()
    strong = (STRONG_FEATURES(x, scale, _gen()) - x).pow(2).mean()
    assert float(strong) > 3 * float(weak) > 0


def test_feature_dropout_zeroes_that_share_and_rescales_the_rest() -> None:
    x = torch.ones(4000, 10)
    out = FeatureAugment(noise=0.0, drop=0.25)(x, torch.ones(10), _gen())
    zero_share = float((out == 0).float().mean())
    assert zero_share == pytest.approx(0.25, abs=0.02)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.75))


def test_translate_is_a_whole_pixel_shift_of_the_reflect_padded_image() -> None:
    images = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    shifted = _translate(images, 0.125, _gen(3))  # pad 1 pixel
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
    for i in range(2):
        windows = [padded[i, 0, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(shifted[i, 0], w) for w in windows)


def test_flip_mirrors_about_half_and_cutout_fills_a_square_with_the_mean() -> None:
    images = torch.rand(400, 1, 6, 6)
    flipped = _flip(images, _gen())
    mirrored = [torch.equal(flipped[i], images[i].flip(-1)) for i in range(400)]
    assert 0.4 < np.mean(mirrored) < 0.6
    assert all(m or torch.equal(flipped[i], images[i]) for i, m in enumerate(mirrored))
    cut = _cutout(images, 0.5, _gen())
    changed = (cut != images).flatten(1).sum(1)
    assert int(changed.max()) <= 9  # at most a 3x3 square for side 6, size 0.5
    means = images.mean(dim=(1, 2, 3))
    i = int(changed.argmax())
    assert torch.allclose(cut[i][cut[i] != images[i]], means[i].expand(int(changed[i])))


def test_image_views_keep_flat_shape_and_strong_changes_more() -> None:
    ii, jj = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    blob = np.exp(-((ii - 14) ** 2 + (jj - 14) ** 2) / 60.0).astype(np.float32)
    x = torch.from_numpy(np.tile(blob.reshape(1, -1), (64, 1)))  # smooth: shifts change little
    weak = ImageAugment((28, 28), strong=False)(x, torch.ones(1), _gen())
    strong = ImageAugment((28, 28), strong=True, flip=True)(x, torch.ones(1), _gen())
    assert weak.shape == strong.shape == x.shape
    assert float((strong - x).abs().mean()) > float((weak - x).abs().mean())
