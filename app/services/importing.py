"""Pool import use case: validate everything first, then store inline or as a job."""

from typing import Any

from sqlalchemy.orm import Session

from app.jobs.imports import stage_records
from app.jobs.runner import JobRunner
from app.models import Project
from app.sampling.index_store import IndexStore
from app.schemas.pools import ItemIn
from app.services import indexing, pools
from app.services.embedding import EmbedderCache
from app.services.indexing import IndexConfig
from app.services.jobs import after_commit, create_job
from app.storage import ArtifactStore


def import_items(
    session: Session,
    project: Project,
    records: list[ItemIn],
    *,
    store: ArtifactStore,
    embedders: EmbedderCache,
    runner: JobRunner,
    inline_max: int,
    indexes: IndexStore | None = None,
    index_config: IndexConfig | None = None,
    near_duplicate_similarity: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """Import ``records``; returns (ImportAccepted body, queued?).

    Every row is validated before anything is stored (422 lists the bad rows). Text and
    image imports above ``inline_max`` rows are embedded by a background job that stores all
    rows in one transaction when done. With ``indexes``, rows that nearly duplicate an item
    (cosine similarity >= ``near_duplicate_similarity``) are flagged in their ``meta`` and
    reported (never rejected), and the rows are added to the project's index after commit.

    Raises:
        InvalidInput, InvalidRows: bad input; nothing stored.
    """
    pools.check_records(session, project, records)
    if project.modality != "vector" and len(records) > inline_max:
        job, _ = create_job(session, project, kind="import", params={"rows": len(records)}, runner=runner)
        stage_records(store.staging_path(project.id, f"{job.id}.jsonl"), records)
        return {
            "status": "queued",
            "imported": 0,
            "labeled": 0,
            "pool_size": project.pool_size,
            "job_id": job.id,
        }, True
    features = pools.embed_records(project, records, embedders)
    start = project.pool_size
    found: list[tuple[int, int, float]] = []
    if indexes is not None and index_config is not None and near_duplicate_similarity is not None:
        found = indexing.near_duplicates(
            project, features, store=store, indexes=indexes, config=index_config,
            threshold=near_duplicate_similarity,
        )
    summary = pools.insert_records(session, project, records, features, store)
    report = indexing.flag_near_duplicates(session, project, start, found)
    if indexes is not None and index_config is not None:
        pid, size, config = project.id, summary.pool_size, index_config
        after_commit(
            session,
            lambda: indexing.after_import(pid, size, store=store, indexes=indexes, config=config),
        )
    return {
        "status": "imported",
        "imported": summary.imported,
        "labeled": summary.labeled,
        "pool_size": summary.pool_size,
        "job_id": None,
        "near_duplicates": report,
    }, False
