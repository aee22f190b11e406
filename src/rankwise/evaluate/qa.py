"""Question-answering metrics: small pure functions, each checked against hand-computed values in the tests.

- :func:`exact_match` / :func:`f1_score`: SQuAD normalisation (lower case, no punctuation, no articles
  a/an/the, single spaces), best over several gold answers.
- :func:`hotpot_answer_scores`: the official HotpotQA answer EM/F1/precision/recall, including its rule that
  a yes/no/noanswer prediction or gold scores zero unless the two are equal.
- :func:`supporting_fact_scores`: HotpotQA supporting-facts EM/precision/recall/F1 over any hashable facts —
  ``(title, sentence_index)`` pairs as in the official script, or titles for paragraph level.
- :func:`joint_scores`: the official joint metrics (products of answer and supporting-fact precision/recall).
- :func:`citation_precision` / :func:`citation_recall`: cited passages that are gold passages (``None`` when
  nothing was cited / nothing is gold, so averages can skip undefined items and say how many they skipped).
- :func:`answer_in_text`, :func:`abstention_scores`, :func:`mean_defined`.
- :func:`answer_recall`: open-domain retrieval's answer recall@k (DPR's top-k accuracy), named
  ``AnswerRecall@k`` in experiment configs (:func:`parse_answer_recall`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_SPECIAL = ("yes", "no", "noanswer")
_ANSWER_RECALL = re.compile(r"^AnswerRecall@([1-9][0-9]*)$")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(golds: str | Sequence[str]) -> list[str]:
    out = [golds] if isinstance(golds, str) else list(golds)
    if not out:
        raise ValueError("at least one gold answer is needed")
    return out


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(golds)))


def _prf(prediction: str, gold: str) -> tuple[float, float, float]:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1_score(prediction: str, golds: str | Sequence[str]) -> float:
    """Token-overlap F1 after normalisation, best over the gold answers (SQuAD)."""
    return max(_prf(prediction, g)[0] for g in _golds(golds))


def hotpot_answer_scores(prediction: str, gold: str) -> dict[str, float]:
    """Official HotpotQA answer metrics: ``em``, ``f1``, ``precision``, ``recall``."""
    pred_n, gold_n = normalize_answer(prediction), normalize_answer(gold)
    em = float(pred_n == gold_n)
    if pred_n != gold_n and (pred_n in _SPECIAL or gold_n in _SPECIAL):
        return {"em": em, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    f1, precision, recall = _prf(prediction, gold)
    return {"em": em, "f1": f1, "precision": precision, "recall": recall}


def supporting_fact_scores(predicted: Iterable[Hashable], gold: Iterable[Hashable]) -> dict[str, float]:
    """Official HotpotQA supporting-fact metrics over sets of facts: ``em``, ``precision``, ``recall``, ``f1``.

    Precision is 0 when nothing is predicted and recall 0 when nothing is gold (as in the official script).
    """
    pred_set, gold_set = set(predicted), set(gold)
    tp = len(pred_set & gold_set)
    fp = len(pred_set - gold_set)
    fn = len(gold_set - pred_set)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"em": float(fp + fn == 0), "precision": precision, "recall": recall, "f1": f1}


def joint_scores(answer: Mapping[str, float], support: Mapping[str, float]) -> dict[str, float]:
    """Official HotpotQA joint metrics from :func:`hotpot_answer_scores` and :func:`supporting_fact_scores`."""
    precision = answer["precision"] * support["precision"]
    recall = answer["recall"] * support["recall"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"em": answer["em"] * support["em"], "precision": precision, "recall": recall, "f1": f1}


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Fraction of distinct cited passages that are gold passages; ``None`` when nothing is cited."""
    cited_set = set(cited)
    if not cited_set:
        return None
    return len(cited_set & set(gold)) / len(cited_set)


def citation_recall(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Fraction of gold passages that are cited; ``None`` when there is no gold passage."""
    gold_set = set(gold)
    if not gold_set:
        return None
    return len(gold_set & set(cited)) / len(gold_set)


def answer_in_text(golds: str | Sequence[str], text: str) -> bool:
    """True when some normalised gold answer occurs as a whole-token span of the normalised ``text``.

    Yes/no answers never count as contained (every passage "contains" them).
    """
    haystack = f" {normalize_answer(text)} "
    for gold in _golds(golds):
        needle = normalize_answer(gold)
        if needle and needle not in _SPECIAL and f" {needle} " in haystack:
            return True
    return False


def abstention_scores(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float | None]:
    """How abstention splits between answerable and unanswerable items.

    - ``abstention_rate``: abstained / all items;
    - ``abstention_rate_answerable`` / ``abstention_rate_unanswerable``: the same within each group
      (``None`` for an empty group); the rate on unanswerable items is the abstention accuracy there;
    - ``abstention_gap``: unanswerable rate minus answerable rate (> 0 means abstaining tracks answerability);
    - ``abstention_precision``: of the abstentions, the fraction on unanswerable items;
    - ``answerability_accuracy``: fraction of items where "abstained" equals "unanswerable".
    """
    if len(abstained) != len(answerable):
        raise ValueError(f"{len(abstained)} abstention flags for {len(answerable)} answerability labels")
    n = len(abstained)
    on_ans = [a for a, ok in zip(abstained, answerable, strict=True) if ok]
    on_unans = [a for a, ok in zip(abstained, answerable, strict=True) if not ok]
    rate_ans = sum(on_ans) / len(on_ans) if on_ans else None
    rate_unans = sum(on_unans) / len(on_unans) if on_unans else None
    total = sum(abstained)
    return {
        "abstention_rate": total / n if n else None,
        "abstention_rate_answerable": rate_ans,
        "abstention_rate_unanswerable": rate_unans,
        "abstention_gap": rate_unans - rate_ans if rate_ans is not None and rate_unans is not None else None,
        "abstention_precision": sum(on_unans) / total if total else None,
        "answerability_accuracy": (
            sum(a == (not ok) for a, ok in zip(abstained, answerable, strict=True)) / n if n else None
        ),
    }


def mean_defined(values: Iterable[float | None]) -> tuple[float | None, int]:
    """``(mean of the values that are not None, how many there were)``; the mean is None when none are."""
    defined = [v for v in values if v is not None]
    return (sum(defined) / len(defined) if defined else None), len(defined)


def parse_answer_recall(name: str) -> int | None:
    """``k`` of a metric named ``AnswerRecall@k``; None for any other name."""
    match = _ANSWER_RECALL.match(name)
    return int(match.group(1)) if match else None


def answer_recall(
    ranked: Mapping[str, Sequence[str]], answers: Mapping[str, Sequence[str]], k: int, text: Callable[[str], str]
) -> dict[str, float]:
    """Per query with gold answers: 1.0 when a gold answer occurs (:func:`answer_in_text`, SQuAD normalisation)
    in one of the first ``k`` doc ids of ``ranked[qid]`` (best first), else 0.0 (also when it retrieved nothing).

    ``text`` maps a doc id to the text searched (title and passage). DPR's top-k retrieval accuracy.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return {
        qid: float(any(answer_in_text(golds, text(doc)) for doc in ranked.get(qid, ())[:k]))
        for qid, golds in answers.items()
        if golds
    }
