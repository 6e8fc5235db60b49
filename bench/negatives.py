"""Benchmark: Quarry's hard-negative mining vs sentence-transformers, and flat / HNSW / IVF
indexes at 100k and 1M vectors.

Data (say which in every table):

- ``banking77`` (real): MiniLM (all-MiniLM-L6-v2) embeddings of Banking77; the corpus is the
  train split (10,003 texts), the anchors are the test split (3,080 texts), each paired with a
  positive: a random train text of the same intent. A mined negative is a *false negative* when
  it has the anchor's intent.
- ``banking77x10`` (embedding-like, 100k x 100k): every real train vector copied 10 times and
  every test vector 33 times (first 100,000 kept), each copy plus Gaussian noise of L2 norm 0.5,
  renormalized; copies keep their text's intent.
- index sizes 100k / 1M: real train vectors plus the same noise, renormalized (never uniform
  noise); queries are noisy copies of real test vectors.

Both miners get the same embeddings (MiniLM vectors are computed once and cached under
``bench/out/``; sentence-transformers receives them through a tiny model object whose encode
returns the cached rows) and the same settings: k = 10 negatives per anchor, the anchor's own
positive excluded, the same margins / ceilings / windows, the same (anchor, positive) pairs
(``positive_positions``: the margins compare with that pair's similarity, as in
sentence-transformers; ``exclude_same_label=False`` unless a config labels part of the corpus).
Quarry searches exactly as deep as sentence-transformers does (``max_candidates`` =
its ``range_max + 1``; :func:`st_search_depth`), so both look at the same neighbours;
Quarry's ``range_max`` still counts surviving candidates, not raw ranks. The Quarry-only
configurations search without a cap (one deeper re-search fills ``k``). The ``negatives``
column shows how many negatives each returned. The mining sets are generated once by the
parent into ``bench/out/mining_<dataset>_vectors.npy`` (corpus rows, then anchor rows) and
both methods memory-map that same file (``np.load(mmap_mode="r")``). Each method runs in its
own fresh subprocess (peak memory = ``ru_maxrss`` of that process, resident file pages
included; "delta" subtracts the process's RSS after loading the data; only the
sentence-transformers worker imports torch, which it runs on); timings (wall and
``time.process_time`` CPU) are medians of ``--repeats`` runs. ``negatives_ratios.csv`` gives
Quarry / sentence-transformers throughput and peak-memory ratios per shared configuration.

Usage::

    nice -n 10 .venv/bin/python bench/negatives.py --quick      # real set + 100k indexes
    nice -n 10 .venv/bin/python bench/negatives.py              # + 100k mining, 1M indexes
    nice -n 10 .venv/bin/python bench/negatives.py --skip-mining --sizes 1000000  # one part

Writes ``bench/out/negatives_mining.csv``, ``bench/out/negatives_index.csv`` (and PNGs when
matplotlib is available).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
OUT = common.OUT
NOISE = common.NOISE
K = 10
MINE_ANCHORS = 10_000  # the target: 10k anchors against the 1M pool, k = 10, in <= 20 s

# name -> (sentence-transformers kwargs, Quarry kwargs); same settings on both sides
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "top": ({}, {}),
    "top+abs_margin0.05": ({"absolute_margin": 0.05}, {"margin": 0.05}),
    "top+rel_margin0.05": ({"relative_margin": 0.05}, {"relative_margin": 0.05}),
    "top+range_min5+max0.9": (
        {"range_min": 5, "max_score": 0.9},
        {"range_min": 5, "max_similarity": 0.9},
    ),
    "random+range100": (
        {"sampling_strategy": "random", "range_max": 100},
        {"sampling": "random", "range_max": 100},
    ),
}
QUARRY_ONLY: dict[str, dict[str, Any]] = {
    "semi-hard0.1": {"sampling": "semi-hard", "semi_hard_margin": 0.1},
    "top+abs_margin0.05+10%labeled": {"margin": 0.05, "_labeled_fraction": 0.1},
    # the active-learning state: 10% labeled and a classifier trained on them (its probabilities
    # stand in for the active checkpoint's probs.npy; training time is not counted)
    "top+abs_margin0.05+10%labeled+model0.2": {
        "margin": 0.05,
        "_labeled_fraction": 0.1,
        "max_predicted_probability": 0.2,
    },
}
SHARED_AT_100K = ("top", "top+abs_margin0.05", "random+range100")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def noisy_copies(
    vectors: np.ndarray, copies: int, *, seed: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` noisy copies of each row (at most ``limit``): :func:`common.noisy_copies`."""
    total = len(vectors) * copies if limit is None else min(limit, len(vectors) * copies)
    return common.noisy_copies(vectors, total, seed=seed, noise=NOISE)


