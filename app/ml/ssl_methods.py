"""Semi-supervised methods: their settings and their per-batch state (thresholds, masks, losses).

One vectorized torch loop serves every method; they differ only in how the unlabeled loss of a
batch is formed (a :class:`_Method` object per run):

- ``fixmatch`` (Sohn et al. 2020, NeurIPS): pseudo-label = argmax of the net on a *weak* view;
  rows whose top probability is ``>= threshold`` (0.95) train the *strong* view with
  cross-entropy on that hard label.
- ``flexmatch`` (Zhang et al. 2021, "FlexMatch: Boosting Semi-Supervised Learning with
  Curriculum Pseudo Labeling", NeurIPS): class-wise thresholds ``tau * M(beta_c)`` with the
  convex map ``M(x) = x / (2 - x)``; ``beta_c`` is the number of unlabeled rows last predicted
  as ``c`` above ``tau``, normalized by the largest class count (or by the number of rows never
  predicted confidently yet: the paper's threshold warm-up).
- ``freematch`` (Wang et al. 2023, "FreeMatch: Self-adaptive Thresholding for Semi-supervised
  Learning", ICLR): a global threshold that is an EMA (0.999) of the mean top probability
  (start ``1 / C``), scaled per class by the EMA of the mean class probability over its maximum
  ("MaxNorm"); plus the self-adaptive fairness loss ``L_f = -H(SumNorm(p_model / hist),
  SumNorm(mean_s / hist_s))`` on the masked strong views (weight 0.01).
- ``mean_teacher`` (Tarvainen & Valpola 2017, NeurIPS): the targets come from an EMA copy of
  the net (the teacher) on one weak view; the student matches them on another weak view with a
  mean-squared error on probabilities, weight 50 ramped up as ``exp(-5 (1 - t)^2)`` over the
  first 40 % of the steps (the USB defaults).

``distribution_alignment`` (Berthelot et al. 2020, ReMixMatch, ICLR) rescales the weak-view
probabilities by ``p_target / p_model`` and renormalizes before thresholding, where
``p_model`` is the mean prediction over the last 128 unlabeled batches and ``p_target`` the
labeled class frequencies (Laplace-smoothed, so classes without labels are not zeroed).

The loop that drives these objects is :func:`app.ml.semi_supervised.fit_consistency`.

``label_spreading`` is not a consistency method: it spreads the labels over a kNN graph of the
labeled + unlabeled rows (:mod:`app.ml.label_propagation`; Zhou et al. 2004, Iscen et al.
2019) and trains the net on the labeled rows plus every reached unlabeled row at its certainty
weight (:func:`app.ml.semi_supervised.fit_semi_supervised`).
"""

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812

CONSISTENCY_METHODS = ("fixmatch", "flexmatch", "freematch", "mean_teacher")
GRAPH_METHODS = ("label_spreading",)
METHODS = ("none", "self_training", *CONSISTENCY_METHODS, *GRAPH_METHODS)
AUGMENTS = ("auto", "features", "images")
_DA_QUEUE = 128


