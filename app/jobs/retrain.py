"""Train job: snapshot the labels, fit with pseudo-labels, write the checkpoint, activate it.

No session stays open while torch trains. The checkpoint folder is written atomically before
the final transaction; if that transaction fails the folder is removed and the active
checkpoint stays as it was.
"""

import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, insert, select

from app.jobs import validation
from app.jobs.common import Progress, finish, run_guarded
from app.jobs.runner import JobContext
from app.ml.artifacts import save_checkpoint
from app.ml.predict import embed, mc_dropout_proba, predict_proba, resolve_device
from app.ml.runtime import set_threads
from app.ml.semi_supervised import SemiSupervisedConfig, fit_semi_supervised
from app.ml.train import TrainConfig, fit_supervised
from app.models import Annotation, Checkpoint, Item, ItemStatus, Job, LabelSource, Project
from app.services import pseudo_review, training, training_negatives, webhooks

PSEUDO_METHOD = "self_training"


@dataclass(frozen=True)
class Snapshot:
    """What the job reads in its first short transaction."""

    project_id: int
    task: str
    label_names: list[str]
    pool_size: int
    positions: npt.NDArray[np.int64]  # position of every item, aligned with item_ids
    item_ids: npt.NDArray[np.int64]
    labeled_positions: npt.NDArray[np.int64]
    targets: npt.NDArray[Any]  # int64 [l] class index, or float32 [l, c] multi-hot
    modality: str = "vector"


def run_train(job_id: int, ctx: JobContext) -> None:
    """Job body for ``kind="train"``."""
    run_guarded(ctx.sessionmaker, job_id, lambda job, progress: _body(job, progress, ctx))


def _snapshot(ctx: JobContext, project_id: int) -> Snapshot:
    with ctx.sessionmaker() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"project {project_id} is gone")
        rows = session.execute(
            select(Item.position, Item.id, Item.status, Item.labels)
            .where(Item.project_id == project_id, Item.position < project.pool_size)
            .order_by(Item.position)
        ).all()
        index = {name: i for i, name in enumerate(project.labels)}
        labeled = [
            (pos, labels or []) for pos, _id, status, labels in rows if status == ItemStatus.LABELED
        ]
        if project.task == "multilabel":
            targets: npt.NDArray[Any] = np.zeros((len(labeled), len(index)), dtype=np.float32)
            for row, (_pos, labels) in enumerate(labeled):
                targets[row, [index[name] for name in labels]] = 1.0
        else:
            targets = np.array([index[labels[0]] for _pos, labels in labeled], dtype=np.int64)
        return Snapshot(
            project_id=project_id,
            task=project.task,
            label_names=list(project.labels),
            pool_size=project.pool_size,
            positions=np.array([r[0] for r in rows], dtype=np.int64),
            item_ids=np.array([r[1] for r in rows], dtype=np.int64),
            labeled_positions=np.array([pos for pos, _ in labeled], dtype=np.int64),
            targets=targets,
            modality=project.modality,
        )


def train_config(
    params: dict[str, Any], task: str, default_threshold: float, modality: str = "vector"
) -> TrainConfig:
    """TrainConfig from a job's params (see ``TrainRequest``); ``architecture="auto"`` picks
    the small CNN for image projects."""
    semi = params.get("semi_supervised") or {"method": "none"}
    enabled = semi.get("method", "self_training") == "self_training"
    overrides: dict[str, Any] = {"task": task}
    if params.get("epochs"):
        overrides["epochs"] = int(params["epochs"])
    if params.get("hidden") is not None:
        overrides["hidden"] = int(params["hidden"])
    architecture = params.get("architecture") or "auto"
    if architecture == "auto":
        architecture = "cnn" if modality == "image" else "mlp"
    overrides["architecture"] = architecture
    if params.get("early_stopping") is False:
        overrides["early_stopping_patience"] = 0
    overrides["pseudo_label_threshold"] = (
        float(semi.get("threshold", default_threshold)) if enabled else 1.0
    )
    overrides["pseudo_rounds"] = int(semi.get("rounds", 1)) if enabled else 0
    weight = semi.get("weight")
    overrides["pseudo_weight"] = 0.5 if weight is None or not enabled else float(weight)
    if semi.get("max_per_class") is not None:  # else TrainConfig's class-balancing cap
        overrides["max_pseudo_per_class"] = int(semi["max_per_class"])
    return TrainConfig(**overrides)


