"""Create, read, update and delete projects."""

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.ml.embedders import default_embedder_for
from app.models import Checkpoint, Item, ItemStatus, Project
from app.schemas.projects import ProjectCreate, ProjectUpdate
from app.strategies.registry import StrategyRegistry

EMBEDDERS_BY_MODALITY = {"text": {"minilm"}, "image": {"pixels"}, "vector": {"vector"}}


def create_project(
    session: Session, body: ProjectCreate, *, strategies: StrategyRegistry, default_strategy: str
) -> Project:
    """Insert a project.

    Raises:
        Conflict: a project with this name exists.
        InvalidInput: the embedder does not fit the modality, or the queue strategy is unknown.
    """
    embedder = body.embedder or default_embedder_for(body.modality)
    if embedder not in EMBEDDERS_BY_MODALITY[body.modality]:
        raise InvalidInput(
            f"embedder {embedder!r} does not fit modality {body.modality!r}; "
            f"use {sorted(EMBEDDERS_BY_MODALITY[body.modality])}",
            field="embedder",
        )
    queue_strategy = body.queue_strategy or default_strategy
    _check_strategy(strategies, queue_strategy, body.task)
    if session.scalar(select(Project.id).where(Project.name == body.name)) is not None:
        raise Conflict(f"a project named {body.name!r} exists", field="name")
    project = Project(
        name=body.name,
        task=body.task,
        labels=body.labels,
        modality=body.modality,
        embedder=embedder,
        queue_strategy=queue_strategy,
        pool_size=0,
        settings={},
    )
    session.add(project)
    session.flush()
    return project


def _check_strategy(strategies: StrategyRegistry, name: str, task: str) -> None:
    if name not in strategies.names():
        raise InvalidInput(
            f"unknown strategy {name!r}", field="queue_strategy", available=strategies.names()
        )
    strategies.check_task(name, task)


def get_project(session: Session, project_id: int) -> Project:
    """Load a project or raise NotFound."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound("project", project_id)
    return project


def list_projects(session: Session) -> Sequence[Project]:
    """Every project, newest first."""
    return session.scalars(select(Project).order_by(Project.id.desc())).all()


def update_project(
    session: Session, project: Project, body: ProjectUpdate, *, strategies: StrategyRegistry
) -> Project:
    """Rename, append labels, change the queue strategy or the default training config.

    Raises:
        InvalidInput: labels would be removed or reordered (labels already index the arrays).
        Conflict: the new name is taken.
    """
    if body.name is not None and body.name != project.name:
        if session.scalar(select(Project.id).where(Project.name == body.name)) is not None:
            raise Conflict(f"a project named {body.name!r} exists", field="name")
        project.name = body.name
    if body.labels is not None:
        if body.labels[: len(project.labels)] != project.labels:
            raise InvalidInput(
                "labels can only be appended: existing labels keep their order",
                field="labels",
                current=project.labels,
            )
        if project.task == "binary" and len(body.labels) != 2:
            raise InvalidInput("a binary project has exactly 2 labels", field="labels")
        project.labels = list(body.labels)
    if body.queue_strategy is not None:
        _check_strategy(strategies, body.queue_strategy, project.task)
        project.queue_strategy = body.queue_strategy
    if body.train_defaults is not None:
        project.train_defaults = dict(body.train_defaults) or None
    session.flush()
    return project


def delete_project(session: Session, project: Project, *, after_commit: Callable[[], None]) -> None:
    """Delete a project and its rows; ``after_commit`` removes its artifacts."""
    project.active_checkpoint_id = None
    session.flush()
    session.delete(project)
    session.flush()
    session.info.setdefault("after_commit", []).append(after_commit)


def project_counts(session: Session, project: Project) -> dict[str, Any]:
    """Item counts by status and by current label."""
    rows = session.execute(
        select(Item.status, func.count())
        .where(Item.project_id == project.id)
        .group_by(Item.status)
    ).all()
    by_status = {status: int(n) for status, n in rows}
    by_label = dict.fromkeys(project.labels, 0)
    for (labels,) in session.execute(
        select(Item.labels).where(
            Item.project_id == project.id, Item.status == ItemStatus.LABELED
        )
    ):
        for label in labels or []:
            by_label[label] = by_label.get(label, 0) + 1
    total = sum(by_status.values())
    return {
        "items": total,
        "labeled": by_status.get(ItemStatus.LABELED, 0),
        "pseudo_labeled": by_status.get(ItemStatus.PSEUDO, 0),
        "unlabeled": by_status.get(ItemStatus.UNLABELED, 0),
        "by_label": by_label,
    }


def read_project(session: Session, project: Project) -> dict[str, Any]:
    """The API view of a project with counts and its active model."""
    checkpoint: Checkpoint | None = project.active_checkpoint
    active = None
    if checkpoint is not None:
        active = {
            "checkpoint_id": checkpoint.id,
            "version": checkpoint.version,
            "metrics": checkpoint.metrics,
            "n_labeled": checkpoint.n_labeled,
            "n_pseudo": checkpoint.n_pseudo,
            "created_at": checkpoint.created_at,
        }
    return {
        "id": project.id,
        "name": project.name,
        "task": project.task,
        "labels": project.labels,
        "modality": project.modality,
        "embedder": project.embedder,
        "feature_dim": project.feature_dim,
        "queue_strategy": project.queue_strategy,
        "train_defaults": project.train_defaults or {},
        "created_at": project.created_at,
        "counts": project_counts(session, project),
        "active_model": active,
    }
