"""Weak and strong perturbations for consistency-based semi-supervised training.

FixMatch (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS) pseudo-labels a *weakly* perturbed view of each unlabeled row and trains
the net to predict that label on a *strongly* perturbed view. Images get the paper's recipe:
weak = random translation by up to 12.5 % of the side (plus a horizontal flip when the caller
says flips keep the meaning: the paper drops flips for SVHN, and they turn digits into other
symbols); strong = translation, Cutout (DeVries & Taylor 2017) of a square half the image side
and random brightness / contrast changes plus pixel noise, a CPU-cheap subset of RandAugment.
Fixed embeddings have no such symmetries, so rows get Gaussian noise and feature dropout
(inverted dropout, as in ``nn.Dropout``) of two strengths, as in semi-supervised training on
frozen text encoders (e.g. the feature-noise views of Chen et al. 2020, "MixText"; the USB
benchmark's feature perturbations).

All functions are vectorized over the batch, draw from an explicit ``torch.Generator`` (so a
seeded run is reproducible) and work on standardized or raw features alike: the noise scale is
relative to each feature's spread in the batch-independent ``scale`` passed by the caller.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F  # noqa: N812


@dataclass(frozen=True)
class FeatureAugment:
    """Gaussian noise plus feature dropout for fixed embeddings ``[n, d]``.

    Attributes:
        noise: standard deviation of the added noise, in units of each feature's std
            (``scale``).
        drop: probability that a feature is zeroed (then the kept ones are scaled by
            ``1 / (1 - drop)``, inverted dropout).
    """

    noise: float
    drop: float

    def __call__(
        self, x: torch.Tensor, scale: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Perturb a batch.

        Args:
            x: float32 ``[n, d]`` rows.
            scale: float32 ``[d]`` per-feature std of the training data (noise unit).
            generator: CPU generator the noise and masks are drawn from.

        Returns:
            float32 ``[n, d]`` perturbed copy (``x`` is not modified).
        """
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        out = x + noise * (self.noise * scale)
        if self.drop > 0:
            keep = torch.rand(x.shape, generator=generator).to(x.device) >= self.drop
            out = out * keep / (1.0 - self.drop)
        return out


WEAK_FEATURES = FeatureAugment(noise=0.1, drop=0.1)
"""Weak view of an embedding row (FixMatch's "weak" role)."""
STRONG_FEATURES = FeatureAugment(noise=0.5, drop=0.3)
"""Strong view of an embedding row (FixMatch's "strong" role)."""


def _translate(images: torch.Tensor, max_shift: float, generator: torch.Generator) -> torch.Tensor:
    """Shift each image ``[n, 1, h, w]`` by a random whole-pixel offset, padding by reflection.

    ``max_shift`` is a fraction of the side (FixMatch: 0.125).
    """
    n, _, h, w = images.shape
    pad_h, pad_w = max(1, round(max_shift * h)), max(1, round(max_shift * w))
    padded = F.pad(images, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    dy = torch.randint(0, 2 * pad_h + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * pad_w + 1, (n,), generator=generator).to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)[None, :]  # [n, h]
    cols = dx[:, None] + torch.arange(w, device=images.device)[None, :]  # [n, w]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left-right."""
    flip = torch.rand(images.shape[0], generator=generator).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _cutout(images: torch.Tensor, size: float, generator: torch.Generator) -> torch.Tensor:
    """Set a random square of side ``size * side`` (clipped at the border) to the image mean."""
    n, _, h, w = images.shape
    half_h, half_w = max(1, round(size * h / 2)), max(1, round(size * w / 2))
    cy = torch.randint(0, h, (n,), generator=generator).to(images.device)
    cx = torch.randint(0, w, (n,), generator=generator).to(images.device)
    ys = torch.arange(h, device=images.device)[None, :]
    xs = torch.arange(w, device=images.device)[None, :]
    in_y = (ys - cy[:, None]).abs() < half_h  # [n, h]
    in_x = (xs - cx[:, None]).abs() < half_w  # [n, w]
    box = (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)  # [n, 1, h, w]
    fill = images.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(box, fill.expand_as(images), images)


@dataclass(frozen=True)
class ImageAugment:
    """Flip / translate (weak) and Cutout + photometric jitter (strong) for grayscale images.

    Attributes:
        shape: ``(height, width)`` of an image; rows are ``height * width`` pixels, row-major.
        strong: apply the strong recipe on top of the weak one.
        flip: mirror a random half left-right (only when mirroring keeps the label).
        max_shift: translation range as a fraction of the side.
    """

    shape: tuple[int, int]
    strong: bool
    flip: bool = False
    max_shift: float = 0.125

    def __call__(
        self, x: torch.Tensor, scale: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Perturb a batch of flattened images.

        Args:
            x: float32 ``[n, h * w]`` pixels (any range).
            scale: unused (kept for the augmenter interface); the photometric jitter is scaled
                by the pixel std of the batch itself, so any pixel range works.
            generator: CPU generator all random choices are drawn from.

        Returns:
            float32 ``[n, h * w]`` perturbed copy.
        """
        h, w = self.shape
        images = x.reshape(-1, 1, h, w)
        if self.flip:
            images = _flip(images, generator)
        images = _translate(images, self.max_shift, generator)
        if self.strong:
            n = images.shape[0]
            unit = images.std().clamp_min(1e-6)  # pixel spread of this batch
            contrast = (0.5 + torch.rand(n, generator=generator)).to(x.device)  # U(0.5, 1.5)
            brightness = (0.6 * torch.rand(n, generator=generator) - 0.3).to(x.device)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = (images - mean) * contrast[:, None, None, None] + mean
            images = images + brightness[:, None, None, None] * unit
            noise = torch.randn(images.shape, generator=generator).to(x.device)
            images = images + 0.1 * unit * noise
            images = _cutout(images, 0.5, generator)
        return images.reshape(x.shape[0], h * w)
