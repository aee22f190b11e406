"""IR metrics from name strings, computed by ir_measures (which calls pytrec_eval for most measures).

Two conventions are fixed here so every number rankwise prints means the same thing:

* **Which queries count.** By default (``missing="skip"``) a metric is averaged over the queries that
  appear in *both* the run and the qrels: trec_eval's default, and what BEIR's published numbers use
  (pytrec_eval scores only the run's queries). Queries of the run without judgements are ignored. A query
  that is in the run with an empty ranking counts, with 0.0 for every measure. ``missing="zero"`` is
  trec_eval's ``-c``: every judged query counts, and one absent from the run scores 0.0 for every measure.
* **Ties.** Equal scores are ordered by the run's dict order (earlier = better rank). rankwise's fusion
  returns each query's docs in its tie-broken rank order, so the numbers reflect that order. (trec_eval
  would instead break ties by doc id, descending, and ir_measures' providers disagree among themselves:
  MS MARCO's RR sorts tied doc ids ascending. Turning ties into distinct rank-based scores before
  evaluating removes that ambiguity; the measures here depend only on rank order, so a run without ties
  scores exactly as in pytrec_eval.)

Results are keyed by the metric names exactly as the caller wrote them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from rankwise.errors import RankwiseError
from rankwise.types import Qrels, Run

if TYPE_CHECKING:
    from ir_measures import Measure

Missing = Literal["skip", "zero"]

EXAMPLES = "nDCG@10, RR@10, R@100, AP@100, P@10, AP, MRR@10, Recall@100, MAP"
_FAMILY = re.compile(r"^\s*([A-Za-z_α]+)(.*?)\s*$")


def parse_measure(name: str) -> Measure:
    """Turn one metric name (``"nDCG@10"``, ``"RR@10"``, ``"AP"``...) into an ir_measures measure.

    The family name is case-insensitive (``ndcg@10`` == ``nDCG@10``) and ir_measures' aliases work
    (``MRR`` = ``RR``, ``MAP`` = ``AP``, ``Recall`` = ``R``, ``Precision`` = ``P``), as does its parameter
    syntax (``nDCG(gains={0:0,1:1,2:3})@10``). An unknown or malformed name raises :class:`RankwiseError`.
    """
    import ir_measures

    match = _FAMILY.match(name) if isinstance(name, str) else None
    if match is None:
        raise RankwiseError(f"unknown metric {name!r}: use names like {EXAMPLES}")
    family, rest = match.groups()
    canonical = {key.lower(): key for key in ir_measures.measures.registry}.get(family.lower())
    if canonical is None:
        raise RankwiseError(f"unknown metric {name!r}: no measure called {family!r}; use names like {EXAMPLES}")
    try:
        return ir_measures.parse_measure(canonical + rest)
    except (ValueError, NameError, TypeError, SyntaxError) as exc:
        raise RankwiseError(f"cannot parse metric {name!r} ({exc}); use names like {EXAMPLES}") from exc


def parse_measures(names: Sequence[str]) -> dict[str, Measure]:
    """Parse every name; returns ``{name as given: measure}`` in the given order (duplicates collapse)."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise RankwiseError(f"no metrics given: use names like {EXAMPLES}")
    return {name: parse_measure(name) for name in names}


def _rank_scored(run: Run) -> Run:
    """Replace scores by distinct rank-based ones: sort by score descending, ties kept in dict order."""
    ranked: Run = {}
    for qid, docs in run.items():
        for doc_id, score in docs.items():
            if not isinstance(score, int | float) or not math.isfinite(score):
                raise RankwiseError(f"run: query {qid!r}, doc {doc_id!r}: score {score!r} is not a finite number")
        order = sorted(docs, key=lambda d: -docs[d])  # stable: equal scores keep dict order
        n = len(order)
        ranked[qid] = {doc_id: float(n - i) for i, doc_id in enumerate(order)}
    return ranked


def _check_missing(missing: str) -> None:
    if missing not in ("skip", "zero"):
        raise RankwiseError(f"missing must be 'skip' or 'zero', not {missing!r}")


def evaluate_per_query(
    run: Run, qrels: Qrels, metrics: Sequence[str], *, missing: Missing = "skip"
) -> dict[str, dict[str, float]]:
    """Per-query values: ``{metric name as given: {query id: value}}``.

    Which queries appear is set by ``missing`` (see the module docstring); query ids are sorted.
    """
    import ir_measures

    _check_missing(missing)
    by_name = parse_measures(metrics)
    measures = list(dict.fromkeys(by_name.values()))
    judged = {qid: {doc: int(rel) for doc, rel in docs.items()} for qid, docs in qrels.items()}
    counted = set(judged) if missing == "zero" else set(judged) & set(run)

    values: dict[Measure, dict[str, float]] = {m: {} for m in measures}
    if counted:
        evaluator = ir_measures.evaluator(measures, judged)
        # ir_measures reports every judged query (0.0 where the run has none); keep the counted ones.
        for metric in evaluator.iter_calc(_rank_scored(run)):
            if metric.query_id in counted:
                values[metric.measure][metric.query_id] = float(metric.value)
    for per_query in values.values():  # a counted query a provider left out scores 0.0
        for qid in counted - per_query.keys():
            per_query[qid] = 0.0
    return {name: dict(sorted(values[measure].items())) for name, measure in by_name.items()}


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str], *, missing: Missing = "skip") -> dict[str, float]:
    """Mean of each metric over the counted queries: ``{metric name as given: mean}``.

    Raises :class:`RankwiseError` when no query can be scored (for example, run and qrels share no query
    id: usually the wrong split or a different data set), rather than returning NaN or 0.
    """
    per_query = evaluate_per_query(run, qrels, metrics, missing=missing)
    means: dict[str, float] = {}
    for name, values in per_query.items():
        if not values:
            raise RankwiseError(
                f"no query to evaluate: the run has {len(run)} queries, the qrels {len(qrels)}, "
                f"and they share {len(set(run) & set(qrels))} (wrong split or data set?)"
            )
        means[name] = math.fsum(values.values()) / len(values)
    return means
