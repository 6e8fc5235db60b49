"""Helpers shared by the benchmarks: real datasets, cached MiniLM embeddings, embedding-like
pools, memory readings, subprocess workers with a timeout, and table / CSV output.

Every dataset here is real (``../shared/data`` and sklearn's bundled ``load_digits``); the large
pools are *embedding-like*: noisy copies of real MiniLM vectors, renormalized (never uniform
noise). MiniLM vectors are computed once per dataset and cached under ``bench/out/``
(``banking77_{train,test}_minilm.npy`` is the same cache ``bench/negatives.py`` uses).
"""

import csv
import gzip
import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# QUARRY_BOOTSTRAP_ADMIN_KEY of the servers and apps the benchmarks start
ADMIN_KEY = "quarry-bench-bootstrap-admin-key-0001"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
OUT = ROOT / "bench" / "out"
DATA = ROOT.parent / "shared" / "data"
NOISE = 0.5


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now, MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --------------------------------------------------------------------------------------------
# Real datasets
# --------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def minilm_cached(name: str, texts: Sequence[str]) -> np.ndarray:
    """float32 ``[len(texts), 384]`` all-MiniLM-L6-v2 vectors, cached as ``bench/out/<name>.npy``.

    Raises:
        ValueError: if a cache exists with a different row count (stale cache).
    """
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"{name}.npy"
    if not cache.exists():
        from app.ml.embedders import make_embedder

        print(f"embedding {len(texts)} texts with MiniLM (cached to {cache})", flush=True)
        vectors = make_embedder("minilm").embed(list(texts))
        np.save(cache, np.asarray(vectors, dtype=np.float32))
    vectors = np.load(cache)
    if vectors.shape[0] != len(texts):
        raise ValueError(f"{cache} holds {vectors.shape[0]} rows, expected {len(texts)}")
    return vectors


def banking77() -> dict[str, np.ndarray]:
    """Banking77 (77 intents): MiniLM vectors and intent ids of the train and test splits."""
    arrays: dict[str, np.ndarray] = {}
    intents: dict[str, int] = {}
    for split in ("train", "test"):
        rows = _read_csv(DATA / "banking77" / f"{split}.csv")
        arrays[f"{split}_vectors"] = minilm_cached(
            f"banking77_{split}_minilm", [r["text"] for r in rows]
        )
        arrays[f"{split}_intents"] = np.array(
            [intents.setdefault(r["label"], len(intents)) for r in rows], dtype=np.int64
        )
    return arrays


def sms_spam() -> tuple[np.ndarray, np.ndarray]:
    """SMS Spam Collection (5,574 texts): MiniLM vectors float32 ``[n, 384]``, 1 = spam."""
    rows = _read_csv(DATA / "sms_spam" / "all.csv")
    vectors = minilm_cached("sms_spam_minilm", [r["text"] for r in rows])
    labels = np.array([1 if r["label"] == "spam" else 0 for r in rows], dtype=np.int64)
    return vectors, labels


def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's load_digits (1,797 8x8 images): pixels scaled to [0, 1], float32 ``[n, 64]``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(n: int, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """A uniform random subsample (without replacement) of ``n`` Fashion-MNIST images of
    ``split`` (``"train"`` or ``"t10k"``): pixels in [0, 1], float32 ``[n, 784]``, and their
    class ids (10 classes)."""
    folder = DATA / "fashion_mnist"
    images = _idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = _idx(folder / f"{split}-labels-idx1-ubyte.gz")
    chosen = np.sort(np.random.default_rng(seed).choice(images.shape[0], n, replace=False))
    pixels = images[chosen].reshape(n, -1).astype(np.float32) / 255.0
    return pixels, labels[chosen].astype(np.int64)


def fashion_mnist_test(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random subsample of ``n`` Fashion-MNIST test (t10k) images, as
    :func:`fashion_mnist`."""
    return fashion_mnist(n, seed, split="t10k")