def semi_supervised_config(
    params: dict[str, Any], default_threshold: float
) -> SemiSupervisedConfig:
    """SemiSupervisedConfig from a job's params (``semi_supervised`` of ``TrainRequest``)."""
    semi = params.get("semi_supervised") or {"method": "none"}
    overrides: dict[str, Any] = {
        "method": semi.get("method", "self_training"),
        "threshold": float(semi.get("threshold", default_threshold)),
        "distribution_alignment": bool(semi.get("distribution_alignment", False)),
        "image_flip": bool(semi.get("image_flip", False)),
    }
    if semi.get("weight") is not None:
        overrides["weight"] = float(semi["weight"])
    if semi.get("steps"):
        overrides["steps"] = int(semi["steps"])
    if semi.get("max_per_class") is not None:
        overrides["max_per_class"] = int(semi["max_per_class"])
    return SemiSupervisedConfig(**overrides)


def _body(job: Job, progress: Progress, ctx: JobContext) -> None:
    snap = _snapshot(ctx, job.project_id)
    if snap.labeled_positions.size == 0:
        raise ValueError("no labeled items to train on")
    features = np.asarray(ctx.store.read_features(snap.project_id, snap.pool_size))
    split = validation.split_for(
        pool_size=snap.pool_size,
        positions=snap.positions,
        item_ids=snap.item_ids,
        labeled_positions=snap.labeled_positions,
        targets=snap.targets,
        task=snap.task,
        settings=ctx.settings,
    )  # hold-out items (by item-id hash) train nothing, so later checkpoints compare on them
    unlabeled = split.unlabeled_positions
    config = train_config(
        job.params, snap.task, ctx.settings.pseudo_label_threshold, modality=snap.modality
    )
    ssl = semi_supervised_config(job.params, ctx.settings.pseudo_label_threshold)
    device = resolve_device(job.params.get("device", "auto"))
    set_threads(ctx.settings.torch_threads)
    seed = int(job.params.get("seed", 0))
    negatives = training_negatives.prepare(
        ctx.sessionmaker,
        snap.project_id,
        params=job.params.get("negatives"),
        features=features,
        labeled_positions=snap.labeled_positions,
        targets=snap.targets,
        task=snap.task,
        n_classes=len(snap.label_names),
        seed=seed,
    )  # confirmed "not c" facts and PU negatives; they leave the pseudo-label pool
    unlabeled = np.setdiff1d(unlabeled, negatives.positions)
    config = training_negatives.config_for(config, negatives)
    progress(0.02, "training", force=True)
    result = fit_semi_supervised(
        features[split.train_positions],
        snap.targets[split.train_rows],
        features[unlabeled],
        config=config,
        ssl=ssl,
        seed=seed,
        device=device,
        on_progress=lambda p, msg: progress(0.02 + 0.8 * p, msg),
        n_classes=len(snap.label_names),
        negatives=negatives.rows,
    )
    result.metrics["negatives"] = negatives.report
    progress(0.85, "scoring the pool", force=True)
    probs = predict_proba(result.net, features, device=device)
    embeddings = embed(result.net, features, device=device)
    temperature, evaluation = validation.evaluate(
        split,
        pool_probs=probs,
        targets=snap.targets,
        label_names=snap.label_names,
        task=snap.task,
        seed=seed,
        fit_predict=lambda tr, va: predict_proba(
            fit_supervised(
                features[snap.labeled_positions[tr]],
                snap.targets[tr],
                config=config,
                seed=seed,
                device=device,
                n_classes=len(snap.label_names),
            ),
            features[snap.labeled_positions[va]],
            device=device,
        ),
    )
    # queries read calibrated probabilities: softmax(log p / T) = softmax(logits / T), applied
    # to the pool's probabilities rather than by a second pass of the net over the pool
    probs = validation.calibrate(probs, temperature, task=snap.task)
    result.metrics = validation.checkpoint_metrics(
        result.metrics,
        evaluation,
        split,
        label_names=snap.label_names,
        pseudo_method=result.metrics.get("method", PSEUDO_METHOD),
    )
    directory = ctx.store.project_dir(snap.project_id) / "checkpoints" / f"job{job.id}"
    counts = _label_counts(snap, split.train_rows)
    meta = {
        "job_id": job.id,
        "labels": snap.label_names,
        "task": snap.task,
        "pool_size": snap.pool_size,
        "metrics": result.metrics,
        "config": config.to_dict(),
    }
    arrays = {"probs": probs, "embeddings": embeddings}
    mc_probs = _mc_probs(
        result.net, features, ctx.settings, seed=seed, device=device, temperature=temperature
    )
    if mc_probs is not None:
        arrays["mc_probs"] = mc_probs
    meta["mc_dropout_samples"] = 0 if mc_probs is None else int(mc_probs.shape[0])
    save_checkpoint(directory, result.net, meta=meta, arrays=arrays)
    pseudo_positions = unlabeled[result.pseudo_positions]
    try:
        progress(0.95, "activating", force=True)  # a cancel here also removes the folder
        with ctx.sessionmaker() as session, session.begin():
            checkpoint, activation = _activate(
                session, job, snap, directory, result, config, counts, split, probs
            )
            n_pseudo = _store_pseudo_labels(
                session,
                snap,
                checkpoint.id,
                pseudo_positions,
                result.pseudo_labels,
                result.pseudo_confidences,
                method=result.metrics.get("method", PSEUDO_METHOD),
            )
            checkpoint.n_pseudo = n_pseudo
            if activation["activated"]:
                training.apply_pseudo_labels(
                    session, project_id=snap.project_id, checkpoint_id=checkpoint.id
                )
            routed = pseudo_review.route_for_confirmation(
                session,
                project_id=snap.project_id,
                checkpoint_id=checkpoint.id,
                share=_confirm_share(job.params, ctx.settings),
                max_n=ctx.settings.pseudo_confirm_max,
                seed=seed,
            )
            finish(
                session,
                job.id,
                {
                    **result.metrics,
                    "checkpoint_id": checkpoint.id,
                    "version": checkpoint.version,
                    "n_pseudo": n_pseudo,
                    "n_routed_for_confirmation": routed,
                },
                f"checkpoint v{checkpoint.version} "
                + ("active" if activation["activated"] else f"kept ({activation['reason']})"),
            )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    ctx.on_checkpoint(snap.project_id)