def _generate_mining_set(name: str) -> dict[str, np.ndarray]:
    """Corpus, anchors, each anchor's positive row, and intents, for a mining dataset."""
    data = common.banking77()
    if name == "banking77":
        corpus, corpus_src = data["train_vectors"], np.arange(len(data["train_vectors"]))
        anchors, anchor_src = data["test_vectors"], np.arange(len(data["test_vectors"]))
    elif name == "banking77x10":
        corpus, corpus_src = noisy_copies(data["train_vectors"], 10, seed=1)
        anchors, anchor_src = noisy_copies(data["test_vectors"], 33, seed=2, limit=100_000)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    corpus_intents = data["train_intents"][corpus_src]
    anchor_intents = data["test_intents"][anchor_src]
    rng = np.random.default_rng(3)
    by_intent = {i: np.flatnonzero(corpus_intents == i) for i in np.unique(corpus_intents)}
    positives = np.array([rng.choice(by_intent[i]) for i in anchor_intents], dtype=np.int64)
    return {
        "vectors": np.concatenate([corpus, anchors]).astype(np.float32),
        "positives": positives,
        "corpus_intents": corpus_intents,
        "anchor_intents": anchor_intents,
    }


def mining_set(name: str) -> dict[str, np.ndarray]:
    """A mining dataset, generated once into ``bench/out/`` and memory-mapped from there.

    Returns:
        ``vectors`` float32 ``[n_corpus + n_anchors, d]`` (read-only memory map: corpus rows,
        then anchor rows), ``corpus`` / ``anchors`` (views of it), ``positives`` int64
        ``[n_anchors]`` (corpus rows), ``corpus_intents`` / ``anchor_intents`` int64.
    """
    vectors_path = OUT / f"mining_{name}_vectors.npy"
    meta_path = OUT / f"mining_{name}_meta.npz"
    if not (vectors_path.exists() and meta_path.exists()):
        generated = _generate_mining_set(name)
        np.save(vectors_path, generated.pop("vectors"))
        np.savez(meta_path, **generated)
        del generated
    with np.load(meta_path) as meta:
        out = {key: meta[key] for key in meta.files}
    vectors = np.load(vectors_path, mmap_mode="r")
    n_corpus = len(out["corpus_intents"])
    return {**out, "vectors": vectors, "corpus": vectors[:n_corpus], "anchors": vectors[n_corpus:]}


# --------------------------------------------------------------------------------------------
# Mining workers (one subprocess per method and configuration)
# --------------------------------------------------------------------------------------------


def _false_negative_rate(
    negatives: np.ndarray, anchor_intents: np.ndarray, corpus_intents
) -> float:
    valid = negatives >= 0
    same = corpus_intents[np.where(valid, negatives, 0)] == anchor_intents[:, None]
    return float((same & valid).sum() / max(valid.sum(), 1))


def st_search_depth(st_kwargs: dict[str, Any], k: int = K, max_positives: int = 1) -> int:
    """How many neighbours sentence-transformers searches per anchor for these settings:
    ``range_max + max_positives``, with its default ``range_max`` (``range_min + 10 * k +
    max_positives`` when a margin or ceiling is set, else ``range_min + k + max_positives``)."""
    range_min = int(st_kwargs.get("range_min", 0))
    range_max = st_kwargs.get("range_max")
    if range_max is None:
        filtered = any(
            st_kwargs.get(key) is not None
            for key in ("absolute_margin", "relative_margin", "max_score")
        )
        range_max = range_min + (10 * k if filtered else k) + max_positives
    return int(range_max) + max_positives


