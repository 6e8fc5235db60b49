"""Benchmark: ``GET /projects/{id}/next`` latency with 20 concurrent annotators against a live
uvicorn server on 127.0.0.1 (SQLite), and a double-assignment count.

Data: the embedding-like pool of ``bench/query_latency.py`` (noisy copies of real MiniLM
Banking77 vectors, a 10-class centroid-softmax checkpoint, 1% labeled), seeded into a fresh
SQLite file with an active checkpoint, so ``/next`` serves the project's margin queue.

Each annotator is a thread with its own HTTP connection that repeats: ``GET /next`` (timed),
then ``POST /annotations`` with the lease (timed separately), then "thinks" for ``--think``
seconds on average (uniform between 0.5x and 1.5x; people read the item before labeling);
with think time, each annotator's first request also waits uniform(0, 1) x ``--think`` after
the common start (sessions do not all start on one tick). ``--think 0`` is a stress test:
20 annotators at machine speed saturate the single SQLite writer, so latency is queueing
time. The server is one uvicorn process (its default thread
pool for the sync endpoints). The queue's ranking (200 items) is recomputed in the server's
background thread when fewer than 50 of its items are left (``/next`` keeps serving the old
one meanwhile); its CPU time is part of the run, and so of the percentiles. An
item served twice (to anyone) is a double assignment: each served item is labeled at once, so
it must never come back.

Usage::

    nice -n 10 .venv/bin/python bench/next_latency.py --quick    # 10k pool, 20 x 25 requests
    nice -n 10 .venv/bin/python bench/next_latency.py            # 100k pool, 20 x 50 requests
    # both run --think 0,1: full speed, then one item per second per annotator

Writes ``bench/out/next_latency.csv`` (one row per run) and ``next_latency_requests.csv``.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import query_latency  # noqa: E402

TARGET_P99_S = 0.050


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(settings: Any, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QUARRY_DATA_DIR": str(settings.data_dir),
        "QUARRY_DATABASE_URL": settings.database_url,
        "QUARRY_JOB_RUNNER": "inline",
        "QUARRY_BOOTSTRAP_ADMIN_KEY": common.ADMIN_KEY,
        "PYTHONPATH": str(common.ROOT),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=common.ROOT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2).status_code < 500:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("uvicorn did not start within 120 s")


def run(pool: int, annotators: int, requests_each: int, think: float) -> dict[str, Any]:
    """Seed a project, start the server, run the annotators; the summary row."""
    paths = query_latency.pool_paths(pool)
    workdir = Path(tempfile.mkdtemp(prefix=f"next_{pool}_", dir=common.OUT))
    settings, pid = common.seed_sqlite_project(
        workdir,
        embeddings=np.load(paths["embeddings"], mmap_mode="r"),
        probs=np.load(paths["probs"]),
        labeled=np.load(paths["labeled"]),
        labels=np.load(paths["labels"]),
    )
    port = _free_port()
    server = _start_server(settings, port)
    base = f"http://127.0.0.1:{port}/api/v1/projects/{pid}"
    next_times: list[float] = []
    post_times: list[float] = []
    served: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(annotators)

    def annotate(name: str) -> None:
        pause = np.random.default_rng(abs(hash(name)) % 2**32)
        with httpx.Client(timeout=60, headers=common.AUTH) as http:
            http.get(f"{base}/stats")  # open the connection before the clock starts
            barrier.wait()
            if think > 0:  # people start a session at different moments, not on one tick
                time.sleep(think * pause.uniform(0.0, 1.0))
            for _ in range(requests_each):
                start = time.perf_counter()
                response = http.get(f"{base}/next", params={"annotator": name})
                took = time.perf_counter() - start
                if response.status_code != 200:
                    with lock:
                        errors.append(f"/next {response.status_code}: {response.text[:200]}")
                    return
                item = response.json()["items"][0]
                start = time.perf_counter()
                posted = http.post(f"{base}/annotations", json={
                    "item_id": item["item"]["id"], "label": "class_0",
                    "lease_id": item["lease_id"]})
                with lock:
                    next_times.append(took)
                    post_times.append(time.perf_counter() - start)
                    served.append(int(item["item"]["id"]))
                    if posted.status_code != 201:
                        errors.append(f"annotation {posted.status_code}: {posted.text[:200]}")
                if think > 0:  # reading the item and choosing a label
                    time.sleep(think * pause.uniform(0.5, 1.5))

    try:
        # one warm-up request: the first ranking and the position -> id map of the process
        warm = time.perf_counter()
        httpx.post(f"{base}/queue/rerank", timeout=120, headers=common.AUTH).raise_for_status()
        warm_seconds = time.perf_counter() - warm
        threads = [
            threading.Thread(target=annotate, args=(f"annotator-{a}",))
            for a in range(annotators)
        ]
        wall = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    doubles = sum(n - 1 for n in Counter(served).values() if n > 1)
    times = np.array(next_times)
    common.write_csv(common.OUT / "next_latency_requests.csv", [
        {"pool": pool, "next_seconds": t, "annotation_seconds": p}
        for t, p in zip(next_times, post_times, strict=True)
    ])
    return {
        "pool": pool, "annotators": annotators, "think_s": think, "requests": int(times.size),
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p95_ms": 1000 * float(np.percentile(times, 95)),
        "p99_ms": 1000 * float(np.percentile(times, 99)),
        "max_ms": 1000 * float(times.max()),
        "annotation_p50_ms": 1000 * statistics.median(post_times),
        "throughput_per_s": times.size / wall,
        "double_assignments": doubles, "errors": len(errors),
        "first_ranking_s": warm_seconds, "target_p99_ms": 1000 * TARGET_P99_S,
        "data": query_latency.DATA_NOTE,
    }


def main() -> None:
    """Parse arguments, run, print the table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k pool, 25 requests each")
    parser.add_argument("--pool", type=int, default=None)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--requests", type=int, default=None, help="per annotator")
    parser.add_argument(
        "--think", default="0,1", help="comma-separated mean seconds an annotator spends per "
        "item between requests (uniform 0.5x-1.5x); 0 = full speed (a stress test)",
    )
    args = parser.parse_args()
    pool = args.pool or (10_000 if args.quick else 100_000)
    requests_each = args.requests or (25 if args.quick else 50)
    rows = [run(pool, args.annotators, requests_each, float(t)) for t in args.think.split(",")]
    common.write_csv(common.OUT / "next_latency.csv", rows)
    columns = ["pool", "annotators", "think_s", "requests", "p50_ms", "p95_ms", "p99_ms", "max_ms",
               "annotation_p50_ms", "throughput_per_s", "double_assignments", "errors",
               "target_p99_ms"]
    print(f"/next on SQLite, live uvicorn; pool: {rows[0]['data']}")
    print(common.table(rows, columns))


if __name__ == "__main__":
    main()