def _mc_probs(
    net: Any, features: Any, settings: Any, *, seed: int, device: Any, temperature: float = 1.0
) -> Any:
    """float16 ``[t, n, c]`` calibrated MC-dropout samples for BALD (each sample's logits
    divided by ``temperature``), or None when turned off or too big.

    ``t = settings.mc_dropout_samples`` (0 turns it off); skipped when ``t * n * c`` exceeds
    ``settings.mc_dropout_max_elements`` (at the defaults, 10 samples of a 1,000,000 x 10 pool
    are 100M elements, a 200 MB float16 file; a 20-class pool of that size is skipped). Stored as
    float16: BALD differences survive the rounding and the file is half the size.
    """
    t = int(settings.mc_dropout_samples)
    n, c = int(features.shape[0]), int(net.n_classes)
    if t <= 0 or n == 0 or t * n * c > int(settings.mc_dropout_max_elements):
        return None
    return mc_dropout_proba(
        net,
        features,
        samples=t,
        seed=seed,
        device=device,
        temperature=temperature,
        dtype=np.float16,
    )


def _label_counts(snap: Snapshot, rows: npt.NDArray[np.int64]) -> dict[str, int]:
    """Human labels per class that trained the checkpoint."""
    targets = snap.targets[rows]
    if targets.ndim == 2:
        sums = targets.sum(axis=0)
    else:
        sums = np.bincount(targets, minlength=len(snap.label_names))
    return {name: int(n) for name, n in zip(snap.label_names, sums, strict=True)}


