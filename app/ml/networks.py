"""Classifier heads trained on top of fixed embeddings (``*Net`` classes)."""

from typing import Any

import torch
from torch import nn

from app.strategies.base import TASKS

_MIN_STD = 1e-6  # features with a smaller spread (e.g. always-black pixels) are only centred


class MLPHeadNet(nn.Module):
    """A one-hidden-layer MLP (or linear) head with built-in input standardization.

    ``hidden > 0``: standardize → Linear(in_dim, hidden) → ReLU → Dropout → Linear(hidden, c).
    ``hidden == 0``: standardize → Dropout → Linear(in_dim, c), i.e. multinomial logistic
    regression; dropout then acts on the inputs, so MC dropout (Gal & Ghahramani 2016) still
    has something to sample (set ``dropout=0`` for a plain linear model).

    The per-feature mean and std of the training rows are stored as buffers
    (``input_mean``, ``input_std``; set by :meth:`set_standardization`), so a saved
    ``state_dict`` plus :attr:`init_kwargs` rebuild the whole predictor.

    Args:
        in_dim: input feature dimension ``d`` (>= 1).
        n_classes: number of outputs ``c`` (>= 1; 2 for a binary softmax task).
        hidden: hidden width, 0 for a linear head.
        dropout: dropout probability in ``[0, 1)``.
        task: ``"binary"`` / ``"multiclass"`` (softmax outputs) or ``"multilabel"`` (sigmoid);
            only prediction reads it.

    Raises:
        ValueError: on a non-positive ``in_dim``/``n_classes``, negative ``hidden``, ``dropout``
            outside ``[0, 1)`` or an unknown ``task``.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        hidden: int = 256,
        dropout: float = 0.2,
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1:
            raise ValueError(f"in_dim and n_classes must be >= 1, got {in_dim}, {n_classes}")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.init_kwargs: dict[str, Any] = {
            "in_dim": int(in_dim),
            "n_classes": int(n_classes),
            "hidden": int(hidden),
            "dropout": float(dropout),
            "task": task,
        }
        self.task = task
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.hidden_layer = nn.Linear(in_dim, hidden) if hidden else None
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden or in_dim, n_classes)

    @property
    def in_dim(self) -> int:
        """Input dimension ``d``."""
        return int(self.init_kwargs["in_dim"])

    @property
    def n_classes(self) -> int:
        """Number of outputs ``c``."""
        return int(self.init_kwargs["n_classes"])

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`embed`'s output: ``hidden``, or ``in_dim`` for a linear head."""
        return int(self.init_kwargs["hidden"]) or self.in_dim

    @torch.no_grad()
    def set_standardization(self, x: torch.Tensor) -> None:
        """Store the per-feature mean and std of ``x`` (float ``[n, d]``, the training rows).

        Features with std below 1e-6 keep std 1 (they are only centred).

        Raises:
            ValueError: if ``x`` is not ``[n >= 1, in_dim]``.
        """
        if x.ndim != 2 or x.shape[1] != self.in_dim or x.shape[0] < 1:
            raise ValueError(f"expected x of shape [n >= 1, {self.in_dim}], got {tuple(x.shape)}")
        x = x.to(self.input_mean.device, torch.float32)
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.where(std > _MIN_STD, std, torch.ones_like(std)))

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map float32 ``[n, d]`` inputs to float32 ``[n, c]`` logits (pre-softmax/sigmoid)."""
        z = self._standardize(x)
        if self.hidden_layer is not None:
            z = torch.relu(self.hidden_layer(z))
        logits: torch.Tensor = self.output(self.dropout(z))
        return logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the representation the output layer reads, without dropout.

        Args:
            x: float32 ``[n, d]`` raw (unstandardized) inputs.

        Returns:
            float32 ``[n, hidden]`` ReLU activations, or ``x`` itself (``[n, d]``) for a
            linear head (the raw input is the more meaningful geometry there).
        """
        if self.hidden_layer is None:
            return x
        return torch.relu(self.hidden_layer(self._standardize(x)))


