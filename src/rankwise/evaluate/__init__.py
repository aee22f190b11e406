"""Evaluation: IR metrics over runs and qrels (``retrieval``); QA and citation metrics live beside it."""

from rankwise.evaluate.retrieval import evaluate, evaluate_per_query, parse_measure, parse_measures

__all__ = ["evaluate", "evaluate_per_query", "parse_measure", "parse_measures"]