def _confirm_share(params: dict[str, Any], settings: Any) -> float:
    share = params.get("confirm_share")
    return float(settings.pseudo_confirm_share if share is None else share)


def _activate(session, job, snap, directory, result, config, counts, split, probs):  # type: ignore[no-untyped-def]
    """Insert the checkpoint and apply the activation policy, under the project row lock."""
    # FOR NO KEY UPDATE (PostgreSQL): serializes activations (version numbers) but, unlike FOR
    # UPDATE, does not block the foreign-key checks of /next's lease inserts while this
    # transaction writes the pseudo-labels (bench/retrain_load.py saw 40-60 s stalls)
    project = session.get(
        Project, snap.project_id, with_for_update={"of": Project, "key_share": True}
    )
    if project is None:
        raise LookupError(f"project {snap.project_id} is gone")
    last = session.scalar(
        select(func.max(Checkpoint.version)).where(Checkpoint.project_id == project.id)
    )
    checkpoint = Checkpoint(
        project_id=project.id,
        version=(last or 0) + 1,
        job_id=job.id,
        path=str(directory.resolve()),
        pool_size=snap.pool_size,
        metrics=result.metrics,
        label_counts=counts,
        config=config.to_dict(),
        n_labeled=int(snap.labeled_positions.size),
        n_pseudo=0,
    )
    active = project.active_checkpoint_id and session.get(Checkpoint, project.active_checkpoint_id)
    activation = training.decide_activation(
        policy=str(job.params.get("activate", "if_better")),
        active=active,
        metrics=result.metrics,
        holdout_positions=split.holdout_positions,
        holdout_targets=snap.targets[split.plan.holdout_rows],
        new_probs=probs,
        label_names=snap.label_names,
        task=snap.task,
    )
    result.metrics["activation"] = activation
    checkpoint.metrics = result.metrics
    session.add(checkpoint)
    session.flush()
    if activation["activated"]:
        project.active_checkpoint_id = checkpoint.id
        webhooks.emit_checkpoint_activated(session, checkpoint, job_id=job.id)
    return checkpoint, activation


def _store_pseudo_labels(
    session: Any,
    snap: Snapshot,
    checkpoint_id: int,
    positions: npt.NDArray[np.int64],
    labels: npt.NDArray[Any],
    confidences: npt.NDArray[np.float32],
    method: str = PSEUDO_METHOD,
) -> int:
    """Record this checkpoint's pseudo-labels (annotations with ``source="pseudo"``) for items
    still unlabeled; the items carry them once the checkpoint is active
    (:func:`app.services.training.apply_pseudo_labels`). Humans always win."""
    if positions.size == 0:
        return 0
    id_by_position = np.full(snap.pool_size, -1, dtype=np.int64)
    id_by_position[snap.positions] = snap.item_ids
    candidate_ids = id_by_position[positions]
    still_unlabeled: set[int] = set()
    for start in range(0, candidate_ids.size, 500):
        chunk = candidate_ids[start : start + 500].tolist()
        still_unlabeled.update(
            session.scalars(
                select(Item.id).where(Item.id.in_(chunk), Item.status != ItemStatus.LABELED)
            ).all()
        )
    annotations = []
    for item_id, label, confidence in zip(candidate_ids.tolist(), labels, confidences, strict=True):
        if item_id not in still_unlabeled:  # labeled by a human while we trained
            continue
        names = _names(snap, label)
        if not names:
            continue
        annotations.append(
            {
                "project_id": snap.project_id,
                "item_id": item_id,
                "labels": names,
                "source": LabelSource.PSEUDO,
                "confidence": float(confidence),
                "method": method,
                "checkpoint_id": checkpoint_id,
                "extra": {},
            }
        )
    if annotations:
        session.execute(insert(Annotation), annotations)
    return len(annotations)


def _names(snap: Snapshot, label: Any) -> list[str]:
    row = np.asarray(label)
    if row.ndim == 0:
        return [snap.label_names[int(row)]]
    return [snap.label_names[i] for i in np.flatnonzero(row >= 0.5)]