class SmallCNNNet(nn.Module):
    """A small convolutional net for grayscale images given as flattened pixel rows.

    Three 3x3 convolution blocks (16, 32, 64 channels, ReLU; 2x2 max-pooling after the first
    two while the map is at least 4 pixels on a side), global average pooling, dropout and a
    linear output: the LeNet-style shape (LeCun et al. 1998) with global pooling (Lin et al.
    2014, "Network in Network"), small enough to train on two CPU cores. Inputs are
    standardized with one scalar mean and std over all pixels (stored as buffers), which keeps
    the translation symmetry that per-pixel standardization would break.

    It has the interface of :class:`MLPHeadNet` (``init_kwargs``, ``in_dim``, ``n_classes``,
    ``embed_dim``, ``task``, :meth:`set_standardization`, :meth:`embed`), so training,
    prediction, MC dropout and checkpoints treat both alike.

    Args:
        height: image height ``h`` in pixels (>= 2).
        width: image width ``w`` in pixels (>= 2); rows have ``h * w`` float pixels, row-major.
        n_classes: number of outputs ``c``.
        dropout: dropout probability before the output layer, in ``[0, 1)``.
        task: as for :class:`MLPHeadNet`.

    Raises:
        ValueError: on a side below 2, ``n_classes < 1``, a bad ``dropout`` or ``task``.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor
    channels = (16, 32, 64)

    def __init__(
        self,
        height: int,
        width: int,
        n_classes: int,
        dropout: float = 0.2,
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        if height < 2 or width < 2:
            raise ValueError(f"images must be at least 2x2, got {height}x{width}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.init_kwargs: dict[str, Any] = {
            "height": int(height),
            "width": int(width),
            "n_classes": int(n_classes),
            "dropout": float(dropout),
            "task": task,
        }
        self.task = task
        self.register_buffer("input_mean", torch.zeros(1))
        self.register_buffer("input_std", torch.ones(1))
        layers: list[nn.Module] = []
        side, in_ch = min(height, width), 1
        for i, out_ch in enumerate(self.channels):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            if i < 2 and side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.channels[-1], n_classes)

    @property
    def in_dim(self) -> int:
        """Input dimension ``h * w``."""
        return int(self.init_kwargs["height"]) * int(self.init_kwargs["width"])

    @property
    def n_classes(self) -> int:
        """Number of outputs ``c``."""
        return int(self.init_kwargs["n_classes"])

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`embed`'s output (64 pooled channels)."""
        return self.channels[-1]

    @torch.no_grad()
    def set_standardization(self, x: torch.Tensor) -> None:
        """Store the mean and std of all pixels of ``x`` (float ``[n, h * w]``).

        Raises:
            ValueError: if ``x`` is not ``[n >= 1, h * w]``.
        """
        if x.ndim != 2 or x.shape[1] != self.in_dim or x.shape[0] < 1:
            raise ValueError(f"expected x of shape [n >= 1, {self.in_dim}], got {tuple(x.shape)}")
        x = x.to(self.input_mean.device, torch.float32)
        std = x.std(unbiased=False)
        self.input_mean.fill_(float(x.mean()))
        self.input_std.fill_(float(std) if float(std) > _MIN_STD else 1.0)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.init_kwargs["height"], self.init_kwargs["width"]
        z = ((x - self.input_mean) / self.input_std).reshape(-1, 1, h, w)
        pooled: torch.Tensor = self.features(z)
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map float32 ``[n, h * w]`` pixel rows to float32 ``[n, c]`` logits."""
        logits: torch.Tensor = self.output(self.dropout(self._pooled(x)))
        return logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return float32 ``[n, 64]`` globally pooled features (no dropout) of pixel rows."""
        return self._pooled(x)


HeadNet = MLPHeadNet | SmallCNNNet
"""Any classifier net of this module (same interface)."""
NETS: dict[str, type[MLPHeadNet] | type[SmallCNNNet]] = {
    MLPHeadNet.__name__: MLPHeadNet,
    SmallCNNNet.__name__: SmallCNNNet,
}
"""Class name -> class, for rebuilding a saved net from ``init_kwargs``."""