def worker_quarry(dataset: str, config: str, repeats: int) -> dict[str, Any]:
    from app.sampling.hard_negatives import mine_hard_negatives
    from app.services.indexing import IndexConfig, build

    data = mining_set(dataset)
    if config in CONFIGS:  # search as deep as sentence-transformers does, no deeper
        params = {**CONFIGS[config][1], "max_candidates": st_search_depth(CONFIGS[config][0])}
    else:
        params = dict(QUARRY_ONLY[config])
    labeled_fraction = params.pop("_labeled_fraction", 0.0)
    n_corpus, n_anchors = len(data["corpus"]), len(data["anchors"])
    vectors = data["vectors"]  # corpus rows then anchor rows, memory-mapped: no copy
    labels = np.full(n_corpus + n_anchors, -1, dtype=np.int64)
    labels[data["positives"]] = data["corpus_intents"][data["positives"]]
    if labeled_fraction:  # the active-learning state: some corpus items carry human labels
        rng = np.random.default_rng(4)
        chosen = rng.choice(n_corpus, size=int(labeled_fraction * n_corpus), replace=False)
        labels[chosen] = data["corpus_intents"][chosen]
        if "max_predicted_probability" in params:
            from sklearn.linear_model import LogisticRegression

            classifier = LogisticRegression(max_iter=300).fit(
                data["corpus"][chosen], data["corpus_intents"][chosen]
            )
            probs = np.zeros((n_corpus, int(data["corpus_intents"].max()) + 1), dtype=np.float32)
            probs[:, classifier.classes_] = classifier.predict_proba(data["corpus"])
            params["probs"] = probs
    base = common.current_rss_mb()
    index_config = IndexConfig(exact_below=50_000, approximate="ivf", recall_target=0.95)
    times, cpu_times, build_times, result, kind = [], [], [], None, ""
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        index, meta = build(data["corpus"], index_config)
        built = time.perf_counter()
        result = mine_hard_negatives(
            index,
            vectors,
            anchor_positions=np.arange(n_corpus, n_corpus + n_anchors),
            labels=labels,
            anchor_labels=data["anchor_intents"],
            k=K,
            exclude_same_label=bool(labeled_fraction),
            rng=np.random.default_rng(0),
            positive_positions=data["positives"],
            **params,
        )
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        build_times.append(built - started)
        kind = f"{meta['kind']} r@10={meta['recall_at_10']:.3f}"
        del index
    assert result is not None
    return {
        "n_anchors": n_anchors,
        "n_corpus": n_corpus,
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu_times),
        "index_seconds": statistics.median(build_times),
        "negatives": int((result.negative_positions >= 0).sum()),
        "fn_rate": _false_negative_rate(
            result.negative_positions, data["anchor_intents"], data["corpus_intents"]
        ),
        "peak_rss_mb": common.peak_rss_mb(),
        "base_rss_mb": base,
        "index": kind,
    }


class CachedEmbeddings:
    """The parts of a SentenceTransformer that ``mine_hard_negatives`` calls, answering with
    precomputed, L2-normalized vectors looked up by text (here: row ids as strings)."""

    def __init__(self, rows: dict[str, np.ndarray]) -> None:
        import torch

        self._rows = rows
        self.device = torch.device("cpu")
        self.model_card_data = SimpleNamespace(base_model=None)
        self._dim = next(iter(rows.values())).shape[1]

    def _lookup(self, texts: list[str]) -> np.ndarray:
        prefix = texts[0][0]
        ids = np.fromiter((int(t[1:]) for t in texts), dtype=np.int64, count=len(texts))
        return self._rows[prefix][ids]

    def encode_document(self, texts: list[str], **_: Any) -> np.ndarray:
        return self._lookup(texts)

    def encode_query(self, texts: list[str], **_: Any) -> np.ndarray:
        return self._lookup(texts)

    def get_embedding_dimension(self) -> int:
        return int(self._dim)

    def similarity(self, a: Any, b: Any) -> Any:
        import torch

        return torch.as_tensor(a) @ torch.as_tensor(b).T

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        import torch

        return (torch.as_tensor(a) * torch.as_tensor(b)).sum(dim=-1)


