"""Which unlabeled rows to ask about: numpy-only query strategies behind one registry.

Import :func:`default_registry` and inject the registry where strategies are chosen by name.
"""

from app.strategies.alipy_adapter import (
    LAL_UNAVAILABLE_REASON,
    AlipyBMDR,
    AlipyCoreSet,
    AlipyDensityWeighted,
    AlipyEntropy,
    AlipyExpectedErrorReduction,
    AlipyGraphDensity,
    AlipyLeastConfident,
    AlipyMargin,
    AlipyQBC,
    AlipyQUIRE,
    AlipyRandom,
    AlipySPAL,
)
from app.strategies.base import PoolView, QueryStrategy, Selection
from app.strategies.bayesian import BALD
from app.strategies.coldstart import TypicalClusters
from app.strategies.composite import Subsample, Weighted
from app.strategies.density import InformationDensity
from app.strategies.diversity import BADGE, DiverseMargin, KCenterGreedy
from app.strategies.random import RandomSampling
from app.strategies.registry import StrategyRegistry
from app.strategies.uncertainty import EntropySampling, LeastConfidence, MarginSampling

__all__ = ["PoolView", "QueryStrategy", "Selection", "StrategyRegistry", "default_registry"]

LEWIS_GALE_1994 = (
    'D. D. Lewis and W. A. Gale, "A Sequential Algorithm for Training Text Classifiers", SIGIR 1994'
)
SCHEFFER_2001 = (
    'T. Scheffer, C. Decomain and S. Wrobel, "Active Hidden Markov Models for Information '
    'Extraction", IDA 2001'
)
SETTLES_2009_ENTROPY = (
    'Shannon entropy (C. E. Shannon 1948) as in B. Settles, "Active Learning Literature '
    'Survey", UW-Madison CS TR 1648, 2009'
)
ALIPY_2019 = (
    'ALiPy: Y.-P. Tang, G.-X. Li and S.-J. Huang, "ALiPy: Active Learning in Python", '
    "arXiv:1901.03802, 2019"
)
SENER_2018 = (
    'O. Sener and S. Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set '
    'Approach", ICLR 2018'
)


def default_registry() -> StrategyRegistry:
    """Build a new registry holding every built-in strategy (a fresh object on each call).

    Returns:
        A :class:`StrategyRegistry` with ``random``, ``least_confidence``, ``margin``,
        ``entropy``, ``typical``, ``bald``, ``kcenter``, ``badge``, ``diverse_margin``,
        ``information_density``, ``subsample``, ``weighted`` and the ALiPy strategies.
    """
    registry = StrategyRegistry()
    registry.add(
        "random",
        RandomSampling,
        family="random",
        source='Passive random sampling baseline (B. Settles, "Active Learning Literature '
        'Survey", 2009)',
        summary="Uniformly random unlabeled items; the baseline, and usable before any model.",
    )
    registry.add(
        "least_confidence",
        LeastConfidence,
        family="uncertainty",
        source=LEWIS_GALE_1994,
        summary="Items whose most likely class has the lowest probability.",
    )
    registry.add(
        "margin",
        MarginSampling,
        family="uncertainty",
        source=SCHEFFER_2001,
        summary="Items whose two most likely classes are closest in probability.",
    )
    registry.add(
        "entropy",
        EntropySampling,
        family="uncertainty",
        source=SETTLES_2009_ENTROPY,
        summary="Items whose predicted class distribution has the highest entropy.",
    )
    registry.add(
        "typical",
        TypicalClusters,
        family="cold_start",
        source='TypiClust: G. Hacohen, A. Dekel and D. Weinshall, "Active Learning on a '
        'Budget: Opposite Strategies Suit High and Low Budgets", ICML 2022',
        summary="The most typical item of each of n k-means clusters of the embeddings; "
        "needs no trained model.",
    )
    _add_native(registry)
    registry.add(
        "alipy_least_confident",
        AlipyLeastConfident,
        family="uncertainty",
        source=f"{ALIPY_2019}; method: {LEWIS_GALE_1994}",
        summary="ALiPy's least-confident uncertainty sampling on the cached probabilities.",
    )
    registry.add(
        "alipy_margin",
        AlipyMargin,
        family="uncertainty",
        source=f"{ALIPY_2019}; method: {SCHEFFER_2001}",
        summary="ALiPy's margin uncertainty sampling on the cached probabilities.",
    )
    registry.add(
        "alipy_entropy",
        AlipyEntropy,
        family="uncertainty",
        source=f"{ALIPY_2019}; method: {SETTLES_2009_ENTROPY}",
        summary="ALiPy's entropy uncertainty sampling on the cached probabilities.",
    )
    _add_alipy(registry)
    return registry


