"""Benchmark: simulated-oracle learning curves of the query strategies on real data, against
random sampling and against the ALiPy / modAL originals of the same strategies.

Datasets (all real; features fixed per dataset):

* ``digits``: sklearn's load_digits (1,797 8x8 images), pixels / 16; 75% pool, 25% test.
* ``banking77``: Banking77 intents (77 classes), all-MiniLM-L6-v2 embeddings (cached under
  ``bench/out/``); pool = train split (10,003), test = test split (3,080).
* ``sms_spam``: SMS Spam Collection (5,574 texts, 13% spam), MiniLM embeddings; 80% pool,
  20% test.
* ``fashion_mnist``: a uniform subsample of 6,000 train images as the pool and 2,000 t10k images
  as the test set (pixels / 255, then PCA to 50 dimensions fitted on the pool without labels, to
  keep the learner fast); documented here because it is a subsample.

Protocol (identical for every method): a random seed set (at least one item per class, then
uniform), then rounds: fit the learner on the labeled items, record test accuracy, score the
pool with the fitted learner (``predict_proba``), let the method pick the next batch up to the
next point of the dataset's label grid, reveal those labels (the simulated oracle). The learner
is fixed for everyone: scikit-learn ``LogisticRegression(C=10, max_iter=200)`` on the features.
Diversity / density strategies see the same features as ``embeddings``. Seeds 0..S-1 differ in
the seed set (and tie-breaking); every method gets the same seed sets.

Methods:

* ours: registered Quarry strategies (``random``, ``least_confidence``, ``margin``, ``entropy``,
  ``kcenter``, ``badge``, ``diverse_margin``, ``information_density``, ``typical``).
* ALiPy: registered ``alipy_margin`` / ``alipy_entropy`` / ``alipy_least_confident`` call ALiPy's
  ``QueryInstanceUncertainty`` on the whole pool; ``alipy_coreset`` is ALiPy's
  ``QueryInstanceCoresetGreedy`` through our adapter (at most 5,000 candidates, prefiltered by
  margin).
* modAL 0.4: ``modal:uncertainty`` / ``modal:margin`` / ``modal:entropy`` (``modAL.uncertainty``)
  and, only when named in ``--methods`` (it takes ~10 minutes per dataset here),
  ``modal:ranked_batch`` (``modAL.batch.uncertainty_batch_sampling``), called with the same
  fitted learner and pool features.

Reported per dataset and method (means over seeds): accuracy at each grid point; ``labels@95``:
labels needed for the mean curve to reach 95% of the full-data accuracy (the learner fitted on
the whole labeled pool), linearly interpolated between grid points (``>max`` when never);
``vs_random``: that divided by random's; ``auc``: area under the mean curve over the grid,
normalized by the label range (a mean accuracy); ``auc_sd``: its standard deviation across
seeds (the noise to compare methods against).

Runs single-threaded BLAS unless ``OMP_NUM_THREADS`` is set (the fits are small; extra threads
only spin on a shared 2-core machine).

Usage::

    nice -n 10 .venv/bin/python bench/label_efficiency.py --quick  # digits, sms_spam; 8 methods
    nice -n 10 .venv/bin/python bench/label_efficiency.py          # all four datasets, 3 seeds

Writes ``bench/out/label_efficiency_curves.csv`` (one row per dataset, method, seed and grid
point), ``bench/out/label_efficiency.csv`` (the summary) and ``label_efficiency.png``
(``--tag`` adds a suffix); the CSVs are rewritten after every dataset.
"""

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small fits: threads only spin on a shared machine

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

OURS = (
    "random", "least_confidence", "margin", "entropy", "kcenter", "badge", "diverse_margin",
    "information_density", "typical",
)
ALIPY = ("alipy_least_confident", "alipy_margin", "alipy_entropy", "alipy_coreset")
MODAL = ("modal:uncertainty", "modal:margin", "modal:entropy")
# modAL's ranked batch is O(batch x pool x d) in Python-level loops: ~10 min per dataset here,
# so it runs only when named (--methods ...,modal:ranked_batch)
OPTIONAL = ("modal:ranked_batch",)
QUICK_METHODS = ("random", "margin", "entropy", "kcenter", "badge", "typical",
                 "alipy_margin", "modal:margin")
# which original each of our strategies is compared with
ORIGINAL_OF = {
    "least_confidence": ("alipy_least_confident", "modal:uncertainty"),
    "margin": ("alipy_margin", "modal:margin"),
    "entropy": ("alipy_entropy", "modal:entropy"),
    "kcenter": ("alipy_coreset",),
    "badge": ("modal:ranked_batch",),
}
TARGET_FRACTION = 0.95