def worker_st(dataset: str, config: str, repeats: int) -> dict[str, Any]:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    data = mining_set(dataset)
    n_corpus, n_anchors = len(data["corpus"]), len(data["anchors"])
    model = CachedEmbeddings({"c": data["corpus"], "a": data["anchors"]})
    corpus = [f"c{i}" for i in range(n_corpus)]
    pairs = Dataset.from_dict(
        {
            "anchor": [f"a{i}" for i in range(n_anchors)],
            "positive": [f"c{i}" for i in data["positives"].tolist()],
        }
    )
    base = common.current_rss_mb()
    times, cpu_times, mined = [], [], None
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        mined = mine_hard_negatives(
            pairs,
            model,  # type: ignore[arg-type]
            corpus=corpus,
            num_negatives=K,
            use_faiss=True,
            verbose=False,
            output_format="triplet",
            **CONFIGS[config][0],
        )
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    assert mined is not None
    anchors = np.array([int(a[1:]) for a in mined["anchor"]], dtype=np.int64)
    negatives = np.array([int(n[1:]) for n in mined["negative"]], dtype=np.int64)
    same = data["corpus_intents"][negatives] == data["anchor_intents"][anchors]
    return {
        "n_anchors": n_anchors,
        "n_corpus": n_corpus,
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu_times),
        "index_seconds": None,
        "negatives": int(len(negatives)),
        "fn_rate": float(same.mean()) if len(same) else 0.0,
        "peak_rss_mb": common.peak_rss_mb(),
        "base_rss_mb": base,
        "index": "flat (IndexFlatIP)",
    }


# --------------------------------------------------------------------------------------------
# Index workers
# --------------------------------------------------------------------------------------------


