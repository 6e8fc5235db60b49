"""Build a ``JobContext`` for a process that runs jobs (API, child process, ``quarry worker``)."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.jobs.runner import JobContext
from app.sampling.index_store import IndexStore
from app.services.embedding import EmbedderCache
from app.services.indexing import on_checkpoint_hook
from app.storage import ArtifactStore


def job_context(
    settings: Settings,
    *,
    sessionmaker: sessionmaker[Session] | None = None,
    store: ArtifactStore | None = None,
    embedders: EmbedderCache | None = None,
    index_store: IndexStore | None = None,
    extra_hooks: tuple[Callable[[int], None], ...] = (),
) -> JobContext:
    """The context job bodies run with; missing parts are built from ``settings``.

    After a checkpoint is activated the project's vector index is rebuilt, then each of
    ``extra_hooks`` runs (the API process adds its queue-ranking invalidation).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # `is None`, not `or`: an empty IndexStore is falsy (it has __len__)
    sm = sessionmaker if sessionmaker is not None else make_sessionmaker(make_engine(settings))
    store = store if store is not None else ArtifactStore(Path(settings.data_dir))
    index_store = index_store if index_store is not None else IndexStore()
    if embedders is None:
        embedders = EmbedderCache(batch_size=settings.embed_batch_size)
    hooks = (
        *extra_hooks,
        on_checkpoint_hook(sessionmaker=sm, store=store, indexes=index_store, settings=settings),
    )

    def on_checkpoint(project_id: int) -> None:
        for hook in hooks:
            hook(project_id)

    return JobContext(
        sessionmaker=sm,
        settings=settings,
        store=store,
        embedders=embedders,
        index_store=index_store,
        on_checkpoint=on_checkpoint,
    )
