"""The one door to ALiPy (Tang, Li & Huang 2019): lazy import, compat shims, output translation.

Nothing else in the code base imports ``alipy``. Facts about ALiPy 1.2.5 this module relies on
(read from its source, ``alipy/query_strategy/query_labels.py`` and ``alipy/utils/misc.py``):

* ``import alipy`` pulls in ``matplotlib.pyplot`` (via ``alipy.experiment``), so a headless
  backend is set first. The import itself works on Python 3.11, but every ``select*`` call
  then fails with ``AttributeError: module 'collections' has no attribute 'Iterable'``
  (removed in Python 3.10); the shim restores the alias. ``Iterable`` is the only removed
  ``collections`` alias ALiPy uses.
* ``ToolBox.get_query_strategy`` runs ``exec``/``eval`` on its argument: never called here; the
  class is looked up by name on ``alipy.query_strategy``. Nothing is ever unpickled.
* ``QueryInstanceUncertainty(X=None, y=None, measure=...)``: ``X``/``y`` are only needed by the
  model-based ``select()``; ``select_by_prediction_mat`` ignores them, so none are passed.
* ``select_by_prediction_mat(unlabel_index, predict, batch_size)`` returns *values taken from*
  ``unlabel_index`` (not indexes into it), ordered by **ascending** uncertainty (the best pick
  comes last), returns ``unlabel_index`` unchanged and unranked when
  ``len(unlabel_index) <= batch_size``, gives no scores, and for ``measure="entropy"`` writes
  into ``predict`` in place (``pv[pv <= 0] = 1e-6``) and loops over rows in Python.
* It validates with ``assert`` and raises bare ``Exception`` for bad shapes.
"""

import collections
import collections.abc
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import ClassVar, Literal

import numpy as np

