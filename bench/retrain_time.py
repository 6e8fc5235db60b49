"""Benchmark: the retrain of a 10k-labeled + 100k-unlabeled 384-d pool through the job's
training entry point (``fit_semi_supervised``, self-training, one round), with and without
the per-fit step cap ``TrainConfig.max_steps`` (target: <= 60 s on 2 cores), then the job's
scoring of the whole 110k pool (calibrated probabilities, embeddings, 10 float16 MC-dropout
samples; ``score_s``, the sklearn reference has none).

Data (real vectors with noise, say so in every table): Banking77's 10,003 train texts embedded
with MiniLM (all-MiniLM-L6-v2), cycled into 110,000 noisy copies (``common.noisy_copies``:
Gaussian noise of expected L2 norm 0.5, renormalized), each keeping its source's intent;
10,000 random copies are labeled, the other 100,000 are the unlabeled pool. Accuracy is
reported twice: on the job's own stratified hold-out (``metrics["accuracy"]``, what the
checkpoint records) and on Banking77's real test split (3,080 un-noised MiniLM vectors).

Reference: scikit-learn's ``SelfTrainingClassifier(LogisticRegression)`` (threshold 0.95, one
round), what a user would otherwise write, on the same arrays (``--no-sklearn`` skips it).

Each variant runs in a fresh subprocess with ``--threads`` torch threads (default 1, the
job's default ``QUARRY_TORCH_THREADS``, which leaves the second core to the API); wall seconds
and the child's CPU seconds (``resource.getrusage(RUSAGE_CHILDREN)``, all threads) are
reported, median over ``--repeats``. These nets are small (256-row batches): a second thread
barely shortens a fit on idle cores, and on a shared machine two OpenMP threads spin at every
barrier while the other is descheduled, so wall *and* CPU seconds inflate several-fold
(measured at load ~4: fit 80 s / 77 CPU s with 2 threads, 22 s with ``OMP_WAIT_POLICY=PASSIVE``,
11 s with 1 thread).

    nice -n 10 .venv/bin/python bench/retrain_time.py --repeats 1 --variants capped --no-sklearn

Writes ``bench/out/retrain_time.csv``.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402

N_LABELED = 10_000
N_TOTAL = 110_000
VARIANTS = ("uncapped", "capped", "sklearn")


def run_variant(variant: str, seed: int, threads: int = 1) -> dict[str, Any]:
    """One retrain in this process; returns accuracies and the job metrics' timing."""
    import torch

    torch.set_num_threads(threads)
    data = common.banking77()
    x, source = common.noisy_copies(data["train_vectors"], N_TOTAL, seed=seed)
    y = data["train_intents"][source]
    labeled = np.random.default_rng(seed).choice(N_TOTAL, N_LABELED, replace=False)
    mask = np.zeros(N_TOTAL, dtype=bool)
    mask[labeled] = True
    x_test, y_test = data["test_vectors"].astype(np.float32), data["test_intents"]
    started = time.perf_counter()
    if variant == "sklearn":
        from sklearn.linear_model import LogisticRegression
        from sklearn.semi_supervised import SelfTrainingClassifier

        y_st = np.where(mask, y, -1)
        clf = SelfTrainingClassifier(
            LogisticRegression(max_iter=1000), threshold=0.95, max_iter=1
        ).fit(x, y_st)
        clf.predict_proba(x[~mask])
        return {
            "holdout_accuracy": None,
            "test_accuracy": float((clf.predict(x_test) == y_test).mean()),
            "n_pseudo": int((clf.labeled_iter_ == 1).sum()),
            "fit_seconds": time.perf_counter() - started,
        }
    from app.ml.predict import embed, mc_dropout_proba, predict_proba
    from app.ml.semi_supervised import SemiSupervisedConfig, fit_semi_supervised
    from app.ml.train import TrainConfig

    config = TrainConfig(max_steps=None) if variant == "uncapped" else TrainConfig()
    result = fit_semi_supervised(
        x[mask],
        y[mask],
        x[~mask],
        config=config,
        ssl=SemiSupervisedConfig(method="self_training"),
        seed=seed,
        device="cpu",
        n_classes=77,
    )
    fitted = time.perf_counter()
    # what the job does next on the whole pool: probabilities, embeddings, 10 MC-dropout
    # samples stored as float16 (the temperature is a typical fitted value)
    predict_proba(result.net, x, temperature=1.3)
    embed(result.net, x)
    mc_dropout_proba(result.net, x, samples=10, seed=seed, temperature=1.3, dtype=np.float16)
    return {
        "holdout_accuracy": float(result.metrics["accuracy"]),
        "test_accuracy": float((predict_proba(result.net, x_test).argmax(1) == y_test).mean()),
        "n_pseudo": int(result.metrics["n_pseudo"]),
        "fit_seconds": fitted - started,
        "score_seconds": time.perf_counter() - fitted,
    }


def timed_child(variant: str, seed: int, threads: int = 1) -> dict[str, Any]:
    """Run one variant in a subprocess; wall and CPU seconds of that child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--seed",
            str(seed),
            "--threads",
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "variant": variant,
        "seed": seed,
        "wall_s": wall,
        "cpu_s": cpu,
        **json.loads(out.strip().splitlines()[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1, the job's default QUARRY_TORCH_THREADS; see the docstring for "
        "why 2 inflates both wall and CPU seconds on a shared machine)",
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.seed, args.threads)))
        return
    variants = [v for v in args.variants if not (args.no_sklearn and v == "sklearn")]
    rows = [timed_child(v, seed, args.threads) for seed in range(args.repeats) for v in variants]
    common.write_csv(common.OUT / "retrain_time.csv", rows)
    summary = []
    for v in variants:
        runs = [r for r in rows if r["variant"] == v]
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s")}
        summary.append(
            {
                "data": "MiniLM Banking77 + noise, 10k labeled + 100k unlabeled",
                "variant": v,
                "threads": args.threads,
                "wall_s": med["wall_s"],
                "cpu_s": med["cpu_s"],
                "holdout_acc": runs[0]["holdout_accuracy"],
                "test_acc": statistics.median(r["test_accuracy"] for r in runs),
                "n_pseudo": runs[0]["n_pseudo"],
                "fit_s": statistics.median(r["fit_seconds"] for r in runs),
                "score_s": statistics.median(r.get("score_seconds") or 0.0 for r in runs),
            }
        )
    base = next((s["cpu_s"] for s in summary if s["variant"] == "sklearn"), None)
    for s in summary:
        s["cpu_vs_sklearn"] = None if base is None else s["cpu_s"] / base
    common.write_csv(common.OUT / "retrain_time_summary.csv", summary)
    print(common.table(summary, list(summary[0])))


if __name__ == "__main__":
    main()
