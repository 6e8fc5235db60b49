"""Consistency-regularized semi-supervised training (FixMatch, FlexMatch, FreeMatch, Mean
Teacher; see :mod:`app.ml.ssl_methods` for what each method does per batch) and the job-facing
:func:`fit_semi_supervised`.


As in USB (Wang et al. 2022, "USB: A Unified Semi-supervised Learning Benchmark") the labeled
batch gets the weak view, each step draws ``labeled_batch`` labeled and
``unlabeled_ratio * labeled_batch`` unlabeled rows, the learning rate follows FixMatch's cosine
decay ``lr * cos(7 pi k / (16 K))``, and the returned net is an EMA (0.999, with the usual
``(1 + t) / (10 + t)`` warm-up) of the trained weights. The optimizer is AdamW with the
learner's own ``lr``/``weight_decay`` (:class:`~app.ml.train.TrainConfig`), so a supervised
and a semi-supervised run differ only in the unlabeled term.
"""

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from app.ml.augment import STRONG_FEATURES, WEAK_FEATURES, ImageAugment
from app.ml.label_propagation import knn_graph, spread_labels
from app.ml.negatives import NegativeRows, append_negatives, per_row_loss
from app.ml.networks import HeadNet
from app.ml.predict import fork_rng, predict_proba, resolve_device
from app.ml.ssl_methods import (
    CONSISTENCY_METHODS,
    GRAPH_METHODS,
    METHOD_STATES,
    METHODS,
    DistributionAlignment,
    SemiSupervisedConfig,
)
from app.ml.train import (
    ProgressCallback,
    TrainConfig,
    TrainResult,
    _as_features,
    _as_targets,
    _plan_validation,
    _scores,
    can_early_stop,
    fit_self_training,
    fit_supervised,
    fit_supervised_with_info,
    image_side,
    make_net,
)
from app.sampling.pseudo_labels import PseudoLabels
from app.strategies.base import FloatArray

__all__ = [
    "CONSISTENCY_METHODS",
    "GRAPH_METHODS",
    "METHODS",
    "ConsistencyFit",
    "SemiSupervisedConfig",
    "fit_consistency",
    "fit_semi_supervised",
    "select_with_thresholds",
]
_MAX_EVALS = 50
_STANDARDIZE_ROWS = 20_000


# ---------------------------------------------------------------------------------------------
# the consistency loop


@dataclass(frozen=True)
class ConsistencyFit:
    """What :func:`fit_consistency` returns.

    Attributes:
        net: the EMA net at ``best_step`` (eval mode).
        steps_run: optimizer steps made (<= planned).
        best_step: step of the returned weights (the last one without early stopping).
        thresholds: float32 ``[c]`` per-class thresholds at the end (stored pseudo-labels use
            them).
        mask_rate: share of the unlabeled rows of the last 10 % of steps that passed the mask.
    """

    net: HeadNet
    steps_run: int
    best_step: int
    thresholds: FloatArray
    mask_rate: float


def _class_weights(y: torch.Tensor, n_classes: int, balanced: bool) -> torch.Tensor:
    """sklearn's "balanced" weights ``n / (n_present * count_c)`` (1 for absent classes)."""
    counts = torch.bincount(y, minlength=n_classes).float()
    if not balanced:
        return torch.ones(n_classes)
    present = counts > 0
    weights = torch.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _augmenters(
    config: TrainConfig, ssl: SemiSupervisedConfig, dim: int
) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    kind = ssl.augment
    if kind == "auto":
        kind = "images" if config.architecture == "cnn" else "features"
    if kind == "features":
        return WEAK_FEATURES, STRONG_FEATURES
    shape = config.image_shape or image_side(dim)
    return (
        ImageAugment(shape, strong=False, flip=ssl.image_flip),
        ImageAugment(shape, strong=True, flip=ssl.image_flip),
    )


