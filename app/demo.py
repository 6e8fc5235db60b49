"""``quarry demo``: load a real dataset into a project (labels hidden) and serve it, or
simulate an oracle answering queries and print learning curves."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sqlalchemy import select
from tqdm import tqdm

from app.api.deps import Services
from app.config import Settings
from app.datasets import Dataset
from app.db import transaction
from app.main import build_services
from app.migrate import upgrade_to_head
from app.models import Item, Project
from app.schemas.jobs import SemiSupervised, TrainRequest
from app.schemas.labels import AnnotationCreate, QueryCreate
from app.schemas.pools import ItemIn
from app.schemas.projects import ProjectCreate
from app.services import labeling, pools, projects, querying, training

COLD_START = "typical"


def records_of(dataset: Dataset, indices: Any = None) -> list[ItemIn]:
    """Import records (no labels) for the rows ``indices`` (default all)."""
    rows = range(len(dataset.payloads)) if indices is None else indices
    key = "text" if dataset.modality == "text" else "image"
    return [
        ItemIn(external_id=f"{dataset.name}-{i}", **{key: dataset.payloads[i]}) for i in rows
    ]


def embed_with_bar(services: Services, embedder: str, records: list[ItemIn], what: str) -> np.ndarray:
    """Embed records with a tqdm progress bar."""
    payloads = [r.text if r.text is not None else r.image for r in records]
    with tqdm(total=len(payloads), desc=f"embedding {what}", unit="item") as bar:

        def on_progress(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        return services.embedders.embed(embedder, payloads, on_progress=on_progress)


def ensure_project(services: Services, dataset: Dataset) -> int:
    """Create the dataset's project and import its rows unlabeled, unless already there."""
    with transaction(services.sessionmaker) as session:
        existing = session.scalar(select(Project).where(Project.name == dataset.name))
        if existing is not None and existing.pool_size > 0:
            return existing.id
        project = existing or _create(session, services, dataset)
        records = records_of(dataset)
        features = embed_with_bar(services, project.embedder, records, dataset.name)
        pools.insert_records(session, project, records, features, services.store)
        return project.id


def _create(session: Any, services: Services, dataset: Dataset) -> Project:
    return projects.create_project(
        session,
        ProjectCreate(
            name=dataset.name,
            task="binary" if len(dataset.labels) == 2 else "multiclass",
            labels=dataset.labels,
            modality=dataset.modality,
        ),
        strategies=services.strategies,
        default_strategy=services.settings.default_queue_strategy,
    )