@dataclass(frozen=True)
class Dataset:
    """Pool and test features / classes, and the label grid of the learning curve."""

    name: str
    x_pool: np.ndarray  # float32 [n, d]
    y_pool: np.ndarray  # int64 [n]
    x_test: np.ndarray
    y_test: np.ndarray
    grid: tuple[int, ...]  # labels after each round (first = seed set size)
    note: str

    @property
    def n_classes(self) -> int:
        """Number of classes in the pool."""
        return int(self.y_pool.max()) + 1


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(round(len(y) * (1 - test_fraction)))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def load_dataset(name: str) -> Dataset:
    """One of ``digits``, ``banking77``, ``sms_spam``, ``fashion_mnist``."""
    if name == "digits":
        x, y = common.digits()
        xp, yp, xt, yt = _split(x, y, 0.25, seed=0)
        grid = (10, 20, 40, 60, 80, 100, 150, 200, 300, 400)
        return Dataset(name, xp, yp, xt, yt, grid, "pixels/16, 64-d")
    if name == "banking77":
        data = common.banking77()
        grid = (154, 300, 500, 750, 1000, 1500, 2000, 3000, 4000)
        return Dataset(name, data["train_vectors"], data["train_intents"],
                       data["test_vectors"], data["test_intents"], grid, "MiniLM 384-d")
    if name == "sms_spam":
        x, y = common.sms_spam()
        xp, yp, xt, yt = _split(x, y, 0.2, seed=0)
        grid = (10, 20, 40, 60, 100, 150, 200, 300, 500)
        return Dataset(name, xp, yp, xt, yt, grid, "MiniLM 384-d")
    if name == "fashion_mnist":
        from sklearn.decomposition import PCA

        xp, yp = common.fashion_mnist(6000, seed=0)
        xt, yt = common.fashion_mnist_test(2000, seed=0)
        pca = PCA(n_components=50, random_state=0).fit(xp)
        grid = (20, 50, 100, 200, 400, 700, 1000, 1500, 2000, 3000)
        return Dataset(name, pca.transform(xp).astype(np.float32), yp,
                       pca.transform(xt).astype(np.float32), yt, grid,
                       "pixels/255 -> PCA 50 (6k pool / 2k test subsample)")
    raise ValueError(f"unknown dataset {name!r}")


def make_learner() -> Any:
    """The fixed learner every method trains: multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=200)


def full_probs(learner: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 ``[n, n_classes]`` probabilities (zero for classes the learner has not seen)."""
    out = np.zeros((x.shape[0], n_classes), dtype=np.float32)
    out[:, learner.classes_] = learner.predict_proba(x)
    return out


