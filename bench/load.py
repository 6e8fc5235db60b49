"""Load benchmark: N concurrent simulated annotators (``GET /next`` -> ``POST /annotations``)
for S seconds from a second process on loopback, against ``quarry serve`` on PostgreSQL with
the distributed (Redis + ``quarry worker``) job runner, while a retrain runs; then an
exactly-once check of every acknowledged label against the database.

Targets (issue 7): p99 of next+label <= 100 ms during a retrain; zero lost or duplicated labels.

Data (real, never uniform noise):
- ``banking77`` (default): Banking77's 13,083 train+test texts embedded with MiniLM
  (all-MiniLM-L6-v2, cached under ``bench/out/``), cycled into 110,000 noisy copies (noise of
  expected L2 norm 0.5, renormalized), 10,000 labeled: the pool of ``bench/retrain_load.py``.
  The project starts with a v1 checkpoint (nearest-centroid probabilities) so ``/next`` ranks
  by margin; the retrain (self-training, one round) on it lasts minutes on a loaded 2-core box.
- ``digits``: sklearn's ``load_digits`` (1,797 8x8 images), 10% labeled; for the smoke test.

Each annotator is an asyncio task of the driver process (one ``aiohttp.ClientSession``, a
connection per annotator) that loops: ``GET /next?annotator=load-<i>`` (timed),
``POST /annotations`` with the lease, the item's true class and a unique ``Idempotency-Key``
(timed), then "thinks" for ``--think`` seconds on average (uniform between 0.5x and 1.5x, as in
``bench/next_latency.py``; default 1 s, a fast annotator: 50 of them label about 45 items/s,
160,000 an hour). ``--think 0`` is a stress test: the service is saturated and latency is
queueing time. At ``--retrain-at`` seconds the bench POSTs ``/train``, and (``--retrains
loop``, the default) posts it again as soon as the job ends, so a retrain runs for nearly the
whole load; when the load ends a still-running retrain is cancelled. ``in_retrain_pair_p99_ms``
counts only the cycles whose ``/next`` was sent while a job ran (its started_at..finished_at),
the target's "during a retrain"; ``pair_p99_ms`` counts the whole run. Acknowledged = a 2xx
answer to ``POST /annotations``. The check then reads the database: every acknowledged
annotation id is stored (else *lost*), no item has two human annotations from the run (the API
serves an item to one annotator and never again once labeled, so a second one is a
*duplicate*), and stored annotations that were never acknowledged (a client timeout) are
counted apart.

Every request carries ``Authorization: Bearer <key>``; the server is started with
``QUARRY_BOOTSTRAP_ADMIN_KEY`` set to that key, as ``quarry serve --workers 2`` on PostgreSQL
(one API process per core, as deployed; ``--server-workers``) and one process on SQLite.

Usage::

    nice -n 5 .venv/bin/python bench/load.py                      # baseline, then retrain run
    nice -n 5 .venv/bin/python bench/load.py --no-retrain --seconds 30
    nice -n 5 .venv/bin/python bench/load.py --database-url sqlite --runner thread \\
        --dataset digits --annotators 3 --seconds 3                  # the smoke test's run

Writes ``bench/out/load.csv`` (one row per run) and ``bench/out/load_requests.csv``.
"""

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import retrain_load  # noqa: E402
from bench.common import OUT, digits, seed_project, table, write_csv  # noqa: E402

TARGET_P99_MS = 100.0
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/quarry_load"
WORK = OUT / "load"
TRAIN_BODY = '{"semi_supervised": {"method": "self_training"}}'


# --------------------------------------------------------------------------------------------
# Data and project
# --------------------------------------------------------------------------------------------


def dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float32 [n, d], classes int64 [n], labeled bool [n]) of ``name``."""
    if name == "banking77":
        return retrain_load.pool()
    if name == "digits":
        features, classes = digits()
        labeled = np.zeros(len(classes), dtype=bool)
        labeled[
            np.random.default_rng(0).choice(len(classes), len(classes) // 10, replace=False)
        ] = True
        return features, classes, labeled
    raise ValueError(f"unknown dataset {name!r}")


def seed(database_url: str, data_dir: Path, name: str) -> tuple[int, list[str], np.ndarray]:
    """Migrate ``database_url`` and bulk-insert the project (v1 checkpoint active) through
    ``bench.common.seed_project``.

    Returns:
        (project id, label names, class id of each item by position int64 [n]).
    """
    from app.config import Settings

    features, classes, labeled = dataset(name)
    features = np.ascontiguousarray(features, dtype=np.float32)
    probs = retrain_load.centroid_probs(features, classes, labeled)
    settings = Settings(data_dir=data_dir, database_url=database_url, job_runner="inline")
    project_id = seed_project(
        settings, embeddings=features, probs=probs, labeled=labeled, labels=classes,
        name=f"load-{name}",
    )
    return project_id, [f"class_{k}" for k in range(probs.shape[1])], classes


def resolve_url(url: str) -> str:
    """``sqlite`` -> a file under ``bench/out/load/``; anything else unchanged."""
    return f"sqlite+pysqlite:///{WORK / 'load.db'}" if url == "sqlite" else url


# --------------------------------------------------------------------------------------------
# The driver (a second process)
# --------------------------------------------------------------------------------------------


async def _annotator(
    http: Any,
    base: str,
    index: int,
    stop_at: float,
    classes: list[str],
    log: list[list[Any]],
    think: float = 0.0,
) -> None:
    """One annotator: next -> label -> think (mean ``think`` s) until ``stop_at`` (monotonic)."""
    name = f"load-{index}"
    rng = np.random.default_rng(index)
    first = True
    while time.monotonic() < stop_at:
        if think > 0:  # before each cycle: the first one staggers the annotators' starts
            await asyncio.sleep(think * rng.uniform(0.0 if first else 0.5, 1.5))
            first = False
            if time.monotonic() >= stop_at:
                break
        started = time.time()
        t0 = time.perf_counter()
        try:
            async with http.get(f"{base}/next", params={"annotator": name, "n": 1}) as response:
                status, body = response.status, await response.text()
        except Exception as exc:  # a timeout or a dropped connection: record, go on
            log.append(
                [
                    "next",
                    started,
                    1000 * (time.perf_counter() - t0),
                    599,
                    name,
                    None,
                    None,
                    None,
                    type(exc).__name__,
                ]
            )
            continue
        next_ms = 1000 * (time.perf_counter() - t0)
        if status != 200:
            log.append(["next", started, next_ms, status, name, None, None, None, body[:200]])
            if status == 409:  # pool exhausted
                return
            continue
        served = json.loads(body)["items"][0]
        item = served["item"]
        position = int(item["external_id"][1:])
        log.append(["next", started, next_ms, status, name, item["id"], None, None, ""])
        key = uuid.uuid4().hex
        started = time.time()
        t0 = time.perf_counter()
        try:
            async with http.post(
                f"{base}/annotations",
                json={
                    "item_id": item["id"],
                    "label": classes[position],
                    "annotator": name,
                    "lease_id": served["lease_id"],
                },
                headers={"Idempotency-Key": key},
            ) as posted:
                code, text = posted.status, await posted.text()
        except Exception as exc:
            code, text = 599, type(exc).__name__
        label_ms = 1000 * (time.perf_counter() - t0)
        annotation_id = json.loads(text)["id"] if 200 <= code < 300 else None
        log.append(
            [
                "label",
                started,
                label_ms,
                code,
                name,
                item["id"],
                annotation_id,
                key,
                "" if annotation_id else text[:200],
            ]
        )


async def _drive(
    port: int,
    pid: int,
    key: str,
    annotators: int,
    seconds: float,
    classes: list[str],
    think: float = 0.0,
) -> list[list[Any]]:
    # aiohttp, not httpx: the driver shares the 2 cores with the server, and httpx's pure-Python
    # HTTP/1.1 stack cost ~10 ms of CPU per request here (a third of the machine at 50 req/s)
    import aiohttp

    base = f"http://127.0.0.1:{port}/api/v1/projects/{pid}"
    log: list[list[Any]] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=annotators),
        timeout=aiohttp.ClientTimeout(total=30),
        headers={"Authorization": f"Bearer {key}"},
    ) as http:

        async def _warm() -> None:
            async with http.get(f"{base}/stats") as response:
                await response.read()

        # open every connection before the clock starts
        await asyncio.gather(*(_warm() for _ in range(annotators)))
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(
                _annotator(http, base, i, stop_at, classes, log, think)
                for i in range(annotators)
            )
        )
    return log


def driver_main(spec_path: Path) -> None:
    """Entry of the driver process: read the JSON spec, run, write the request log."""
    spec = json.loads(spec_path.read_text())
    classes = np.load(spec["classes"]).tolist()
    names = spec["names"]
    labels = [names[c] for c in classes]
    log = asyncio.run(
        _drive(
            spec["port"],
            spec["project_id"],
            spec["key"],
            spec["annotators"],
            spec["seconds"],
            labels,
            spec.get("think", 0.0),
        )
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "log": log,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        )
    )


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _children_cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds so far of the live processes ``pids`` (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the serve process's job children)."""
    out, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        frontier += [int(k) for k in kids]
    return out


