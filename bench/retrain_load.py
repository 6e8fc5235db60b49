"""Retrain under load: a training on 10k labeled + 100k unlabeled 384-d items, timed, while a
second process measures ``GET /next`` latency on loopback (target: retrain <= 60 s on 2 cores,
``/next`` p99 <= 100 ms while it runs: training never blocks the API).

Data (real, never uniform noise): Banking77's train and test texts embedded with MiniLM
(all-MiniLM-L6-v2, 13,083 real vectors, 77 intents), cycled into 110,000 noisy copies
(Gaussian noise of expected L2 norm 0.5, renormalized; ``bench/common.py::noisy_copies``);
each copy keeps its source text's intent. 10,000 random items carry a human label. The
project starts with a v1 checkpoint (probabilities of a nearest-centroid model on the labeled
items), so ``/next`` ranks by margin as in production.

For each job runner (``process``: the embedded default, a child process of the API;
``thread``: a thread of the API process; ``redis``: a ``quarry worker`` over Redis, with
``--redis``) the bench starts ``quarry serve`` on a fresh copy of that project, measures
``/next`` for ``--idle`` seconds without training, then POSTs ``/train`` (default body:
self-training, one round) and keeps measuring until the job finished. ``/next`` is paced at
``--rate`` requests per second, each from a new annotator (so every call claims an item).
Reference in the same run: scikit-learn's ``SelfTrainingClassifier(LogisticRegression)``
(threshold 0.95, one round; what a user would otherwise write) on the same arrays, fit plus
``predict_proba`` over the pool, in a subprocess (``--no-sklearn`` skips it).

    nice -n 10 .venv/bin/python bench/retrain_load.py --quick   # process + thread runners, 1 run
    nice -n 10 .venv/bin/python bench/retrain_load.py --repeats 3 --redis

Writes ``bench/out/retrain_load.csv`` (+ ``.png`` when matplotlib is available).
"""

import argparse
import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, banking77, noisy_copies, table, write_csv

N_LABELED = 10_000
N_TOTAL = 110_000
DIM = 384
WORK = OUT / "retrain_load"
# the servers this bench starts bootstrap an admin key with this secret
# (QUARRY_BOOTSTRAP_ADMIN_KEY);
# set in os.environ so the load-generator subprocesses send the same one
ADMIN_KEY = os.environ.setdefault("QUARRY_BENCH_ADMIN_KEY", secrets.token_urlsafe(32))
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


# --------------------------------------------------------------------------------------------
# Data and project
# --------------------------------------------------------------------------------------------