def seed_set(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """bool ``[n]``: one random item per class (as many classes as fit), then uniform."""
    labeled = np.zeros(y.size, dtype=bool)
    classes = rng.permutation(np.unique(y))[:size]
    for c in classes:
        labeled[rng.choice(np.flatnonzero(y == c))] = True
    rest = np.flatnonzero(~labeled)
    labeled[rng.choice(rest, size - int(labeled.sum()), replace=False)] = True
    return labeled


def parse_method(method: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name[key=value,...]"`` into the registered name and its parameters.

    Values are JSON (``diverse_margin[beta=3]``, ``kcenter[max_candidates=5000]``); a plain
    name means the registered defaults.

    Raises:
        ValueError: on a malformed parameter list or a value that is not JSON.
    """
    import json

    if "[" not in method:
        return method, {}
    if not method.endswith("]"):
        raise ValueError(f"method {method!r}: parameters must be name[key=value,...]")
    name, _, inner = method[:-1].partition("[")
    params: dict[str, Any] = {}
    for pair in filter(None, inner.split(";" if ";" in inner else ",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"method {method!r}: {pair!r} is not key=value")
        params[key.strip()] = json.loads(value)
    return name, params


Picker = Callable[[Dataset, np.ndarray, Any, int, np.random.Generator], np.ndarray]


def make_picker(method: str) -> Picker:
    """``pick(dataset, labeled, learner, n, rng) -> positions`` for a method name."""
    if method.startswith("modal:"):
        return _modal_picker(method)
    from app.strategies import default_registry
    from app.strategies.base import PoolView

    name, params = parse_method(method)
    strategy = default_registry().create(name, params)

    def pick(ds: Dataset, labeled: np.ndarray, learner: Any, n: int,
             rng: np.random.Generator) -> np.ndarray:
        view = PoolView(
            item_ids=np.arange(labeled.size, dtype=np.int64),
            labeled=labeled.copy(),
            labels=np.where(labeled, ds.y_pool, -1).astype(np.int64),
            task="binary" if ds.n_classes == 2 else "multiclass",
            n_classes=ds.n_classes,
            probs=full_probs(learner, ds.x_pool, ds.n_classes),
            embeddings=ds.x_pool,
        )
        return strategy.select(view, n, rng).positions

    return pick


def _modal_picker(method: str) -> Picker:
    from modAL import batch as modal_batch
    from modAL import uncertainty as modal_uncertainty

    functions = {
        "modal:uncertainty": modal_uncertainty.uncertainty_sampling,
        "modal:margin": modal_uncertainty.margin_sampling,
        "modal:entropy": modal_uncertainty.entropy_sampling,
        "modal:ranked_batch": modal_batch.uncertainty_batch_sampling,
    }
    function = functions[method]

    class Fitted:
        """What modAL reads from a learner: predict_proba, and for ranked batch the
        training inputs."""

        on_transformed = False

        def __init__(self, learner: Any, x_training: np.ndarray) -> None:
            self.learner, self.X_training = learner, x_training

        def predict_proba(self, x: np.ndarray, **_: Any) -> np.ndarray:
            return np.asarray(self.learner.predict_proba(x))

    def pick(ds: Dataset, labeled: np.ndarray, learner: Any, n: int,
             rng: np.random.Generator) -> np.ndarray:
        unlabeled = np.flatnonzero(~labeled)
        fitted = Fitted(learner, ds.x_pool[labeled])
        chosen = function(fitted, ds.x_pool[unlabeled], n_instances=n)
        rows = np.asarray(chosen[0] if isinstance(chosen, tuple) else chosen, dtype=np.int64)
        return unlabeled[rows.reshape(-1)]

    return pick


def curve(ds: Dataset, method: str, seed: int) -> tuple[list[float], float]:
    """Test accuracy at each grid point for one method and seed, and query seconds spent."""
    rng = np.random.default_rng(seed)
    labeled = seed_set(ds.y_pool, ds.grid[0], rng)
    pick = make_picker(method)
    accuracies, query_seconds = [], 0.0
    for step, size in enumerate(ds.grid):
        learner = make_learner().fit(ds.x_pool[labeled], ds.y_pool[labeled])
        accuracies.append(float(learner.score(ds.x_test, ds.y_test)))
        if step + 1 == len(ds.grid):
            break
        n = ds.grid[step + 1] - size
        start = time.process_time()
        chosen = pick(ds, labeled, learner, n, rng)
        query_seconds += time.process_time() - start
        if chosen.size != n or labeled[chosen].any() or np.unique(chosen).size != n:
            raise RuntimeError(f"{method} returned an invalid batch at {size} labels")
        labeled[chosen] = True  # the simulated oracle reveals y_pool[chosen]
    return accuracies, query_seconds


def labels_to_reach(grid: tuple[int, ...], accuracies: list[float], target: float) -> float:
    """First label count where the curve reaches ``target`` (linear interpolation), or inf."""
    for i, acc in enumerate(accuracies):
        if acc >= target:
            if i == 0:
                return float(grid[0])
            a0, a1 = accuracies[i - 1], acc
            return grid[i - 1] + (target - a0) / (a1 - a0) * (grid[i] - grid[i - 1])
    return float("inf")


def normalized_auc(grid: tuple[int, ...], accuracies: list[float]) -> float:
    """Area under accuracy vs labels over the grid, divided by the label range."""
    x = np.asarray(grid, dtype=np.float64)
    return float(np.trapezoid(accuracies, x) / (x[-1] - x[0]))


def run_dataset(ds: Dataset, methods: list[str], seeds: int) -> tuple[list[dict], list[dict]]:
    """Curves and summary rows of one dataset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on tiny seed sets
        full = float(make_learner().fit(ds.x_pool, ds.y_pool).score(ds.x_test, ds.y_test))
    target = TARGET_FRACTION * full
    curve_rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for method in methods:
        start = time.perf_counter()
        per_seed, seconds = [], []
        for seed in range(seeds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                accuracies, query_seconds = curve(ds, method, seed)
            per_seed.append(accuracies)
            seconds.append(query_seconds)
            curve_rows += [
                {"dataset": ds.name, "method": method, "seed": seed, "labels": g, "accuracy": a}
                for g, a in zip(ds.grid, accuracies, strict=True)
            ]
        mean = np.mean(per_seed, axis=0).tolist()
        aucs = [normalized_auc(ds.grid, acc) for acc in per_seed]
        summary.append({
            "dataset": ds.name, "method": method, "full_data_acc": full, "target_acc": target,
            "labels@95": labels_to_reach(ds.grid, mean, target),
            "auc": statistics.mean(aucs), "auc_sd": statistics.stdev(aucs) if seeds > 1 else 0.0,
            "final_acc": mean[-1], "first_acc": mean[0],
            "query_cpu_s": statistics.mean(seconds), "pool": int(ds.y_pool.size),
            "max_labels": ds.grid[-1], "seeds": seeds, "features": ds.note,
        })
        print(f"  {ds.name:13s} {method:22s} auc {summary[-1]['auc']:.4f} "
              f"labels@95 {summary[-1]['labels@95']:.0f} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)
    by_method = {row["method"]: row for row in summary}
    random_labels = by_method.get("random", {}).get("labels@95", float("nan"))
    for row in summary:
        row["vs_random"] = row["labels@95"] / random_labels
    return curve_rows, summary


def main() -> None:
    """Parse arguments, run every dataset, print tables, write CSV and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="digits and sms_spam, 8 methods")
    parser.add_argument("--datasets", default=None, help="comma-separated dataset names")
    parser.add_argument("--methods", default=None, help="comma-separated method names")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    args = parser.parse_args()
    datasets = (
        args.datasets.split(",") if args.datasets
        else ["digits", "sms_spam"] if args.quick
        else ["digits", "sms_spam", "fashion_mnist", "banking77"]
    )
    methods = (
        args.methods.split(",") if args.methods
        else list(QUICK_METHODS) if args.quick else [*OURS, *ALIPY, *MODAL]
    )
    curves: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for name in datasets:
        ds = load_dataset(name)
        print(f"{name}: pool {ds.y_pool.size}, test {ds.y_test.size}, {ds.n_classes} classes, "
              f"labels {ds.grid[0]}..{ds.grid[-1]}", flush=True)
        rows, table_rows = run_dataset(ds, methods, args.seeds)
        curves += rows
        summary += table_rows
        suffix = f"_{args.tag}" if args.tag else ""
        common.write_csv(common.OUT / f"label_efficiency_curves{suffix}.csv", curves)
        common.write_csv(common.OUT / f"label_efficiency{suffix}.csv", summary)
    columns = ["method", "first_acc", "final_acc", "labels@95", "vs_random", "auc", "auc_sd",
               "query_cpu_s"]
    for name in datasets:
        rows = [r for r in summary if r["dataset"] == name]
        print(f"\n{name} ({rows[0]['features']}; pool {rows[0]['pool']}; {args.seeds} seeds; "
              f"full-data acc {rows[0]['full_data_acc']:.4f}, 95% = {rows[0]['target_acc']:.4f})")
        print(common.table(rows, columns))
    print("\nours vs originals (AUC difference, in units of the larger seed SD):")
    print(common.table(_comparisons(summary), ["dataset", "ours", "original", "auc_ours",
                                               "auc_original", "diff", "diff_in_sd"]))
    _plot(curves, datasets, args.seeds, common.OUT / f"label_efficiency{suffix}.png")


def _comparisons(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    index = {(r["dataset"], r["method"]): r for r in summary}
    for (dataset, method), ours in index.items():
        for original in ORIGINAL_OF.get(method, ()):
            other = index.get((dataset, original))
            if other is None:
                continue
            sd = max(ours["auc_sd"], other["auc_sd"], 1e-9)
            diff = ours["auc"] - other["auc"]
            rows.append({"dataset": dataset, "ours": method, "original": original,
                         "auc_ours": ours["auc"], "auc_original": other["auc"],
                         "diff": diff, "diff_in_sd": diff / sd})
    return rows


def _plot(curves: list[dict[str, Any]], datasets: list[str], seeds: int, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4.5), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        rows = [r for r in curves if r["dataset"] == name]
        for method in dict.fromkeys(r["method"] for r in rows):
            points: dict[int, list[float]] = {}
            for r in rows:
                if r["method"] == method:
                    points.setdefault(r["labels"], []).append(r["accuracy"])
            x = sorted(points)
            style = "--" if method.startswith(("alipy", "modal")) else "-"
            ax.plot(x, [np.mean(points[k]) for k in x], style, label=method,
                    linewidth=2.5 if method == "random" else 1.2)
        ax.set(title=f"{name} (mean of {seeds} seeds)", xlabel="labels", ylabel="test accuracy")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
