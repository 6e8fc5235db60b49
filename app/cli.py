"""The ``quarry`` command: serve, worker, train, jobs, demo, db upgrade."""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.cli_jobs import add_job_commands
from app.cli_keys import add_key_commands, demo_login_key
from app.config import Settings, get_settings


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    from app.main import create_app
    from app.migrate import upgrade_to_head

    upgrade_to_head(settings.database_url)
    # log_config=None: keep configure_logging's handler (JSON lines); one access line per
    # request comes from RequestMiddleware (logger quarry.access)
    options: dict[str, Any] = {
        "host": host, "port": port, "log_level": "info", "log_config": None, "access_log": False,
    }
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    # N processes on one socket, each building its app from the environment (QUARRY_*):
    # /next claims and job claims are conditional updates, so processes never collide
    with tempfile.TemporaryDirectory(prefix="quarry-metrics-") as shared:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", shared)
        # a worker imports torch and builds its app before it answers the supervisor's ping:
        # seconds on a loaded host, so allow a minute before it counts as hung
        uvicorn.run("app.main:create_served_app", factory=True, workers=workers,
                    timeout_worker_healthcheck=60, **options)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API, the UI and the in-process worker (``--workers`` API processes)."""
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    _serve(get_settings(), args.host, args.port, args.workers)
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Apply every migration to QUARRY_DATABASE_URL."""
    from app.migrate import upgrade_to_head

    upgrade_to_head(get_settings().database_url)
    print("database is at head")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve a real dataset (labels hidden), or simulate an oracle with --simulate N."""
    from app.datasets import load_csv_dataset, load_digits_dataset
    from app.demo import ensure_project, format_curves, simulate

    dataset = load_csv_dataset(Path(args.dataset)) if args.dataset else load_digits_dataset()
    if args.simulate:
        print(f"simulating {args.simulate} labels on {dataset.name} ({len(dataset.targets)} rows, "
              f"{len(dataset.labels)} classes): {args.strategy} vs random")
        curves = simulate(
            dataset, n_labels=args.simulate, strategy=args.strategy,
            batch_size=args.batch_size, seed=args.seed,
        )
        print()
        print("held-out accuracy by number of labels")
        print(format_curves(curves))
        return 0
    from app.main import build_services
    from app.migrate import upgrade_to_head

    settings = get_settings()
    upgrade_to_head(settings.database_url)
    services = build_services(settings)
    project_id = ensure_project(services, dataset)
    key = demo_login_key(services)
    base = f"http://{args.host}:{args.port}"
    print(f"project {dataset.name!r} (id {project_id}) is ready; label at "
          f"{base}/?project={project_id}")
    print(f"local admin key: {key}")
    print(f"log in (the key stays in the URL fragment): {base}/login#key={key}")
    _serve(settings, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``quarry``."""
    parser = argparse.ArgumentParser(prog="quarry", description="Label-efficient learning service.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, UI and in-process worker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1,
        help="API processes sharing the port (PostgreSQL; SQLite has one writer, keep 1)",
    )
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="serve a real dataset, or --simulate an oracle")
    demo.add_argument("--dataset", help="a text,label CSV (default: scikit-learn digits)")
    demo.add_argument(
        "--simulate", type=int, metavar="N", help="answer N labels from the held labels"
    )
    demo.add_argument("--strategy", default="margin", help="query strategy to compare with random")
    demo.add_argument(
        "--batch-size", type=int, default=None, help="labels per round (default N/10)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost"],
                      help="the demo prints an admin key, so it only binds the loopback")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(func=cmd_demo)

    add_job_commands(sub)

    add_key_commands(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    from app.observability.logs import configure_logging

    args = build_parser().parse_args(argv)
    # QUARRY_LOG_FORMAT (json by default); the demo is read by a person: text
    configure_logging("text" if args.command == "demo" else get_settings().log_format)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
