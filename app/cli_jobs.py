"""``quarry worker``, ``quarry train`` and ``quarry jobs`` (registered by ``app/cli.py``)."""

import argparse
import json
import logging
import os
import sys
from typing import Any

from app.config import Settings, get_settings
from app.jobs.client import ApiClient, ApiError, follow, format_jobs, summary

log = logging.getLogger(__name__)


def add_job_commands(sub: Any) -> None:
    """Add the worker, train and jobs sub-commands to ``quarry``'s sub-parsers."""
    worker = sub.add_parser(
        "worker", help="run queued jobs from Redis (QUARRY_BROKER_URL); any machine that "
        "reaches the database, Redis and the artifact store"
    )
    worker.add_argument("--threads", type=int, default=1, help="jobs run at once (default 1)")
    worker.add_argument(
        "--no-scheduler", action="store_true", help="do not run the schedule/reaper loop here"
    )
    worker.set_defaults(func=cmd_worker)

    train = sub.add_parser(
        "train", help="start a training and show its progress (over HTTP with --url)"
    )
    train.add_argument("project", type=int, help="project id")
    _add_url(train)
    train.add_argument(
        "--semi-supervised", metavar="METHOD",
        help="none, self_training, fixmatch, flexmatch, freematch or mean_teacher",
    )
    train.add_argument("--threshold", type=float, help="pseudo-label confidence threshold")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--body", help="a JSON TrainRequest; the flags above override it")
    train.add_argument("--idempotency-key", help="a retried call with this key starts one job")
    train.add_argument(
        "--no-wait", action="store_true", help="print the job id and return (HTTP or redis)"
    )
    train.set_defaults(func=cmd_train)

    jobs = sub.add_parser("jobs", help="list jobs, or --follow ID with a progress bar")
    jobs.add_argument("--project", type=int, help="project id (required with --url)")
    jobs.add_argument("--follow", type=int, metavar="ID", help="show job ID until it finishes")
    jobs.add_argument("--limit", type=int, default=20)
    _add_url(jobs)
    jobs.set_defaults(func=cmd_jobs)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("QUARRY_API_URL"),
        help="API base URL, e.g. http://127.0.0.1:8000 (default $QUARRY_API_URL); "
        "without it the command works on QUARRY_DATABASE_URL directly",
    )


def cmd_worker(args: argparse.Namespace) -> int:
    """Consume the job queue until SIGTERM/SIGINT; also reap dead jobs and fire schedules."""
    from app.jobs.bodies import JOB_BODIES
    from app.jobs.broker import QueueWorker, RedisJobRunner, run_worker_until_stopped
    from app.jobs.common import reap_stale
    from app.jobs.context import job_context
    from app.jobs.scheduler import tick
    from app.ml.runtime import lower_priority, set_threads

    settings = get_settings()
    set_threads(settings.torch_threads)
    lower_priority(settings.job_nice)
    context = job_context(settings)
    worker = QueueWorker(settings, context, JOB_BODIES, threads=max(1, args.threads))
    sender = RedisJobRunner(settings)
    scheduler = settings.scheduler_enabled and not args.no_scheduler

    import redis

    from app.jobs.common import worker_name
    from app.observability.heartbeat import beat
    from app.services.webhooks_delivery import DeliveryLoop

    beat_client = redis.Redis.from_url(settings.broker_url, socket_timeout=5)

    def maintenance() -> None:
        try:
            beat(beat_client, settings, worker_name())
        except redis.RedisError:
            log.warning("could not write the worker heartbeat to Redis", exc_info=True)
        if scheduler:
            tick(context.sessionmaker, settings, sender)
        else:
            reap_stale(context.sessionmaker, settings.job_stale_seconds)

    print(f"quarry worker: queue {settings.job_queue!r} on {settings.broker_url} "
          f"(namespace {settings.broker_namespace!r}), {args.threads} thread(s)", flush=True)
    deliveries = DeliveryLoop(context.sessionmaker, settings)
    deliveries.start()
    maintenance()
    run_worker_until_stopped(worker, maintenance, settings.scheduler_poll_seconds)
    deliveries.stop()
    sender.shutdown()
    return 0