def exactly_once(database_url: str, project_id: int, log: list[list[Any]]) -> dict[str, int]:
    """Compare the acknowledged labels of ``log`` with the project's stored annotations.

    Returns:
        ``acked``, ``stored`` (human annotations of this run's annotators), ``lost`` (acked ids
        not stored), ``duplicated`` (extra human annotations of one item by this run),
        ``stored_unacked`` (stored, never acknowledged: a client-side timeout),
        ``double_served`` (an item served by /next more than once).
    """
    from sqlalchemy import create_engine, text

    acked = {int(r[6]) for r in log if r[0] == "label" and r[6] is not None}
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, item_id FROM annotations WHERE project_id = :p AND source = 'human' "
                "AND annotator LIKE 'load-%'"
            ),
            {"p": project_id},
        ).all()
    engine.dispose()
    stored = {int(r.id) for r in rows}
    per_item = Counter(int(r.item_id) for r in rows)
    served = Counter(int(r[5]) for r in log if r[0] == "next" and r[5] is not None)
    return {
        "acked": len(acked),
        "stored": len(stored),
        "lost": len(acked - stored),
        "duplicated": sum(n - 1 for n in per_item.values() if n > 1),
        "stored_unacked": len(stored - acked),
        "double_served": sum(n - 1 for n in served.values() if n > 1),
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _pairs(log: list[list[Any]], windows: list[tuple[float, float]] | None = None) -> list[float]:
    """next+label milliseconds of each annotator's successful next -> label cycle; with
    ``windows`` ([(start, end)] unix seconds), only the cycles whose ``/next`` was sent inside
    one of them."""
    last_next: dict[str, tuple[float, float]] = {}
    out = []
    for kind, t, ms, status, who, *_rest in log:
        if kind == "next":
            if status == 200:
                last_next[who] = (t, ms)
        elif who in last_next:
            t_next, ms_next = last_next.pop(who)
            if windows is None or any(a <= t_next <= b for a, b in windows):
                out.append(ms_next + ms)
    return out


class Retrains:
    """Retrains back to back for the whole load: ``POST /train`` at ``--retrain-at`` seconds,
    again as soon as a job ends, until :meth:`finish` (which cancels the one still running).
    Each job's (started_at, finished_at) is a window of "during a retrain"."""

    def __init__(self, api: Any, project_id: int, opts: Any) -> None:
        import threading

        self._api, self._pid, self._opts = api, project_id, opts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.jobs: list[dict[str, Any]] = []
        self.windows: list[tuple[float, float]] = []

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        if self._stop.wait(self._opts.retrain_at):
            return
        while not self._stop.is_set():
            answer = self._api.post(f"/projects/{self._pid}/train", content=self._opts.train_body)
            if answer.status_code != 202:
                raise RuntimeError(f"POST /train answered {answer.status_code}: {answer.text}")
            job = answer.json()
            self.jobs.append(job)
            while not self._stop.wait(0.5):
                job = self._api.get(f"/jobs/{job['id']}").json()
                if job["status"] not in ("queued", "running"):
                    break
            self.jobs[-1] = job
            if self._opts.retrains == "once":
                return

    def finish(self) -> None:
        """Stop posting, cancel a running job, and read every job's window."""
        from datetime import datetime

        self._stop.set()
        self._thread.join(timeout=60)
        end = time.time()
        for i, job in enumerate(self.jobs):
            job = self._api.get(f"/jobs/{job['id']}").json()
            if job["status"] in ("queued", "running"):
                self._api.post(f"/jobs/{job['id']}/cancel")
            self.jobs[i] = job
            if job.get("started_at"):
                start = datetime.fromisoformat(job["started_at"]).timestamp()
                done = job.get("finished_at")
                stop = datetime.fromisoformat(done).timestamp() if done else end
                self.windows.append((start, stop))


def _in_retrain(log: list[list[Any]], retrains: Retrains | None) -> dict[str, Any]:
    """The retrain columns: jobs, seconds under a retrain, and next+label percentiles of the
    cycles that started while one ran."""
    if retrains is None:
        return {"retrains": None}
    pairs = _pairs(log, retrains.windows)
    finished = [j for j in retrains.jobs if j["status"] == "succeeded"]
    return {
        "retrains": len(retrains.jobs),
        "retrains_succeeded": len(finished),
        "retrain_statuses": ",".join(j["status"] for j in retrains.jobs),
        "retrain_ran_s": round(sum(b - a for a, b in retrains.windows), 1),
        "retrain_job_s": round(float(np.median([retrain_load.job_seconds(j) for j in finished])), 1)
        if finished
        else None,
        "in_retrain_pairs": len(pairs),
        "in_retrain_pair_p50_ms": _pct(pairs, 50),
        "in_retrain_pair_p95_ms": _pct(pairs, 95),
        "in_retrain_pair_p99_ms": _pct(pairs, 99),
    }


def run_once(
    opts: Any, template: dict[str, Any], retrain: bool
) -> tuple[dict[str, Any], list[list[Any]]]:
    """Fresh copy of the seeded project, serve it, drive it (retrain or not), check."""
    label = "retrain" if retrain else "baseline"
    work = WORK / label
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(template["data_dir"], work / "data")
    url = resolve_url(opts.database_url)
    if url.startswith("sqlite"):
        run_url = f"sqlite+pysqlite:///{work / 'run.db'}"
        retrain_load.fresh_database(run_url, template["url"])
    else:
        run_url = retrain_load.fresh_database(url, template["url"])
    settings = template["settings"].model_copy(
        update={"data_dir": work / "data", "database_url": run_url}
    )
    namespace = f"load-{os.getpid()}-{label}"
    env = retrain_load.env_for(settings, opts.runner, namespace)
    key = secrets.token_urlsafe(32)
    env["QUARRY_BOOTSTRAP_ADMIN_KEY"] = key
    port = retrain_load.free_port()
    workers = opts.server_workers or (1 if url.startswith("sqlite") else 2)
    procs = [
        retrain_load.start(
            ["serve", "--port", str(port), "--workers", str(workers)], env, work / "serve.log"
        )
    ]
    if opts.runner == "redis":
        procs.append(retrain_load.start(["worker"], env, work / "worker.log"))
    pid = template["project_id"]
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    retrains: Retrains | None = None
    try:
        retrain_load.wait_healthy(port, procs[0])
        import httpx

        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=120)
        api.post(f"/projects/{pid}/queue/rerank").raise_for_status()  # first ranking, untimed
        spec = work / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "port": port,
                    "project_id": pid,
                    "key": key,
                    "annotators": opts.annotators,
                    "seconds": opts.seconds,
                    "think": opts.think,
                    "classes": str(template["classes"]),
                    "names": template["names"],
                    "out": str(work / "requests.json"),
                }
            )
        )
        load_before = os.getloadavg()
        cpu_before = _children_cpu_s([p for proc in procs for p in _tree(proc.pid)])
        wall0 = time.monotonic()
        driver = subprocess.Popen(
            [sys.executable, __file__, "--drive", str(spec)],
            cwd=Path(__file__).resolve().parents[1],
        )
        retrains = Retrains(api, pid, opts) if retrain else None
        if retrains is not None:
            retrains.start()
        driver.wait(timeout=opts.seconds + 300)
        wall = time.monotonic() - wall0
        cpu_server = _children_cpu_s([p for proc in procs for p in _tree(proc.pid)]) - cpu_before
        load_after = os.getloadavg()
        if driver.returncode != 0:
            raise RuntimeError(f"the driver exited with {driver.returncode}")
        if retrains is not None:
            retrains.finish()
        result = json.loads((work / "requests.json").read_text())
        log = result["log"]
        check = exactly_once(run_url, pid, log)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work / "data", ignore_errors=True)
    next_ms = [r[2] for r in log if r[0] == "next" and r[3] == 200]
    label_ms = [r[2] for r in log if r[0] == "label" and r[6] is not None]
    pair_ms = _pairs(log)
    errors = Counter(f"{r[0]} {r[3]}" for r in log if not (200 <= r[3] < 300))
    row: dict[str, Any] = {
        "run": label,
        "database": run_url.split(":", 1)[0],
        "runner": opts.runner,
        "server_workers": workers,
        "annotators": opts.annotators,
        "think_s": opts.think,
        "seconds": opts.seconds,
        "throughput_rps": (len(next_ms) + len(label_ms)) / opts.seconds,
        "labels_per_s": len(label_ms) / opts.seconds,
        "next_p50_ms": _pct(next_ms, 50),
        "next_p95_ms": _pct(next_ms, 95),
        "next_p99_ms": _pct(next_ms, 99),
        "label_p50_ms": _pct(label_ms, 50),
        "label_p95_ms": _pct(label_ms, 95),
        "label_p99_ms": _pct(label_ms, 99),
        "pair_p50_ms": _pct(pair_ms, 50),
        "pair_p95_ms": _pct(pair_ms, 95),
        "pair_p99_ms": _pct(pair_ms, 99),
        "pair_max_ms": max(pair_ms, default=float("nan")),
        **check,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors) or "",
        **_in_retrain(log, retrains),
        "load1_before": round(load_before[0], 2),
        "load1_after": round(load_after[0], 2),
        "server_cpu_s": round(cpu_server, 1),
        "driver_cpu_s": round(result["cpu_s"], 1),
        "wall_s": round(wall, 1),
        "target_pair_p99_ms": TARGET_P99_MS,
    }
    return row, [[label, *r] for r in log]