def index_vectors(size: int) -> tuple[Path, Path]:
    """Embedding-like corpus of ``size`` rows and 10k queries, cached as .npy (memory-mapped)."""
    corpus_path = OUT / f"index_corpus_{size}.npy"
    query_path = OUT / "index_queries_10000.npy"
    data = common.banking77()
    if not corpus_path.exists():
        copies = -(-size // len(data["train_vectors"]))
        corpus, _ = noisy_copies(data["train_vectors"], copies, seed=5, limit=size)
        np.save(corpus_path, corpus)
        del corpus
    if not query_path.exists():
        queries, _ = noisy_copies(data["test_vectors"], 4, seed=6, limit=10_000)
        np.save(query_path, queries)
    return corpus_path, query_path


def _build_config(kind: str, index: Any) -> str:
    """The build-time configuration of a default-built index, for the table."""
    from app.sampling import vector_index

    if kind == "hnsw":
        return f"M={vector_index.DEFAULT_HNSW_M} efC={vector_index.DEFAULT_EF_CONSTRUCTION}"
    if kind == "ivf":
        return f"nlist={index.nlist} train<={vector_index.IVF_TRAIN_POINTS_PER_CELL}/cell"
    return "exact"


def worker_index(kind: str, size: int, repeats: int, build_repeats: int) -> dict[str, Any]:
    import faiss

    from app.sampling.vector_index import VectorIndex, calibrate

    corpus_path, query_path = index_vectors(size)
    corpus = np.load(corpus_path, mmap_mode="r")
    queries = np.load(query_path)
    truth_path = OUT / f"index_truth_{size}.npy"
    base = common.current_rss_mb()
    build_times, build_cpu, index, recall_cal = [], [], None, None
    for _ in range(build_repeats):
        del index
        started, cpu_started = time.perf_counter(), time.process_time()
        index = VectorIndex.build(corpus, kind=kind)  # the service's default configuration
        build_times.append(time.perf_counter() - started)
        build_cpu.append(time.process_time() - cpu_started)
    assert index is not None
    calibrate_seconds = 0.0
    if kind != "flat":
        started = time.perf_counter()
        recall_cal = calibrate(index, corpus, target=0.95, sample_size=200)
        calibrate_seconds = time.perf_counter() - started
    search_times, positions = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        _, positions = index.search(queries, 10)
        search_times.append(time.perf_counter() - started)
    assert positions is not None
    if kind == "flat":
        np.save(truth_path, positions)
        recall = 1.0
    else:
        truth = np.load(truth_path)
        recall = float((positions[:, :, None] == truth[:, None, :]).any(axis=2).mean())
    seconds = statistics.median(search_times)
    sweep = {}
    if kind != "flat":  # the knob's trade-off on the real (out-of-pool) queries
        truth = np.load(truth_path)
        key = "ef_search" if kind == "hnsw" else "nprobe"
        for value in (32, 64, 128, 256) if kind == "hnsw" else (2, 4, 8, 16):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                _, found = index.search(queries, 10, **{key: value})
                times.append(time.perf_counter() - started)
            hit = float((found[:, :, None] == truth[:, None, :]).any(axis=2).mean())
            sweep[f"{key}={value}"] = f"{statistics.median(times):.2f}s r={hit:.3f}"
    # 10k indexed anchors mined against the whole index, k=10, no filters: the negatives are
    # each anchor's 10 nearest other items. The flat index's result is the exact reference
    # (mined once: it is the slow baseline); the others report recall@10 against it.
    from app.sampling.hard_negatives import mine_hard_negatives

    anchors = np.sort(np.random.default_rng(7).choice(size, MINE_ANCHORS, replace=False))
    no_labels = np.full(size, -1, dtype=np.int64)
    mine_truth_path = OUT / f"index_mine_truth_{size}.npy"
    mine_times, mine_cpu, mined = [], [], None
    for _ in range(1 if kind == "flat" else repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        mined = mine_hard_negatives(
            index,
            corpus,
            anchor_positions=anchors,
            labels=no_labels,
            k=10,
            rng=np.random.default_rng(0),
        )
        mine_times.append(time.perf_counter() - started)
        mine_cpu.append(time.process_time() - cpu_started)
    assert mined is not None
    mine_seconds = statistics.median(mine_times)
    if kind == "flat":
        np.save(mine_truth_path, mined.negative_positions)
        mine_recall = 1.0
    else:
        exact = np.load(mine_truth_path)
        valid = exact[:, None, :] >= 0
        hits = (mined.negative_positions[:, :, None] == exact[:, None, :]) & valid
        mine_recall = float(hits.any(axis=2).sum() / max(int((exact >= 0).sum()), 1))
    return {
        "kind": kind,
        "size": size,
        "build_seconds": statistics.median(build_times),
        "build_cpu_seconds": statistics.median(build_cpu),
        "build_repeats": build_repeats,
        "calibrate_seconds": calibrate_seconds,
        "build_config": _build_config(kind, index),
        "search_params": json.dumps(index.search_params()),
        "recall_at_10_sample": recall_cal,
        "queries": len(queries),
        "search_seconds": seconds,
        "qps": len(queries) / seconds,
        "recall_at_10": recall,
        "mine_10k_anchors_seconds": mine_seconds,
        "mine_cpu_seconds": statistics.median(mine_cpu),
        "mine_anchors_per_s": MINE_ANCHORS / mine_seconds,
        "mine_recall_at_10": mine_recall,
        "sweep": json.dumps(sweep),
        "peak_rss_mb": common.peak_rss_mb(),
        "base_rss_mb": base,
        "threads": faiss.omp_get_max_threads(),
    }


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _run_worker(args: list[str], threads: int) -> dict[str, Any]:
    result = common.run_worker(
        Path(__file__), ["--threads", str(threads), *args], threads=threads, timeout_s=24 * 3600.0
    )
    if result is None:
        raise RuntimeError(f"worker {args} ran past a day")
    return result


def run_mining(
    datasets: list[str], repeats: int, threads: int, only: list[str] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for dataset in datasets:
        configs = [*CONFIGS, *QUARRY_ONLY]
        if dataset != "banking77":
            configs = [c for c in configs if c in SHARED_AT_100K or c in QUARRY_ONLY]
        if only:
            configs = [c for c in configs if c in only]
        for config in configs:
            methods = ["quarry", "st"] if config in CONFIGS else ["quarry"]
            for method in methods:
                print(f"mining {dataset} {config} {method} ...", flush=True)
                result = _run_worker(
                    [
                        "--worker",
                        "mine",
                        "--method",
                        method,
                        "--dataset",
                        dataset,
                        "--config",
                        config,
                        "--repeats",
                        str(repeats),
                    ],
                    threads,
                )
                rows.append(
                    {
                        "dataset": dataset,
                        "config": config,
                        "method": "quarry" if method == "quarry" else "sentence-transformers",
                        "anchors": result["n_anchors"],
                        "corpus": result["n_corpus"],
                        "seconds": result["seconds"],
                        "cpu_seconds": result["cpu_seconds"],
                        "anchors_per_s": result["n_anchors"] / result["seconds"],
                        "index_seconds": result["index_seconds"],
                        "index": result["index"],
                        "negatives": result["negatives"],
                        "fn_rate": result["fn_rate"],
                        "peak_rss_mb": result["peak_rss_mb"],
                        "delta_rss_mb": result["peak_rss_mb"] - result["base_rss_mb"],
                    }
                )
    return rows


def mining_ratios(mining: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, config) run by both methods: Quarry's throughput and peak-memory
    ratios to sentence-transformers', with both false-negative rates."""
    by_key = {(r["dataset"], r["config"], r["method"]): r for r in mining}
    rows = []
    for (dataset, config, method), quarry in by_key.items():
        st = by_key.get((dataset, config, "sentence-transformers"))
        if method != "quarry" or st is None:
            continue
        rows.append(
            {
                "dataset": dataset,
                "config": config,
                "throughput_ratio": quarry["anchors_per_s"] / st["anchors_per_s"],
                "cpu_ratio": st["cpu_seconds"] / max(quarry["cpu_seconds"], 1e-9),
                "peak_rss_ratio": quarry["peak_rss_mb"] / st["peak_rss_mb"],
                "delta_rss_ratio": quarry["delta_rss_mb"] / max(st["delta_rss_mb"], 1e-9),
                "fn_rate_quarry": quarry["fn_rate"],
                "fn_rate_st": st["fn_rate"],
            }
        )
    return rows


def run_indexes(
    sizes: list[int], repeats: int, threads: int, kinds: tuple[str, ...] = ("ivf", "hnsw")
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        index_vectors(size)  # generate once, before the workers memory-map it
        for kind in ("flat", *kinds):  # flat first: it writes the ground truth
            build_repeats = repeats if size <= 100_000 or kind == "flat" else 1
            print(f"index {kind} {size} ...", flush=True)
            result = _run_worker(
                [
                    "--worker",
                    "index",
                    "--kind",
                    kind,
                    "--size",
                    str(size),
                    "--repeats",
                    str(repeats),
                    "--build-repeats",
                    str(build_repeats),
                ],
                threads,
            )
            rows.append({"vectors": "MiniLM Banking77 + noise, renormalized", **result})
    return rows


def _plots(mining: list[dict[str, Any]], indexes: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if mining:
        fig, ax = plt.subplots(figsize=(7, 4))
        for method, marker in (("quarry", "o"), ("sentence-transformers", "s")):
            pts = [r for r in mining if r["method"] == method]
            ax.scatter(
                [r["anchors_per_s"] for r in pts],
                [r["fn_rate"] for r in pts],
                marker=marker,
                label=method,
            )
        ax.set_xscale("log")
        ax.set_xlabel("anchors / s")
        ax.set_ylabel("false-negative rate")
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / "negatives_mining.png", dpi=120)
    if indexes:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in indexes:
            ax.scatter(r["qps"], r["recall_at_10"], label=f"{r['kind']} {r['size']:,}")
        ax.set_xscale("log")
        ax.set_xlabel("queries / s")
        ax.set_ylabel("recall@10 vs exact")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / "negatives_index.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="real Banking77 + 100k indexes only")
    parser.add_argument(
        "--datasets", nargs="+", choices=["banking77", "banking77x10"], help="mining sets to run"
    )
    parser.add_argument("--sizes", nargs="+", type=int, help="index sizes to run")
    parser.add_argument(
        "--configs", nargs="+", choices=[*CONFIGS, *QUARRY_ONLY], help="mining configs to run"
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=["ivf", "hnsw"],
        default=["ivf", "hnsw"],
        help="approximate indexes to compare with flat (always run: it is the reference)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-mining", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--worker", choices=["mine", "index"])
    parser.add_argument("--method", choices=["quarry", "st"])
    parser.add_argument("--dataset")
    parser.add_argument("--config")
    parser.add_argument("--kind")
    parser.add_argument("--size", type=int)
    parser.add_argument("--build-repeats", type=int, default=1)
    args = parser.parse_args()

    if args.worker:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        if args.method == "st":  # only sentence-transformers runs on torch; Quarry's miner does not
            import torch  # (importing it would add ~200 MiB to Quarry's peak memory)

            torch.set_num_threads(args.threads)
        if args.worker == "mine":
            fn = worker_quarry if args.method == "quarry" else worker_st
            result = fn(args.dataset, args.config, args.repeats)
        else:
            result = worker_index(args.kind, args.size, args.repeats, args.build_repeats)
        print(json.dumps(result))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    common.banking77()  # embed once in the parent, so workers only load the cache
    mining, indexes = [], []
    if not args.skip_mining:
        datasets = args.datasets or (["banking77"] if args.quick else ["banking77", "banking77x10"])
        for dataset in datasets:  # generate once here, so workers only memory-map the files
            mining_set(dataset)
        mining = run_mining(datasets, args.repeats, args.threads, args.configs)
        common.write_csv(OUT / "negatives_mining.csv", mining)
        print()
        print(
            f"Mining, k={K}, {args.threads} threads, median of {args.repeats} "
            "(banking77: real MiniLM; banking77x10: real + noise copies)"
        )
        print(
            common.table(
                mining,
                [
                    "dataset",
                    "config",
                    "method",
                    "anchors",
                    "corpus",
                    "seconds",
                    "cpu_seconds",
                    "anchors_per_s",
                    "index_seconds",
                    "negatives",
                    "fn_rate",
                    "peak_rss_mb",
                    "delta_rss_mb",
                    "index",
                ],
            )
        )
        ratios = mining_ratios(mining)
        if ratios:
            common.write_csv(OUT / "negatives_ratios.csv", ratios)
            print()
            print("Quarry / sentence-transformers (throughput: higher is better; memory: lower)")
            print(common.table(ratios, list(ratios[0])))
    if not args.skip_index:
        sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
        indexes = run_indexes(sizes, args.repeats, args.threads, tuple(args.kinds))
        common.write_csv(OUT / "negatives_index.csv", indexes)
        print()
        print(
            f"Indexes: 10k queries, k=10, {args.threads} threads; vectors: real MiniLM "
            "Banking77 + noise, renormalized; search median of repeats"
        )
        print(
            common.table(
                indexes,
                [
                    "kind",
                    "size",
                    "build_seconds",
                    "build_cpu_seconds",
                    "build_repeats",
                    "build_config",
                    "calibrate_seconds",
                    "search_params",
                    "search_seconds",
                    "qps",
                    "recall_at_10",
                    "mine_10k_anchors_seconds",
                    "mine_cpu_seconds",
                    "mine_recall_at_10",
                    "peak_rss_mb",
                    "sweep",
                ],
            )
        )
    _plots(mining, indexes)


if __name__ == "__main__":
    main()