def _train_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(args.body) if args.body else {}
    semi = dict(body.get("semi_supervised") or {})
    if args.semi_supervised:
        semi["method"] = args.semi_supervised
    if args.threshold is not None:
        semi["threshold"] = args.threshold
    if semi:
        body["semi_supervised"] = semi
    if args.epochs is not None:
        body["epochs"] = args.epochs
    if args.seed is not None:
        body["seed"] = args.seed
    return body


def cmd_train(args: argparse.Namespace) -> int:
    """Start a training job; follow it with a progress bar; exit 0 only if it succeeded."""
    from pydantic import ValidationError

    from app.schemas.jobs import TrainRequest

    try:
        body = _train_body(args)
        TrainRequest.model_validate(body)
    except (ValueError, ValidationError) as exc:  # bad JSON, or a field out of range
        print(f"error: invalid training body: {exc}", file=sys.stderr)
        return 2
    try:
        if args.url:
            client = ApiClient(args.url)
            headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
            job = client.request("POST", f"/projects/{args.project}/train", body, headers)
            print(f"training job {job['id']} ({job['status']})", flush=True)
            if args.no_wait:
                return 0
            return _finish(follow(client.job, int(job["id"])))
        return _train_directly(get_settings(), args.project, body, args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train_directly(
    settings: Settings, project_id: int, body: dict[str, Any], args: argparse.Namespace
) -> int:
    """Create the job on the database; run it here (thread) unless workers take it (redis)."""
    from app.db import transaction
    from app.errors import AppError
    from app.main import build_services
    from app.models import Project
    from app.schemas.jobs import TrainRequest
    from app.services import training

    runner = "redis" if settings.job_runner == "redis" else "thread"
    services = build_services(settings.model_copy(update={"job_runner": runner}))
    try:
        with transaction(services.sessionmaker) as session:
            project = session.get(Project, project_id)
            if project is None:
                raise ApiError(f"project {project_id} not found")
            job_id = training.request_training(
                session, project, TrainRequest.model_validate(body), runner=services.runner,
                idempotency_key=args.idempotency_key,
            ).id
    except (AppError, ApiError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        services.runner.shutdown()
        return 2
    print(f"training job {job_id} ({runner} runner)", flush=True)
    if args.no_wait and runner == "redis":
        services.runner.shutdown()
        return 0
    fetch = _db_fetch(services.sessionmaker)
    try:
        job = follow(fetch, job_id)
    except KeyboardInterrupt:
        _request_cancel(services.sessionmaker, job_id)
        print(f"\ncancel requested for job {job_id}; waiting for it to stop", file=sys.stderr)
        job = follow(fetch, job_id)
    finally:
        services.runner.shutdown()
    return _finish(job)


def cmd_jobs(args: argparse.Namespace) -> int:
    """List jobs (newest first) or follow one."""
    try:
        if args.url:
            client = ApiClient(args.url)
            if args.follow is not None:
                return _finish(follow(client.job, args.follow))
            if args.project is None:
                print("error: --project is required with --url", file=sys.stderr)
                return 2
            rows = client.request("GET", f"/projects/{args.project}/jobs")[: args.limit]
        else:
            from app.db import make_engine, make_sessionmaker

            sm = make_sessionmaker(make_engine(get_settings()))
            if args.follow is not None:
                return _finish(follow(_db_fetch(sm), args.follow))
            rows = _db_list(sm, args.project, args.limit)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_jobs(rows))
    return 0


def _finish(job: dict[str, Any]) -> int:
    print(summary(job))
    return 0 if job["status"] == "succeeded" else 1


def _db_fetch(sm: Any) -> Any:
    from app.models import Job
    from app.schemas.jobs import JobRead

    def fetch(job_id: int) -> dict[str, Any]:
        with sm() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise ApiError(f"job {job_id} not found")
            return JobRead.model_validate(row).model_dump(mode="json")

    return fetch


def _db_list(sm: Any, project_id: int | None, limit: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from app.models import Job
    from app.schemas.jobs import JobRead

    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    with sm() as session:
        return [JobRead.model_validate(r).model_dump(mode="json") for r in session.scalars(query)]


def _request_cancel(sm: Any, job_id: int) -> None:
    from app.db import transaction
    from app.models import Job
    from app.services import jobs

    with transaction(sm) as session:
        row = session.get(Job, job_id)
        if row is not None and row.status not in ("succeeded", "failed", "cancelled"):
            jobs.cancel_job(session, row)
