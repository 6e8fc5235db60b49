"""Benchmark: checkpoint calibration and metrics on real data, against the usual tools.

Quality (per dataset and seed): the job's path on a labeled seed set. The labeled rows are split
by :func:`app.ml.evaluation.plan_validation` (item-id hash, 20 %), the default MLP head
(``fit_supervised``, ``TrainConfig()``) trains on the rest, and a temperature is fit on the
hold-out's probabilities by

- ``quarry``: :func:`app.ml.calibration.fit_temperature` (Newton on 1/T, numpy), and
- ``torch_lbfgs``: the reference recipe of Guo et al.'s code (``gpleiss/temperature_scaling``):
  ``torch.optim.LBFGS`` on the NLL of ``logits / T`` (lr 0.01, max_iter 50), what a user
  would otherwise copy.

Reported: the test-set ECE (15 bins) and NLL before and after scaling, both temperatures, and
the hold-out's cross-fitted ECE estimate next to the test ECE it should predict.

Data (real): ``banking77`` (MiniLM vectors, train split as pool, test split as test, 25 labels
per class), ``digits`` (sklearn, 30 % stratified test, 25 per class), ``fashion`` (Fashion-MNIST
pixels, 5,000-image pool, 2,000 test images, 25 per class), ``sms_spam`` (MiniLM, 30 % test,
300 random labels).

Speed (median of ``--repeats``): fitting T on 100,000 x 77 logits (Banking77 test logits tiled),
ours vs torch LBFGS; and the metrics of 1,000,000 predictions over 77 classes,
:func:`app.ml.metrics.classification_report` (accuracy, macro/per-class F1, ECE, NLL) vs
scikit-learn's ``accuracy_score`` + ``f1_score(average=None)`` + ``f1_score(average="macro")``.

Usage::

    nice -n 10 .venv/bin/python bench/calibration.py --quick   # 1 seed, banking77 + digits
    nice -n 10 .venv/bin/python bench/calibration.py           # 3 seeds, 4 datasets

Writes ``bench/out/calibration.csv``, ``calibration_speed.csv`` and ``calibration.png`` (when
matplotlib is available).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import OUT, banking77, digits, fashion_mnist, sms_spam, table, write_csv  # noqa: E402

from app.ml.calibration import apply_temperature, fit_temperature, logits_from_probs  # noqa: E402
from app.ml.evaluation import calibrate_and_score, plan_validation  # noqa: E402
from app.ml.metrics import (  # noqa: E402
    classification_report,
    expected_calibration_error,
    negative_log_likelihood,
)


def torch_lbfgs_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Guo et al.'s reference: LBFGS on the NLL of logits / T, starting at T = 1.5."""
    import torch

    z = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    target = torch.from_numpy(np.asarray(y, dtype=np.int64))
    temperature = torch.nn.Parameter(torch.ones(1) * 1.5)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=50)
    loss_fn = torch.nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(z / temperature, target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(temperature.detach())


def _datasets(names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    from sklearn.model_selection import train_test_split

    for name in names:
        if name == "banking77":
            b = banking77()
            out[name] = {
                "x": b["train_vectors"],
                "y": b["train_intents"],
                "xt": b["test_vectors"],
                "yt": b["test_intents"],
                "k": 25,
            }
        elif name == "digits":
            x, y = digits()
            x, xt, y, yt = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
            out[name] = {"x": x, "y": y, "xt": xt, "yt": yt, "k": 25}
        elif name == "fashion":
            x, y = fashion_mnist(7000, seed=0)
            out[name] = {"x": x[:5000], "y": y[:5000], "xt": x[5000:], "yt": y[5000:], "k": 25}
        elif name == "sms_spam":
            x, y = sms_spam()
            x, xt, y, yt = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
            out[name] = {"x": x, "y": y, "xt": xt, "yt": yt, "n": 300}
    return out


def _seed_set(data: dict[str, Any], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = data["y"]
    if "k" in data:
        picks = [rng.choice(np.flatnonzero(y == c), data["k"], replace=False) for c in np.unique(y)]
        return np.sort(np.concatenate(picks))
    return np.sort(rng.choice(y.size, data["n"], replace=False))


def quality(names: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (dataset, seed)."""
    from app.ml.predict import predict_proba
    from app.ml.train import TrainConfig, fit_supervised

    rows = []
    for name, data in _datasets(names).items():
        n_classes = int(max(data["y"].max(), data["yt"].max()) + 1)
        names_ = [str(c) for c in range(n_classes)]
        for seed in seeds:
            labeled = _seed_set(data, seed)
            y_l = data["y"][labeled]
            # the pool row index stands in for the item id; shuffle it per seed (ids are arbitrary)
            ids = np.random.default_rng(seed + 1000).permutation(data["y"].size)[labeled]
            plan = plan_validation(ids, y_l, task="multiclass", fraction=0.2, min_holdout=50)
            if plan.mode != "holdout":
                print(f"{name} seed {seed}: hold-out too small ({plan.mode}); skipped")
                continue
            tr, ho = plan.train_rows, plan.holdout_rows
            config = TrainConfig(task="multiclass")
            net = fit_supervised(
                data["x"][labeled[tr]],
                y_l[tr],
                config=config,
                seed=seed,
                device="cpu",
                n_classes=n_classes,
            )
            p_hold = predict_proba(net, data["x"][labeled[ho]], device="cpu")
            p_test = predict_proba(net, data["xt"], device="cpu")
            t_ours, report = calibrate_and_score(
                p_hold, y_l[ho], label_names=names_, task="multiclass", seed=seed
            )
            t_ref = torch_lbfgs_temperature(logits_from_probs(p_hold), y_l[ho])
            cal_ours = apply_temperature(p_test, t_ours)
            cal_ref = apply_temperature(p_test, t_ref)
            test = classification_report(
                data["yt"], cal_ours, label_names=names_, task="multiclass"
            )
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "n_labeled": int(labeled.size),
                    "n_holdout": int(ho.size),
                    "accuracy": test["accuracy"],
                    "macro_f1": test["macro_f1"],
                    "t_quarry": t_ours,
                    "t_torch_lbfgs": t_ref,
                    "ece_uncal": expected_calibration_error(p_test, data["yt"]),
                    "ece_quarry": test["ece"],
                    "ece_torch_lbfgs": expected_calibration_error(cal_ref, data["yt"]),
                    "nll_uncal": negative_log_likelihood(p_test, data["yt"]),
                    "nll_quarry": test["nll"],
                    "nll_torch_lbfgs": negative_log_likelihood(cal_ref, data["yt"]),
                    "holdout_ece_estimate": report["ece"],
                }
            )
            print(table(rows[-1:], list(rows[-1])), flush=True)
    return rows


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(repeats: int) -> list[dict[str, Any]]:
    """Temperature fitting and metrics timings against torch LBFGS and scikit-learn."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from app.ml.predict import predict_proba
    from app.ml.train import TrainConfig, fit_supervised

    torch.set_num_threads(2)
    b = banking77()
    net = fit_supervised(
        b["train_vectors"][:3000],
        b["train_intents"][:3000],
        config=TrainConfig(),
        seed=0,
        device="cpu",
        n_classes=77,
    )
    probs = predict_proba(net, b["test_vectors"], device="cpu")
    reps = -(-100_000 // probs.shape[0])
    logits = np.tile(logits_from_probs(probs), (reps, 1))[:100_000]
    y = np.tile(b["test_intents"], reps)[:100_000]
    rows = []
    t_ours = _median_time(lambda: fit_temperature(logits, y), repeats)
    t_ref = _median_time(lambda: torch_lbfgs_temperature(logits, y), repeats)
    rows.append(
        {
            "task": "fit temperature, 100k x 77",
            "quarry_s": t_ours,
            "baseline": "torch LBFGS",
            "baseline_s": t_ref,
            "speedup": t_ref / t_ours,
        }
    )
    big_p = np.tile(probs, (-(-1_000_000 // probs.shape[0]), 1))[:1_000_000]
    big_y = np.tile(b["test_intents"], -(-1_000_000 // probs.shape[0]))[:1_000_000]
    names = [str(c) for c in range(77)]
    t_m = _median_time(
        lambda: classification_report(big_y, big_p, label_names=names, task="multiclass"), repeats
    )

    def sk() -> None:
        pred = big_p.argmax(axis=1)
        accuracy_score(big_y, pred)
        f1_score(big_y, pred, average=None, labels=range(77), zero_division=0)
        f1_score(big_y, pred, average="macro", zero_division=0)

    t_sk = _median_time(sk, repeats)
    rows.append(
        {
            "task": "metrics, 1M x 77 (+ECE, NLL for quarry)",
            "quarry_s": t_m,
            "baseline": "sklearn acc + F1 (no ECE)",
            "baseline_s": t_sk,
            "speedup": t_sk / t_m,
        }
    )
    return rows


def _plot(rows: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sets = sorted({r["dataset"] for r in rows})
    keys = ["ece_uncal", "ece_quarry", "ece_torch_lbfgs", "holdout_ece_estimate"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    for i, key in enumerate(keys):
        means = [np.mean([r[key] for r in rows if r["dataset"] == s]) for s in sets]
        ax.bar(np.arange(len(sets)) + i * width, means, width, label=key)
    ax.set_xticks(np.arange(len(sets)) + 1.5 * width, sets)
    ax.set_ylabel("ECE (15 bins), test set")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "calibration.png", dpi=120)


def main() -> None:
    """Run the benchmark and write its CSV files and plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, banking77 + digits")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    names = (
        ["banking77", "digits"] if args.quick else ["banking77", "digits", "fashion", "sms_spam"]
    )
    seeds = [0] if args.quick else [0, 1, 2]
    rows = quality(names, seeds)
    write_csv(OUT / "calibration.csv", rows)
    columns = [
        "dataset",
        "seed",
        "n_holdout",
        "accuracy",
        "t_quarry",
        "t_torch_lbfgs",
        "ece_uncal",
        "ece_quarry",
        "ece_torch_lbfgs",
        "holdout_ece_estimate",
        "nll_uncal",
        "nll_quarry",
    ]
    print("\n" + table(rows, columns))
    _plot(rows)
    if not args.skip_speed:
        speed_rows = speed(args.repeats)
        write_csv(OUT / "calibration_speed.csv", speed_rows)
        print("\n" + table(speed_rows, list(speed_rows[0])))


if __name__ == "__main__":
    main()
