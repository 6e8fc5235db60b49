"""Import job: embed staged rows in batches, then insert them in one transaction."""

from pathlib import Path

from app.jobs.common import Progress, finish, run_guarded
from app.jobs.runner import JobContext
from app.ml.runtime import set_threads
from app.models import Job, JobStatus, Project
from app.schemas.pools import ItemIn
from app.services import indexing, pools


def run_import(job_id: int, ctx: JobContext) -> None:
    """Embed and store the rows staged for ``job_id``; all or nothing. The staged file is
    removed once the job ended (succeeded, failed or cancelled: a failed import is re-run by
    posting the file again, which stages it anew), never while another worker runs it."""
    try:
        run_guarded(ctx.sessionmaker, job_id, lambda job, progress: _body(job, progress, ctx))
    finally:
        with ctx.sessionmaker() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                ctx.store.staging_path(job.project_id, f"{job.id}.jsonl").unlink(missing_ok=True)


def _body(job: Job, progress: Progress, ctx: JobContext) -> None:
    path = ctx.store.staging_path(job.project_id, f"{job.id}.jsonl")
    with path.open(encoding="utf-8") as fh:
        records = [ItemIn.model_validate_json(line) for line in fh if line.strip()]
    with ctx.sessionmaker() as session:
        project = session.get(Project, job.project_id)
        if project is None:
            raise LookupError(f"project {job.project_id} is gone")
        session.expunge(project)
    set_threads(ctx.settings.torch_threads)
    total = len(records)
    features = pools.embed_records(
        project,
        records,
        ctx.embedders,
        on_progress=lambda done, n: progress(0.95 * done / max(n, 1), f"embedded {done}/{total}"),
    )
    config = indexing.IndexConfig.from_settings(ctx.settings)
    with ctx.sessionmaker() as session, session.begin():
        project = session.get(Project, job.project_id)
        if project is None:
            raise LookupError(f"project {job.project_id} is gone")
        start = project.pool_size
        found = indexing.near_duplicates(
            project, features, store=ctx.store, indexes=ctx.index_store, config=config,
            threshold=ctx.settings.near_duplicate_similarity,
        )
        summary = pools.insert_records(session, project, records, features, ctx.store)
        report = indexing.flag_near_duplicates(session, project, start, found)
        finish(
            session,
            job.id,
            {
                "imported": summary.imported,
                "labeled": summary.labeled,
                "pool_size": summary.pool_size,
                "n_near_duplicates": len(found),
                "near_duplicates": report[:100],
            },
            f"imported {summary.imported} items",
        )
    path.unlink(missing_ok=True)
    indexing.after_import(
        job.project_id, summary.pool_size, store=ctx.store, indexes=ctx.index_store, config=config
    )


def stage_records(path: Path, records: list[ItemIn]) -> None:
    """Write records as JSONL for an import job (kept out of the DB until they are embedded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(record.model_dump_json(exclude_none=True) + "\n")
    tmp.replace(path)
