"""Benchmark: time per query of every registered strategy at pool sizes 10k / 100k / 1M,
batch sizes 10 and 100, with peak memory; margin / entropy / least confidence also end to end
through ``POST /queries``; ALiPy originals and modAL timed beside ours.

Data (printed in every table): an **embedding-like** pool: noisy copies of the real
all-MiniLM-L6-v2 vectors of Banking77 (train + test, 13,083 texts; noise of L2 norm 0.5, then
renormalized; 384-d), never uniform noise. The "checkpoint" arrays are derived from it:
``probs`` float32 ``[n, 10]`` is a nearest-centroid softmax (temperature 1/20) over the mean
vectors of 10 real intents; ``mc_probs`` ``[10, n, 10]`` adds Gaussian logit noise (sd 1) per
MC sample; 1% of the pool (at most 1,000 items) is labeled with the argmax class. Binary-only
strategies (QUIRE, BMDR, SPAL) get the same pool with ``probs`` collapsed to "intent 0 vs
rest".

Every (method, pool size) runs in its own subprocess: peak memory is ``ru_maxrss`` minus the
process's RSS after loading the (memory-mapped) arrays, so it counts what the query itself
touches. One untimed warm-up call (batch 10) absorbs lazy imports and first page faults; times
are medians of ``--repeats`` calls (one call when the first takes over 5 s).
A worker that runs past ``--timeout`` seconds (default 120) is killed and reported as
``>timeout``.

Compared in the same run:

* ``alipy_margin`` / ``alipy_entropy`` / ``alipy_least_confident`` are registered strategies that
  call ALiPy's ``QueryInstanceUncertainty.select_by_prediction_mat`` on the whole pool: they
  *are* the ALiPy originals. ``orig:alipy_coreset`` calls ALiPy's ``QueryInstanceCoresetGreedy``
  on the whole pool (our registered ``alipy_coreset`` caps candidates at 5,000).
* ``orig:modal_*``: modAL 0.4's ``uncertainty_sampling`` / ``margin_sampling`` /
  ``entropy_sampling`` (scoring included: they call ``predict_proba``, here a stub returning the
  same cached probabilities) and ``uncertainty_batch_sampling`` (ranked batch mode, the
  diversity-aware batch of modAL).
* ``e2e:*``: our margin / entropy / least confidence and the diversity-aware batches
  (``kcenter``, ``badge``, ``diverse_margin``, default parameters) through
  ``POST /api/v1/projects/{id}/queries`` (FastAPI TestClient, SQLite file database,
  probabilities and embeddings written as a checkpoint's ``probs.npy`` / ``embeddings.npy``
  through the artifact store and memory-mapped by the query path). ``cold`` is the first query of the process
  (reads the position -> id map once); the median is over the following ones.

Usage::

    nice -n 10 .venv/bin/python bench/query_latency.py --quick   # 10k and 100k
    nice -n 10 .venv/bin/python bench/query_latency.py           # 10k, 100k and 1M

Writes ``bench/out/query_latency.csv`` (``--out``; rewritten after every worker, so an
interrupted run keeps what it measured) and ``query_latency.png`` when matplotlib is available.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

N_CLASSES = 10
MC_SAMPLES = 10
TEMPERATURE = 20.0
BATCHES = (10, 100)
DATA_NOTE = "embedding-like: noisy copies of real MiniLM Banking77 vectors (384-d)"
E2E = ("margin", "entropy", "least_confidence", "kcenter", "badge", "diverse_margin")
ORIGINALS = (
    "orig:alipy_coreset",
    "orig:modal_uncertainty",
    "orig:modal_margin",
    "orig:modal_entropy",
    "orig:modal_ranked_batch",
)


# --------------------------------------------------------------------------------------------
# Pool arrays (cached under bench/out/)
# --------------------------------------------------------------------------------------------


def pool_paths(size: int) -> dict[str, Path]:
    """Build (once) and return the cached arrays of the ``size``-item pool."""
    names = ("embeddings", "probs", "mc_probs", "labeled", "labels")
    paths = {name: common.OUT / f"ql_{size}_{name}.npy" for name in names}
    if all(p.exists() for p in paths.values()):
        return paths
    data = common.banking77()
    real = np.concatenate([data["train_vectors"], data["test_vectors"]])
    intents = np.concatenate([data["train_intents"], data["test_intents"]])
    embeddings, _ = common.noisy_copies(real, size, seed=size)
    centroids = np.stack([real[intents == k].mean(axis=0) for k in range(N_CLASSES)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    rng = np.random.default_rng(7)
    probs = np.empty((size, N_CLASSES), dtype=np.float32)
    mc = np.empty((MC_SAMPLES, size, N_CLASSES), dtype=np.float32)
    for start in range(0, size, 65536):
        stop = min(size, start + 65536)
        logits = TEMPERATURE * embeddings[start:stop] @ centroids.T
        probs[start:stop] = _softmax(logits)
        for t in range(MC_SAMPLES):
            mc[t, start:stop] = _softmax(logits + rng.normal(size=logits.shape))
    labeled = np.zeros(size, dtype=bool)
    labeled[rng.choice(size, min(1000, size // 100), replace=False)] = True
    labels = np.where(labeled, probs.argmax(axis=1), -1).astype(np.int64)
    for name, array in (
        ("embeddings", embeddings), ("probs", probs), ("mc_probs", mc),
        ("labeled", labeled), ("labels", labels),
    ):
        np.save(paths[name], array)
    return paths


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_view(size: int, task: str):  # type: ignore[no-untyped-def]
    """The PoolView of the cached pool (arrays memory-mapped)."""
    from app.strategies.base import PoolView

    paths = pool_paths(size)
    arrays = {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
    probs, mc = arrays["probs"], arrays["mc_probs"]
    if task == "binary":
        probs = np.stack([probs[:, 0], 1.0 - probs[:, 0]], axis=1).astype(np.float32)
        mc = np.stack([mc[..., 0], 1.0 - mc[..., 0]], axis=-1).astype(np.float32)
    labels = np.asarray(arrays["labels"])
    if task == "binary":
        labels = np.where(labels >= 0, (labels != 0).astype(np.int64), -1)
    return PoolView(
        item_ids=np.arange(size, dtype=np.int64),
        labeled=np.asarray(arrays["labeled"]),
        labels=labels,
        task=task,
        n_classes=2 if task == "binary" else N_CLASSES,
        blocked=np.zeros(size, dtype=bool),
        probs=probs,
        embeddings=arrays["embeddings"],
        mc_probs=mc,
        checkpoint_id=1,
    )


# --------------------------------------------------------------------------------------------
# Workers (one process per method and pool size; one JSON line per batch size)
# --------------------------------------------------------------------------------------------


def _timed(call: Any, repeats: int) -> tuple[float, float, int]:
    """Median wall seconds and median CPU seconds (all threads of this process) of ``call()``,
    and how many calls were made."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        if walls[0] > 5.0:
            break
    return statistics.median(walls), statistics.median(cpus), len(walls)