from app.errors import AppError, ModelNotReady, StrategyFailed, UnsupportedTask
from app.strategies.base import FloatArray, PoolView, Selection, check_n, require_array, top_k
from app.strategies.uncertainty import (
    ScoreFunction,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

AlipyMeasure = Literal["least_confident", "margin", "entropy"]

# collections aliases removed in Python 3.10 that ALiPy 1.2.5 still uses (grep of its source).
_REMOVED_COLLECTIONS_ALIASES = ("Iterable",)

_SCORE_FUNCTIONS: dict[str, ScoreFunction] = {
    "least_confident": least_confidence_scores,
    "margin": margin_scores,
    "entropy": entropy_scores,
}


@functools.cache
def _import_alipy_query_strategy() -> ModuleType:
    """Import ``alipy.query_strategy`` once, with the shims it needs on Python >= 3.10.

    Sets ``MPLBACKEND=Agg`` unless the environment already chose a backend (``import alipy``
    imports ``matplotlib.pyplot``; Agg keeps a server headless), and restores the
    ``collections`` aliases ALiPy uses. Both are process-wide but harmless.

    Returns:
        The ``alipy.query_strategy`` module.

    Raises:
        StrategyFailed: if ALiPy cannot be imported.
    """
    for name in _REMOVED_COLLECTIONS_ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        from alipy import query_strategy
    except Exception as exc:  # ImportError, or an incompatibility surfacing at import time
        raise StrategyFailed(f"ALiPy could not be imported: {exc!r}") from exc
    module: ModuleType = query_strategy
    return module


@dataclass(frozen=True, slots=True)
class AlipyUncertainty:
    """ALiPy's ``QueryInstanceUncertainty`` served on the view's cached probabilities.

    The selectable rows' probabilities go to ALiPy's ``select_by_prediction_mat`` as a private
    float64 copy (ALiPy's entropy branch writes into its input), with the local row numbers
    ``0..m-1`` as ``unlabel_index``; the returned values are mapped back to positions. ALiPy
    returns no scores, so the score of each chosen row is recomputed with our matching pure
    function (:func:`~app.strategies.uncertainty.least_confidence_scores`,
    :func:`~app.strategies.uncertainty.margin_scores` or
    :func:`~app.strategies.uncertainty.entropy_scores`) and the batch is ordered best first by
    it (ALiPy's own order is worst first). The chosen *set* is ALiPy's.

    Attributes:
        measure: ``"least_confident"``, ``"margin"`` or ``"entropy"``.

    Source:
        Y.-P. Tang, G.-X. Li and S.-J. Huang, "ALiPy: Active Learning in Python", arXiv
        1901.03802, 2019; the measures follow Settles 2009, "Active Learning Literature Survey".
    """

    measure: AlipyMeasure = "margin"

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    def __post_init__(self) -> None:
        if self.measure not in _SCORE_FUNCTIONS:
            raise ValueError(
                f"measure must be one of {sorted(_SCORE_FUNCTIONS)}, got {self.measure!r}"
            )

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` most uncertain selectable positions, best first.

        Returns:
            Selection with float64 scores from our score function for ``measure``;
            ``info["backend"] == "alipy"``.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable (checked before ALiPy
                runs).
            UnsupportedTask: for multilabel views.
            ModelNotReady: if the view carries no ``probs``.
            StrategyFailed: if ALiPy raises anything, or returns something that is not ``n``
                distinct candidate rows.
        """
        if view.task not in self.tasks:
            raise UnsupportedTask(
                f"ALiPy uncertainty supports {', '.join(sorted(self.tasks))}, not {view.task!r}",
                task=view.task,
            )
        candidates = check_n(view, n)
        probs = require_array(view, "probs")
        local_probs = np.array(probs[candidates], dtype=np.float64)  # [m, c], ALiPy may write
        m = int(candidates.shape[0])
        query_strategy = _import_alipy_query_strategy()
        try:
            alipy_strategy = query_strategy.QueryInstanceUncertainty(measure=self.measure)
            picked = alipy_strategy.select_by_prediction_mat(
                unlabel_index=np.arange(m), predict=local_probs, batch_size=n
            )
        except AppError:
            raise
        except Exception as exc:  # ALiPy raises bare Exception, AssertionError, TypeError, ...
            raise StrategyFailed(
                f"ALiPy QueryInstanceUncertainty(measure={self.measure!r}) failed: "
                f"{type(exc).__name__}: {exc}",
                measure=self.measure,
            ) from exc
        rows = _as_local_rows(picked, m=m, n=n)
        chosen_probs: FloatArray = np.asarray(probs[candidates[rows]], dtype=np.float32)
        scores = _SCORE_FUNCTIONS[self.measure](chosen_probs)
        selection = top_k(candidates[rows], scores, n, rng)
        selection.info.update(backend="alipy", n_candidates=m)
        return selection


def _as_local_rows(picked: object, *, m: int, n: int) -> np.ndarray:
    """Check ALiPy's answer is ``n`` distinct row numbers in ``[0, m)``; int64 ``[n]``."""
    try:
        rows = np.asarray(picked).reshape(-1)
    except Exception as exc:
        raise StrategyFailed(f"ALiPy returned an unreadable selection: {exc}") from exc
    valid = (
        rows.shape == (n,)
        and np.issubdtype(rows.dtype, np.integer)
        and bool(np.all((rows >= 0) & (rows < m)))
        and np.unique(rows).size == n
    )
    if not valid:
        raise StrategyFailed(f"ALiPy returned {rows.size} rows, expected {n} distinct of {m}")
    return rows.astype(np.int64)


@dataclass(frozen=True, slots=True)
class AlipyLeastConfident(AlipyUncertainty):
    """:class:`AlipyUncertainty` fixed to ``measure="least_confident"`` (Lewis & Gale 1994)."""

    measure: AlipyMeasure = field(default="least_confident", init=False)


@dataclass(frozen=True, slots=True)
class AlipyMargin(AlipyUncertainty):
    """:class:`AlipyUncertainty` fixed to ``measure="margin"`` (Scheffer et al. 2001)."""

    measure: AlipyMeasure = field(default="margin", init=False)


@dataclass(frozen=True, slots=True)
class AlipyEntropy(AlipyUncertainty):
    """:class:`AlipyUncertainty` fixed to ``measure="entropy"`` (Shannon entropy; Settles 2009)."""

    measure: AlipyMeasure = field(default="entropy", init=False)


# --------------------------------------------------------------------------------------------
# Model-based and model-free ALiPy strategies on a bounded local problem.
#
# ALiPy's other instance strategies take the *whole* feature matrix ``X`` and labels ``y`` and
# many cost O(m^2)..O(m^3) in the candidates (kernel matrices, QPs, one model fit per candidate
# and class). Each one here therefore runs on a local problem: at most ``candidates`` selectable
# rows chosen by a cheap prefilter (smallest margin when the view has ``probs``, else uniform
# at random) plus at most ``max_labeled`` labeled rows (uniform at random). The local ``X`` is
# the view's embeddings of those rows (float64), local ids are ``0..l-1`` for the labeled rows
# and ``l..l+m-1`` for the candidates. ``Selection.info`` reports the caps and the prefilter.
# ALiPy gives no scores, so scores are NaN and the batch keeps ALiPy's order.
# --------------------------------------------------------------------------------------------

MAX_CANDIDATES = 20_000
MAX_LABELED = 20_000


@dataclass(frozen=True)
class _LocalProblem:
    """Rows handed to ALiPy: labeled first, then candidates."""

    x: np.ndarray  # float64 [l + m, d]
    y: np.ndarray  # int64 [l + m]; labeled rows: class index; candidates: a placeholder
    labeled_positions: np.ndarray  # int64 [l]
    candidate_positions: np.ndarray  # int64 [m]
    info: dict[str, object]

    @property
    def label_index(self) -> np.ndarray:
        return np.arange(self.labeled_positions.size)

    @property
    def unlabel_index(self) -> np.ndarray:
        l_count = self.labeled_positions.size
        return np.arange(l_count, l_count + self.candidate_positions.size)


def _check_cap(name: str, value: object, high: int) -> None:
    """Raise ValueError unless ``value`` is an int (not bool) in ``[1, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be an integer in [1, {high}], got {value!r}")


def _refuse_task(strategy: object, view: PoolView, why: str = "") -> None:
    """UnsupportedTask unless the view's task is one the strategy class supports."""
    tasks = sorted(getattr(type(strategy), "tasks", ()))
    if view.task not in tasks:
        raise UnsupportedTask(
            f"{type(strategy).__name__} supports {', '.join(tasks)} projects, not "
            f"{view.task!r}{': ' + why if why else ''}",
            task=view.task,
            supported=tasks,
        )


def _local_problem(
    view: PoolView,
    n: int,
    rng: np.random.Generator,
    *,
    candidates: int,
    max_labeled: int,
    min_labeled: int = 0,
    min_classes: int = 0,
) -> _LocalProblem:
    """Prefilter candidates and sample labeled rows (see the section comment).

    Raises:
        ValueError: if ``n < 1``.
        PoolExhausted: if fewer than ``n`` positions are selectable.
        ModelNotReady: without embeddings, or with fewer than ``min_labeled`` labeled rows or
            ``min_classes`` labeled classes.
    """
    selectable = check_n(view, n)
    embeddings = require_array(view, "embeddings")
    cap = max(candidates, n)
    info: dict[str, object] = {
        "backend": "alipy",
        "n_candidates": int(selectable.size),
        "candidates": cap,
    }
    if selectable.size <= cap:
        chosen, prefilter = selectable, "none"
    elif view.probs is not None and view.task != "multilabel":
        scores = margin_scores(np.asarray(view.probs[selectable], dtype=np.float32))
        chosen, prefilter = np.sort(top_k(selectable, scores, cap, rng).positions), "margin"
    else:
        chosen, prefilter = np.sort(rng.choice(selectable, size=cap, replace=False)), "random"
    info["prefilter"] = prefilter
    info["n_considered"] = int(chosen.size)

    labeled = np.flatnonzero(view.labeled & (view.labels >= 0)).astype(np.int64)
    if view.task == "multilabel":
        labeled = np.flatnonzero(view.labeled).astype(np.int64)
    if labeled.size > max_labeled:
        labeled = np.sort(rng.choice(labeled, size=max_labeled, replace=False))
    info["n_labeled_used"] = int(labeled.size)
    classes = np.unique(view.labels[labeled]) if labeled.size else np.zeros(0, dtype=np.int64)
    if labeled.size < min_labeled or classes.size < min_classes:
        raise ModelNotReady(
            f"this ALiPy strategy needs at least {max(min_labeled, 1)} labeled items"
            + (f" of {min_classes} classes" if min_classes else ""),
            labeled=int(labeled.size),
            classes=int(classes.size),
        )
    rows = np.concatenate([labeled, chosen])
    x = np.asarray(embeddings[rows], dtype=np.float64)
    # labeled classes renumbered 0..k-1 (ALiPy indexes probability columns by label value);
    # candidates get label 0, which ALiPy never reads for unlabeled rows.
    y = np.zeros(rows.size, dtype=np.int64)
    if labeled.size and view.task != "multilabel":
        y[: labeled.size] = np.searchsorted(classes, view.labels[labeled])
    return _LocalProblem(x, y, labeled, chosen.astype(np.int64), info)


def _call_alipy(what: str, call: Callable[[], object]) -> object:
    """Run an ALiPy call, turning whatever it raises into StrategyFailed."""
    try:
        return call()
    except AppError:
        raise
    except Exception as exc:  # ALiPy raises bare Exception, AssertionError, ValueError, ...
        raise StrategyFailed(f"ALiPy {what} failed: {type(exc).__name__}: {exc}") from exc


def _finish(problem: _LocalProblem, picked: object, n: int) -> Selection:
    """Map ALiPy's local ids (``l..l+m-1``) back to positions; NaN scores, ALiPy's order."""
    l_count = problem.labeled_positions.size
    local = np.asarray(picked, dtype=np.int64).reshape(-1) - l_count
    rows = _as_local_rows(local, m=problem.candidate_positions.size, n=n)
    return Selection(
        positions=problem.candidate_positions[rows],
        scores=np.full(n, np.nan),
        info=dict(problem.info),
    )


def _whole_pool_answer(problem: _LocalProblem, n: int) -> Selection | None:
    """ALiPy returns ``unlabel_index`` unranked when it holds ``<= n`` rows: do the same."""
    if problem.candidate_positions.size > n:
        return None
    return Selection(
        positions=problem.candidate_positions.copy(),
        scores=np.full(n, np.nan),
        info=dict(problem.info),
    )


def _committee_predictions(
    problem: _LocalProblem, committee: int, n_classes: int, rng: np.random.Generator,
    *, probabilities: bool,
) -> list[np.ndarray]:
    """Bootstrapped sklearn LogisticRegression members' predictions on the candidates.

    Returns ``committee`` arrays: class ids ``[m]`` or probabilities ``[m, n_classes]`` (columns
    for classes a bootstrap sample missed are 0).
    """
    from sklearn.linear_model import LogisticRegression

    l_count = problem.labeled_positions.size
    x_lab, y_lab = problem.x[:l_count], problem.y[:l_count]
    x_cand = problem.x[l_count:]
    out: list[np.ndarray] = []
    for _ in range(committee):
        rows = rng.integers(0, l_count, size=l_count)
        if np.unique(y_lab[rows]).size < 2:  # a degenerate bootstrap: use every labeled row
            rows = np.arange(l_count)
        member = LogisticRegression(max_iter=200).fit(x_lab[rows], y_lab[rows])
        if probabilities:
            full = np.zeros((x_cand.shape[0], n_classes))
            full[:, member.classes_] = member.predict_proba(x_cand)
            out.append(full)
        else:
            out.append(member.predict(x_cand))
    return out


@dataclass(frozen=True, slots=True)
class AlipyQBC:
    """ALiPy ``QueryInstanceQBC`` with a committee of bootstrapped logistic regressions.

    The committee (``committee`` members, each fit on a bootstrap sample of the labeled rows'
    embeddings) predicts the candidates; ALiPy's ``select_by_prediction_mat`` measures their
    disagreement by vote entropy (Dagan & Engelson 1995) or mean KL divergence to the consensus
    (McCallum & Nigam 1998).

    Attributes:
        disagreement: ``"vote_entropy"`` or ``"KL_divergence"``.
        committee: members (``2..50``).
        candidates: cap on candidates (``1..20000``), prefiltered by margin.
        max_labeled: cap on labeled rows the members train on (``1..20000``).

    Source:
        H. S. Seung, M. Opper and H. Sompolinsky, "Query by Committee", COLT 1992; ALiPy.
    """

    disagreement: Literal["vote_entropy", "KL_divergence"] = "vote_entropy"
    committee: int = 5
    candidates: int = 2_000
    max_labeled: int = 5_000

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    def __post_init__(self) -> None:
        if self.disagreement not in ("vote_entropy", "KL_divergence"):
            raise ValueError(
                f"disagreement must be 'vote_entropy' or 'KL_divergence', got {self.disagreement!r}"
            )
        _check_cap("committee", self.committee, 50)
        if self.committee < 2:
            raise ValueError("committee must be >= 2")
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` candidates the committee disagrees on most (ALiPy's choice).

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            UnsupportedTask: for multilabel views.
            ModelNotReady: without embeddings or labeled items of two classes.
            StrategyFailed: if ALiPy or the committee fit fails.
        """
        _refuse_task(self, view)
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled,
            min_labeled=2, min_classes=2,
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        probabilities = self.disagreement == "KL_divergence"
        predictions = _call_alipy(
            "committee fit",
            lambda: _committee_predictions(
                problem, self.committee, int(problem.y.max()) + 1, rng,
                probabilities=probabilities,
            ),
        )
        query_strategy = _import_alipy_query_strategy()
        picked = _call_alipy(
            f"QueryInstanceQBC(disagreement={self.disagreement!r})",
            lambda: query_strategy.QueryInstanceQBC(
                disagreement=self.disagreement
            ).select_by_prediction_mat(
                unlabel_index=problem.unlabel_index, predict=predictions, batch_size=n
            ),
        )
        selection = _finish(problem, picked, n)
        selection.info["committee"] = self.committee
        return selection


@dataclass(frozen=True, slots=True)
class AlipyExpectedErrorReduction:
    """ALiPy ``QueryExpectedErrorReduction``: the candidate whose labeling most reduces the
    expected log-loss on the other candidates (one liblinear logistic regression per candidate
    and class: cost ``candidates * classes`` fits, hence the small default cap).

    Attributes:
        candidates: cap on candidates (``1..20000``; default 30), prefiltered by margin.
        max_labeled: cap on labeled rows each fit sees (``1..20000``; default 200: a 384-d
            10-class fit on 500 rows takes ~0.3 s, so 300 of them took 97 s on a 1M pool
            here; on 200 rows the query takes ~5 s).

    Source:
        N. Roy and A. McCallum, "Toward Optimal Active Learning through Sampling Estimation of
        Error Reduction", ICML 2001; ALiPy.
    """

    candidates: int = 30
    max_labeled: int = 200

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    def __post_init__(self) -> None:
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` expected-error-reducing candidates.

        Raises:
            ValueError, PoolExhausted, UnsupportedTask, ModelNotReady, StrategyFailed: as
            :class:`AlipyQBC`.
        """
        _refuse_task(self, view)
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled,
            min_labeled=2, min_classes=2,
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        from sklearn.linear_model import LogisticRegression

        query_strategy = _import_alipy_query_strategy()
        l_count = problem.labeled_positions.size
        # ALiPy's default model (liblinear) refuses 3+ classes in scikit-learn >= 1.8; ALiPy
        # deep-copies and refits the fitted model it is given, once per candidate and class.
        learner = _call_alipy(
            "logistic regression fit",
            lambda: LogisticRegression(max_iter=200).fit(
                problem.x[:l_count], problem.y[:l_count]
            ),
        )
        picked = _call_alipy(
            "QueryExpectedErrorReduction",
            lambda: query_strategy.QueryExpectedErrorReduction(problem.x, problem.y).select(
                problem.label_index, problem.unlabel_index, model=learner, batch_size=n
            ),
        )
        return _finish(problem, picked, n)


_BINARY_WHY = "ALiPy implements it for binary labels in {-1, +1} only"


@dataclass(frozen=True, slots=True)
class AlipyQUIRE:
    """ALiPy ``QueryInstanceQUIRE`` (informative and representative, RBF kernel), binary only.

    QUIRE picks one row per call; a batch repeats the call with the picked rows removed from
    the candidates. Cost per call is cubic in the candidates.

    Attributes:
        candidates: cap on candidates (``1..20000``; default 100), prefiltered by margin.
        max_labeled: cap on labeled rows (``1..20000``).
        gamma: RBF kernel width (``> 0``).

    Source:
        S.-J. Huang, R. Jin and Z.-H. Zhou, "Active Learning by Querying Informative and
        Representative Examples", TPAMI 2014; ALiPy (after libact).
    """

    candidates: int = 100
    max_labeled: int = 300
    gamma: float = 1.0

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    task_note: ClassVar[str] = _BINARY_WHY

    def __post_init__(self) -> None:
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)
        if not float(self.gamma) > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` rows picked one at a time by QUIRE.

        Raises:
            ValueError, PoolExhausted, ModelNotReady, StrategyFailed: as :class:`AlipyQBC`.
            UnsupportedTask: for multiclass and multilabel views.
        """
        _refuse_task(self, view, _BINARY_WHY)
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled,
            min_labeled=1,
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        query_strategy = _import_alipy_query_strategy()
        signed = np.where(problem.y == 1, 1, -1)
        train_idx = np.arange(problem.y.size)
        quire = _call_alipy(
            "QueryInstanceQUIRE",
            lambda: query_strategy.QueryInstanceQUIRE(
                problem.x, signed, train_idx, gamma=float(self.gamma)
            ),
        )
        remaining = list(problem.unlabel_index)
        picked: list[int] = []
        for _ in range(n):
            (one,) = np.asarray(
                _call_alipy(
                    "QueryInstanceQUIRE.select",
                    lambda: quire.select(problem.label_index, remaining),  # type: ignore[attr-defined]
                )
            ).reshape(-1)
            picked.append(int(one))
            remaining.remove(int(one))
        return _finish(problem, picked, n)


@dataclass(frozen=True, slots=True)
class AlipyGraphDensity:
    """ALiPy ``QueryInstanceGraphDensity``: the densest rows of a kNN graph, neighbours
    discounted after each pick (model-free).

    Attributes:
        candidates: cap on candidates (``1..20000``; default 2000), prefiltered by margin
            (random without probs).
        max_labeled: cap on labeled rows in the graph (``1..20000``).
        metric: distance of the graph weights (``"manhattan"``, ALiPy's default, or
            ``"euclidean"``/``"cosine"``).

    Source:
        S. Ebert, M. Fritz and B. Schiele, "RALF: A Reinforced Active Learning Formulation for
        Object Class Recognition", CVPR 2012; ALiPy (after google/active-learning).
    """

    candidates: int = 2_000
    max_labeled: int = 2_000
    metric: Literal["manhattan", "euclidean", "cosine"] = "manhattan"

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "multilabel"})

    def __post_init__(self) -> None:
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)
        if self.metric not in ("manhattan", "euclidean", "cosine"):
            raise ValueError(f"metric must be manhattan, euclidean or cosine, got {self.metric!r}")

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` graph-density picks (in ascending position order: ALiPy
        returns a set).

        Raises:
            ValueError, PoolExhausted, ModelNotReady, StrategyFailed: as :class:`AlipyQBC`.
        """
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        query_strategy = _import_alipy_query_strategy()
        train_idx = np.arange(problem.y.size)
        picked = _call_alipy(
            "QueryInstanceGraphDensity",
            lambda: query_strategy.QueryInstanceGraphDensity(
                problem.x, problem.y, train_idx, metric=self.metric
            ).select(problem.label_index, problem.unlabel_index, batch_size=n),
        )
        return _finish(problem, sorted(np.asarray(picked).reshape(-1).tolist()), n)


@dataclass(frozen=True, slots=True)
class AlipyQP:
    """ALiPy's QP-based batch strategies BMDR and SPAL (cvxpy, solver OSQP), binary only.

    Attributes:
        method: ``"bmdr"`` or ``"spal"`` (fixed by the registered subclasses).
        candidates: cap on candidates (``1..20000``; default 200), prefiltered by margin.
        max_labeled: cap on labeled rows (``1..20000``).

    Source:
        BMDR: Z. Wang and J. Ye, "Querying Discriminative and Representative Samples for Batch
        Mode Active Learning", KDD 2013. SPAL: W. Tang and S.-J. Huang, "Self-Paced Active
        Learning: Query the Right Thing at the Right Time", AAAI 2019. Both via ALiPy.
    """

    method: Literal["bmdr", "spal"] = "bmdr"
    candidates: int = 200
    max_labeled: int = 300

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    task_note: ClassVar[str] = _BINARY_WHY

    def __post_init__(self) -> None:
        if self.method not in ("bmdr", "spal"):
            raise ValueError(f"method must be 'bmdr' or 'spal', got {self.method!r}")
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's BMDR/SPAL batch of ``n``.

        Raises:
            ValueError, PoolExhausted, ModelNotReady, StrategyFailed: as :class:`AlipyQBC`
            (StrategyFailed also when cvxpy is not installed).
            UnsupportedTask: for multiclass and multilabel views.
        """
        _refuse_task(self, view, _BINARY_WHY)
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled,
            min_labeled=2, min_classes=2,
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        query_strategy = _import_alipy_query_strategy()
        cls_name = "QueryInstanceBMDR" if self.method == "bmdr" else "QueryInstanceSPAL"
        signed = np.where(problem.y == 1, 1, -1)
        picked = _call_alipy(
            cls_name,
            lambda: getattr(query_strategy, cls_name)(problem.x, signed).select(
                problem.label_index, problem.unlabel_index, batch_size=n, qp_solver="OSQP"
            ),
        )
        return _finish(problem, picked, n)


@dataclass(frozen=True, slots=True)
class AlipyBMDR(AlipyQP):
    """:class:`AlipyQP` fixed to ``method="bmdr"`` (Wang & Ye, KDD 2013)."""

    method: Literal["bmdr", "spal"] = field(default="bmdr", init=False)


@dataclass(frozen=True, slots=True)
class AlipySPAL(AlipyQP):
    """:class:`AlipyQP` fixed to ``method="spal"`` (Tang & Huang, AAAI 2019)."""

    method: Literal["bmdr", "spal"] = field(default="spal", init=False)


@dataclass(frozen=True, slots=True)
class AlipyCoreSet:
    """ALiPy ``QueryInstanceCoresetGreedy`` (k-center greedy with sklearn pairwise distances).

    Attributes:
        candidates: cap on candidates (``1..20000``; default 5000), prefiltered by margin
            (random without probs).
        max_labeled: cap on labeled rows used as centres (``1..20000``).

    Source:
        Sener & Savarese, ICLR 2018; ALiPy (after google/active-learning).
    """

    candidates: int = 5_000
    max_labeled: int = 5_000

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "multilabel"})

    def __post_init__(self) -> None:
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)
        _check_cap("max_labeled", self.max_labeled, MAX_LABELED)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` core-set picks, in pick order.

        Raises:
            ValueError, PoolExhausted, StrategyFailed: as :class:`AlipyQBC`.
            ModelNotReady: without embeddings or any labeled item (ALiPy needs a centre).
        """
        problem = _local_problem(
            view, n, rng, candidates=self.candidates, max_labeled=self.max_labeled,
            min_labeled=1,
        )
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        query_strategy = _import_alipy_query_strategy()
        train_idx = np.arange(problem.y.size)
        picked = _call_alipy(
            "QueryInstanceCoresetGreedy",
            lambda: query_strategy.QueryInstanceCoresetGreedy(
                problem.x, problem.y, train_idx
            ).select(problem.label_index, problem.unlabel_index, batch_size=n),
        )
        return _finish(problem, picked, n)


@dataclass(frozen=True, slots=True)
class AlipyDensityWeighted:
    """ALiPy ``QueryInstanceDensityWeighted``: uncertainty of the cached probabilities times
    mean pairwise distance among the candidates to the power ``beta``.

    Attributes:
        measure: ``"least_confident"``, ``"margin"`` or ``"entropy"``.
        beta: exponent of the distance term.
        candidates: cap on candidates (``1..20000``; default 2000; the distance matrix is
            ``candidates**2``), prefiltered by margin.

    Source:
        B. Settles and M. Craven, EMNLP 2008 / Settles 2011 "Curious Machines"; ALiPy.
    """

    measure: AlipyMeasure = "entropy"
    beta: float = 1.0
    candidates: int = 2_000

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})

    def __post_init__(self) -> None:
        if self.measure not in _SCORE_FUNCTIONS:
            raise ValueError(
                f"measure must be one of {sorted(_SCORE_FUNCTIONS)}, got {self.measure!r}"
            )
        _check_cap("candidates", self.candidates, MAX_CANDIDATES)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` density-weighted picks, best first.

        Raises:
            ValueError, PoolExhausted, UnsupportedTask, StrategyFailed: as :class:`AlipyQBC`.
            ModelNotReady: without probs or embeddings.
        """
        _refuse_task(self, view)
        probs = require_array(view, "probs")
        problem = _local_problem(view, n, rng, candidates=self.candidates, max_labeled=1)
        whole = _whole_pool_answer(problem, n)
        if whole is not None:
            return whole
        query_strategy = _import_alipy_query_strategy()
        local_probs = np.array(probs[problem.candidate_positions], dtype=np.float64)
        picked = _call_alipy(
            "QueryInstanceDensityWeighted",
            lambda: query_strategy.QueryInstanceDensityWeighted(
                problem.x, problem.y, uncertainty_meansure=self.measure, beta=float(self.beta)
            ).select(
                problem.label_index, problem.unlabel_index, batch_size=n,
                proba_prediction=local_probs,
            ),
        )
        return _finish(problem, picked, n)


@dataclass(frozen=True, slots=True)
class AlipyRandom:
    """ALiPy ``QueryInstanceRandom`` over every selectable row (model-free).

    ALiPy draws from NumPy's global RNG; the adapter seeds it from ``rng`` for the call and
    restores its previous state afterwards (so the same seed gives the same batch; concurrent
    callers of the global RNG in other threads may interleave).

    Source:
        Random sampling baseline; ALiPy.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "multilabel"})

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ALiPy's ``n`` random picks.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            StrategyFailed: if ALiPy fails.
        """
        candidates = check_n(view, n)
        query_strategy = _import_alipy_query_strategy()
        index_module = _import_alipy_index()
        seed = int(rng.integers(0, 2**32 - 1))

        def call() -> object:
            state = np.random.get_state()
            np.random.seed(seed)
            try:
                return query_strategy.QueryInstanceRandom().select(
                    label_index=index_module.IndexCollection([]),
                    unlabel_index=index_module.IndexCollection(np.arange(candidates.size)),
                    batch_size=n,
                )
            finally:
                np.random.set_state(state)

        rows = _as_local_rows(_call_alipy("QueryInstanceRandom", call), m=candidates.size, n=n)
        return Selection(
            positions=candidates[rows], scores=np.full(n, np.nan),
            info={"backend": "alipy", "n_candidates": int(candidates.size)},
        )


def _import_alipy_index() -> ModuleType:
    """``alipy.index`` (IndexCollection), imported with the same shims."""
    _import_alipy_query_strategy()
    from alipy import index

    module: ModuleType = index
    return module


LAL_UNAVAILABLE_REASON = (
    "ALiPy's QueryInstanceLAL downloads its pre-trained regressors from GitHub at run time; "
    "the service runs offline and no locally trained selector is shipped"
)