def _add_native(registry: StrategyRegistry) -> None:
    """The vectorized strategies for million-item pools beyond plain uncertainty."""
    registry.add(
        "bald",
        BALD,
        family="bayesian",
        source='N. Houlsby et al., "Bayesian Active Learning for Classification and Preference '
        'Learning", arXiv:1112.5745, 2011; MC dropout: Y. Gal, R. Islam and Z. Ghahramani, '
        '"Deep Bayesian Active Learning with Image Data", ICML 2017',
        summary="Items whose MC-dropout samples disagree most (mutual information between "
        "label and weights); needs a checkpoint trained with MC-dropout samples.",
    )
    registry.add(
        "kcenter",
        KCenterGreedy,
        family="diversity",
        source=SENER_2018,
        summary="Core-set greedy k-center over the embeddings, labeled items as initial "
        "centres: each pick is the item farthest from everything chosen or labeled.",
    )
    registry.add(
        "badge",
        BADGE,
        family="hybrid",
        source='J. T. Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient '
        'Lower Bounds", ICLR 2020',
        summary="k-means++ seeding over last-layer gradient embeddings: uncertain and diverse.",
    )
    registry.add(
        "diverse_margin",
        DiverseMargin,
        family="hybrid",
        source='F. Zhdanov, "Diverse mini-batch Active Learning", arXiv:1901.05954, 2019',
        summary="The beta*n smallest-margin items cut into n faiss k-means clusters; the item "
        "nearest each centroid.",
    )
    registry.add(
        "information_density",
        InformationDensity,
        family="density",
        source='B. Settles and M. Craven, "An Analysis of Active Learning Strategies for '
        'Sequence Labeling Tasks", EMNLP 2008',
        summary="Uncertainty times mean kNN cosine similarity (faiss) among the most uncertain "
        "items: uncertain and representative.",
    )
    registry.add(
        "subsample",
        Subsample,
        family="hybrid",
        source='small-text SubsamplingQueryStrategy (C. Schröder et al., Findings of ACL 2022)',
        summary="Runs another strategy (base, base_params) on a random subsample of size "
        "items, bounding its cost.",
    )
    registry.add(
        "weighted",
        Weighted,
        family="hybrid",
        source='Hybrid score combination (B. Settles, "Active Learning Literature Survey", '
        "2009)",
        summary="Weighted sum of min-max normalized scores (least_confidence, margin, entropy, "
        "bald, random).",
    )


def _add_alipy(registry: StrategyRegistry) -> None:
    """ALiPy's other instance-selection strategies, each on a capped candidate subset."""
    capped = " Runs on a candidate subset (param candidates, prefiltered by margin)."
    entries: list[tuple[str, type[QueryStrategy], str, str, str]] = [
        ("alipy_qbc", AlipyQBC, "committee",
         'H. S. Seung, M. Opper and H. Sompolinsky, "Query by Committee", COLT 1992; vote '
         "entropy: Dagan & Engelson, ICML 1995; KL: McCallum & Nigam, ICML 1998",
         "ALiPy query-by-committee over bootstrapped logistic regressions on the embeddings "
         "(disagreement: vote_entropy or KL_divergence)." + capped),
        ("alipy_eer", AlipyExpectedErrorReduction, "expected_error",
         'N. Roy and A. McCallum, "Toward Optimal Active Learning through Sampling Estimation '
         'of Error Reduction", ICML 2001',
         "ALiPy expected error reduction (log-loss), one model fit per candidate and class."
         + capped),
        ("alipy_quire", AlipyQUIRE, "density",
         'S.-J. Huang, R. Jin and Z.-H. Zhou, "Active Learning by Querying Informative and '
         'Representative Examples", TPAMI 2014',
         "ALiPy QUIRE (informative and representative, RBF kernel); binary only." + capped),
        ("alipy_graph_density", AlipyGraphDensity, "density",
         'S. Ebert, M. Fritz and B. Schiele, "RALF: A Reinforced Active Learning Formulation '
         'for Object Class Recognition", CVPR 2012',
         "ALiPy graph density: densest items of a kNN graph, neighbours discounted after each "
         "pick." + capped),
        ("alipy_bmdr", AlipyBMDR, "hybrid",
         'Z. Wang and J. Ye, "Querying Discriminative and Representative Samples for Batch '
         'Mode Active Learning", KDD 2013',
         "ALiPy BMDR (QP via cvxpy/OSQP); binary only." + capped),
        ("alipy_spal", AlipySPAL, "hybrid",
         'W. Tang and S.-J. Huang, "Self-Paced Active Learning: Query the Right Thing at the '
         'Right Time", AAAI 2019',
         "ALiPy SPAL: informative, representative and easy items (QP via cvxpy/OSQP); binary "
         "only." + capped),
        ("alipy_coreset", AlipyCoreSet, "diversity", SENER_2018,
         "ALiPy core-set greedy (k-center) with labeled items as centres." + capped),
        ("alipy_density_weighted", AlipyDensityWeighted, "density",
         'B. Settles and M. Craven, "An Analysis of Active Learning Strategies for Sequence '
         'Labeling Tasks", EMNLP 2008',
         "ALiPy density-weighted uncertainty (uncertainty x mean distance ** beta)." + capped),
        ("alipy_random", AlipyRandom, "random",
         'Passive random sampling (B. Settles, "Active Learning Literature Survey", 2009)',
         "ALiPy random sampling over every selectable item."),
    ]
    for name, cls, family, method_source, summary in entries:
        registry.add(
            name, cls, family=family, source=f"{ALIPY_2019}; method: {method_source}",
            summary=summary,
        )
    registry.add_unavailable(
        "alipy_lal",
        family="expected_error",
        source=f'{ALIPY_2019}; method: K. Konyushkova, R. Sznitman and P. Fua, "Learning Active '
        'Learning from Data", NeurIPS 2017',
        summary="ALiPy Learning Active Learning (a regressor predicting error reduction).",
        reason=LAL_UNAVAILABLE_REASON,
    )