def fit_consistency(
    x_labeled: npt.ArrayLike,
    y_labeled: npt.ArrayLike,
    x_unlabeled: npt.ArrayLike,
    *,
    config: TrainConfig,
    ssl: SemiSupervisedConfig,
    seed: int,
    device: str | torch.device,
    n_classes: int | None = None,
    validation: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    negatives: NegativeRows | None = None,
) -> ConsistencyFit:
    """Train one net with a consistency method (module docstring) on labeled + unlabeled rows.

    Args:
        x_labeled: float ``[n, d]`` labeled features (n >= 1, finite).
        y_labeled: int64 ``[n]`` class indices (softmax tasks only).
        x_unlabeled: float ``[m, d]`` unlabeled features (m >= 1; ``np.memmap`` is fine).
        config: the learner (architecture, lr, weight decay, dropout, class weighting, early
            stopping patience).
        ssl: the method and its settings (``ssl.method`` in :data:`CONSISTENCY_METHODS`).
        seed: seeds initialization, sampling, augmentation and dropout.
        device: ``"auto"``/``"cpu"``/``"cuda"`` or a ``torch.device``.
        n_classes: number of classes (default from ``y_labeled``).
        validation: ``(x_val, y_val)`` hold-out; the EMA net's hold-out loss is evaluated up to
            50 times and, with ``config.early_stopping_patience > 0``, the best weights are
            kept and training stops after that many evaluations without improvement.
        on_step: called as ``on_step(step, n_steps, loss)`` about 20 times.
        negatives: "not c" rows (:class:`~app.ml.negatives.NegativeRows`); each step adds up
            to ``labeled_batch`` of them (weak view) to the supervised term with the
            complementary loss ``-log(1 - p_c)`` at their weights. None or empty for none.

    Returns:
        ConsistencyFit.

    Raises:
        ValueError: on a non-consistency method, a multilabel task, bad shapes, non-finite
            inputs, empty ``x_unlabeled`` or an unavailable device.
    """
    if ssl.method not in CONSISTENCY_METHODS:
        raise ValueError(f"method must be one of {', '.join(CONSISTENCY_METHODS)}")
    if config.task == "multilabel":
        raise ValueError("consistency methods need a single-label (softmax) task")
    dev = resolve_device(device)
    x_l = _as_features(x_labeled, "x_labeled")
    y_np, n_out = _as_targets(y_labeled, config.task, x_l.shape[0], n_classes)
    x_u = _as_features(x_unlabeled, "x_unlabeled")
    if x_u.shape[0] == 0 or x_u.shape[1] != x_l.shape[1]:
        raise ValueError(f"x_unlabeled must have shape [m >= 1, {x_l.shape[1]}], got {x_u.shape}")
    n_l, n_u, steps = x_l.shape[0], x_u.shape[0], ssl.steps
    weak, strong = _augmenters(config, ssl, x_l.shape[1])

    with fork_rng(dev):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = make_net(config, x_l.shape[1], n_out).to(dev)
        xl = torch.from_numpy(x_l).to(dev)
        yl = torch.from_numpy(y_np).to(dev)
        xu = torch.from_numpy(x_u).to(dev)
        sample = torch.randperm(n_u, generator=gen)[:_STANDARDIZE_ROWS].to(dev)
        net.set_standardization(torch.cat([xl, xu[sample]]))
        scale = net.input_std.detach().clone()
        ema = copy.deepcopy(net).eval()
        for p in ema.parameters():
            p.requires_grad_(False)
        class_w = _class_weights(yl.cpu(), n_out, config.class_weighting).to(dev)
        method = METHOD_STATES[ssl.method](n_out, n_u, ssl)
        align = None
        if ssl.distribution_alignment and ssl.method != "mean_teacher":
            counts = torch.bincount(yl.cpu(), minlength=n_out).float() + 1.0
            align = DistributionAlignment(counts / counts.sum())
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: math.cos(7 * math.pi * k / (16 * steps))
        )
        stopper = _EmaStopper(validation, config, x_l.shape[1], n_out, dev)
        eval_every = max(1, steps // _MAX_EVALS)
        b_l, b_u = min(ssl.labeled_batch, max(n_l, 1)), ssl.labeled_batch * ssl.unlabeled_ratio
        lambda_u = ssl.unlabeled_weight
        neg = _negative_tensors(negatives, x_l.shape[1], n_out, dev)
        mask_sum, mask_n, step = 0.0, 0, 0
        teacher_targets = ssl.method == "mean_teacher"
        net.train()
        for module in net.modules():  # the perturbations regularize; dropout stays for MC
            if isinstance(module, nn.Dropout):
                module.eval()
        for step in range(1, steps + 1):
            il = torch.randint(0, n_l, (b_l,), generator=gen).to(dev)
            iu = torch.randint(0, n_u, (b_u,), generator=gen).to(dev)
            ul = xu[iu]
            weak_u = weak(ul, scale, gen)
            second = weak(ul, scale, gen) if teacher_targets else strong(ul, scale, gen)
            # the weak view only makes targets: a no-grad forward (the nets have no batch
            # norm, so this equals FixMatch's joint forward) saves a third of the backward
            with torch.no_grad():
                probs_w = (ema if teacher_targets else net)(weak_u).softmax(dim=1)
            logits = net(torch.cat([weak(xl[il], scale, gen), second]))
            logits_l, logits_s = logits[:b_l], logits[b_l:]
            if teacher_targets:
                ramp = min(step / max(ssl.rampup * steps, 1.0), 1.0)
                weight_u = lambda_u * math.exp(-5.0 * (1.0 - ramp) ** 2)
            else:
                if align is not None:
                    probs_w = align(probs_w)
                weight_u = lambda_u
            w_l = class_w[yl[il]]
            sup, sup_w = (
                (F.cross_entropy(logits_l, yl[il], reduction="none") * w_l).sum(),
                w_l.sum(),
            )
            if neg is not None:
                xn, cn, wn = neg
                ineg = torch.randint(0, xn.shape[0], (min(b_l, xn.shape[0]),), generator=gen)
                ineg = ineg.to(dev)
                comp = torch.ones(ineg.shape[0], dtype=torch.bool, device=dev)
                per_neg = per_row_loss(net(weak(xn[ineg], scale, gen)), cn[ineg], config.task, comp)
                sup, sup_w = sup + (per_neg * wn[ineg]).sum(), sup_w + wn[ineg].sum()
            sup = sup / sup_w.clamp_min(1e-12)
            unsup, mask = method.loss(probs_w, logits_s, iu)
            loss = sup + weight_u * unsup
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            _ema_update(ema, net, min(ssl.ema_decay, (1 + step) / (10 + step)))
            if step > 0.9 * steps:
                mask_sum, mask_n = mask_sum + float(mask.sum()), mask_n + b_u
            if on_step is not None and (step % max(1, steps // 20) == 0 or step == steps):
                on_step(step, steps, float(loss.detach()))
            due = step % eval_every == 0 or step == steps
            if stopper.active and due and stopper.check(ema, step):
                break
        best_step = step
        if stopper.best_state is not None:
            ema.load_state_dict(stopper.best_state)
            best_step = stopper.best_step
        ema.eval()
    thresholds = method.thresholds().float().cpu().numpy()
    if ssl.method == "mean_teacher":
        thresholds = np.full(n_out, ssl.threshold, dtype=np.float32)
    return ConsistencyFit(
        net=ema,
        steps_run=step,
        best_step=best_step,
        thresholds=thresholds.astype(np.float32),
        mask_rate=mask_sum / mask_n if mask_n else float("nan"),
    )


def _negative_tensors(
    negatives: NegativeRows | None, dim: int, n_out: int, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    if negatives is None or len(negatives) == 0:
        return None
    negatives.check(dim, n_out)
    return (
        torch.from_numpy(np.ascontiguousarray(negatives.x, dtype=np.float32)).to(dev),
        torch.from_numpy(np.asarray(negatives.classes, dtype=np.int64)).to(dev),
        torch.from_numpy(np.asarray(negatives.weights, dtype=np.float32)).to(dev),
    )


@torch.no_grad()
def _ema_update(ema: HeadNet, net: HeadNet, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), net.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    for eb, b in zip(ema.buffers(), net.buffers(), strict=True):
        eb.copy_(b)


class _EmaStopper:
    """Hold-out loss tracking for the EMA net (see :func:`fit_consistency`)."""

    def __init__(
        self,
        validation: tuple[npt.ArrayLike, npt.ArrayLike] | None,
        config: TrainConfig,
        dim: int,
        n_out: int,
        dev: torch.device,
    ) -> None:
        self.active = False
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step, self.best_loss, self.bad = 0, float("inf"), 0
        self.patience = config.early_stopping_patience
        if validation is None:
            return
        x_val = _as_features(validation[0], "x_val")
        if x_val.shape[0] == 0:
            return
        if x_val.shape[1] != dim:
            raise ValueError(f"x_val must have shape [v, {dim}], got {x_val.shape}")
        y_val, _ = _as_targets(validation[1], config.task, x_val.shape[0], n_out)
        self.x_val = torch.from_numpy(x_val).to(dev)
        self.y_val = torch.from_numpy(y_val).to(dev)
        self.active = True

    def check(self, ema: HeadNet, step: int) -> bool:
        """Evaluate after ``step``; True when training should stop."""
        with torch.no_grad():
            loss = float(F.cross_entropy(ema(self.x_val), self.y_val))
        if self.best_state is None or loss < self.best_loss * (1.0 - 1e-3):
            self.best_loss, self.best_step, self.bad = loss, step, 0
            self.best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            return False
        self.bad += 1
        return self.patience > 0 and self.bad >= self.patience


# ---------------------------------------------------------------------------------------------
# the job-facing entry point


def select_with_thresholds(
    probs: FloatArray, thresholds: FloatArray, max_per_class: int | None
) -> PseudoLabels:
    """Rows whose top probability reaches their predicted class's threshold, capped per class.

    Args:
        probs: float ``[m, c]`` softmax rows.
        thresholds: float ``[c]`` per-class thresholds (values ``<= 0`` accept every row).
        max_per_class: keep at most this many rows per class, the most confident (ties: lower
            position); None for no cap.

    Returns:
        PseudoLabels ascending by position.

    Raises:
        ValueError: on shapes that do not match.
    """
    probs = np.asarray(probs)
    thresholds = np.asarray(thresholds, dtype=np.float32)
    if probs.ndim != 2 or thresholds.shape != (probs.shape[1],):
        raise ValueError(
            f"need probs [m, c] and thresholds [c], got {probs.shape}, {thresholds.shape}"
        )
    if probs.shape[0] == 0:
        return PseudoLabels.empty()
    labels = probs.argmax(axis=1)
    conf = probs[np.arange(probs.shape[0]), labels]
    return _most_confident(np.flatnonzero(conf >= thresholds[labels]), labels, conf, max_per_class)


def _most_confident(
    positions: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    confidences: FloatArray,
    max_per_class: int | None,
) -> PseudoLabels:
    """``positions`` (ascending) kept to the ``max_per_class`` most confident per class (ties:
    lower position first), as PseudoLabels."""
    if max_per_class is not None and positions.size:
        order = np.lexsort((positions, -confidences[positions], labels[positions]))
        grouped = labels[positions][order]
        rank = np.arange(order.size) - np.searchsorted(grouped, grouped, side="left")
        positions = np.sort(positions[order[rank < max_per_class]])
    return PseudoLabels(
        positions=positions.astype(np.int64),
        labels=labels[positions].astype(np.int64),
        confidences=confidences[positions].astype(np.float32),
    )


def fit_semi_supervised(
    x_labeled: npt.ArrayLike,
    y_labeled: npt.ArrayLike,
    x_unlabeled: npt.ArrayLike,
    *,
    config: TrainConfig,
    ssl: SemiSupervisedConfig,
    seed: int,
    device: str | torch.device,
    on_progress: ProgressCallback = lambda p, msg: None,
    n_classes: int | None = None,
    negatives: NegativeRows | None = None,
) -> TrainResult:
    """Train a checkpoint's net with the semi-supervised method ``ssl.method``.

    ``"none"`` and ``"self_training"`` go to :func:`~app.ml.train.fit_self_training` (with
    self-training switched off for ``"none"``). The consistency methods use the same validation
    plan as self-training: with a hold-out, fit on the training rows with early stopping on the
    hold-out, report its scores, then refit on all labeled rows for the best step count; with
    few labels, report stratified-CV scores of supervised fits (``metrics["cv_of"] =
    "supervised"``) and fit once on everything. Multilabel tasks and empty pools fall back to
    supervised training (``metrics["method"] = "none"``).

    The returned pseudo-labels are the unlabeled rows the final net predicts above the
    method's final per-class thresholds (FixMatch/Mean Teacher: ``ssl.threshold``), at most
    ``ssl.max_per_class`` per class: what a consistency fit trusted at its end.

    ``"label_spreading"`` (:func:`fit_label_spreading`) spreads the labels over a kNN graph
    of the labeled + unlabeled rows and trains on the labeled rows plus the weighted spread
    labels, with the same validation plan (the hold-out rows' labels are not spread in the
    first fit).

    Args:
        x_labeled: float ``[n, d]`` features of the human-labeled rows (n >= 1).
        y_labeled: int64 ``[n]`` class indices, or float32 ``[n, c]`` multi-hot (multilabel).
        x_unlabeled: float ``[m, d]`` unlabeled pool (``np.memmap`` is fine; ``m`` may be 0).
        config: the learner's hyper-parameters.
        ssl: the semi-supervised method and its settings.
        seed: seeds everything (same inputs + seed => identical net on the same device).
        device: ``"auto"``/``"cpu"``/``"cuda"`` or a ``torch.device``.
        on_progress: called with (fraction in ``[0, 1]``, message).
        n_classes: number of classes of the project (default from ``y_labeled``).
        negatives: "not c" rows trained with the complementary loss in every fit (see
            :func:`fit_consistency` and :func:`~app.ml.train.fit_self_training`).

    Returns:
        TrainResult; ``metrics`` adds ``method``, ``distribution_alignment``, ``steps``,
        ``best_step``, ``mask_rate`` and ``thresholds`` (per class) for consistency methods.

    Raises:
        ValueError: on inconsistent shapes, bad labels, non-finite features or an unavailable
            device.
    """
    x_u = x_unlabeled if isinstance(x_unlabeled, np.ndarray) else np.asarray(x_unlabeled)
    fallback = config.task == "multilabel" or x_u.size == 0
    if ssl.method in ("none", "self_training") or fallback:
        if ssl.method != "self_training":
            config = replace(config, pseudo_rounds=0)
        result = fit_self_training(
            x_labeled,
            y_labeled,
            x_u,
            config=config,
            seed=seed,
            device=device,
            on_progress=on_progress,
            n_classes=n_classes,
            negatives=negatives,
        )
        result.metrics["method"] = "self_training" if result.metrics["n_pseudo"] else "none"
        result.metrics["distribution_alignment"] = False
        return result
    if ssl.method in GRAPH_METHODS:
        return fit_label_spreading(
            x_labeled,
            y_labeled,
            x_u,
            config=config,
            ssl=ssl,
            seed=seed,
            device=device,
            on_progress=on_progress,
            n_classes=n_classes,
            negatives=negatives,
        )
    return _fit_consistency_checkpoint(
        x_labeled,
        y_labeled,
        x_u,
        config=config,
        ssl=ssl,
        seed=seed,
        device=device,
        on_progress=on_progress,
        n_classes=n_classes,
        negatives=negatives,
    )


def _fit_consistency_checkpoint(
    x_labeled: npt.ArrayLike,
    y_labeled: npt.ArrayLike,
    x_u: npt.NDArray[Any],
    *,
    config: TrainConfig,
    ssl: SemiSupervisedConfig,
    seed: int,
    device: str | torch.device,
    on_progress: ProgressCallback,
    n_classes: int | None,
    negatives: NegativeRows | None,
) -> TrainResult:
    started = time.perf_counter()
    dev = resolve_device(device)
    x_l = _as_features(x_labeled, "x_labeled")
    if x_l.shape[0] < 1:
        raise ValueError("need at least one labeled row")
    y_l, n_out = _as_targets(y_labeled, config.task, x_l.shape[0], n_classes)
    if x_u.ndim != 2 or x_u.shape[1] != x_l.shape[1]:
        raise ValueError(f"x_unlabeled must have shape [m, {x_l.shape[1]}], got {x_u.shape}")
    x_u = _as_features(x_u, "x_unlabeled")
    plan = _plan_validation(y_l, config, seed)
    holdout = plan.mode == "holdout"
    n_fits = (2 if holdout else 1) + 0.1 * len(plan.folds)
    done = 0.0

    def stage_hook(name: str) -> Callable[[int, int, float], None]:
        def hook(step: int, n_steps: int, loss: float) -> None:
            on_progress(
                min((done + step / n_steps) / n_fits, 1.0),
                f"{name}: step {step}/{n_steps}, loss {loss:.4f}",
            )

        return hook

    on_progress(0.0, f"training {ssl.method} ({plan.mode} validation)")
    cv_scores = None
    if plan.folds:  # few labels: supervised CV scores (cheap), as for self-training
        oof = np.zeros((x_l.shape[0], n_out), dtype=np.float32)
        for tr, va in plan.folds:
            fold_net = fit_supervised(
                x_l[tr], y_l[tr], config=config, seed=seed, device=dev, n_classes=n_out
            )
            oof[va] = predict_proba(fold_net, x_l[va], device=dev)
        cv_scores = _scores(y_l, oof, config.task)
        done += 0.1 * len(plan.folds)
    if holdout:
        first = fit_consistency(
            x_l[plan.train_idx],
            y_l[plan.train_idx],
            x_u,
            config=config,
            ssl=ssl,
            seed=seed,
            device=dev,
            n_classes=n_out,
            validation=(x_l[plan.val_idx], y_l[plan.val_idx])
            if can_early_stop(y_l[plan.val_idx], config.task)
            else None,
            on_step=stage_hook(ssl.method),
            negatives=negatives,
        )
        final_scores = _scores(
            y_l[plan.val_idx], predict_proba(first.net, x_l[plan.val_idx], device=dev), config.task
        )
        done += 1.0
        ssl_final = replace(ssl, steps=first.best_step)
        fit = fit_consistency(
            x_l,
            y_l,
            x_u,
            config=config,
            ssl=ssl_final,
            seed=seed,
            device=dev,
            n_classes=n_out,
            on_step=stage_hook("final"),
            negatives=negatives,
        )
    else:
        fit = fit_consistency(
            x_l,
            y_l,
            x_u,
            config=config,
            ssl=ssl,
            seed=seed,
            device=dev,
            n_classes=n_out,
            on_step=stage_hook(ssl.method),
            negatives=negatives,
        )
        final_scores = (
            cv_scores
            if cv_scores is not None
            else _scores(y_l, predict_proba(fit.net, x_l, device=dev), config.task)
        )
    probs_u = predict_proba(fit.net, x_u, device=dev)
    pseudo = select_with_thresholds(probs_u, fit.thresholds, ssl.max_per_class)
    metrics: dict[str, Any] = {
        **final_scores,
        "validation": plan.mode,
        "cv_of": "supervised" if cv_scores is not None else None,
        "n_labeled": int(x_l.shape[0]),
        "n_train": int(plan.train_idx.shape[0]) if holdout else int(x_l.shape[0]),
        "n_validation": int(plan.val_idx.shape[0]),
        "cv_folds": len(plan.folds),
        "n_unlabeled": int(x_u.shape[0]),
        "n_pseudo": len(pseudo),
        "pseudo_per_class": pseudo.per_class(n_out).tolist(),
        "rounds": [],
        "method": ssl.method,
        "distribution_alignment": bool(ssl.distribution_alignment and ssl.method != "mean_teacher"),
        "steps": int(fit.steps_run),
        "best_step": int(first.best_step) if holdout else int(fit.best_step),
        "mask_rate": None if math.isnan(fit.mask_rate) else round(fit.mask_rate, 4),
        "thresholds": [round(float(t), 4) for t in fit.thresholds],
        "task": config.task,
        "n_classes": int(n_out),
        "seconds": round(time.perf_counter() - started, 3),
    }
    on_progress(1.0, f"done: {plan.mode} accuracy {final_scores['accuracy']:.3f}")
    return TrainResult(
        net=fit.net,
        metrics=metrics,
        pseudo_positions=pseudo.positions,
        pseudo_labels=pseudo.labels,
        pseudo_confidences=pseudo.confidences,
    )


# ---------------------------------------------------------------------------------------------
# label spreading


def _supervised_cv(
    x_l: FloatArray,
    y_l: npt.NDArray[Any],
    folds: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    *,
    config: TrainConfig,
    seed: int,
    dev: torch.device,
    n_out: int,
) -> dict[str, float]:
    """Out-of-fold scores of supervised fits (the few-labels validation of every method)."""
    oof = np.zeros((x_l.shape[0], n_out), dtype=np.float32)
    for tr, va in folds:
        fold_net = fit_supervised(
            x_l[tr], y_l[tr], config=config, seed=seed, device=dev, n_classes=n_out
        )
        oof[va] = predict_proba(fold_net, x_l[va], device=dev)
    return _scores(y_l, oof, config.task)


def fit_label_spreading(
    x_labeled: npt.ArrayLike,
    y_labeled: npt.ArrayLike,
    x_unlabeled: npt.ArrayLike,
    *,
    config: TrainConfig,
    ssl: SemiSupervisedConfig,
    seed: int,
    device: str | torch.device,
    on_progress: ProgressCallback = lambda p, msg: None,
    n_classes: int | None = None,
    negatives: NegativeRows | None = None,
) -> TrainResult:
    """Label spreading on a kNN graph, then a net trained on labels + weighted spread labels.

    Iscen et al. (2019), "Label Propagation for Deep Semi-supervised Learning", on fixed
    features: one graph (:func:`~app.ml.label_propagation.knn_graph`, ``ssl.neighbors``,
    ``ssl.gamma``) over the labeled and unlabeled rows; the labels are spread over it
    (:func:`~app.ml.label_propagation.spread_labels`, ``ssl.alpha``, ``ssl.cg_iterations``);
    every unlabeled row the spreading reached joins the training set with its spread label at
    weight ``ssl.unlabeled_weight * omega_i`` (``omega_i = 1 - H / log C``, normalized to a
    maximum of 1). Class balance is :class:`~app.ml.train.TrainConfig`'s ``class_weighting``
    counted with those weights (Iscen et al.'s per-class ``zeta_c``, weighted).

    Validation as for self-training: with a hold-out, spread from the training rows' labels
    only (the hold-out rows stay unlabeled nodes), fit with early stopping on the hold-out and
    report its scores; then spread from all labels on the same graph and refit for the best
    epoch count. With few labels, supervised stratified-CV scores (``metrics["cv_of"] =
    "supervised"``) and one fit on everything.

    The stored pseudo-labels are the spread labels of the unlabeled rows, confidence =
    ``omega_i``, at most ``ssl.max_per_class`` per class (the most certain).

    Args:
        x_labeled: float ``[n, d]`` human-labeled features (n >= 1).
        y_labeled: int64 ``[n]`` class indices (softmax tasks).
        x_unlabeled: float ``[m, d]`` unlabeled pool (m >= 1; ``np.memmap`` is fine).
        config: the learner's hyper-parameters.
        ssl: ``method="label_spreading"`` and its graph settings.
        seed: seeds the graph's IVF k-means (large pools), the validation plan and the fits.
        device: ``"auto"``/``"cpu"``/``"cuda"`` or a ``torch.device`` (the nets; the graph
            and the solve run on the CPU).
        on_progress: called with (fraction in ``[0, 1]``, message).
        n_classes: number of classes (default from ``y_labeled``).
        negatives: "not c" rows added to every fit (:func:`~app.ml.negatives.append_negatives`).

    Returns:
        TrainResult; ``metrics`` adds ``method``, ``neighbors``, ``alpha``, ``gamma``,
        ``cg_iterations`` (run), ``graph_seconds``, ``spread_seconds``, ``n_spread`` (the
        weighted rows trained on) and ``mean_spread_weight``.

    Raises:
        ValueError: on a multilabel task, bad shapes, non-finite features, empty
            ``x_unlabeled`` or an unavailable device.
    """
    started = time.perf_counter()
    if config.task == "multilabel":
        raise ValueError("label spreading needs a single-label (softmax) task")
    dev = resolve_device(device)
    x_l = _as_features(x_labeled, "x_labeled")
    if x_l.shape[0] < 1:
        raise ValueError("need at least one labeled row")
    y_l, n_out = _as_targets(y_labeled, config.task, x_l.shape[0], n_classes)
    x_u = _as_features(x_unlabeled, "x_unlabeled")
    if x_u.shape[0] == 0 or x_u.shape[1] != x_l.shape[1]:
        raise ValueError(f"x_unlabeled must have shape [m >= 1, {x_l.shape[1]}], got {x_u.shape}")
    n_l, n_u = x_l.shape[0], x_u.shape[0]
    plan = _plan_validation(y_l, config, seed)
    holdout = plan.mode == "holdout"
    n_fits = (2 if holdout else 1) + 0.1 * len(plan.folds) + 0.2
    done = 0.0
    on_progress(0.0, f"label spreading: graph of {n_l + n_u} rows ({plan.mode} validation)")
    graph_started = time.perf_counter()
    graph = knn_graph(np.concatenate([x_l, x_u]), ssl.neighbors, gamma=ssl.gamma, seed=seed)
    graph_seconds = time.perf_counter() - graph_started
    done += 0.2
    on_progress(done / n_fits, f"graph done in {graph_seconds:.1f} s")
    spread_seconds = 0.0

    def spread(rows: npt.NDArray[np.int64]) -> tuple[PseudoLabels, int]:
        nonlocal spread_seconds
        result = spread_labels(
            None,
            rows,
            y_l[rows],
            n_out,
            alpha=ssl.alpha,
            max_iter=ssl.cg_iterations,
            graph=graph,
        )
        spread_seconds += result.seconds
        weights = result.weights[n_l:]
        return (
            PseudoLabels(
                positions=np.flatnonzero(weights > 0).astype(np.int64),
                labels=result.labels[n_l:][weights > 0],
                confidences=weights[weights > 0],
            ),
            result.iterations,
        )

    def fit(
        rows: npt.NDArray[np.int64],
        pseudo: PseudoLabels,
        stage: str,
        *,
        validation: tuple[FloatArray, npt.NDArray[Any]] | None = None,
        epochs: int | None = None,
    ) -> tuple[HeadNet, int]:
        x_fit = np.concatenate([x_l[rows], x_u[pseudo.positions]])
        y_fit = np.concatenate([y_l[rows], pseudo.labels])
        w_fit = np.concatenate(
            [np.ones(rows.shape[0], dtype=np.float32), ssl.unlabeled_weight * pseudo.confidences]
        ).astype(np.float32)
        comp = None
        if negatives is not None and len(negatives):
            x_fit, y_fit, w_fit, comp = append_negatives(
                x_fit, y_fit, w_fit, negatives, task=config.task, n_classes=n_out
            )
        fit_config = config if epochs is None else replace(config, epochs=epochs, min_steps=0)

        def on_epoch(epoch: int, n_epochs: int, loss: float) -> None:
            on_progress(
                min((done + epoch / n_epochs) / n_fits, 1.0),
                f"{stage}: epoch {epoch}/{n_epochs}, loss {loss:.4f}",
            )

        net, info = fit_supervised_with_info(
            x_fit,
            y_fit,
            config=fit_config,
            seed=seed,
            device=dev,
            sample_weight=w_fit,
            on_epoch=on_epoch,
            n_classes=n_out,
            validation=validation,
            complementary=comp,
        )
        return net, info.best_epoch

    cv_scores = None
    if plan.folds:
        cv_scores = _supervised_cv(
            x_l, y_l, plan.folds, config=config, seed=seed, dev=dev, n_out=n_out
        )
        done += 0.1 * len(plan.folds)
    best_epoch = None
    if holdout:
        pseudo_train, _ = spread(plan.train_idx)
        stoppable = can_early_stop(y_l[plan.val_idx], config.task)
        first, best = fit(
            plan.train_idx,
            pseudo_train,
            "label spreading",
            validation=(x_l[plan.val_idx], y_l[plan.val_idx]) if stoppable else None,
        )
        final_scores = _scores(
            y_l[plan.val_idx], predict_proba(first, x_l[plan.val_idx], device=dev), config.task
        )
        if stoppable and config.early_stopping_patience:
            best_epoch = best
        done += 1.0
    all_rows = np.arange(n_l, dtype=np.int64)
    pseudo, iterations = spread(all_rows)
    net, _ = fit(all_rows, pseudo, "final" if holdout else "label spreading", epochs=best_epoch)
    if not holdout:
        final_scores = (
            cv_scores
            if cv_scores is not None
            else _scores(y_l, predict_proba(net, x_l, device=dev), config.task)
        )
    stored = _most_confident(  # spread rows (weight > 0), the most certain per class
        pseudo.positions,
        _scatter(pseudo.positions, pseudo.labels, n_u),
        _scatter(pseudo.positions, pseudo.confidences, n_u),
        ssl.max_per_class,
    )
    metrics: dict[str, Any] = {
        **final_scores,
        "validation": plan.mode,
        "cv_of": "supervised" if cv_scores is not None else None,
        "n_labeled": int(n_l),
        "n_train": int(plan.train_idx.shape[0]) if holdout else int(n_l),
        "n_validation": int(plan.val_idx.shape[0]),
        "cv_folds": len(plan.folds),
        "n_unlabeled": int(n_u),
        "n_pseudo": len(stored),
        "pseudo_per_class": stored.per_class(n_out).tolist(),
        "n_negatives": 0 if negatives is None else len(negatives),
        "rounds": [],
        "method": ssl.method,
        "distribution_alignment": False,
        "neighbors": int(ssl.neighbors),
        "alpha": float(ssl.alpha),
        "gamma": float(ssl.gamma),
        "cg_iterations": int(iterations),
        "graph_seconds": round(graph_seconds, 3),
        "spread_seconds": round(spread_seconds, 3),
        "n_spread": len(pseudo),
        "mean_spread_weight": round(float(pseudo.confidences.mean()), 4) if len(pseudo) else 0.0,
        "best_epoch": best_epoch,
        "task": config.task,
        "n_classes": int(n_out),
        "seconds": round(time.perf_counter() - started, 3),
    }
    on_progress(1.0, f"done: {plan.mode} accuracy {final_scores['accuracy']:.3f}")
    return TrainResult(
        net=net,
        metrics=metrics,
        pseudo_positions=stored.positions,
        pseudo_labels=stored.labels,
        pseudo_confidences=stored.confidences,
    )


def _scatter(
    positions: npt.NDArray[np.int64], values: npt.NDArray[Any], n: int
) -> npt.NDArray[Any]:
    out = np.zeros(n, dtype=values.dtype)
    out[positions] = values
    return out