def pool(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float32 [110000, 384], intents int64 [110000], labeled bool [110000])."""
    data = banking77()
    real = np.concatenate([data["train_vectors"], data["test_vectors"]])
    intents = np.concatenate([data["train_intents"], data["test_intents"]])
    features, source = noisy_copies(real, N_TOTAL, seed=seed)
    labeled = np.zeros(N_TOTAL, dtype=bool)
    labeled[np.random.default_rng(seed).choice(N_TOTAL, N_LABELED, replace=False)] = True
    return features, intents[source], labeled


def centroid_probs(features: np.ndarray, classes: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """float32 [n, c]: softmax(20 * cosine to each class centroid of the labeled rows)."""
    n_classes = int(classes.max()) + 1
    centroids = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    np.add.at(centroids, classes[labeled], features[labeled])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    logits = 20.0 * (features @ centroids.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def seed_project(database_url: str, data_dir: Path) -> tuple[Any, int]:
    """Migrate ``database_url`` and insert the bench project (v1 checkpoint active).

    Items go in with bulk inserts (the import API would embed-check and index 110k rows for
    minutes; what is timed here is the retrain, not the import).
    """
    from sqlalchemy import insert

    from app.config import Settings
    from app.db import make_engine, make_sessionmaker
    from app.migrate import upgrade_to_head
    from app.models import Checkpoint, Item, ItemStatus, Project
    from app.storage import ArtifactStore, atomic_write_npy

    features, classes, labeled = pool()
    probs = centroid_probs(features, classes, labeled)
    names = [f"intent_{k}" for k in range(probs.shape[1])]
    settings = Settings(data_dir=data_dir, database_url=database_url, job_runner="inline")
    upgrade_to_head(database_url)
    engine = make_engine(settings)
    store = ArtifactStore(data_dir)
    with make_sessionmaker(engine)() as session, session.begin():
        project = Project(name="retrain-load", task="multiclass", labels=names,
                          modality="vector", embedder="vector", feature_dim=DIM, pool_size=0,
                          queue_strategy="margin", settings={})
        session.add(project)
        session.flush()
        store.append_features(project.id, 0, features)
        for start in range(0, N_TOTAL, 20_000):
            session.execute(insert(Item), [
                {"project_id": project.id, "external_id": f"x{p}", "position": p,
                 "text": f"item {p}", "payload": {}, "meta": {},
                 "status": ItemStatus.LABELED if labeled[p] else ItemStatus.UNLABELED,
                 "labels": [names[classes[p]]] if labeled[p] else None,
                 "label_source": "human" if labeled[p] else None}
                for p in range(start, min(N_TOTAL, start + 20_000))
            ])
        folder = store.checkpoint_dir(project.id, 1)
        atomic_write_npy(folder / "probs.npy", probs)
        atomic_write_npy(folder / "embeddings.npy", features)
        checkpoint = Checkpoint(project_id=project.id, version=1, path=str(folder),
                                pool_size=N_TOTAL, n_labeled=N_LABELED)
        session.add(checkpoint)
        session.flush()
        project.pool_size = N_TOTAL
        project.active_checkpoint_id = checkpoint.id
        project_id = project.id
    engine.dispose()
    return settings, project_id


def fresh_database(url: str, template: str | None = None) -> str:
    """Recreate the database of ``url`` (PostgreSQL: from ``template`` if given); its URL."""
    from sqlalchemy import create_engine, make_url, text

    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if template:
            shutil.copy(make_url(template).database or "", path)
        return url
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        source = f' TEMPLATE "{make_url(template).database}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{target.database}"{source}'))
    admin.dispose()
    return url


def database_urls(opts: Any) -> tuple[str, str]:
    """(template URL, per-run URL) for ``--database``."""
    if opts.database == "sqlite":
        return (f"sqlite+pysqlite:///{WORK / 'template.db'}",
                f"sqlite+pysqlite:///{WORK / 'run.db'}")
    base = opts.database.rsplit("/", 1)[0]
    return f"{base}/quarry_bench_template", f"{base}/quarry_bench_run"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(settings: Any, runner: str, namespace: str) -> dict[str, str]:
    """Environment of ``quarry serve`` / ``quarry worker`` for this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env.update({
        "QUARRY_DATA_DIR": str(settings.data_dir),
        "QUARRY_DATABASE_URL": settings.database_url,
        "QUARRY_JOB_RUNNER": runner,
        "QUARRY_BROKER_NAMESPACE": namespace,
        "QUARRY_JOB_QUEUE": f"{namespace}-jobs",
        "QUARRY_TORCH_THREADS": "1",
        "QUARRY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "TOKENIZERS_PARALLELISM": "false",
    })
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m app.cli ARGS`` with output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args], env=env, stdout=handle,
        stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
    )


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request on a new loopback connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers={"content-type": "application/json", **AUTH})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Wait until the API answers /healthz."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"quarry serve exited with {proc.returncode}")
        try:
            if request(port, "GET", "/api/v1/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the API did not come up")


# --------------------------------------------------------------------------------------------
# The load generator (a second process)
# --------------------------------------------------------------------------------------------