def worker_strategy(name: str, size: int, repeats: int) -> None:
    """Time a registered strategy, or an original (``orig:...``), on the pool."""
    from app.strategies import default_registry

    registry = default_registry()
    if name.startswith("orig:"):
        view = load_view(size, "multiclass")
        make_call = _original(name, view)
    else:
        binary_only = "multiclass" not in registry.get_info(name).tasks
        view = load_view(size, "binary" if binary_only else "multiclass")
        strategy = registry.create(name, {})  # every strategy with its defaults

        def make_call(n: int, seed: int) -> Any:
            return lambda: strategy.select(view, n, np.random.default_rng(seed))

    base = common.current_rss_mb()
    warm = _timed(make_call(BATCHES[0], 1), 1)  # lazy imports, first page faults: untimed
    for batch in BATCHES:
        seconds, cpu_seconds, calls = (
            warm if batch == BATCHES[0] and warm[0] > 30.0  # too slow to wait for it twice
            else _timed(make_call(batch, 0), repeats)
        )
        print(json.dumps({
            "method": name, "pool": size, "batch": batch, "seconds": seconds,
            "cpu_seconds": cpu_seconds, "calls": calls, "peak_mb": common.peak_rss_mb() - base,
        }), flush=True)


def _original(name: str, view: Any) -> Any:
    """A factory ``(n, seed) -> call`` running the third-party original on the whole pool."""
    labeled = np.flatnonzero(view.labeled)
    unlabeled = np.flatnonzero(~view.labeled)
    probs = view.probs
    if name == "orig:alipy_coreset":
        from app.strategies.alipy_adapter import _import_alipy_query_strategy

        qs = _import_alipy_query_strategy()
        x = np.asarray(view.embeddings, dtype=np.float64)
        y = np.maximum(view.labels, 0)

        def alipy_call(n: int, seed: int) -> Any:
            return lambda: qs.QueryInstanceCoresetGreedy(x, y, np.arange(x.shape[0])).select(
                labeled, unlabeled, batch_size=n
            )

        return alipy_call
    from modAL import batch as modal_batch
    from modAL import uncertainty as modal_uncertainty

    class CachedProbs:
        """A fitted-classifier stand-in: predict_proba returns the cached probabilities of the
        positions in column 0 of X (for ranked batch: X are the embeddings, row = position)."""

        on_transformed = False

        def __init__(self) -> None:
            self.X_training = np.asarray(view.embeddings[labeled])

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            if x.shape[1] == 1:
                return np.asarray(probs[x[:, 0].astype(np.int64)])
            return np.asarray(probs[unlabeled[: x.shape[0]]])

    classifier = CachedProbs()
    positions = unlabeled.reshape(-1, 1)
    functions = {
        "orig:modal_uncertainty": modal_uncertainty.uncertainty_sampling,
        "orig:modal_margin": modal_uncertainty.margin_sampling,
        "orig:modal_entropy": modal_uncertainty.entropy_sampling,
    }
    if name in functions:
        function = functions[name]
        return lambda n, seed: lambda: function(classifier, positions, n_instances=n)
    if name == "orig:modal_ranked_batch":
        x_pool = np.asarray(view.embeddings[unlabeled])
        return lambda n, seed: lambda: modal_batch.uncertainty_batch_sampling(
            classifier, x_pool, n_instances=n
        )
    raise ValueError(f"unknown original {name!r}")