def prepare(opts: Any) -> dict[str, Any]:
    """Seed the template database and data folder once for all runs."""
    from app.config import Settings

    WORK.mkdir(parents=True, exist_ok=True)
    url = resolve_url(opts.database_url)
    if url.startswith("sqlite"):
        template_url = f"sqlite+pysqlite:///{WORK / 'template.db'}"
    else:
        template_url = url.rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1] + "_template"
    data_dir = WORK / "template"
    shutil.rmtree(data_dir, ignore_errors=True)
    retrain_load.fresh_database(template_url)
    project_id, names, classes = seed(template_url, data_dir, opts.dataset)
    np.save(WORK / "classes.npy", classes)
    if not template_url.startswith("sqlite"):
        from sqlalchemy import create_engine, make_url, text

        # nobody may be connected to a TEMPLATE database
        engine = create_engine(
            make_url(template_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": make_url(template_url).database},
            )
        engine.dispose()
    settings = Settings(data_dir=data_dir, database_url=template_url, job_runner="inline")
    return {
        "url": template_url,
        "data_dir": data_dir,
        "project_id": project_id,
        "names": names,
        "classes": WORK / "classes.npy",
        "settings": settings,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, run (baseline and/or retrain), print the table, write the CSVs."""
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--think", type=float, default=1.0,
        help="mean think time per item in seconds (0: a stress test at machine speed)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_PG,
        help="PostgreSQL URL of the run database (a <name>_template database "
        "is created next to it), or 'sqlite'",
    )
    parser.add_argument(
        "--runner",
        default="redis",
        choices=["redis", "process", "thread"],
        help="QUARRY_JOB_RUNNER of the server (redis starts a quarry worker)",
    )
    parser.add_argument(
        "--server-workers", type=int, default=0,
        help="quarry serve --workers (default: 2 on PostgreSQL, one per core; 1 on SQLite)",
    )
    parser.add_argument("--dataset", default="banking77", choices=["banking77", "digits"])
    parser.add_argument("--no-retrain", action="store_true", help="only the baseline run")
    parser.add_argument("--no-baseline", action="store_true", help="only the retrain run")
    parser.add_argument("--retrain-at", type=float, default=5.0, help="seconds into the load")
    parser.add_argument(
        "--retrains",
        default="loop",
        choices=["loop", "once"],
        help="loop: a new retrain as soon as one ends, for the whole load (default); once: one",
    )
    parser.add_argument("--train-body", default=TRAIN_BODY, help="JSON body of POST /train")
    parser.add_argument("--out", default=str(OUT / "load.csv"))
    parser.add_argument(
        "--work",
        default=None,
        help="scratch folder (SQLite files, data copies, server logs); default bench/out/load",
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.work:
        WORK = Path(opts.work)
    if opts.drive:
        driver_main(Path(opts.drive))
        return []
    if opts.no_retrain and opts.no_baseline:
        parser.error("--no-retrain and --no-baseline leave nothing to run")
    print(f"seeding {opts.dataset} into {resolve_url(opts.database_url)}", flush=True)
    template = prepare(opts)
    modes = ([] if opts.no_baseline else [False]) + ([] if opts.no_retrain else [True])
    rows, requests = [], []
    for retrain in modes:
        print(
            f"run: {'retrain' if retrain else 'baseline'}, {opts.annotators} annotators, "
            f"{opts.seconds:g} s",
            flush=True,
        )
        row, log = run_once(opts, template, retrain)
        rows.append(row)
        requests += log
    if len(rows) == 2 and rows[0]["pair_p99_ms"]:
        rows[1]["pair_p99_vs_baseline"] = rows[1]["pair_p99_ms"] / rows[0]["pair_p99_ms"]
        rows[1]["throughput_vs_baseline"] = rows[1]["throughput_rps"] / rows[0]["throughput_rps"]
    out = Path(opts.out)
    write_csv(out, rows)
    write_csv(
        out.with_name(out.stem + "_requests.csv"),
        [
            dict(
                zip(
                    [
                        "run",
                        "kind",
                        "t_unix",
                        "ms",
                        "status",
                        "annotator",
                        "item_id",
                        "annotation_id",
                        "idempotency_key",
                        "error",
                    ],
                    r,
                    strict=True,
                )
            )
            for r in requests
        ],
    )
    columns = [
        "run",
        "think_s",
        "throughput_rps",
        "labels_per_s",
        "next_p50_ms",
        "next_p95_ms",
        "next_p99_ms",
        "label_p50_ms",
        "label_p95_ms",
        "label_p99_ms",
        "pair_p50_ms",
        "pair_p95_ms",
        "pair_p99_ms",
        "acked",
        "stored",
        "lost",
        "duplicated",
        "stored_unacked",
        "double_served",
        "errors",
        "retrains",
        "retrain_job_s",
        "retrain_ran_s",
        "in_retrain_pairs",
        "in_retrain_pair_p99_ms",
        "load1_before",
        "load1_after",
        "server_cpu_s",
        "driver_cpu_s",
    ]
    print(
        f"\n{opts.annotators} annotators x {opts.seconds:g} s (think {opts.think:g} s), "
        f"{opts.dataset}, {rows[0]['server_workers']} API process(es), "
        f"{rows[0]['database']}, runner {opts.runner}; target next+label p99 <= "
        f"{TARGET_P99_MS:g} ms, zero lost/duplicated"
    )
    print(table(rows, columns))
    if len(rows) == 2:
        print(
            f"retrain / baseline: next+label p99 x{rows[1].get('pair_p99_vs_baseline', 0):.2f},"
            f" throughput x{rows[1].get('throughput_vs_baseline', 0):.2f}"
        )
    for row in rows:
        if row["error_kinds"]:
            print(f"{row['run']} errors: {row['error_kinds']}")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