def load_main(port: int, project_id: int, rate: float, stop_file: Path, out: Path) -> None:
    """Paced ``GET /next`` (a new annotator per call) until ``stop_file`` exists.

    Writes ``[[t_start_unix, latency_ms, status], ...]`` as JSON to ``out``.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples: list[list[float]] = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    i = 0
    while not stop_file.exists():
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        started = time.time()
        t0 = time.perf_counter()
        try:
            conn.request(
                "GET", f"/api/v1/projects/{project_id}/next?annotator=load{i}&n=1", headers=AUTH
            )
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):  # the server dropped the connection
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status = 599
        samples.append([started, (time.perf_counter() - t0) * 1000, status])
        i += 1
    conn.close()
    out.write_text(json.dumps(samples))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (numpy linear), NaN when empty."""
    return float(np.percentile(values, q)) if values else float("nan")


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def run_once(
    template: Path, project_id: int, settings: Any, runner: str, repeat: int, opts: Any
) -> dict[str, Any]:
    """Copy the template, serve it with ``runner``, measure idle and during-retrain /next."""
    work = WORK / f"{runner}_{repeat}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(template, work / "data")
    template_url, run_url = database_urls(opts)
    run_settings = settings.model_copy(update={
        "data_dir": work / "data", "database_url": fresh_database(run_url, template_url),
    })
    namespace = f"bench-{os.getpid()}-{runner}-{repeat}"
    env = env_for(run_settings, runner, namespace)
    port = free_port()
    procs = [start(["serve", "--port", str(port)], env, work / "serve.log")]
    if runner == "redis":
        procs.append(start(["worker"], env, work / "worker.log"))
    try:
        wait_healthy(port, procs[0])
        # warm-up: the first /next builds the queue ranking over the whole pool (not timed)
        request(port, "GET", f"/api/v1/projects/{project_id}/next?annotator=warmup&n=1")
        idle = measure(port, project_id, opts.rate, work / "idle", duration=opts.idle)
        stop_file = work / "stop"
        loader = subprocess.Popen([
            sys.executable, __file__, "--load", str(port), str(project_id), str(opts.rate),
            str(stop_file), str(work / "busy.json"),
        ])
        time.sleep(1.0)
        status, job = request(port, "POST", f"/api/v1/projects/{project_id}/train",
                              json.loads(opts.body))
        if status != 202:
            raise RuntimeError(f"POST /train answered {status}: {job}")
        posted = time.time()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
            job = request(port, "GET", f"/api/v1/jobs/{job['id']}")[1]
        done = time.time()
        stop_file.touch()
        loader.wait(timeout=120)
        samples = json.loads((work / "busy.json").read_text())
        during = [ms for t, ms, _ in samples if posted <= t <= done]
        errors = sum(1 for t, _, code in samples if posted <= t <= done and code != 200)
        return {
            "runner": runner, "repeat": repeat, "status": job["status"],
            "retrain_s": job_seconds(job), "wall_s": round(done - posted, 2),
            "idle_p50_ms": percentile(idle, 50), "idle_p99_ms": percentile(idle, 99),
            "busy_p50_ms": percentile(during, 50), "busy_p99_ms": percentile(during, 99),
            "busy_max_ms": max(during) if during else float("nan"),
            "n_requests": len(during), "errors": errors,
            "accuracy": (job.get("metrics") or {}).get("accuracy"),
            "n_pseudo": (job.get("metrics") or {}).get("n_pseudo"),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not opts.keep:
            shutil.rmtree(work / "data", ignore_errors=True)


def job_seconds(job: dict[str, Any]) -> float:
    """Seconds from a job's ``started_at`` to ``finished_at`` (NaN while either is unset)."""
    from datetime import datetime

    start, end = job.get("started_at"), job.get("finished_at")
    if not start or not end:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def measure(port: int, project_id: int, rate: float, prefix: Path, duration: float) -> list[float]:
    """/next latencies (ms) from a second process for ``duration`` seconds, nothing else running."""
    stop_file = prefix.with_suffix(".stop")
    out = prefix.with_suffix(".json")
    loader = subprocess.Popen([
        sys.executable, __file__, "--load", str(port), str(project_id), str(rate),
        str(stop_file), str(out),
    ])
    time.sleep(duration)
    stop_file.touch()
    loader.wait(timeout=120)
    samples = json.loads(out.read_text())
    return [ms for _, ms, _ in samples[5:]]  # the first calls warm the ranking cache


# --------------------------------------------------------------------------------------------
# Reference: scikit-learn
# --------------------------------------------------------------------------------------------


def sklearn_main(out: Path) -> None:
    """Fit SelfTrainingClassifier(LogisticRegression) on the bench pool; write seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import SelfTrainingClassifier

    features, classes, labeled = pool()
    y = np.where(labeled, classes, -1)
    t0 = time.perf_counter()
    clf = SelfTrainingClassifier(LogisticRegression(max_iter=200), threshold=0.95, max_iter=1)
    clf.fit(features, y)
    clf.predict_proba(features)
    seconds = time.perf_counter() - t0
    out.write_text(json.dumps({"seconds": seconds,
                               "n_pseudo": int((clf.labeled_iter_ == 1).sum())}))


def sklearn_reference(timeout: float) -> dict[str, Any]:
    """Run :func:`sklearn_main` in a one-thread subprocess; NaN seconds past ``timeout``."""
    out = WORK / "sklearn.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    try:
        subprocess.run([sys.executable, __file__, "--sklearn", str(out)], env=env, check=True,
                       timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "timed_out_after": timeout}
    return json.loads(out.read_text())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over repeats per runner."""
    summary = []
    for runner in dict.fromkeys(r["runner"] for r in rows):
        mine = [r for r in rows if r["runner"] == runner]
        row: dict[str, Any] = {"runner": runner, "repeats": len(mine)}
        for key in ("retrain_s", "idle_p50_ms", "idle_p99_ms", "busy_p50_ms", "busy_p99_ms",
                    "busy_max_ms", "accuracy"):
            values = [float(r[key]) for r in mine if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        row["p99_ok"] = bool(row["busy_p99_ms"] is not None and row["busy_p99_ms"] <= 100)
        row["retrain_ok"] = bool(row["retrain_s"] is not None and row["retrain_s"] <= 60)
        summary.append(row)
    return summary


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Bar chart of busy p99 and retrain seconds per runner (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["runner"] for r in rows]
    left.bar(names, [r["busy_p99_ms"] for r in rows], label="during retrain")
    left.scatter(names, [r["idle_p99_ms"] for r in rows], color="k", zorder=3, label="idle")
    left.axhline(100, color="r", linestyle="--", label="target 100 ms")
    left.set_ylabel("GET /next p99 (ms)")
    left.legend()
    right.bar(names, [r["retrain_s"] for r in rows])
    right.axhline(60, color="r", linestyle="--")
    right.set_ylabel("retrain (s)")
    fig.suptitle("retrain on 10k labeled + 100k unlabeled 384-d items, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, no sklearn reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runners", default="process,thread", help="comma-separated")
    parser.add_argument("--redis", action="store_true", help="also the redis runner + worker")
    parser.add_argument("--rate", type=float, default=20.0, help="/next calls per second")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    parser.add_argument("--body", default='{"semi_supervised": {"method": "self_training"}}',
                        help="JSON body of POST /train")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--sklearn-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep each run's data folder")
    parser.add_argument(
        "--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server URL (databases quarry_bench_template/_run are created), or "
        "'sqlite' (one writer at a time: the retrain's final transaction stalls /next)",
    )
    parser.add_argument("--load", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--sklearn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        port, pid, rate, stop_file, out = args.load
        load_main(int(port), int(pid), float(rate), Path(stop_file), Path(out))
        return
    if args.sklearn:
        sklearn_main(Path(args.sklearn))
        return
    repeats = 1 if args.quick else args.repeats
    runners = [r for r in args.runners.split(",") if r] + (["redis"] if args.redis else [])
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"building the pool: {N_LABELED} labeled + {N_TOTAL - N_LABELED} unlabeled, "
          f"{DIM}-d (Banking77 MiniLM + noise)", flush=True)
    template_url, _ = database_urls(args)
    shutil.rmtree(WORK / "template", ignore_errors=True)
    settings, project_id = seed_project(fresh_database(template_url), WORK / "template")
    if not template_url.startswith("sqlite"):
        from sqlalchemy import create_engine, make_url, text

        # nobody may be connected to a TEMPLATE database: close our pooled connections
        engine = create_engine(make_url(template_url).set(database="postgres"),
                               isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'quarry_bench_template' AND pid <> pg_backend_pid()"
            ))
        engine.dispose()
    rows = []
    for repeat in range(repeats):
        for runner in runners:
            print(f"run {repeat + 1}/{repeats}: runner={runner}", flush=True)
            rows.append(run_once(WORK / "template", project_id, settings, runner, repeat, args))
            print(table([rows[-1]], list(rows[-1])), flush=True)
    summary = summarize(rows)
    if not (args.quick or args.no_sklearn):
        print("reference: sklearn SelfTrainingClassifier(LogisticRegression), 1 thread",
              flush=True)
        ref = sklearn_reference(args.sklearn_timeout)
        for row in summary:
            row["sklearn_s"] = ref["seconds"]
            row["sklearn_over_quarry"] = ref["seconds"] / row["retrain_s"] if row["retrain_s"] \
                else None
    write_csv(OUT / "retrain_load_runs.csv", rows)
    write_csv(OUT / "retrain_load.csv", summary)
    plot(summary, OUT / "retrain_load.png")
    print()
    print(table(summary, list(summary[0])))
    print(f"\nwrote {OUT / 'retrain_load.csv'} and {OUT / 'retrain_load_runs.csv'}")


if __name__ == "__main__":
    main()