@dataclass(frozen=True)
class SemiSupervisedConfig:
    """Settings of the unlabeled part of a run (JSON-friendly; see :meth:`to_dict`).

    Attributes:
        method: one of :data:`METHODS`. ``"none"`` trains on the labels only,
            ``"self_training"`` runs :func:`~app.ml.train.fit_self_training` (its threshold,
            rounds and weight live in :class:`~app.ml.train.TrainConfig`).
        threshold: confidence threshold ``tau`` of FixMatch / FlexMatch (the papers' 0.95);
            for FreeMatch and Mean Teacher it only selects which final predictions are stored
            as pseudo-labels.
        steps: optimizer steps of a consistency fit. The papers run 2^20 steps on GPUs; 2,000
            steps of 64 + 448 rows is what a CPU job can afford and sees each row of a 100k
            pool about nine times.
        labeled_batch: labeled rows per step ``B`` (USB: 64).
        unlabeled_ratio: unlabeled rows per labeled row ``mu`` (FixMatch: 7).
        weight: weight ``lambda_u`` of the unlabeled loss; None takes the method's default
            (1 for the threshold methods, 50 for Mean Teacher).
        distribution_alignment: apply ReMixMatch's distribution alignment to the weak-view
            probabilities (not used by Mean Teacher).
        ema_decay: decay of the weight EMA (the returned net and Mean Teacher's teacher).
        fairness_weight: FreeMatch's fairness-loss weight ``w_f``.
        rampup: Mean Teacher's ramp-up length as a fraction of ``steps``.
        augment: ``"features"`` (noise + feature dropout), ``"images"`` (shift/flip vs. Cutout
            and jitter) or ``"auto"`` (images for the CNN, features otherwise).
        image_flip: let the image views mirror left-right (off by default: flips change
            digits and text; turn on for natural photos or clothing).
        max_per_class: cap on the stored pseudo-labels per class (most confident kept).
        neighbors: ``label_spreading``'s graph degree ``k`` (neighbours per row before
            symmetrization). Iscen et al. use 50 on CIFAR-10 (5,000 images per class); on
            pools of ~100-1,000 rows per class 50 neighbours reach far into other classes.
            The default 10 (the usual kNN-graph degree since Zhou et al. 2004) was the best or
            within 0.5 points of the best pseudo-label accuracy of k in {10, 20, 50} on five
            of six unlike settings (Banking77 MiniLM 4 and 25 per class, digits pixels 4 and
            25 per class, Fashion-MNIST pixels 4 per class; SMS spam MiniLM with 20 labels
            preferred 20-50: 0.916 at 10 vs 0.953 at 20).
        alpha: ``label_spreading``'s propagation strength in ``(0, 1)``; 0.9 (Zhou et al.
            2004 report 0.99 for their small toy graphs; 0.99 lost 2-15 points of
            pseudo-label accuracy on the pixel sets above at any k, 0.9 was never more than 3
            points from the best alpha in {0.5, 0.9, 0.99}).
        gamma: ``label_spreading``'s affinity exponent: ``w_ij = max(0, cos_ij)^gamma``
            (Iscen et al.: 3).
        cg_iterations: ``label_spreading``'s conjugate-gradient iterations (Iscen et al.: 20).
    """

    method: str = "fixmatch"
    threshold: float = 0.95
    steps: int = 2000
    labeled_batch: int = 64
    unlabeled_ratio: int = 7
    weight: float | None = None
    distribution_alignment: bool = False
    ema_decay: float = 0.999
    fairness_weight: float = 0.01
    rampup: float = 0.4
    augment: str = "auto"
    image_flip: bool = False
    max_per_class: int | None = 200
    neighbors: int = 10
    alpha: float = 0.9
    gamma: float = 3.0
    cg_iterations: int = 20

    def __post_init__(self) -> None:
        """Validate every field.

        Raises:
            ValueError: naming the first field out of range.
        """
        checks: list[tuple[bool, str]] = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}"),
            (0.0 < self.threshold <= 1.0, "threshold must be in (0, 1]"),
            (self.steps >= 1, "steps must be >= 1"),
            (self.labeled_batch >= 1, "labeled_batch must be >= 1"),
            (self.unlabeled_ratio >= 1, "unlabeled_ratio must be >= 1"),
            (self.weight is None or self.weight >= 0.0, "weight must be >= 0"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
            (self.fairness_weight >= 0.0, "fairness_weight must be >= 0"),
            (0.0 <= self.rampup <= 1.0, "rampup must be in [0, 1]"),
            (self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}"),
            (
                self.max_per_class is None or self.max_per_class >= 0,
                "max_per_class must be >= 0 or None",
            ),
            (self.neighbors >= 1, "neighbors must be >= 1"),
            (0.0 < self.alpha < 1.0, "alpha must be in (0, 1)"),
            (self.gamma > 0.0, "gamma must be > 0"),
            (self.cg_iterations >= 1, "cg_iterations must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}; got {self!r}")

    @property
    def unlabeled_weight(self) -> float:
        """``lambda_u``: ``weight``, or the method's default."""
        if self.weight is not None:
            return self.weight
        return 50.0 if self.method == "mean_teacher" else 1.0

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serializable dict."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# per-method state: thresholds and unlabeled losses


class FixMatchState:
    """FixMatch: fixed threshold on the weak view, hard-label cross-entropy on the strong one.

    The base of every method's per-run state; subclasses change :meth:`thresholds`,
    :meth:`update` or :meth:`loss`. State lives on the CPU (small ``[c]`` / ``[m]`` tensors).

    Args:
        n_classes: number of classes ``c``.
        n_unlabeled: number of unlabeled rows ``m`` (FlexMatch keeps one prediction per row).
        cfg: the run's settings (``threshold`` is ``tau``).
    """

    def __init__(self, n_classes: int, n_unlabeled: int, cfg: SemiSupervisedConfig) -> None:
        self.n_classes, self.cfg = n_classes, cfg

    def thresholds(self) -> torch.Tensor:
        """float32 ``[c]`` current per-class confidence thresholds."""
        return torch.full((self.n_classes,), self.cfg.threshold)

    def update(self, probs: torch.Tensor, idx: torch.Tensor) -> None:
        """Update the state from the weak-view probabilities ``[b, c]`` of rows ``idx``."""

    def loss(
        self, probs_w: torch.Tensor, logits_s: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(unlabeled loss, mask float ``[b]``) of one batch; also updates the state."""
        self.update(probs_w, idx)
        conf, pseudo = probs_w.max(dim=1)
        mask = (conf >= self.thresholds().to(conf.device)[pseudo]).float()
        per_row = F.cross_entropy(logits_s, pseudo, reduction="none")
        return (per_row * mask).mean(), mask


class FlexMatchState(FixMatchState):
    """Curriculum pseudo-labeling: class-wise thresholds from per-class learning status."""

    def __init__(self, n_classes: int, n_unlabeled: int, cfg: SemiSupervisedConfig) -> None:
        super().__init__(n_classes, n_unlabeled, cfg)
        self.selected = torch.full((n_unlabeled,), -1, dtype=torch.int64)
        self.beta = torch.zeros(n_classes)

    def thresholds(self) -> torch.Tensor:
        """``tau * M(beta_c)`` with ``M(x) = x / (2 - x)``."""
        return self.cfg.threshold * self.beta / (2.0 - self.beta)

    def update(self, probs: torch.Tensor, idx: torch.Tensor) -> None:
        """Record the rows predicted above ``tau`` and recompute ``beta`` (with warm-up)."""
        conf, pseudo = probs.max(dim=1)
        over = (conf >= self.cfg.threshold).cpu()
        if bool(over.any()):
            self.selected[idx.cpu()[over]] = pseudo.cpu()[over]
        sigma = torch.bincount(self.selected[self.selected >= 0], minlength=self.n_classes)
        unused = int((self.selected < 0).sum())
        denominator = max(int(sigma.max()), unused, 1)
        self.beta = sigma.float() / denominator


class FreeMatchState(FixMatchState):
    """Self-adaptive global/local thresholds plus the self-adaptive fairness loss."""

    def __init__(self, n_classes: int, n_unlabeled: int, cfg: SemiSupervisedConfig) -> None:
        super().__init__(n_classes, n_unlabeled, cfg)
        self.momentum = 0.999
        self.tau = torch.tensor(1.0 / n_classes)
        self.p_model = torch.full((n_classes,), 1.0 / n_classes)
        self.hist = torch.full((n_classes,), 1.0 / n_classes)

    def thresholds(self) -> torch.Tensor:
        """``tau_t * MaxNorm(p_model)``."""
        return self.tau * self.p_model / self.p_model.max()

    def update(self, probs: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA updates of ``tau_t``, ``p_model`` and the pseudo-label histogram."""
        m = self.momentum
        probs = probs.detach().cpu()
        conf, pseudo = probs.max(dim=1)
        self.tau = m * self.tau + (1 - m) * conf.mean()
        self.p_model = m * self.p_model + (1 - m) * probs.mean(dim=0)
        counts = torch.bincount(pseudo, minlength=self.n_classes).float()
        self.hist = m * self.hist + (1 - m) * counts / counts.sum()

    def loss(
        self, probs_w: torch.Tensor, logits_s: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """FixMatch-style loss under the adaptive mask, plus ``w_f`` times the fairness loss."""
        unsup, mask = super().loss(probs_w, logits_s, idx)
        if self.cfg.fairness_weight == 0 or not bool(mask.any()):
            return unsup, mask
        probs_s = logits_s[mask.bool()].softmax(dim=1)  # [k, c]
        hist_s = torch.bincount(probs_s.argmax(dim=1), minlength=self.n_classes).float()
        hist_s = hist_s / hist_s.sum()
        target = self.p_model.to(probs_s.device) / self.hist.to(probs_s.device)
        target = target / target.sum()
        scale_s = torch.nan_to_num(1.0 / hist_s, posinf=0.0).detach()
        mean_s = probs_s.mean(dim=0) * scale_s
        mean_s = mean_s / mean_s.sum().clamp_min(1e-12)
        # L_f = -H(target, mean_s) = sum target * log mean_s, added with weight w_f (as in USB)
        fairness = (target * torch.log(mean_s + 1e-12)).sum()
        return unsup + self.cfg.fairness_weight * fairness, mask


class MeanTeacherState(FixMatchState):
    """Probability MSE between the student's and the EMA teacher's weak views, ramped up."""

    def loss(
        self, probs_w: torch.Tensor, logits_s: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over rows of the per-class mean squared probability difference."""
        per_row = ((logits_s.softmax(dim=1) - probs_w) ** 2).mean(dim=1)
        return per_row.mean(), torch.ones_like(per_row)


METHOD_STATES: dict[str, type[FixMatchState]] = {
    "fixmatch": FixMatchState,
    "flexmatch": FlexMatchState,
    "freematch": FreeMatchState,
    "mean_teacher": MeanTeacherState,
}


class DistributionAlignment:
    """ReMixMatch's distribution alignment over a queue of the last 128 batch means.

    Args:
        target: float32 ``[c]`` the class marginal to align to (sums to 1).
    """

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target
        self.queue = torch.zeros((0, target.shape[0]))

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """Return the aligned, renormalized ``[b, c]`` probabilities."""
        self.queue = torch.cat([self.queue, probs.detach().mean(dim=0, keepdim=True).cpu()])
        self.queue = self.queue[-_DA_QUEUE:]
        ratio = (self.target / self.queue.mean(dim=0).clamp_min(1e-6)).to(probs.device)
        aligned = probs * ratio
        return aligned / aligned.sum(dim=1, keepdim=True)