def noisy_copies(
    vectors: np.ndarray, total: int, *, seed: int, noise: float = NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """``total`` noisy copies of the rows of ``vectors`` (cycled), renormalized.

    Each copy is a real vector plus Gaussian noise of expected L2 norm ``noise``, scaled back to
    unit length: an embedding-like pool with the real data's cluster structure.

    Returns:
        (vectors float32 ``[total, d]``, source row int64 ``[total]``).
    """
    n, dim = vectors.shape
    source = np.arange(total, dtype=np.int64) % n
    rng = np.random.default_rng(seed)
    out = np.empty((total, dim), dtype=np.float32)
    for start in range(0, total, 65536):
        stop = min(total, start + 65536)
        block = vectors[source[start:stop]] + rng.normal(
            scale=noise / np.sqrt(dim), size=(stop - start, dim)
        ).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out, source


# --------------------------------------------------------------------------------------------
# Workers and output
# --------------------------------------------------------------------------------------------


def run_worker(
    script: Path, args: list[str], *, threads: int, timeout_s: float
) -> dict[str, Any] | None:
    """Run ``python script args`` and return the JSON object on its last stdout line.

    Returns None when the worker ran past ``timeout_s`` (it is killed).

    Raises:
        RuntimeError: if the worker exits non-zero (with the tail of its stderr).
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(ROOT),
    }
    try:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True, text=True, env=env, check=False, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows (union of their keys as columns) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def fmt(value: Any) -> str:
    """A table cell: 4 significant digits for floats, blank for None."""
    if isinstance(value, float):
        if not np.isfinite(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows`` restricted to ``columns``."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "-|-".join("-" * w for w in widths)
    body = [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


# --------------------------------------------------------------------------------------------
# A SQLite project with an active checkpoint, for end-to-end benchmarks
# --------------------------------------------------------------------------------------------


def seed_sqlite_project(
    workdir: Path,
    *,
    embeddings: np.ndarray,
    probs: np.ndarray,
    labeled: np.ndarray,
    labels: np.ndarray,
    queue_strategy: str = "margin",
) -> tuple[Any, int]:
    """Create a migrated SQLite database and artifact store under ``workdir`` holding one
    project seeded by :func:`seed_project`.

    Args:
        workdir: an empty folder (database ``q.db`` and data folder ``data/``).
        embeddings, probs, labeled, labels, queue_strategy: as in :func:`seed_project`.

    Returns:
        (the ``Settings`` pointing at it, the project id).
    """
    from app.config import Settings

    settings = Settings(
        data_dir=workdir / "data", database_url=f"sqlite+pysqlite:///{workdir / 'q.db'}",
        job_runner="inline",
    )
    project_id = seed_project(
        settings, embeddings=embeddings, probs=probs, labeled=labeled, labels=labels,
        queue_strategy=queue_strategy,
    )
    return settings, project_id


def seed_project(
    settings: Any,
    *,
    embeddings: np.ndarray,
    probs: np.ndarray,
    labeled: np.ndarray,
    labels: np.ndarray,
    queue_strategy: str = "margin",
    name: str = "bench",
) -> int:
    """Migrate ``settings.database_url`` (SQLite or PostgreSQL) and insert one ``vector``
    project whose pool is ``embeddings`` and whose active checkpoint (version 1) has
    ``probs.npy`` and ``embeddings.npy`` written through the artifact store under
    ``settings.data_dir``; label names are ``class_0`` .. ``class_{c-1}``.

    Items are inserted in bulk (50,000 rows per statement batch), not through the import API,
    so a 1,000,000-item pool takes seconds rather than the import job's minutes.

    Args:
        settings: the service ``Settings`` (database URL and data dir).
        embeddings: float32 ``[n, d]`` pool features (also the checkpoint's embeddings).
        probs: float32 ``[n, c]`` the checkpoint's class probabilities.
        labeled: bool ``[n]`` items that carry a human label.
        labels: int64 ``[n]`` class of each labeled item (ignored elsewhere).
        queue_strategy: the project's ``/next`` strategy.
        name: the project's name.

    Returns:
        The project id.
    """
    from sqlalchemy import insert

    from app.db import make_engine, make_sessionmaker
    from app.migrate import upgrade_to_head
    from app.models import Checkpoint, Item, ItemStatus, Project
    from app.storage import ArtifactStore, atomic_write_npy

    n, dim = embeddings.shape
    names = [f"class_{k}" for k in range(probs.shape[1])]
    upgrade_to_head(settings.database_url)
    engine = make_engine(settings)
    store = ArtifactStore(settings.data_dir)
    with make_sessionmaker(engine)() as session, session.begin():
        project = Project(
            name=name, task="multiclass", labels=names, modality="vector",
            embedder="vector", feature_dim=dim, pool_size=0, queue_strategy=queue_strategy,
            settings={},
        )
        session.add(project)
        session.flush()
        store.append_features(project.id, 0, np.asarray(embeddings, dtype=np.float32))
        for start in range(0, n, 50_000):
            session.execute(insert(Item), [
                {"project_id": project.id, "external_id": f"x{p}", "position": p,
                 "text": f"item {p}", "payload": {}, "meta": {},
                 "status": ItemStatus.LABELED if labeled[p] else ItemStatus.UNLABELED,
                 "labels": [names[labels[p]]] if labeled[p] else None,
                 "label_source": "human" if labeled[p] else None}
                for p in range(start, min(n, start + 50_000))
            ])
        folder = store.checkpoint_dir(project.id, 1)
        atomic_write_npy(folder / "probs.npy", np.asarray(probs, dtype=np.float32))
        atomic_write_npy(folder / "embeddings.npy", np.asarray(embeddings, dtype=np.float32))
        checkpoint = Checkpoint(
            project_id=project.id, version=1, path=str(folder), pool_size=n,
            n_labeled=int(labeled.sum()),
        )
        session.add(checkpoint)
        session.flush()
        project.pool_size = n
        project.active_checkpoint_id = checkpoint.id
        project_id = project.id
    engine.dispose()
    return project_id