def worker_e2e(size: int, repeats: int) -> None:
    """Build a SQLite project with a checkpoint, then time POST /queries."""
    from fastapi.testclient import TestClient

    from app.main import build_services, create_app

    paths = pool_paths(size)
    workdir = Path(tempfile.mkdtemp(prefix=f"e2e_{size}_", dir=common.OUT))
    settings, pid = common.seed_sqlite_project(
        workdir,
        embeddings=np.load(paths["embeddings"], mmap_mode="r"),
        probs=np.load(paths["probs"]),
        labeled=np.load(paths["labeled"]),
        labels=np.load(paths["labels"]),
    )
    settings = settings.model_copy(update={"bootstrap_admin_key": common.ADMIN_KEY})
    app = create_app(settings, build_services(settings))
    with TestClient(app, headers=common.AUTH) as client:
        base = common.current_rss_mb()
        for strategy in E2E:
            for batch in BATCHES:
                def call(seed: int, strategy: str = strategy, batch: int = batch) -> None:
                    response = client.post(f"/api/v1/projects/{pid}/queries", json={
                        "strategy": strategy, "batch_size": batch, "seed": seed})
                    if response.status_code != 201:
                        raise RuntimeError(response.text)
                cold = _timed(lambda call=call: call(0), 1)[0]
                seeds = iter(range(1, 1000))
                seconds, cpu_seconds, calls = _timed(
                    lambda call=call, seeds=seeds: call(next(seeds)), max(repeats, 5)
                )
                print(json.dumps({
                    "method": f"e2e:{strategy}", "pool": size, "batch": batch,
                    "seconds": seconds, "cpu_seconds": cpu_seconds, "calls": calls,
                    "cold_seconds": cold, "peak_mb": common.peak_rss_mb() - base,
                }), flush=True)
    shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _run(args: list[str], threads: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
    """Run a worker of this script; its JSON lines, and whether it was killed on timeout."""
    env = {
        **os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads), "MPLBACKEND": "Agg",
        "PYTHONPATH": str(common.ROOT),
    }
    try:
        done = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, env=env,
            timeout=timeout, check=False,
        )
        stdout, timed_out = done.stdout, False
        if done.returncode != 0:
            print(f"  worker {args} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        stdout = raw.decode() if isinstance(raw, bytes) else raw
        timed_out = True
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return rows, timed_out


def main() -> None:
    """Parse arguments; run a worker or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pool sizes 10k and 100k only")
    parser.add_argument("--sizes", default=None, help="comma-separated pool sizes")
    parser.add_argument("--only", default=None, help="comma-separated methods to run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per query")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.OUT / "query_latency.csv")
    parser.add_argument("--worker", choices=["strategy", "e2e"])
    parser.add_argument("--name")
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    if args.worker == "strategy":
        worker_strategy(args.name, args.size, args.repeats)
        return
    if args.worker == "e2e":
        worker_e2e(args.size, args.repeats)
        return
    sizes = (
        [int(s) for s in args.sizes.split(",")] if args.sizes
        else [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    )
    from app.strategies import default_registry

    registry = default_registry()
    available = [
        d["name"] for d in registry.describe() if d.get("available", True)
    ]
    methods = ["e2e", *available, *ORIGINALS]
    if args.only:
        wanted = set(args.only.split(","))
        methods = [m for m in methods if m in wanted]
    results: list[dict[str, Any]] = []
    for size in sizes:
        print(f"building / loading the {size:,}-item pool ...", flush=True)
        pool_paths(size)
        for method in methods:
            print(f"  {method} @ {size:,}", flush=True)
            if method == "e2e":
                worker_args = ["--worker", "e2e", "--size", str(size)]
                budget = 600.0 + args.timeout * len(E2E) * len(BATCHES)
            else:
                worker_args = ["--worker", "strategy", "--name", method, "--size", str(size)]
                budget = 30.0 + args.timeout * len(BATCHES)
            worker_args += ["--repeats", str(args.repeats)]
            rows, timed_out = _run(worker_args, args.threads, budget)
            for row in rows:
                row["data"] = DATA_NOTE
            results += rows
            done = {(r["method"], r["batch"]) for r in rows}
            if timed_out and method != "e2e":
                results += [
                    {"method": method, "pool": size, "batch": b, "seconds": float("inf"),
                     "cpu_seconds": None, "calls": 0, "peak_mb": None, "timed_out": True,
                     "data": DATA_NOTE}
                    for b in BATCHES if (method, b) not in done
                ]
            common.write_csv(args.out, results)  # after every worker: a partial run counts
    print(f"\npool: {DATA_NOTE}; probs: 10-class centroid softmax; "
          f"times: median wall seconds per query (median CPU seconds), {args.threads} threads")
    print(_pivot(results, sizes))
    _plot(results, sizes, args.out.with_suffix(".png"))


def _pivot(results: list[dict[str, Any]], sizes: list[int]) -> str:
    """One row per method: seconds (and peak MiB) per pool size and batch."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        for r in results:
            if r["method"] != method:
                continue
            key = f"{r['pool'] // 1000}k/b{r['batch']}"
            if r.get("timed_out"):
                row[key] = ">timeout"
            else:
                row[key] = f"{common.fmt(r['seconds'])} ({common.fmt(r.get('cpu_seconds'))})"
            if r["batch"] == BATCHES[-1] and r.get("peak_mb") is not None:
                row[f"MiB@{r['pool'] // 1000}k"] = r["peak_mb"]
        rows.append(row)
    columns = ["method"]
    for size in sizes:
        columns += [f"{size // 1000}k/b{b}" for b in BATCHES] + [f"MiB@{size // 1000}k"]
    return common.table(rows, columns)


def _plot(results: list[dict[str, Any]], sizes: list[int], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(10, 7))
    for method in dict.fromkeys(r["method"] for r in results):
        points = sorted(
            (r["pool"], r["seconds"]) for r in results
            if r["method"] == method and r["batch"] == BATCHES[-1] and np.isfinite(r["seconds"])
        )
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=method)
    ax.set(xscale="log", yscale="log", xlabel="pool size", ylabel="seconds per query of 100",
           title=f"Query latency ({DATA_NOTE})")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