def simulate(
    dataset: Dataset,
    *,
    n_labels: int,
    strategy: str,
    batch_size: int | None = None,
    seed: int = 0,
    test_size: float = 0.2,
    log: Callable[[str], None] = print,
) -> dict[str, list[tuple[int, float]]]:
    """Run the labeling loop with the held labels as the oracle, for ``strategy`` and random.

    Each run uses a fresh embedded database: query a batch (a cold start before the first
    model), label it from the held labels, retrain, and score held-out accuracy.

    Returns:
        ``{strategy: [(n_labels, accuracy), ...], "random": [...]}``.
    """
    indices = np.arange(len(dataset.targets))
    counts = np.unique(dataset.targets, return_counts=True)[1]
    stratify = dataset.targets if counts.min() >= 2 else None
    pool_idx, test_idx = train_test_split(
        indices, test_size=test_size, random_state=seed, stratify=stratify
    )
    batch = batch_size or max(10, n_labels // 10)
    curves: dict[str, list[tuple[int, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="quarry-sim-") as tmp:
        shared = _services(Path(tmp) / "embed")
        pool_records = records_of(dataset, pool_idx)
        test_records = records_of(dataset, test_idx)
        embedder = _create_probe(dataset)
        pool_x = embed_with_bar(shared, embedder, pool_records, "pool")
        test_x = embed_with_bar(shared, embedder, test_records, "held-out set")
        test_y = np.array([dataset.targets[i] for i in test_idx])
        for name in dict.fromkeys([strategy, "random"]):
            services = _services(Path(tmp) / name)
            services.embedders = shared.embedders
            curves[name] = _run(services, dataset, pool_idx, pool_records, pool_x, test_x, test_y,
                                strategy=name, n_labels=n_labels, batch=batch, seed=seed, log=log)
    return curves


def _create_probe(dataset: Dataset) -> str:
    from app.ml.embedders import default_embedder_for

    return default_embedder_for(dataset.modality)


def _services(root: Path) -> Services:
    settings = Settings(data_dir=root, database_url="", job_runner="inline")
    upgrade_to_head(settings.database_url)
    return build_services(settings)


def _run(
    services: Services,
    dataset: Dataset,
    pool_idx: np.ndarray,
    records: list[ItemIn],
    pool_x: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    strategy: str,
    n_labels: int,
    batch: int,
    seed: int,
    log: Callable[[str], None],
) -> list[tuple[int, float]]:
    sm = services.sessionmaker
    with transaction(sm) as session:
        project = _create(session, services, dataset)
        pools.insert_records(session, project, records, pool_x, services.store)
        project_id = project.id
    truth = {f"{dataset.name}-{i}": dataset.targets[i] for i in pool_idx}
    curve: list[tuple[int, float]] = []
    labeled, round_ = 0, 0
    while labeled < n_labels:
        with transaction(sm) as session:
            project = session.get(Project, project_id)
            trained = project.active_checkpoint is not None
            name = strategy if trained or strategy == "random" else COLD_START
            size = min(batch, n_labels - labeled)
            chosen = querying.create_batch(
                session, project, QueryCreate(strategy=name, batch_size=size, seed=seed + round_),
                strategies=services.strategies, store=services.store,
            )
            ids = [q.item_id for q in chosen.items]
            external = dict(session.execute(select(Item.id, Item.external_id).where(Item.id.in_(ids))).all())
            for item_id in ids:
                labeling.annotate(
                    session, project,
                    AnnotationCreate(item_id=item_id, label=truth[external[item_id]], annotator="oracle"),
                    idempotency_key=None,
                )
        labeled += len(ids)
        round_ += 1
        accuracy = _train_and_score(services, project_id, test_x, test_y, seed)
        if accuracy is not None:
            curve.append((labeled, accuracy))
            log(f"  {strategy:>18}  labels {labeled:5d}  held-out accuracy {accuracy:.3f}")
    return curve


def _train_and_score(
    services: Services, project_id: int, test_x: np.ndarray, test_y: np.ndarray, seed: int
) -> float | None:
    try:
        with transaction(services.sessionmaker) as session:
            project = session.get(Project, project_id)
            training.request_training(
                session, project,
                TrainRequest(semi_supervised=SemiSupervised(method="none"), seed=seed),
                runner=services.runner, idempotency_key=None,
            )
    except Exception as exc:  # noqa: BLE001 - e.g. a single class labeled so far
        if getattr(exc, "status_code", None) == 409:
            return None
        raise
    with services.sessionmaker() as session:
        project = session.get(Project, project_id)
        checkpoint = project.active_checkpoint
        if checkpoint is None:
            return None
        probs = services.nets.probs(checkpoint, test_x)
        predicted = np.array(project.labels)[probs.argmax(axis=1)]
    return float((predicted == test_y).mean())


def format_curves(curves: dict[str, list[tuple[int, float]]]) -> str:
    """The learning curves side by side as a text table."""
    names = list(curves)
    steps = sorted({n for curve in curves.values() for n, _ in curve})
    lookup = {name: dict(curve) for name, curve in curves.items()}
    header = f"{'labels':>8} " + " ".join(f"{name:>14}" for name in names)
    lines = [header, "-" * len(header)]
    for n in steps:
        cells = " ".join(
            f"{lookup[name][n]:>14.3f}" if n in lookup[name] else f"{'':>14}" for name in names
        )
        lines.append(f"{n:>8} {cells}")
    return "\n".join(lines)
